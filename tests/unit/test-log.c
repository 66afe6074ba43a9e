/* lib/log.c: a message is printed as one record whatever it quotes (issue 14: file names with a
 * newline or invalid UTF-8 were printed raw). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "tap.h"

/* What kd_log printed on stderr for msg (as "%s"). */
static char *logged(bool json, const char *msg)
{
	static char buf[4096];
	FILE *f = tmpfile();
	int saved = dup(2);
	fflush(stderr);
	dup2(fileno(f), 2);
	kd_log_setup("t", KD_LOG_INFO, json);
	kd_error_log("%s", msg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

TEST(text_escapes)
{
	/* A newline that would forge a line, a terminal escape, bytes that are not UTF-8 (a lone
	 * continuation byte, an overlong '/', a surrogate), and UTF-8 that is fine. */
	CHECK_STR(logged(false, "'a\nt: info: ok\x1b[2J\x80\xc0\xaf\xed\xa0\x80 é\t'"),
		  "t: error: 'a\n  | t: info: ok\\x1b[2J\\x80\\xc0\\xaf\\xed\\xa0\\x80 é\\t'\n");
	CHECK_STR(logged(false, "plain 'opt/kata/bin/x'"), "t: error: plain 'opt/kata/bin/x'\n");
}

TEST(json_escapes)
{
	const char *out = logged(true, "'a\n\"\\\x01\xff é'");
	CHECK(strstr(out, "\"msg\":\"'a\\n\\\"\\\\\\\\x01\\\\xff é'\"}\n") != NULL);
	if (!strstr(out, "\"msg\":\"'a\\n\\\"\\\\\\\\x01\\\\xff é'\"}\n"))
		printf("#   got %s", out);
}

int main(void)
{
	RUN(text_escapes);
	RUN(json_escapes);
	TAP_END();
}
