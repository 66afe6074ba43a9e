/* Ask a QEMU binary what it can do, through QMP: spawn it with "-machine none -qmp stdio" (no
 * guest, no devices), negotiate capabilities, run queries, and tear it down. Everything the
 * child sends is untrusted: each read has a deadline, replies have a size limit, and a QEMU that
 * hangs or prints something that is not QMP is killed and reported as such. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define KD_QMP_TIMEOUT_MS 10000		   /* default: whole session, start to quit */
#define KD_QMP_MAX_LINE (8u * 1024 * 1024) /* one QMP message (query-machines is ~100 KiB) */
#define KD_QMP_STDERR_TAIL 512		   /* bytes of QEMU's stderr kept for messages */
#define KD_QMP_QUIT_GRACE_MS 1000	   /* after "quit", before SIGKILL */

typedef struct kd_qmp kd_qmp;

/* Start binary (an absolute path, run without a shell) and complete the QMP handshake.
 * timeout_ms bounds the whole session (0 = KD_QMP_TIMEOUT_MS). */
int kd_qmp_start(const char *binary, int timeout_ms, kd_qmp **ret, kd_error *err);

/* Run one command; args may be NULL. On success *ret_return (if not NULL) gets a new reference
 * to the "return" member. A QMP error reply becomes -EREMOTEIO with QEMU's "desc". */
int kd_qmp_execute(kd_qmp *q, const char *command, struct json_object *args,
		   struct json_object **ret_return, kd_error *err);

/* Send "quit", wait briefly, kill if needed, reap. Safe on NULL. */
void kd_qmp_close(kd_qmp *q);
DEFINE_CLEANUP(kd_qmp *, kd_qmp_close)
#define _cleanup_qmp_ _cleanup_(kd_qmp_closep)

/* What one QEMU binary offers, as a plain struct. Lists are sorted, NULL-terminated strv
 * (lib/strv.h: kd_strv_find). */
typedef struct kd_qemu_caps {
	char *version;	   /* "7.2.22" */
	char *package;	   /* "Debian 1:7.2+dfsg-7+deb12u18+b3", may be "" */
	bool kvm_present;  /* query-kvm: KVM support compiled in and /dev/kvm usable */
	char **accels;	   /* "kvm", "tcg", ... (QOM types implementing "accel") */
	char **machines;   /* "pc-q35-7.2", "q35", ... (aliases included) */
	char **devices;	   /* non-abstract QOM types implementing "device" */
	char **cpu_models; /* "host", "max", "Skylake-Server", ... */
} kd_qemu_caps;

/* One session: version, query-kvm, qom-list-types (accel, device), query-machines,
 * query-cpu-definitions. */
int kd_qemu_probe(const char *binary, int timeout_ms, kd_qemu_caps *ret, kd_error *err);
void kd_qemu_caps_done(kd_qemu_caps *caps);
