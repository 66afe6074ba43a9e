/* lib/strpool: copies stay intact and distinct across blocks, long strings get their own
 * block without giving up the current one, and freeing everything at once is clean (ASan). */
#include <stdio.h>
#include <string.h>

#include "strpool.h"
#include "tap.h"

TEST(many)
{
	kd_strpool *p = NULL;
	char *s[20000], buf[64];

	/* 20,000 short strings: several 64 KiB blocks. */
	for (int i = 0; i < 20000; i++) {
		snprintf(buf, sizeof(buf), "share/kata/file-%05d", i);
		s[i] = kd_strpool_dup(&p, buf);
		CHECK(s[i] && s[i] != buf);
	}
	int bad = 0;
	for (int i = 0; i < 20000; i++) {
		snprintf(buf, sizeof(buf), "share/kata/file-%05d", i);
		bad += strcmp(s[i], buf) != 0;
	}
	CHECK_INT(bad, 0);
	CHECK_STR(kd_strpool_dup(&p, ""), "");
	kd_strpool_free(p);
	kd_strpool_free(NULL);
}

TEST(long_strings)
{
	kd_strpool *p = NULL;
	static char big[40000], big2[70000];

	memset(big, 'x', sizeof(big) - 1);
	memset(big2, 'y', sizeof(big2) - 1);
	/* A long string first (no block yet), then short ones, another long one, short again:
	 * the short ones share the block they started in. */
	char *a = kd_strpool_dup(&p, big);
	char *b = kd_strpool_dup(&p, "short-1");
	char *c = kd_strpool_dup(&p, big2);
	char *d = kd_strpool_dup(&p, "short-2");
	CHECK(a && b && c && d);
	CHECK(strcmp(a, big) == 0 && strcmp(c, big2) == 0);
	CHECK_STR(b, "short-1");
	CHECK_STR(d, "short-2");
	CHECK(d == b + strlen(b) + 1);
	kd_strpool_free(p);
}

int main(void)
{
	RUN(many);
	RUN(long_strings);
	TAP_END();
}
