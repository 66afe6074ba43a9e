/* lib/qmp against Debian's real qemu-system-x86_64 (TCG) and against tests/tools/fakeqmp.py,
 * a peer that hangs, exits or prints garbage. */
#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "qmp.h"
#include "strv.h"
#include "tap.h"

#define REAL_QEMU "/usr/bin/qemu-system-x86_64"
#define SHORT_TIMEOUT_MS 1500
#define SLACK_MS 2500

static char tmpdir[] = "/tmp/kd-test-qmp-XXXXXX";

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *qemu_path(void)
{
	const char *p = getenv("KD_QEMU");
	return p && *p ? p : REAL_QEMU;
}

/* An executable that runs fakeqmp.py in the given mode (QEMU's arguments follow). */
static const char *fake(const char *mode)
{
	static char path[PATH_MAX];
	char src[PATH_MAX], abs[PATH_MAX];
	const char *srcdir = getenv("KD_SRCDIR");
	FILE *f;

	snprintf(src, sizeof(src), "%s/tests/tools/fakeqmp.py", srcdir ? srcdir : ".");
	snprintf(path, sizeof(path), "%s/qemu-%s", tmpdir, mode);
	f = fopen(path, "w");
	if (!f)
		return "/nonexistent";
	fprintf(f, "#!/bin/sh\nexec python3 '%s' %s \"$@\"\n", realpath(src, abs) ?: src, mode);
	fclose(f);
	chmod(path, 0755);
	return path;
}

static bool no_children_left(void)
{
	return waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD;
}

TEST(real_qemu_probe)
{
	kd_qemu_caps c = {0};
	kd_error err = {0};
	long long t0 = now_ms();
	int r = kd_qemu_probe(qemu_path(), 0, &c, &err);

	CHECK_INT(r, 0);
	if (r < 0) {
		printf("#   %s\n", kd_err_msg(&err));
		return;
	}
	CHECK(c.version && strncmp(c.version, "7.", 2) >= 0);
	CHECK(kd_strv_find(c.accels, "tcg"));
	CHECK(kd_strv_find(c.accels, "kvm"));
	CHECK(kd_strv_find(c.machines, "q35"));
	CHECK(kd_strv_find(c.machines, "pc"));
	CHECK(kd_strv_find(c.devices, "vhost-vsock-pci"));
	CHECK(kd_strv_find(c.devices, "vhost-user-fs-pci"));
	CHECK(kd_strv_find(c.devices, "virtio-9p-pci"));
	CHECK(!kd_strv_find(c.devices, "no-such-device"));
	CHECK(kd_strv_find(c.cpu_models, "max"));
	CHECK(kd_strv_find(c.cpu_models, "host"));
	CHECK(now_ms() - t0 < KD_QMP_TIMEOUT_MS);
	kd_qemu_caps_done(&c);
	CHECK(no_children_left());
}

TEST(real_qemu_error_reply)
{
	kd_qmp *q = NULL;
	kd_error err = {0};
	struct json_object *ret = NULL;

	CHECK_INT(kd_qmp_start(qemu_path(), 0, &q, &err), 0);
	if (!q)
		return;
	CHECK_INT(kd_qmp_execute(q, "query-accelerators-that-do-not-exist", NULL, &ret, &err),
		  -EREMOTEIO);
	CHECK(strstr(kd_err_msg(&err), "has not been found") != NULL);
	/* The session survives a QMP error. */
	CHECK_INT(kd_qmp_execute(q, "query-kvm", NULL, &ret, &err), 0);
	CHECK(ret && json_object_is_type(ret, json_type_object));
	json_object_put(ret);
	kd_qmp_close(q);
	CHECK(no_children_left());
}

/* Protocol errors get a long deadline: they must be reported as such even when a loaded machine
 * is slow to start the fake (a time-out there would be a different, flaky failure). */
#define PROTOCOL_TIMEOUT_MS 15000

static void expect_failure(const char *mode, int code, const char *needle)
{
	kd_qemu_caps c = {0};
	kd_error err = {0};
	long long t0 = now_ms();
	/* "hang-after-cap" must get past the greeting first, so it too needs room to start. */
	int timeout = code != -ETIMEDOUT     ? PROTOCOL_TIMEOUT_MS
		      : strcmp(mode, "hang") ? 3 * SHORT_TIMEOUT_MS
					     : SHORT_TIMEOUT_MS;
	int r = kd_qemu_probe(fake(mode), timeout, &c, &err);

	printf("# %s: %s\n", mode, kd_err_msg(&err));
	CHECK_INT(r, code);
	CHECK(strstr(kd_err_msg(&err), needle) != NULL);
	CHECK(now_ms() - t0 < timeout + SLACK_MS);
	CHECK(no_children_left());
}

TEST(hang_times_out_and_is_killed)
{
	expect_failure("hang", -ETIMEDOUT, "did not answer the QMP greeting within 1500 ms");
}

TEST(hang_after_capabilities)
{
	expect_failure("hang-after-cap", -ETIMEDOUT, "did not answer 'query-version'");
}

TEST(garbage_greeting)
{
	expect_failure("garbage", -EPROTO, "not QMP while waiting for the QMP greeting: 'Welcome");
}

TEST(not_an_object)
{
	expect_failure("not-object", -EPROTO, "not QMP");
}

TEST(no_greeting)
{
	expect_failure("no-greeting", -EPROTO, "not a QMP greeting");
}

TEST(exits_early_shows_stderr)
{
	expect_failure("exit", -EPROTO, "exited with status 1 before answering the QMP greeting");
	expect_failure("exit", -EPROTO, "unsupported machine type");
}

TEST(garbage_reply)
{
	expect_failure("garbage-reply", -EPROTO, "while waiting for 'query-version'");
}

TEST(wrong_id)
{
	expect_failure("wrong-id", -EPROTO, "does not carry id");
}

TEST(error_reply)
{
	expect_failure("error", -EREMOTEIO, "The command query-version has not been found");
}

TEST(events_are_skipped)
{
	kd_qmp *q = NULL;
	kd_error err = {0};
	struct json_object *ret = NULL;

	CHECK_INT(kd_qmp_start(fake("events"), SHORT_TIMEOUT_MS, &q, &err), 0);
	if (!q)
		return;
	CHECK_INT(kd_qmp_execute(q, "query-version", NULL, &ret, &err), 0);
	CHECK(ret && json_object_object_get_ex(ret, "qemu", NULL));
	json_object_put(ret);
	kd_qmp_close(q);
	CHECK(no_children_left());
}

TEST(missing_binary)
{
	kd_qmp *q = NULL;
	kd_error err = {0};

	CHECK_INT(kd_qmp_start("/nonexistent/qemu", 0, &q, &err), -ENOENT);
	CHECK(strstr(kd_err_msg(&err), "/nonexistent/qemu") != NULL);
	CHECK_INT(kd_qmp_start("relative/qemu", 0, &q, &err), -EINVAL);
}

int main(void)
{
	if (!mkdtemp(tmpdir))
		return 1;
	RUN(real_qemu_probe);
	RUN(real_qemu_error_reply);
	RUN(hang_times_out_and_is_killed);
	RUN(hang_after_capabilities);
	RUN(garbage_greeting);
	RUN(not_an_object);
	RUN(no_greeting);
	RUN(exits_early_shows_stderr);
	RUN(garbage_reply);
	RUN(wrong_id);
	RUN(error_reply);
	RUN(events_are_skipped);
	RUN(missing_binary);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	(void)!system(cmd);
	TAP_END();
}
