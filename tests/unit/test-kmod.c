/* lib/kmod on fake module trees built by tests/tools/mkfakeko.sh (fake .ko + depmod -b): states,
 * aliases, loaded-ness from a fake sysfs/procfs, dry-run loads, modprobe.d, broken indexes. */
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#include "fsroot.h"
#include "kmod.h"
#include "tap.h"

#define REL "6.1.0-fake"

static char tmpdir[] = "/tmp/kd-test-kmod-XXXXXX";

static int sh(const char *fmt, ...) _printf_(1, 2);
static int sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

/* A fresh host root NAME under tmpdir with a fake modules tree; env is passed to mkfakeko.sh. */
static const char *mkroot(const char *name, const char *env)
{
	static char root[PATH_MAX];
	const char *srcdir = getenv("KD_SRCDIR");

	snprintf(root, sizeof(root), "%s/%s", tmpdir, name);
	if (sh("%s %s/tests/tools/mkfakeko.sh tree '%s' %s >/dev/null 2>&1", env ? env : "",
	       srcdir ? srcdir : ".", root, REL) != 0)
		printf("# mkfakeko.sh failed for %s\n", root);
	return root;
}

static void write_file(const char *root, const char *rel, const char *data)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	sh("mkdir -p \"$(dirname '%s')\"", path);
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(data, f);
		fclose(f);
	}
}

static int open_kmod(const char *root, const char *const *conf, kd_kmod **ret, kd_error *err)
{
	char dir[PATH_MAX];
	_cleanup_close_ int rootfd = kd_root_open(root, NULL);
	snprintf(dir, sizeof(dir), "%s/lib/modules/%s", root, REL);
	return kd_kmod_open(rootfd, dir, conf, ret, err);
}

static kd_module_state state_of(kd_kmod *k, const char *name)
{
	kd_module_state s = (kd_module_state)-1;
	kd_error err = {0};
	if (kd_kmod_state(k, name, &s, NULL, &err) < 0)
		printf("#   state %s: %s\n", name, kd_err_msg(&err));
	return s;
}

TEST(states_from_index)
{
	const char *root = mkroot("plain", NULL);
	_cleanup_kmod_ kd_kmod *k = NULL;
	kd_error err = {0};
	_cleanup_free_ char *path = NULL;
	kd_module_state s;

	CHECK_INT(open_kmod(root, NULL, &k, &err), 0);
	if (!k)
		return;
	CHECK(strstr(kd_kmod_dirname(k), "/plain/lib/modules/" REL) != NULL);
	CHECK_INT(kd_kmod_state(k, "vhost_vsock", &s, &path, &err), 0);
	CHECK_INT(s, KD_MODULE_AVAILABLE);
	CHECK(path && strstr(path, "/kernel/drivers/vhost/vhost_vsock.ko") != NULL);
	/* Aliases and dash spellings resolve like modprobe. */
	CHECK_INT(state_of(k, "vhost-vsock"), KD_MODULE_AVAILABLE);
	CHECK_INT(state_of(k, "char-major-10-232"), KD_MODULE_AVAILABLE);
	CHECK_INT(state_of(k, "kvm-intel"), KD_MODULE_AVAILABLE);
	CHECK_INT(state_of(k, "nosuchmod"), KD_MODULE_MISSING);
	CHECK_STR(kd_module_state_to_string(KD_MODULE_AVAILABLE), "available");
	CHECK_INT(kd_kmod_state(k, "../etc", &s, NULL, &err), -EINVAL);
}

TEST(builtin_and_skipped)
{
	const char *root = mkroot("builtin", "BUILTIN='kvm irqbypass' SKIP='kvm_amd'");
	_cleanup_kmod_ kd_kmod *k = NULL;
	kd_error err = {0};
	_cleanup_free_ char *path = NULL;
	kd_module_state s;

	CHECK_INT(open_kmod(root, NULL, &k, &err), 0);
	if (!k)
		return;
	CHECK_INT(kd_kmod_state(k, "kvm", &s, &path, &err), 0);
	CHECK_INT(s, KD_MODULE_BUILTIN);
	CHECK(path == NULL);
	CHECK_INT(state_of(k, "kvm_intel"), KD_MODULE_AVAILABLE);
	CHECK_INT(state_of(k, "kvm_amd"), KD_MODULE_MISSING);
}

TEST(loaded_from_fake_sysfs_and_procfs)
{
	const char *root = mkroot("loaded", NULL);
	_cleanup_kmod_ kd_kmod *k = NULL;
	kd_error err = {0};

	write_file(root, "sys/module/vhost/initstate", "live\n");
	write_file(root, "proc/modules",
		   "tap 28672 1 vhost_net, Live 0x0\nvsock 45056 0 - Live 0x0\n");
	/* A built-in module with parameters has a sysfs dir but no initstate: not "loaded". */
	write_file(root, "sys/module/vhost_net/parameters/experimental_zcopytx", "1\n");
	CHECK_INT(open_kmod(root, NULL, &k, &err), 0);
	if (!k)
		return;
	CHECK_INT(state_of(k, "vhost"), KD_MODULE_LOADED);
	CHECK_INT(state_of(k, "vsock"), KD_MODULE_LOADED);
	CHECK_INT(state_of(k, "tap"), KD_MODULE_LOADED);
	CHECK_INT(state_of(k, "vhost_net"), KD_MODULE_AVAILABLE);
	CHECK_INT(state_of(k, "vhost_vsock"), KD_MODULE_AVAILABLE);
	/* Not in the index but loaded (out-of-tree): still loaded. */
	write_file(root, "sys/module/zfs/initstate", "live\n");
	CHECK_INT(state_of(k, "zfs"), KD_MODULE_LOADED);
}

struct actions {
	char text[1024];
};

static void record(const char *module, const char *path, const char *options, void *userdata)
{
	struct actions *a = userdata;
	size_t n = strlen(a->text);
	snprintf(a->text + n, sizeof(a->text) - n, "%s%s[%s]", n ? " " : "", module, options);
	(void)path;
}

TEST(dry_run_load_plans_dependencies)
{
	const char *root = mkroot("dry", NULL);
	char conf[PATH_MAX];
	const char *confs[] = {conf, NULL};
	_cleanup_kmod_ kd_kmod *k = NULL;
	kd_error err = {0};
	struct actions a = {""};

	snprintf(conf, sizeof(conf), "%s/etc/modprobe.d", root);
	write_file(root, "etc/modprobe.d/kata.conf",
		   "options vhost_vsock guest_cid_max=9\nblacklist vhost_net\n");
	CHECK_INT(open_kmod(root, confs, &k, &err), 0);
	if (!k)
		return;
	CHECK_INT(kd_kmod_load(k, "vhost-vsock", KD_KMOD_LOAD_DRY_RUN, record, &a, &err), 0);
	CHECK_STR(a.text, "vhost[] vsock[] vhost_vsock[guest_cid_max=9]");

	/* What the fake root reports loaded is not planned again. */
	write_file(root, "sys/module/vhost/initstate", "live\n");
	a.text[0] = '\0';
	CHECK_INT(kd_kmod_load(k, "vhost_vsock", KD_KMOD_LOAD_DRY_RUN, record, &a, &err), 0);
	CHECK_STR(a.text, "vsock[] vhost_vsock[guest_cid_max=9]");

	CHECK_INT(kd_kmod_load(k, "vhost_net", KD_KMOD_LOAD_DRY_RUN, record, &a, &err), -EPERM);
	CHECK(strstr(kd_err_msg(&err), "blacklisted") != NULL);
	CHECK_INT(kd_kmod_load(k, "nosuchmod", KD_KMOD_LOAD_DRY_RUN, record, &a, &err), -ENOENT);
	/* A real load into the running kernel is refused for any root but /. */
	CHECK_INT(kd_kmod_load(k, "vsock", 0, record, &a, &err), -EPERM);
	CHECK(strstr(kd_err_msg(&err), "root is not /") != NULL);
}

TEST(listed_but_absent_ko_is_missing)
{
	const char *root = mkroot("absent", NULL);
	_cleanup_kmod_ kd_kmod *k = NULL;
	kd_error err = {0};

	sh("rm -f '%s/lib/modules/%s/kernel/drivers/vhost/vhost_net.ko'", root, REL);
	CHECK_INT(open_kmod(root, NULL, &k, &err), 0);
	if (k)
		CHECK_INT(state_of(k, "vhost_net"), KD_MODULE_MISSING);
}

static void expect_broken(const char *name, const char *damage, int code, const char *needle)
{
	const char *root = mkroot(name, NULL);
	_cleanup_kmod_ kd_kmod *k = NULL;
	kd_error err = {0};

	sh("cd '%s/lib/modules/%s' && %s", root, REL, damage);
	CHECK_INT(open_kmod(root, NULL, &k, &err), code);
	printf("# %s: %s\n", name, kd_err_msg(&err));
	CHECK(strstr(kd_err_msg(&err), needle) != NULL);
	CHECK(k == NULL);
}

TEST(broken_indexes)
{
	expect_broken("empty", ": > modules.dep.bin", -EINVAL, "modules.dep.bin is truncated");
	expect_broken(
		"garbage",
		"head -c 4096 /dev/urandom > modules.alias.bin; printf x >> modules.alias.bin",
		-EINVAL, "modules.alias.bin is corrupt: bad magic");
	expect_broken("cut", "head -c 16 modules.symbols.bin > x && mv x modules.symbols.bin",
		      -EINVAL, "modules.symbols.bin is truncated");
	expect_broken("gone", "rm modules.builtin.bin", -ENOENT, "(run depmod)");
	expect_broken("textonly", "rm *.bin", -ENOENT, "modules.dep.bin (run depmod)");
	expect_broken(
		"version",
		"printf '\\260\\007\\364\\127\\000\\011\\000\\001' | dd of=modules.dep.bin conv=notrunc 2>/dev/null",
		-EINVAL, "unsupported version 9.1");
}

TEST(bad_modules_dir)
{
	_cleanup_kmod_ kd_kmod *k = NULL;
	kd_error err = {0};
	_cleanup_close_ int rootfd = kd_root_open(tmpdir, NULL);

	CHECK_INT(kd_kmod_open(rootfd, "/nonexistent/lib/modules/x", NULL, &k, &err), -ENOENT);
	CHECK(strstr(kd_err_msg(&err), "/nonexistent/lib/modules/x") != NULL);
	CHECK_INT(kd_kmod_open(rootfd, "relative", NULL, &k, &err), -EINVAL);
}

int main(void)
{
	if (!mkdtemp(tmpdir))
		return 1;
	RUN(states_from_index);
	RUN(builtin_and_skipped);
	RUN(loaded_from_fake_sysfs_and_procfs);
	RUN(dry_run_load_plans_dependencies);
	RUN(listed_but_absent_ko_is_missing);
	RUN(broken_indexes);
	RUN(bad_modules_dir);
	sh("rm -rf '%s'", tmpdir);
	TAP_END();
}
