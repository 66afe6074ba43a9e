#include "err.h"

#include <stdio.h>
#include <string.h>

static void vset(kd_error *err, int code, const char *suffix, const char *fmt, va_list ap)
{
	int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	if (suffix && n >= 0 && (size_t)n < sizeof(err->msg))
		snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s", suffix);
	err->code = code;
}

int kd_err(kd_error *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vset(err, code, NULL, fmt, ap);
		va_end(ap);
	}
	return code;
}

int kd_err_errno(kd_error *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vset(err, code, strerror(code < 0 ? -code : code), fmt, ap);
		va_end(ap);
	}
	return code;
}

int kd_err_wrap(kd_error *err, int code, const char *fmt, ...)
{
	char ctx[KD_ERROR_MAX], old[KD_ERROR_MAX];
	va_list ap;

	if (!err)
		return code;
	va_start(ap, fmt);
	vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	/* Messages are truncated on purpose when the chain grows past KD_ERROR_MAX. */
	snprintf(old, sizeof(old), "%s",
		 err->msg[0] ? err->msg : strerror(code < 0 ? -code : code));
	size_t n = strnlen(ctx, sizeof(err->msg) - 3);
	memcpy(err->msg, ctx, n);
	memcpy(err->msg + n, ": ", 2);
	size_t room = sizeof(err->msg) - n - 3, m = strnlen(old, room);
	memcpy(err->msg + n + 2, old, m);
	err->msg[n + 2 + m] = '\0';
	if (err->code == 0)
		err->code = code;
	return code;
}

void kd_err_clear(kd_error *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}

const char *kd_err_msg(const kd_error *err)
{
	if (!err)
		return "unknown error";
	if (err->msg[0])
		return err->msg;
	return err->code ? strerror(-err->code) : "no error";
}
