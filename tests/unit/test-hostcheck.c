/* deployer/hostcheck on fake host roots: cpuinfo, a fake modules tree (mkfakeko.sh), fake sysfs,
 * containerd configs, a payload whose QEMU is Debian's real one (TCG) or a hanging fake. */
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deployer/hostcheck.h"
#include "tap.h"

#define REL "6.1.0-fake"
#define INTEL_FLAGS "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge lm sse4_1 sse4_2 vmx"
#define REAL_QEMU "/usr/bin/qemu-system-x86_64"

static char tmpdir[] = "/tmp/kd-test-hostcheck-XXXXXX";
static char srcdir[PATH_MAX];

static int sh(const char *fmt, ...) _printf_(1, 2);
static int sh(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static void put(const char *root, const char *rel, const char *data)
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

/* A host root: Intel CPU with vmx (flags given), modules available (not loaded), /dev/kvm,
 * cgroup v2, containerd with a default config. */
static const char *mkhost(const char *name, const char *vendor, const char *flags)
{
	static char root[PATH_MAX];
	char cpuinfo[1024];

	snprintf(root, sizeof(root), "%s/%s", tmpdir, name);
	if (sh("'%s/tests/tools/mkfakeko.sh' tree '%s' %s >/dev/null 2>&1", srcdir, root, REL))
		printf("# mkfakeko.sh failed\n");
	if (vendor) {
		snprintf(cpuinfo, sizeof(cpuinfo),
			 "processor\t: 0\nvendor_id\t: %s\nflags\t\t: %s\n\nprocessor\t: 1\n"
			 "vendor_id\t: %s\nflags\t\t: %s\n",
			 vendor, flags, vendor, flags);
		put(root, "proc/cpuinfo", cpuinfo);
	}
	put(root, "proc/sys/kernel/osrelease", REL "\n");
	put(root, "dev/kvm", "");
	put(root, "sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n");
	put(root, "etc/containerd/config.toml", "version = 2\n[plugins]\n");
	return root;
}

/* The QMP session bound: short for the QEMU that hangs on purpose, long for the real one, which
 * a loaded machine (or a sanitizer build beside it) can keep from answering within 1.5 s. */
static int qmp_timeout_ms = 1500;

static kd_hostcheck_report *run(const char *root, const char *shims_csv, const char *qemu, bool fix)
{
	char buf[256];
	const char *shims[16] = {NULL};
	size_t n = 0;
	kd_hostcheck_opts o = {.root = root,
			       .runtime_version = "containerd://1.7.2",
			       .qemu = qemu,
			       .fix = fix,
			       .qmp_timeout_ms = qmp_timeout_ms};
	kd_hostcheck_report *rep = NULL;
	kd_error err = {0};

	snprintf(buf, sizeof(buf), "%s", shims_csv);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && n < 15;
	     t = strtok_r(NULL, ",", &save))
		shims[n++] = t;
	o.shims = shims;
	if (kd_hostcheck_run(&o, &rep, &err) < 0)
		printf("#   run: %s\n", kd_err_msg(&err));
	return rep;
}

static kd_check_status st(const kd_hostcheck_report *r, const char *id)
{
	const kd_check *c = r ? kd_hostcheck_find(r, id) : NULL;
	return c ? c->status : (kd_check_status)-1;
}

static const char *detail(const kd_hostcheck_report *r, const char *id)
{
	const kd_check *c = r ? kd_hostcheck_find(r, id) : NULL;
	return c && c->detail ? c->detail : "";
}

static const char *fix(const kd_hostcheck_report *r, const char *id)
{
	const kd_check *c = r ? kd_hostcheck_find(r, id) : NULL;
	return c && c->fix ? c->fix : "";
}

static int shim_ok(const kd_hostcheck_report *r, const char *shim)
{
	const kd_shim_verdict *v = r ? kd_hostcheck_verdict(r, shim) : NULL;
	return v ? v->ok : -1;
}

TEST(intel_host_modules_available)
{
	const char *root = mkhost("intel", "GenuineIntel", INTEL_FLAGS);
	_cleanup_hostcheck_report_ kd_hostcheck_report *r = run(root, "qemu,clh,fc", NULL, false);

	CHECK(r != NULL);
	if (!r)
		return;
	CHECK_INT(st(r, "cpu.virt"), KD_CHECK_PASS);
	CHECK_STR(detail(r, "cpu.virt"), "vmx (Intel VT-x)");
	CHECK_INT(st(r, "cpu.nested"), KD_CHECK_PASS);
	CHECK_INT(st(r, "modules"), KD_CHECK_PASS);
	CHECK_INT(st(r, "module.kvm_intel"), KD_CHECK_WARN);
	CHECK(kd_hostcheck_find(r, "module.kvm_amd") == NULL);
	CHECK_STR(fix(r, "module.vhost_vsock"),
		  "modprobe vhost_vsock (or kata-deploy check --fix)");
	CHECK_INT(st(r, "module.vhost_vsock"), KD_CHECK_WARN);
	CHECK(strstr(detail(r, "module.vhost_vsock"),
		     "not loaded, loadable: loaded on first use (") ==
	      detail(r, "module.vhost_vsock"));
	CHECK_INT(st(r, "kvm.device"), KD_CHECK_PASS);
	CHECK_INT(st(r, "kvm.create_vm"), KD_CHECK_SKIP);
	CHECK_INT(st(r, "cgroup"), KD_CHECK_PASS);
	CHECK_STR(detail(r, "runtime.version"), "containerd 1.7.2");
	CHECK_INT(st(r, "runtime.config"), KD_CHECK_PASS);
	CHECK_INT(st(r, "qemu.qmp"), KD_CHECK_SKIP); /* no payload, no --qemu */
	CHECK_INT(shim_ok(r, "qemu"), 1);
	CHECK_INT(shim_ok(r, "fc"), 1);
	CHECK(kd_hostcheck_all_ok(r));
}

TEST(loaded_and_fix_dry_run)
{
	const char *root = mkhost("fix", "GenuineIntel", INTEL_FLAGS);
	put(root, "sys/module/vhost/initstate", "live\n");
	put(root, "proc/modules", "irqbypass 16384 1 kvm, Live 0x0\n");
	_cleanup_hostcheck_report_ kd_hostcheck_report *r = run(root, "qemu", NULL, true);

	if (!r)
		return;
	CHECK_INT(st(r, "module.vhost"), KD_CHECK_PASS);
	CHECK_STR(detail(r, "module.vhost"), "loaded");
	CHECK(strstr(detail(r, "module.vhost_vsock"), "--fix would load") != NULL);
	CHECK(r->fix_dry_run);
	/* kvm (irqbypass already loaded), kvm_intel, vhost_net (+tap), vhost_vsock (+vsock). */
	CHECK_INT(r->n_fix_actions, 6);
	for (size_t i = 0; i < r->n_fix_actions; i++) {
		CHECK(strncmp(r->fix_actions[i], "insmod ", 7) == 0);
		CHECK(strstr(r->fix_actions[i], "irqbypass") == NULL);
		CHECK(strstr(r->fix_actions[i], "/vhost.ko") == NULL);
	}
}

TEST(no_cpuinfo)
{
	const char *root = mkhost("nocpu", NULL, NULL);
	_cleanup_hostcheck_report_ kd_hostcheck_report *r = run(root, "qemu", NULL, false);

	if (!r)
		return;
	CHECK_INT(st(r, "cpu.info"), KD_CHECK_FAIL);
	CHECK(strstr(detail(r, "cpu.info"), "/proc/cpuinfo") != NULL);
	CHECK(strstr(detail(r, "cpu.info"), "No such file") != NULL);
	CHECK_INT(shim_ok(r, "qemu"), 0);
	CHECK(strstr(kd_hostcheck_verdict(r, "qemu")->failed, "cpu.info") != NULL);
}

TEST(amd_vm_without_nested)
{
	const char *root = mkhost("amdvm", "AuthenticAMD", "fpu lm sse4_1 hypervisor");
	_cleanup_hostcheck_report_ kd_hostcheck_report *r = run(root, "clh", NULL, false);

	if (!r)
		return;
	CHECK_INT(st(r, "cpu.virt"), KD_CHECK_FAIL);
	CHECK(strstr(fix(r, "cpu.virt"), "nested virtualization") != NULL);
	CHECK_INT(st(r, "module.kvm_amd"), KD_CHECK_WARN);
	CHECK_INT(shim_ok(r, "clh"), 0);
	CHECK(!kd_hostcheck_any_ok(r));
}

TEST(cri_disabled)
{
	static const struct {
		const char *config;
		bool disabled;
	} cases[] = {
		{"disabled_plugins = [\"cri\"]\n", true},
		{"version = 2\ndisabled_plugins = [\n  \"aufs\",\n  'io.containerd.grpc.v1.cri',\n]\n",
		 true},
		{"disabled_plugins = []\n[plugins.x]\n  disabled_plugins = [\"cri\"]\n", false},
		{"# disabled_plugins = [\"cri\"]\nversion = 2\n", false},
		{"disabled_plugins = [\"criu\"]\n", false},
		{"version = 3\ndisabled_plugins = [\"io.containerd.cri.v1.runtime\"]\n", true},
		/* Not a config containerd will load: reported, with file:line:column. */
		{"version = 2\n[plugins\n", true},
		{"version = 9\n", true},
		{"disabled_plugins = \"cri\"\n", true},
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		const char *root = mkhost("cri", "GenuineIntel", INTEL_FLAGS);
		put(root, "etc/containerd/config.toml", cases[i].config);
		_cleanup_hostcheck_report_ kd_hostcheck_report *r = run(root, "fc", NULL, false);
		if (!r)
			continue;
		printf("# case %zu: %s\n", i, detail(r, "runtime.config"));
		CHECK_INT(st(r, "runtime.config"),
			  cases[i].disabled ? KD_CHECK_FAIL : KD_CHECK_PASS);
		CHECK_INT(shim_ok(r, "fc"), !cases[i].disabled);
		if (cases[i].disabled)
			CHECK(strstr(fix(r, "runtime.config"), "remove") != NULL ||
			      strstr(fix(r, "runtime.config"), "refuses to start") != NULL);
	}
}

TEST(broken_modules_index)
{
	const char *root = mkhost("broken", "GenuineIntel", INTEL_FLAGS);
	sh("head -c 64 /dev/zero > '%s/lib/modules/%s/modules.dep.bin'", root, REL);
	_cleanup_hostcheck_report_ kd_hostcheck_report *r = run(root, "qemu", NULL, false);

	if (!r)
		return;
	CHECK_INT(st(r, "modules"), KD_CHECK_FAIL);
	CHECK(strstr(detail(r, "modules"), "modules.dep.bin is corrupt") != NULL);
	CHECK(strstr(fix(r, "modules"), "depmod " REL) != NULL);
	CHECK_INT(st(r, "module.vhost_vsock"), KD_CHECK_FAIL); /* and no /dev/vhost-vsock */
	CHECK_INT(shim_ok(r, "qemu"), 0);
	CHECK(strstr(kd_hostcheck_verdict(r, "qemu")->failed, "modules") != NULL);
}

/* A pod that does not mount /lib/modules: a module that is not loaded but has its device node
 * (made at boot from modules.devname) is loaded on first use, a warning; without the node
 * nothing says it exists, and the shim is refused. A loaded one passes from sysfs. */
TEST(no_modules_tree)
{
	const char *root = mkhost("notree", "GenuineIntel", INTEL_FLAGS);
	sh("rm -rf '%s/lib/modules'", root);
	put(root, "sys/module/kvm_intel/initstate", "live\n");
	put(root, "dev/vhost-vsock", "");
	put(root, "dev/vhost-net", "");
	_cleanup_hostcheck_report_ kd_hostcheck_report *r = run(root, "qemu", NULL, false);

	if (!r)
		return;
	CHECK_INT(st(r, "modules"), KD_CHECK_WARN);
	CHECK_INT(st(r, "module.kvm_intel"), KD_CHECK_PASS);
	CHECK_INT(st(r, "module.vhost_vsock"), KD_CHECK_WARN);
	CHECK(strstr(detail(r, "module.vhost_vsock"),
		     "not loaded; /dev/vhost-vsock exists: loaded on first use (no modules tree") ==
	      detail(r, "module.vhost_vsock"));
	CHECK_INT(st(r, "module.vhost"), KD_CHECK_WARN);
	CHECK_INT(st(r, "module.kvm"), KD_CHECK_WARN);
	CHECK_INT(shim_ok(r, "qemu"), 1);
	kd_hostcheck_report_free(TAKE_PTR(r));

	sh("rm -f '%s/dev/vhost-vsock'", root);
	r = run(root, "qemu", NULL, false);
	if (!r)
		return;
	CHECK_INT(st(r, "module.vhost_vsock"), KD_CHECK_FAIL);
	CHECK(strstr(fix(r, "module.vhost_vsock"), "mount /lib/modules") != NULL);
	CHECK_INT(st(r, "module.vhost"), KD_CHECK_WARN); /* through /dev/vhost-net */
	CHECK_INT(shim_ok(r, "qemu"), 0);
}

/* The agent's pod: /proc, /sys, /dev at "/" (root), the runtime's config under the host root
 * (config_root). The config that counts is the host's. */
TEST(config_root)
{
	char hostroot[PATH_MAX];
	const char *root = mkhost("pod", "GenuineIntel", INTEL_FLAGS);
	snprintf(hostroot, sizeof(hostroot), "%s/host", tmpdir);
	put(hostroot, "etc/containerd/config.toml", "disabled_plugins = [\"cri\"]\n");
	kd_hostcheck_opts o = {.root = root,
			       .config_root = hostroot,
			       .runtime_version = "containerd://1.7.2",
			       .shims = (const char *const[]){"qemu", NULL}};
	kd_hostcheck_report *r = NULL;
	kd_error err = {0};

	CHECK_INT(kd_hostcheck_run(&o, &r, &err), 0);
	CHECK_INT(st(r, "runtime.config"), KD_CHECK_FAIL);
	CHECK(strstr(detail(r, "runtime.config"), "disables the CRI plugin") != NULL);
	kd_hostcheck_report_free(TAKE_PTR(r));
	o.config_root = NULL; /* the root's own config keeps CRI on */
	CHECK_INT(kd_hostcheck_run(&o, &r, &err), 0);
	CHECK_INT(st(r, "runtime.config"), KD_CHECK_PASS);
	kd_hostcheck_report_free(TAKE_PTR(r));
	o.config_root = "/nonexistent-host-root";
	CHECK(kd_hostcheck_run(&o, &r, &err) < 0);
	CHECK(strstr(kd_err_msg(&err), "runtime config root") != NULL);
	CHECK(r == NULL);
}

TEST(tee_flags)
{
	const char *root = mkhost("tee", "GenuineIntel", INTEL_FLAGS);
	_cleanup_hostcheck_report_ kd_hostcheck_report *r = run(root, "qemu,qemu-tdx", NULL, false);

	if (!r)
		return;
	CHECK_INT(st(r, "cpu.tdx"), KD_CHECK_FAIL);
	CHECK_INT(shim_ok(r, "qemu"), 1);
	CHECK_INT(shim_ok(r, "qemu-tdx"), 0);
	CHECK_STR(kd_hostcheck_verdict(r, "qemu-tdx")->failed, "cpu.tdx");
	CHECK(!kd_hostcheck_all_ok(r));
	CHECK(kd_hostcheck_any_ok(r));
}

TEST(payload_real_qemu_and_hanging_qemu)
{
	const char *root = mkhost("payload", "GenuineIntel", INTEL_FLAGS);
	char hang[PATH_MAX];

	sh("mkdir -p '%s/opt/kata/bin' && ln -s %s '%s/opt/kata/bin/qemu-system-x86_64' && "
	   "for b in containerd-shim-kata-v2 cloud-hypervisor; do printf '#!/bin/sh\\n' > "
	   "'%s/opt/kata/bin/'$b; chmod 755 '%s/opt/kata/bin/'$b; done",
	   root, REAL_QEMU, root, root, root);
	qmp_timeout_ms = 30000;
	{
		_cleanup_hostcheck_report_ kd_hostcheck_report *r =
			run(root, "qemu,clh,fc", NULL, false);
		qmp_timeout_ms = 1500;
		if (!r)
			return;
		CHECK_INT(st(r, "qemu.qmp"), KD_CHECK_PASS);
		CHECK(strstr(detail(r, "qemu.qmp"), "QEMU 7.") != NULL);
		CHECK_INT(st(r, "qemu.device.vhost-vsock-pci"), KD_CHECK_PASS);
		CHECK_INT(st(r, "qemu.accel.kvm"), KD_CHECK_PASS);
		CHECK_INT(st(r, "payload.cloud-hypervisor"), KD_CHECK_PASS);
		CHECK_INT(st(r, "payload.firecracker"), KD_CHECK_FAIL);
		CHECK_INT(shim_ok(r, "qemu"), 1);
		CHECK_INT(shim_ok(r, "clh"), 1);
		CHECK_INT(shim_ok(r, "fc"), 0);
	}
	snprintf(hang, sizeof(hang), "%s/qemu-hang", tmpdir);
	put(tmpdir, "qemu-hang", "");
	sh("printf '#!/bin/sh\\nexec python3 %s/tests/tools/fakeqmp.py hang \"$@\"\\n' > '%s' && "
	   "chmod 755 '%s'",
	   srcdir, hang, hang);
	{
		_cleanup_hostcheck_report_ kd_hostcheck_report *r =
			run(root, "qemu,clh", hang, false);
		if (!r)
			return;
		CHECK_INT(st(r, "qemu.qmp"), KD_CHECK_FAIL);
		CHECK(strstr(detail(r, "qemu.qmp"),
			     "did not answer the QMP greeting within 1500 ms") != NULL);
		CHECK_INT(shim_ok(r, "qemu"), 0);
		CHECK_INT(shim_ok(r, "clh"), 1);
	}
}

TEST(runtime_versions)
{
	const char *root = mkhost("rt", "GenuineIntel", INTEL_FLAGS);
	kd_hostcheck_opts o = {.root = root, .runtime_version = "containerd://1.5.9"};
	const char *shims[] = {"fc", NULL};
	kd_hostcheck_report *r = NULL;
	kd_error err = {0};

	o.shims = shims;
	CHECK_INT(kd_hostcheck_run(&o, &r, &err), 0);
	if (r) {
		CHECK_INT(st(r, "runtime.version"), KD_CHECK_FAIL);
		CHECK_STR(fix(r, "runtime.version"), "upgrade containerd to 1.6 or later");
		kd_hostcheck_report_free(r);
		r = NULL;
	}
	o.runtime_version = "cri-o://1.30.1";
	CHECK_INT(kd_hostcheck_run(&o, &r, &err), 0);
	if (r) {
		CHECK_INT(st(r, "runtime.version"), KD_CHECK_PASS);
		CHECK_INT(st(r, "runtime.config"), KD_CHECK_SKIP);
		kd_hostcheck_report_free(r);
		r = NULL;
	}
	/* Not given and the root is not /: the binary is found but not run. */
	o.runtime_version = NULL;
	put(root, "usr/bin/containerd", "#!/bin/sh\necho containerd x 9.9.9\n");
	sh("chmod 755 '%s/usr/bin/containerd'", root);
	CHECK_INT(kd_hostcheck_run(&o, &r, &err), 0);
	if (r) {
		CHECK_INT(st(r, "runtime.version"), KD_CHECK_SKIP);
		CHECK(strstr(detail(r, "runtime.version"), "not run for a root other than /") !=
		      NULL);
		kd_hostcheck_report_free(r);
	}
}

TEST(json_and_errors)
{
	const char *root = mkhost("json", "GenuineIntel", INTEL_FLAGS);
	_cleanup_hostcheck_report_ kd_hostcheck_report *r = run(root, "qemu,remote", NULL, false);
	struct json_object *j = NULL, *v, *shims;
	kd_error err = {0};
	const char *bad[] = {"qemu", "nosuchshim", NULL};
	kd_hostcheck_opts o = {.root = root, .shims = bad};
	kd_hostcheck_report *r2 = NULL;

	if (!r)
		return;
	CHECK_INT(kd_hostcheck_to_json(r, &j, &err), 0);
	CHECK(json_object_object_get_ex(j, "ok", &v) && json_object_get_boolean(v));
	CHECK(json_object_object_get_ex(j, "shims", &shims) &&
	      json_object_array_length(shims) == 2);
	v = json_object_array_get_idx(shims, 0);
	CHECK_STR(json_object_get_string(json_object_object_get(v, "runtime_class")), "kata-qemu");
	CHECK(json_object_object_get_ex(j, "checks", &v) && json_object_array_length(v) > 10);
	json_object_put(j);

	CHECK_INT(kd_hostcheck_run(&o, &r2, &err), -EINVAL);
	CHECK_STR(kd_err_msg(&err), "unknown shim 'nosuchshim'");
	o.root = "/nonexistent-root";
	o.shims = NULL;
	CHECK(kd_hostcheck_run(&o, &r2, &err) < 0);
	CHECK(r2 == NULL);
}

/* Upstream kata-deploy 4.1.0's shims (tools/packaging/kata-deploy/shim-components.json and its
 * chart's values.yaml): every one has host checks; upstream dropped the firecracker alias. */
TEST(upstream_41_shims_known)
{
	static const char *const upstream[] = {
		"clh",
		"clh-azure",
		"clh-azure-runtime-rs",
		"clh-runtime-rs",
		"dragonball",
		"fc",
		"openvmm-azure-runtime-rs",
		"qemu",
		"qemu-coco-dev",
		"qemu-coco-dev-runtime-rs",
		"qemu-nvidia-cpu",
		"qemu-nvidia-cpu-runtime-rs",
		"qemu-nvidia-gpu",
		"qemu-nvidia-gpu-runtime-rs",
		"qemu-nvidia-gpu-snp",
		"qemu-nvidia-gpu-snp-runtime-rs",
		"qemu-nvidia-gpu-tdx",
		"qemu-nvidia-gpu-tdx-runtime-rs",
		"qemu-runtime-rs",
		"qemu-se",
		"qemu-se-runtime-rs",
		"qemu-snp",
		"qemu-snp-runtime-rs",
		"qemu-tdx",
		"qemu-tdx-runtime-rs",
		"remote",
	};
	char known[2048];
	size_t n = 0;

	for (size_t i = 0; i < ELEMENTSOF(upstream); i++)
		if (!kd_hostcheck_shim_known(upstream[i])) {
			printf("#   not known: %s\n", upstream[i]);
			CHECK(false);
		}
	CHECK(!kd_hostcheck_shim_known("firecracker"));
	while (kd_hostcheck_shim_at(n))
		n++;
	CHECK_INT((int)n, (int)ELEMENTSOF(upstream) + 4); /* + older payloads' names */
	CHECK_INT(kd_hostcheck_known_shims(known, sizeof(known)), 0);
	CHECK(strncmp(known, "clh, clh-azure, clh-azure-runtime-rs, ", 38) == 0);
	CHECK_INT(kd_hostcheck_known_shims(known, 8), -ENOSPC);
}

/* OpenVMM's shim needs OpenVMM in the payload (and nothing of QEMU's). */
TEST(openvmm_needs_its_binary)
{
	const char *root = mkhost("openvmm", "GenuineIntel", INTEL_FLAGS);

	sh("mkdir -p '%s/opt/kata/runtime-rs/bin' && printf '#!/bin/sh\\n' > "
	   "'%s/opt/kata/runtime-rs/bin/containerd-shim-kata-v2' && chmod 755 "
	   "'%s/opt/kata/runtime-rs/bin/containerd-shim-kata-v2'",
	   root, root, root);
	_cleanup_hostcheck_report_ kd_hostcheck_report *r =
		run(root, "openvmm-azure-runtime-rs", NULL, false);
	if (!r)
		return;
	CHECK_INT(st(r, "payload.openvmm"), KD_CHECK_FAIL);
	CHECK_INT(st(r, "payload.shim-runtime-rs"), KD_CHECK_PASS);
	CHECK(kd_hostcheck_find(r, "qemu.qmp") == NULL);
	CHECK_INT(shim_ok(r, "openvmm-azure-runtime-rs"), 0);
	CHECK(strstr(kd_hostcheck_verdict(r, "openvmm-azure-runtime-rs")->failed,
		     "payload.openvmm") != NULL);
}

static kd_hostcheck_report *run_container(const char *root, const char *shims_csv)
{
	const char *shims[] = {shims_csv, NULL};
	kd_hostcheck_opts o = {.root = root,
			       .runtime_version = "containerd://1.7.2",
			       .skip_payload = true,
			       .container = true,
			       .shims = shims};
	kd_hostcheck_report *rep = NULL;
	kd_error err = {0};

	if (kd_hostcheck_run(&o, &rep, &err) < 0)
		printf("#   run: %s\n", kd_err_msg(&err));
	return rep;
}

/* An unprivileged agent pod: its /dev has no kvm and it may open no device; KVM is what the
 * kernel registered (sysfs). A nested VM without the svm flag whose KVM is up (kvm_pvm) is not
 * refused, as the host CLI does not refuse it after KVM_CREATE_VM worked. */
TEST(container_kvm_from_sysfs)
{
	const char *root = mkhost("ctr", "AuthenticAMD", "fpu lm sse4_1 hypervisor");
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/dev/kvm", root);
	CHECK(unlink(p) == 0); /* the container's own /dev */
	{
		_cleanup_hostcheck_report_ kd_hostcheck_report *r = run_container(root, "clh");
		if (!r)
			return;
		CHECK_INT(st(r, "kvm.device"), KD_CHECK_FAIL);
		CHECK_STR(detail(r, "kvm.device"),
			  "KVM is not registered with the kernel (no /sys/class/misc/kvm)");
		CHECK_INT(st(r, "kvm.create_vm"), KD_CHECK_SKIP);
		CHECK_INT(st(r, "cpu.virt"), KD_CHECK_FAIL);
		CHECK_INT(shim_ok(r, "clh"), 0);
	}
	put(root, "sys/class/misc/kvm/dev", "10:232\n");
	{
		_cleanup_hostcheck_report_ kd_hostcheck_report *r = run_container(root, "clh");
		if (!r)
			return;
		CHECK_INT(st(r, "kvm.device"), KD_CHECK_PASS);
		CHECK(strstr(detail(r, "kvm.device"), "registered with the kernel as 10:232") !=
		      NULL);
		CHECK_INT(st(r, "kvm.create_vm"), KD_CHECK_SKIP);
		CHECK_INT(st(r, "cpu.virt"), KD_CHECK_WARN);
		CHECK(strstr(detail(r, "cpu.virt"),
			     "but KVM is registered with the kernel, so KVM is usable") != NULL);
		CHECK_INT(shim_ok(r, "clh"), 1);
	}
	put(root, "sys/class/misc/kvm/dev", "10:99\n");
	{
		_cleanup_hostcheck_report_ kd_hostcheck_report *r = run_container(root, "clh");
		if (!r)
			return;
		CHECK_INT(st(r, "kvm.device"), KD_CHECK_FAIL);
		CHECK_STR(detail(r, "kvm.device"),
			  "/sys/class/misc/kvm is device 10:99, not the KVM device 10:232");
		CHECK_INT(st(r, "cpu.virt"), KD_CHECK_FAIL);
	}
	/* Not a container: the same root's /dev/kvm is looked at, not sysfs. */
	{
		_cleanup_hostcheck_report_ kd_hostcheck_report *r = run(root, "clh", NULL, false);
		if (!r)
			return;
		CHECK_STR(detail(r, "kvm.device"), "/dev/kvm does not exist");
	}
}

int main(void)
{
	const char *s = getenv("KD_SRCDIR");
	if (!realpath(s ? s : ".", srcdir) || !mkdtemp(tmpdir))
		return 1;
	RUN(intel_host_modules_available);
	RUN(loaded_and_fix_dry_run);
	RUN(no_cpuinfo);
	RUN(amd_vm_without_nested);
	RUN(cri_disabled);
	RUN(broken_modules_index);
	RUN(no_modules_tree);
	RUN(config_root);
	RUN(tee_flags);
	RUN(payload_real_qemu_and_hanging_qemu);
	RUN(runtime_versions);
	RUN(json_and_errors);
	RUN(upstream_41_shims_known);
	RUN(openvmm_needs_its_binary);
	RUN(container_kvm_from_sysfs);
	sh("rm -rf '%s'", tmpdir);
	TAP_END();
}
