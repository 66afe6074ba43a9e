#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static const char *log_program = "kata-deploy";
static kd_log_level log_max = KD_LOG_INFO;
static bool log_json;

static const char *const level_names[] = {
	[KD_LOG_ERROR] = "error",
	[KD_LOG_WARNING] = "warning",
	[KD_LOG_INFO] = "info",
	[KD_LOG_DEBUG] = "debug",
};

void kd_log_setup(const char *program, kd_log_level max_level, bool json)
{
	if (program)
		log_program = program;
	log_max = max_level;
	log_json = json;
}

kd_log_level kd_log_max_level(void)
{
	return log_max;
}

int kd_log_level_from_string(const char *s, kd_log_level *ret)
{
	for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
		if (s && strcmp(s, level_names[i]) == 0) {
			*ret = (kd_log_level)i;
			return 0;
		}
	return -EINVAL;
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlong forms, no surrogates, at most
 * U+10FFFF), 0 when the byte there starts none. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned c = s[0];
	size_t n;
	unsigned min, cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, min = 0x80, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, min = 0x800, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, min = 0x10000, cp = c & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* A message as one record, whatever it quotes: control characters and bytes that are not UTF-8
 * become \xHH (\t and \r as such), so a file name can neither move the terminal nor pass for a
 * line of its own. JSON: its own escapes, and the same \xHH text for bad bytes. Text: a line
 * break inside a message (a build log's tail) continues on a line that starts with "  | ". */
static void put_escaped(FILE *f, const char *str, bool json)
{
	const unsigned char *s = (const unsigned char *)str;
	const char *bs = json ? "\\\\" : "\\"; /* one backslash in the output's syntax */
	while (*s) {
		unsigned c = *s;
		size_t n = utf8_len(s);
		if (c == '\n')
			fputs(json ? "\\n" : "\n  | ", f);
		else if (c == '\t' || c == '\r')
			fprintf(f, "%s%c", bs, c == '\t' ? 't' : 'r');
		else if (json && (c == '"' || c == '\\'))
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c == 0x7f || !n)
			fprintf(f, "%sx%02x", bs, c);
		else
			fwrite(s, 1, n, f);
		s += n ? n : 1;
	}
}

void kd_log(kd_log_level level, const char *fmt, ...)
{
	char msg[4096];
	va_list ap;

	if (level > log_max)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	flockfile(stderr); /* one line at a time from several threads (job mode's dispatcher) */
	if (log_json) {
		struct timeval tv;
		struct tm tm;
		char ts[32];

		gettimeofday(&tv, NULL);
		gmtime_r(&tv.tv_sec, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
		fprintf(stderr, "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"program\":\"", ts,
			(long)(tv.tv_usec / 1000), level_names[level]);
		put_escaped(stderr, log_program, true);
		fputs("\",\"msg\":\"", stderr);
		put_escaped(stderr, msg, true);
		fputs("\"}\n", stderr);
	} else {
		fprintf(stderr, "%s: %s: ", log_program, level_names[level]);
		put_escaped(stderr, msg, false);
		fputc('\n', stderr);
	}
	funlockfile(stderr);
}

void kd_format_bytes(double v, char *buf, size_t size)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	size_t u = 0;

	while (v >= 1024 && u + 1 < ELEMENTSOF(units)) {
		v /= 1024;
		u++;
	}
	snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}
