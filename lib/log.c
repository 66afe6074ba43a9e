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

static void json_escape(FILE *f, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
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

	if (log_json) {
		struct timeval tv;
		struct tm tm;
		char ts[32];

		gettimeofday(&tv, NULL);
		gmtime_r(&tv.tv_sec, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
		fprintf(stderr, "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"program\":\"", ts,
			(long)(tv.tv_usec / 1000), level_names[level]);
		json_escape(stderr, log_program);
		fputs("\",\"msg\":\"", stderr);
		json_escape(stderr, msg);
		fputs("\"}\n", stderr);
	} else {
		fprintf(stderr, "%s: %s: %s\n", log_program, level_names[level], msg);
	}
}
