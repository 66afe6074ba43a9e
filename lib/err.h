/* The error contract (docs/ERRORS.md): fallible functions return int, >= 0 on success and a
 * negative errno on failure, and may fill a kd_error with a message chain built on the way up:
 * "install kata-qemu: extract 'bin/qemu': archive: truncated input". The top of each program
 * prints it once; the node agent puts the same text into Kubernetes events. */
#pragma once

#include <stdarg.h>
#include <stddef.h>

#include "macro.h"

#define KD_ERROR_MAX 2048

typedef struct kd_error {
	int code;		/* negative errno of the innermost failure, 0 when unset */
	char msg[KD_ERROR_MAX]; /* context chain, outermost first */
} kd_error;

/* Set the innermost message (replacing any earlier one). Returns code, which must be < 0.
 * err may be NULL. Usage: return kd_err(err, -EINVAL, "bad mode %o", m); */
int kd_err(kd_error *err, int code, const char *fmt, ...) _printf_(3, 4);

/* Like kd_err, appending ": strerror(-code)" to the message. */
int kd_err_errno(kd_error *err, int code, const char *fmt, ...) _printf_(3, 4);

/* Prepend context to an existing message: "ctx: <old>". If err holds no message yet, the
 * message becomes "ctx: strerror(-code)". Returns code. Usage:
 *   r = extract(...); if (r < 0) return kd_err_wrap(err, r, "install %s", name); */
int kd_err_wrap(kd_error *err, int code, const char *fmt, ...) _printf_(3, 4);

/* Reset to "no error". */
void kd_err_clear(kd_error *err);

/* Message text, or strerror(-code) when no message was set. Never NULL. */
const char *kd_err_msg(const kd_error *err);
