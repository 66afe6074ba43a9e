/* Process-wide logging: text lines on stderr ("kata-deploy: info: ...") or JSON lines for
 * machines. Libraries call only kd_debug(); programs log once, where they decide what to do. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

typedef enum kd_log_level {
	KD_LOG_ERROR = 0,
	KD_LOG_WARNING,
	KD_LOG_INFO,
	KD_LOG_DEBUG,
} kd_log_level;

void kd_log_setup(const char *program, kd_log_level max_level, bool json);
kd_log_level kd_log_max_level(void);
/* Parse "error|warning|info|debug"; returns -EINVAL on anything else. */
int kd_log_level_from_string(const char *s, kd_log_level *ret);

void kd_log(kd_log_level level, const char *fmt, ...) _printf_(2, 3);

/* "512 B", "1.5 KiB", "3.2 GiB": a byte count for messages and progress lines. */
void kd_format_bytes(double bytes, char *buf, size_t size);

#define kd_error_log(...) kd_log(KD_LOG_ERROR, __VA_ARGS__)
#define kd_warn(...) kd_log(KD_LOG_WARNING, __VA_ARGS__)
#define kd_info(...) kd_log(KD_LOG_INFO, __VA_ARGS__)
#define kd_debug(...)                                                                              \
	do {                                                                                       \
		if (kd_log_max_level() >= KD_LOG_DEBUG)                                            \
			kd_log(KD_LOG_DEBUG, __VA_ARGS__);                                         \
	} while (0)
