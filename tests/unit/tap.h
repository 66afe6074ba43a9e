/* A tiny TAP harness: each test file defines tests with TEST(name) and lists them in main via
 * RUN(name). Output is TAP ("ok 1 - name"), and the closing line "N passed, N failed". */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n, tap_failed, tap_cur_failed;

#define TEST(name) static void name(void)

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			printf("#   %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);        \
			tap_cur_failed = 1;                                                        \
		}                                                                                  \
	} while (0)

#define CHECK_INT(a, b)                                                                            \
	do {                                                                                       \
		long long _a = (long long)(a), _b = (long long)(b);                                \
		if (_a != _b) {                                                                    \
			printf("#   %s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a,   \
			       _a, _b);                                                            \
			tap_cur_failed = 1;                                                        \
		}                                                                                  \
	} while (0)

#define CHECK_STR(a, b)                                                                            \
	do {                                                                                       \
		const char *_a = (a), *_b = (b);                                                   \
		if (!_a || !_b || strcmp(_a, _b) != 0) {                                           \
			printf("#   %s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__,   \
			       #a, _a ? _a : "(null)", _b ? _b : "(null)");                        \
			tap_cur_failed = 1;                                                        \
		}                                                                                  \
	} while (0)

#define RUN(name)                                                                                  \
	do {                                                                                       \
		tap_cur_failed = 0;                                                                \
		name();                                                                            \
		tap_n++;                                                                           \
		if (tap_cur_failed)                                                                \
			tap_failed++;                                                              \
		printf("%s %d - %s\n", tap_cur_failed ? "not ok" : "ok", tap_n, #name);            \
	} while (0)

#define TAP_END()                                                                                  \
	do {                                                                                       \
		printf("1..%d\n", tap_n);                                                          \
		printf("%d passed, %d failed\n", tap_n - tap_failed, tap_failed);                  \
		return tap_failed ? EXIT_FAILURE : EXIT_SUCCESS;                                   \
	} while (0)
