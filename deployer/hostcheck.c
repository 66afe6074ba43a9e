#include "hostcheck.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>

#include "fsroot.h"
#include "kmod.h"
#include "log.h"
#include "qmp.h"
#include "strv.h"
#include "toml.h"

#define KVM_API_VERSION_EXPECTED 12
#define KVM_MISC_MINOR 232
#define MIN_CONTAINERD_MAJOR 1
#define MIN_CONTAINERD_MINOR 6
#define MIN_CRIO_MAJOR 1
#define MIN_CRIO_MINOR 25
#define MAX_CHECKS 128
#define MAX_FAILED_IDS 512 /* bytes of a verdict's failed-id list */

/* What a shim needs beyond the common checks. */
typedef enum hv_family {
	HV_QEMU,
	HV_CLH,
	HV_FC,
	HV_DRAGONBALL,
	HV_OPENVMM,
	HV_STRATOVIRT,
	HV_REMOTE
} hv_family;
typedef enum tee_kind { TEE_NONE, TEE_TDX, TEE_SNP, TEE_SEV, TEE_SE, TEE_CCA } tee_kind;

typedef struct shim_req {
	const char *name;
	hv_family hv;
	tee_kind tee;
	bool runtime_rs;
} shim_req;

/* Upstream kata-deploy 4.1's shims (its shim-components.json and chart values; upstream dropped
 * the `firecracker` alias of fc), then the names older payloads may still declare (shell era,
 * reference/kata-deploy.md §1.5). tests/unit/test-hostcheck.c holds the upstream list. */
static const shim_req shim_table[] = {
	{"clh", HV_CLH, TEE_NONE, false},
	{"clh-azure", HV_CLH, TEE_NONE, false},
	{"clh-azure-runtime-rs", HV_CLH, TEE_NONE, true},
	{"clh-runtime-rs", HV_CLH, TEE_NONE, true},
	{"dragonball", HV_DRAGONBALL, TEE_NONE, true},
	{"fc", HV_FC, TEE_NONE, false},
	{"openvmm-azure-runtime-rs", HV_OPENVMM, TEE_NONE, true},
	{"qemu", HV_QEMU, TEE_NONE, false},
	{"qemu-coco-dev", HV_QEMU, TEE_NONE, false},
	{"qemu-coco-dev-runtime-rs", HV_QEMU, TEE_NONE, true},
	{"qemu-nvidia-cpu", HV_QEMU, TEE_NONE, false},
	{"qemu-nvidia-cpu-runtime-rs", HV_QEMU, TEE_NONE, true},
	{"qemu-nvidia-gpu", HV_QEMU, TEE_NONE, false},
	{"qemu-nvidia-gpu-runtime-rs", HV_QEMU, TEE_NONE, true},
	{"qemu-nvidia-gpu-snp", HV_QEMU, TEE_SNP, false},
	{"qemu-nvidia-gpu-snp-runtime-rs", HV_QEMU, TEE_SNP, true},
	{"qemu-nvidia-gpu-tdx", HV_QEMU, TEE_TDX, false},
	{"qemu-nvidia-gpu-tdx-runtime-rs", HV_QEMU, TEE_TDX, true},
	{"qemu-runtime-rs", HV_QEMU, TEE_NONE, true},
	{"qemu-se", HV_QEMU, TEE_SE, false},
	{"qemu-se-runtime-rs", HV_QEMU, TEE_SE, true},
	{"qemu-snp", HV_QEMU, TEE_SNP, false},
	{"qemu-snp-runtime-rs", HV_QEMU, TEE_SNP, true},
	{"qemu-tdx", HV_QEMU, TEE_TDX, false},
	{"qemu-tdx-runtime-rs", HV_QEMU, TEE_TDX, true},
	{"remote", HV_REMOTE, TEE_NONE, false},
	/* older payloads */
	{"cloud-hypervisor", HV_CLH, TEE_NONE, true},
	{"qemu-cca", HV_QEMU, TEE_CCA, false},
	{"qemu-sev", HV_QEMU, TEE_SEV, false},
	{"stratovirt", HV_STRATOVIRT, TEE_NONE, false},
};

/* Modules every local hypervisor needs (kata-runtime check's list; vhost_vsock is how the shim
 * talks to the agent in the guest). The vendor module is added per CPU. */
static const char *const common_modules[] = {"kvm", "vhost", "vhost_net", "vhost_vsock"};

struct run {
	const kd_hostcheck_opts *o;
	kd_hostcheck_report *rep;
	const char *rootdir;
	int rootfd;
	int configfd; /* o->config_root, else rootfd */
	bool real_root;
	bool fix_dry;
	/* cpu facts */
	bool have_cpuinfo;
	char vendor[32];
	char *flags; /* " flag flag ... " (padded, for word search) */
	bool payload_present;
	char vendor_module[16];
	int rt_major, rt_minor; /* the runtime's version, -1 when unknown */
	bool rt_crio;
};

bool kd_hostcheck_shim_known(const char *shim)
{
	for (size_t i = 0; i < ELEMENTSOF(shim_table); i++)
		if (strcmp(shim_table[i].name, shim) == 0)
			return true;
	return false;
}

const char *kd_hostcheck_shim_at(size_t i)
{
	return i < ELEMENTSOF(shim_table) ? shim_table[i].name : NULL;
}

int kd_hostcheck_known_shims(char *buf, size_t size)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < ELEMENTSOF(shim_table) && o < size; i++)
		o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? ", " : "", shim_table[i].name);
	return o < size ? 0 : -ENOSPC;
}

static const shim_req *find_shim(const char *name)
{
	for (size_t i = 0; i < ELEMENTSOF(shim_table); i++)
		if (strcmp(shim_table[i].name, name) == 0)
			return &shim_table[i];
	return NULL;
}

const char *kd_check_status_to_string(kd_check_status s)
{
	switch (s) {
	case KD_CHECK_PASS:
		return "pass";
	case KD_CHECK_WARN:
		return "warn";
	case KD_CHECK_FAIL:
		return "FAIL";
	case KD_CHECK_SKIP:
		return "skip";
	}
	return "?";
}

const kd_check *kd_hostcheck_find(const kd_hostcheck_report *r, const char *id)
{
	for (size_t i = 0; i < r->n_checks; i++)
		if (strcmp(r->checks[i].id, id) == 0)
			return &r->checks[i];
	return NULL;
}

const kd_shim_verdict *kd_hostcheck_verdict(const kd_hostcheck_report *r, const char *shim)
{
	for (size_t i = 0; i < r->n_shims; i++)
		if (strcmp(r->shims[i].name, shim) == 0)
			return &r->shims[i];
	return NULL;
}

/* Add (or, for an id already present, keep the first) check. Returns it or NULL on ENOMEM. */
static kd_check *add_check(struct run *R, const char *id, kd_check_status st, const char *fmt, ...)
	_printf_(4, 5);
static kd_check *add_check(struct run *R, const char *id, kd_check_status st, const char *fmt, ...)
{
	kd_hostcheck_report *rep = R->rep;
	kd_check *c;
	va_list ap;

	if (kd_hostcheck_find(rep, id))
		return (kd_check *)kd_hostcheck_find(rep, id);
	if (rep->n_checks == MAX_CHECKS)
		return NULL;
	c = &rep->checks[rep->n_checks];
	*c = (kd_check){.status = st};
	snprintf(c->id, sizeof(c->id), "%s", id);
	va_start(ap, fmt);
	if (vasprintf(&c->detail, fmt, ap) < 0)
		c->detail = NULL;
	va_end(ap);
	if (!c->detail)
		return NULL;
	rep->n_checks++;
	return c;
}

static void set_fix(kd_check *c, const char *fmt, ...) _printf_(2, 3);
static void set_fix(kd_check *c, const char *fmt, ...)
{
	va_list ap;

	if (!c)
		return;
	free(c->fix);
	va_start(ap, fmt);
	if (vasprintf(&c->fix, fmt, ap) < 0)
		c->fix = NULL;
	va_end(ap);
}

/* Read a small file under the root. in_root: resolve symlinks inside the root (proc/self). */
static int read_file_at(int dirfd, const char *path, size_t max, bool in_root, char **ret,
			kd_error *err)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;

	fd = kd_openat(dirfd, path, O_RDONLY, 0, in_root ? KD_IN_ROOT : KD_NOFOLLOW, err);
	if (fd < 0)
		return fd;
	buf = malloc(max + 1);
	if (!buf)
		return kd_err(err, -ENOMEM, "out of memory");
	for (;;) {
		ssize_t n = read(fd, buf + len, max - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return kd_err_errno(err, negative_errno(), "read %s", path);
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == max)
			return kd_err(err, -EFBIG, "%s is larger than %zu bytes", path, max);
	}
	buf[len] = '\0';
	*ret = TAKE_PTR(buf);
	return 0;
}

static int read_root_file(struct run *R, const char *path, size_t max, bool in_root, char **ret,
			  kd_error *err)
{
	return read_file_at(R->rootfd, path, max, in_root, ret, err);
}

static bool has_flag(struct run *R, const char *flag)
{
	char word[64];

	if (!R->flags)
		return false;
	snprintf(word, sizeof(word), " %s ", flag);
	return strstr(R->flags, word) != NULL;
}

/* The value of the first "key : value" line of cpuinfo, copied into a new string. */
static char *cpuinfo_value(const char *text, const char *key)
{
	size_t klen = strlen(key);

	for (const char *l = text; l && *l;) {
		const char *nl = strchr(l, '\n');
		size_t len = nl ? (size_t)(nl - l) : strlen(l);
		if (len > klen && strncmp(l, key, klen) == 0 &&
		    (l[klen] == ' ' || l[klen] == '\t' || l[klen] == ':')) {
			const char *colon = memchr(l, ':', len);
			if (colon) {
				const char *v = colon + 1;
				while (*v == ' ' || *v == '\t')
					v++;
				return strndup(v, (size_t)(l + len - v));
			}
		}
		l = nl ? nl + 1 : NULL;
	}
	return NULL;
}

static void check_cpu(struct run *R)
{
	_cleanup_free_ char *text = NULL, *vendor = NULL, *flags = NULL;
	kd_error e = {0};
	kd_check *c;
	bool vmx, svm, nested;

	if (read_root_file(R, "proc/cpuinfo", KD_HOSTCHECK_CPUINFO_MAX, false, &text, &e) < 0) {
		c = add_check(R, "cpu.info", KD_CHECK_FAIL, "cannot read %s/proc/cpuinfo: %s",
			      strcmp(R->rootdir, "/") == 0 ? "" : R->rootdir, kd_err_msg(&e));
		set_fix(c, "mount procfs on <root>/proc, or point --root at a host root");
		c = add_check(R, "cpu.virt", KD_CHECK_FAIL, "unknown: no /proc/cpuinfo");
		set_fix(c, "see cpu.info");
		c = add_check(R, "cpu.lm", KD_CHECK_FAIL, "unknown: no /proc/cpuinfo");
		set_fix(c, "see cpu.info");
		return;
	}
	R->have_cpuinfo = true;
	vendor = cpuinfo_value(text, "vendor_id");
	flags = cpuinfo_value(text, "flags");
	if (!flags)
		flags = cpuinfo_value(text, "Features"); /* arm64 */
	snprintf(R->vendor, sizeof(R->vendor), "%s", vendor ? vendor : "unknown");
	if (asprintf(&R->flags, " %s ", flags ? flags : "") < 0)
		R->flags = NULL;
	size_t nflags = 0;
	for (const char *t = R->flags; t && *t; t++)
		nflags += t[0] != ' ' && t[1] == ' ';
	add_check(R, "cpu.info", KD_CHECK_PASS, "vendor %s, %zu cpu flags", R->vendor, nflags);

	vmx = has_flag(R, "vmx");
	svm = has_flag(R, "svm");
	nested = has_flag(R, "hypervisor");
	if (strcmp(R->vendor, "GenuineIntel") == 0)
		snprintf(R->vendor_module, sizeof(R->vendor_module), "kvm_intel");
	else if (strcmp(R->vendor, "AuthenticAMD") == 0 || strcmp(R->vendor, "HygonGenuine") == 0)
		snprintf(R->vendor_module, sizeof(R->vendor_module), "kvm_amd");

	if (vmx || svm) {
		add_check(R, "cpu.virt", KD_CHECK_PASS, "%s",
			  vmx ? "vmx (Intel VT-x)" : "svm (AMD-V)");
	} else {
		c = add_check(R, "cpu.virt", KD_CHECK_FAIL,
			      "no vmx or svm flag: hardware virtualization is off or hidden");
		if (nested)
			set_fix(c,
				"this host is a VM: enable nested virtualization on the outer "
				"hypervisor (e.g. kvm_intel nested=1, or the cloud's nested-virt "
				"instance option)");
		else
			set_fix(c, "enable Intel VT-x / AMD-V (SVM) in the firmware setup");
	}
	if (nested)
		add_check(R, "cpu.nested", vmx || svm ? KD_CHECK_WARN : KD_CHECK_FAIL,
			  "this host is itself a VM (hypervisor flag): Kata VMs run nested%s",
			  vmx || svm ? ", nested virtualization is exposed" : "");
	else
		add_check(R, "cpu.nested", KD_CHECK_PASS, "bare metal (no hypervisor flag)");
	if (has_flag(R, "lm"))
		add_check(R, "cpu.lm", KD_CHECK_PASS, "64-bit long mode");
	else
		set_fix(add_check(R, "cpu.lm", KD_CHECK_FAIL, "no lm flag: not a 64-bit CPU"),
			"Kata needs a 64-bit host CPU");
	if (has_flag(R, "sse4_1"))
		add_check(R, "cpu.sse4_1", KD_CHECK_PASS, "SSE4.1");
	else
		set_fix(add_check(R, "cpu.sse4_1", KD_CHECK_FAIL, "no sse4_1 flag"),
			"the guest kernel needs SSE4.1; in a VM, pass the host CPU model through");
}

static void check_tee(struct run *R, tee_kind tee)
{
	kd_check *c;

	switch (tee) {
	case TEE_NONE:
		return;
	case TEE_TDX:
		if (has_flag(R, "tdx_host_platform"))
			add_check(R, "cpu.tdx", KD_CHECK_PASS, "tdx_host_platform");
		else {
			c = add_check(
				R, "cpu.tdx", KD_CHECK_FAIL,
				"no tdx_host_platform flag: the kernel has not enabled Intel TDX");
			set_fix(c, "boot a TDX-enabled host kernel with kvm_intel.tdx=1 on a TDX "
				   "capable CPU with TDX enabled in the firmware");
		}
		return;
	case TEE_SNP:
		if (has_flag(R, "sev_snp"))
			add_check(R, "cpu.sev_snp", KD_CHECK_PASS, "sev_snp");
		else {
			c = add_check(R, "cpu.sev_snp", KD_CHECK_FAIL, "no sev_snp flag");
			set_fix(c,
				"enable SEV-SNP in the firmware and boot with kvm_amd.sev_snp=1");
		}
		return;
	case TEE_SEV:
		if (has_flag(R, "sev"))
			add_check(R, "cpu.sev", KD_CHECK_PASS, "sev");
		else {
			c = add_check(R, "cpu.sev", KD_CHECK_FAIL, "no sev flag");
			set_fix(c, "enable SEV in the firmware and boot with kvm_amd.sev=1");
		}
		return;
	case TEE_SE: {
		_cleanup_free_ char *v = NULL;
		if (read_root_file(R, "sys/firmware/uv/prot_virt_host", 16, false, &v, NULL) >= 0 &&
		    v[0] == '1')
			add_check(R, "cpu.se", KD_CHECK_PASS, "IBM Secure Execution host");
		else {
			c = add_check(R, "cpu.se", KD_CHECK_FAIL,
				      "/sys/firmware/uv/prot_virt_host is not 1");
			set_fix(c,
				"IBM Secure Execution needs an s390x host booted with prot_virt=1");
		}
		return;
	}
	case TEE_CCA:
		c = add_check(R, "cpu.cca", KD_CHECK_FAIL, "Arm CCA hosts are not detected yet");
		set_fix(c, "run on an Arm CCA capable host; this check cannot confirm one");
		return;
	}
}

/* In a container: the kernel registered KVM's misc device (what loading kvm with a working
 * vendor module does), read from sysfs, which every container sees. */
static void check_kvm_sysfs(struct run *R)
{
	_cleanup_free_ char *dev = NULL;
	unsigned maj = 0, min = 0;
	kd_check *c;

	if (read_root_file(R, "sys/class/misc/kvm/dev", 64, false, &dev, NULL) < 0) {
		c = add_check(R, "kvm.device", KD_CHECK_FAIL,
			      "KVM is not registered with the kernel (no /sys/class/misc/kvm)");
		set_fix(c,
			"load the KVM modules (modprobe %s on the node) and make sure "
			"virtualization is enabled in the firmware",
			R->vendor_module[0] ? R->vendor_module : "kvm");
		add_check(R, "kvm.create_vm", KD_CHECK_SKIP, "no KVM");
		return;
	}
	if (sscanf(dev, "%u:%u", &maj, &min) != 2 || maj != 10 || min != KVM_MISC_MINOR) {
		dev[strcspn(dev, "\n")] = '\0';
		add_check(R, "kvm.device", KD_CHECK_FAIL,
			  "/sys/class/misc/kvm is device %s, not the KVM device 10:%d", dev,
			  KVM_MISC_MINOR);
		add_check(R, "kvm.create_vm", KD_CHECK_SKIP, "no usable KVM");
		return;
	}
	add_check(R, "kvm.device", KD_CHECK_PASS,
		  "registered with the kernel as 10:%d (/sys/class/misc/kvm; a container does not "
		  "see the host's /dev)",
		  KVM_MISC_MINOR);
	add_check(R, "kvm.create_vm", KD_CHECK_SKIP,
		  "a container may not open /dev/kvm; KVM is registered with the kernel");
}

static void check_kvm(struct run *R)
{
	struct stat st;
	kd_check *c;
	int r;

	if (R->o->container) {
		check_kvm_sysfs(R);
		return;
	}
	r = kd_lstat(R->rootfd, "dev/kvm", &st, NULL);
	if (r < 0) {
		c = add_check(R, "kvm.device", KD_CHECK_FAIL, "/dev/kvm does not exist");
		set_fix(c,
			"load the KVM modules (kata-deploy check --fix, or modprobe %s) and make "
			"sure virtualization is enabled in the firmware",
			R->vendor_module[0] ? R->vendor_module : "kvm");
		add_check(R, "kvm.create_vm", KD_CHECK_SKIP, "no /dev/kvm");
		return;
	}
	if (!R->real_root) {
		add_check(R, "kvm.device", KD_CHECK_PASS,
			  "present, mode %04o (not opened: the root is not /)", st.st_mode & 07777);
		add_check(R, "kvm.create_vm", KD_CHECK_SKIP, "only checked when the root is /");
		return;
	}
	if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 10 ||
	    minor(st.st_rdev) != KVM_MISC_MINOR) {
		c = add_check(R, "kvm.device", KD_CHECK_FAIL,
			      "/dev/kvm is not the KVM character device (10:%d)", KVM_MISC_MINOR);
		set_fix(c, "remove the stray /dev/kvm and reload kvm so udev recreates it");
		add_check(R, "kvm.create_vm", KD_CHECK_SKIP, "no usable /dev/kvm");
		return;
	}
	if (access("/dev/kvm", R_OK | W_OK) < 0) {
		c = add_check(R, "kvm.device", KD_CHECK_FAIL, "/dev/kvm (mode %04o, gid %u): %s",
			      st.st_mode & 07777, (unsigned)st.st_gid, strerror(errno));
		set_fix(c, "run as root, or add the user to the group owning /dev/kvm");
		add_check(R, "kvm.create_vm", KD_CHECK_SKIP, "cannot open /dev/kvm");
		return;
	}
	add_check(R, "kvm.device", KD_CHECK_PASS, "character device 10:%d, mode %04o",
		  KVM_MISC_MINOR, st.st_mode & 07777);

	_cleanup_close_ int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		set_fix(add_check(R, "kvm.create_vm", KD_CHECK_FAIL, "open /dev/kvm: %s",
				  strerror(errno)),
			"check that no security module denies access to /dev/kvm");
		return;
	}
	r = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (r != KVM_API_VERSION_EXPECTED) {
		add_check(R, "kvm.create_vm", KD_CHECK_FAIL, "KVM API version %d, expected %d", r,
			  KVM_API_VERSION_EXPECTED);
		return;
	}
	_cleanup_close_ int vm = ioctl(fd, KVM_CREATE_VM, 0);
	if (vm < 0)
		set_fix(add_check(R, "kvm.create_vm", KD_CHECK_FAIL, "KVM_CREATE_VM: %s",
				  strerror(errno)),
			"another hypervisor (VirtualBox, VMware) may hold VT-x/AMD-V: stop it");
	else
		add_check(R, "kvm.create_vm", KD_CHECK_PASS, "a VM was created and destroyed");
}

/* The kernel release whose modules to inspect. */
static int kernel_release(struct run *R, char *buf, size_t size)
{
	_cleanup_free_ char *rel = NULL;
	struct utsname u;

	if (R->real_root) {
		if (uname(&u) < 0)
			return negative_errno();
		snprintf(buf, size, "%s", u.release);
		return 0;
	}
	if (read_root_file(R, "proc/sys/kernel/osrelease", 256, false, &rel, NULL) >= 0) {
		rel[strcspn(rel, "\n")] = '\0';
		snprintf(buf, size, "%s", rel);
		return 0;
	}
	/* A test root: exactly one directory under lib/modules. */
	_cleanup_close_ int dfd =
		kd_openat(R->rootfd, "lib/modules", O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, NULL);
	if (dfd < 0)
		return dfd;
	DIR *d = fdopendir(dfd);
	if (!d)
		return negative_errno();
	dfd = -1;
	int found = 0;
	for (struct dirent *de; (de = readdir(d));) {
		if (de->d_name[0] == '.' || de->d_type != DT_DIR)
			continue;
		snprintf(buf, size, "%s", de->d_name);
		found++;
	}
	closedir(d);
	return found == 1 ? 0 : -ENOENT;
}

/* Without a modules tree (a monolithic kernel), sysfs still tells loaded and built-in (the
 * latter only for modules with parameters). */
static kd_module_state sysfs_state(struct run *R, const char *name)
{
	char path[KD_PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "sys/module/%s/initstate", name);
	if (kd_lstat(R->rootfd, path, &st, NULL) >= 0)
		return KD_MODULE_LOADED;
	snprintf(path, sizeof(path), "sys/module/%s", name);
	if (kd_lstat(R->rootfd, path, &st, NULL) >= 0)
		return KD_MODULE_BUILTIN;
	return KD_MODULE_MISSING;
}

/* The device node whose first open loads the module (modules.devname), NULL when there is
 * none on this root; vhost is a dependency of both vhost devices. A test root may use a plain
 * file for the node. */
static const char *first_use_device(struct run *R, const char *name)
{
	static const struct {
		const char *module, *dev;
	} devs[] = {
		{"kvm", "dev/kvm"},
		{"kvm_intel", "dev/kvm"},
		{"kvm_amd", "dev/kvm"},
		{"vhost_net", "dev/vhost-net"},
		{"vhost_vsock", "dev/vhost-vsock"},
		{"vhost", "dev/vhost-vsock"},
		{"vhost", "dev/vhost-net"},
	};
	struct stat st;

	for (size_t i = 0; i < ELEMENTSOF(devs); i++)
		if (strcmp(devs[i].module, name) == 0 &&
		    kd_lstat(R->rootfd, devs[i].dev, &st, NULL) >= 0 &&
		    (S_ISCHR(st.st_mode) || !R->real_root))
			return devs[i].dev;
	return NULL;
}

static int fix_action(kd_hostcheck_report *rep, const char *module, const char *path,
		      const char *options)
{
	_cleanup_free_ char *a = NULL;
	char **n;

	if (asprintf(&a, "insmod %s%s%s", path[0] ? path : module, options[0] ? " " : "", options) <
	    0)
		return -ENOMEM;
	/* In a dry run nothing gets loaded, so a shared dependency is planned once per module
	 * that needs it; list it once. */
	for (size_t i = 0; i < rep->n_fix_actions; i++)
		if (strcmp(rep->fix_actions[i], a) == 0)
			return 0;
	n = realloc(rep->fix_actions, (rep->n_fix_actions + 1) * sizeof(char *));
	if (!n)
		return -ENOMEM;
	rep->fix_actions = n;
	n[rep->n_fix_actions++] = TAKE_PTR(a);
	return 0;
}

static void on_action(const char *module, const char *path, const char *options, void *userdata)
{
	(void)fix_action(userdata, module, path, options);
}

static void check_one_module(struct run *R, kd_kmod *k, const char *name, const char *kerr)
{
	_cleanup_free_ char *path = NULL;
	kd_module_state s;
	kd_error e = {0};
	char id[64];
	kd_check *c;

	snprintf(id, sizeof(id), "module.%s", name);
	if (!k) {
		s = sysfs_state(R, name);
		/* Not loaded and no tree to tell whether it is loadable (a pod without
		 * /lib/modules): its device node, made at boot from modules.devname, says the
		 * module is there and is loaded when the node is first opened. */
		if (s == KD_MODULE_MISSING) {
			const char *dev = first_use_device(R, name);
			if (dev) {
				add_check(R, id, KD_CHECK_WARN,
					  "not loaded; /%s exists: loaded on first use (%s)", dev,
					  kerr);
				return;
			}
			c = add_check(R, id, KD_CHECK_FAIL, "not loaded, and %s", kerr);
			set_fix(c,
				"install the kernel modules for the running kernel and run depmod "
				"(a pod: mount /lib/modules read-only)");
			return;
		}
	} else if (kd_kmod_state(k, name, &s, &path, &e) < 0) {
		add_check(R, id, KD_CHECK_FAIL, "%s", kd_err_msg(&e));
		return;
	}
	switch (s) {
	case KD_MODULE_BUILTIN:
		add_check(R, id, KD_CHECK_PASS, "built into the kernel");
		return;
	case KD_MODULE_LOADED:
		add_check(R, id, KD_CHECK_PASS, "loaded");
		return;
	case KD_MODULE_MISSING:
		c = add_check(R, id, KD_CHECK_FAIL, "missing: not built in and no %s.ko in %s",
			      name, kd_kmod_dirname(k));
		set_fix(c,
			"install the package with the extra modules of this kernel, or use a "
			"kernel built with the %s module",
			name);
		return;
	case KD_MODULE_AVAILABLE:
		break;
	}
	if (!R->o->fix) {
		c = add_check(R, id, KD_CHECK_WARN,
			      "not loaded, loadable: loaded on first use (%s)", path);
		set_fix(c, "modprobe %s (or kata-deploy check --fix)", name);
		return;
	}
	unsigned flags = R->fix_dry ? KD_KMOD_LOAD_DRY_RUN : 0;
	if (kd_kmod_load(k, name, flags, on_action, R->rep, &e) < 0) {
		c = add_check(R, id, KD_CHECK_FAIL, "available, but loading failed: %s",
			      kd_err_msg(&e));
		set_fix(c, "modprobe %s and read the kernel log (dmesg)", name);
		return;
	}
	if (R->fix_dry) {
		c = add_check(R, id, KD_CHECK_WARN, "available, not loaded; --fix would load %s",
			      path);
		set_fix(c, "modprobe %s", name);
		return;
	}
	if (kd_kmod_state(k, name, &s, NULL, &e) >= 0 && s == KD_MODULE_LOADED)
		add_check(R, id, KD_CHECK_PASS, "loaded by --fix");
	else
		set_fix(add_check(R, id, KD_CHECK_FAIL, "loaded by --fix, but not reported loaded"),
			"modprobe %s and read the kernel log (dmesg)", name);
}

static void check_modules(struct run *R, bool need_modules)
{
	static const char *const conf_subdirs[] = {"etc/modprobe.d", "run/modprobe.d",
						   "usr/local/lib/modprobe.d", "lib/modprobe.d"};
	char release[256], dir[KD_PATH_MAX], confbuf[ELEMENTSOF(conf_subdirs)][KD_PATH_MAX];
	const char *confs[ELEMENTSOF(conf_subdirs) + 1] = {NULL};
	_cleanup_kmod_ kd_kmod *k = NULL;
	char kerr[KD_ERROR_MAX] = "";
	kd_error e = {0};
	bool no_tree = false;

	if (!need_modules)
		return;
	if (R->o->modules_dir) {
		snprintf(dir, sizeof(dir), "%s", R->o->modules_dir);
	} else if (kernel_release(R, release, sizeof(release)) < 0) {
		snprintf(dir, sizeof(dir), "%s/lib/modules", R->real_root ? "" : R->rootdir);
		snprintf(kerr, sizeof(kerr), "cannot tell the kernel release under %s", R->rootdir);
		no_tree = true;
	} else {
		snprintf(dir, sizeof(dir), "%s/lib/modules/%s", R->real_root ? "" : R->rootdir,
			 release);
	}
	if (!R->real_root)
		for (size_t i = 0; i < ELEMENTSOF(conf_subdirs); i++) {
			snprintf(confbuf[i], sizeof(confbuf[i]), "%s/%s", R->rootdir,
				 conf_subdirs[i]);
			confs[i] = confbuf[i];
		}
	if (!no_tree) {
		struct stat st;
		if (stat(dir, &st) < 0) {
			snprintf(kerr, sizeof(kerr), "no modules tree at %s", dir);
			no_tree = true;
		} else if (kd_kmod_open(R->rootfd, dir, R->real_root ? NULL : confs, &k, &e) < 0) {
			kd_check *c = add_check(R, "modules", KD_CHECK_FAIL, "%s", kd_err_msg(&e));
			set_fix(c, "rebuild the module indexes: depmod %s",
				strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir);
			snprintf(kerr, sizeof(kerr), "the modules index is unusable (see modules)");
		}
	}
	if (k)
		add_check(R, "modules", KD_CHECK_PASS, "modules tree %s", kd_kmod_dirname(k));
	else if (no_tree)
		add_check(R, "modules", KD_CHECK_WARN, "%s; using sysfs only", kerr);

	for (size_t i = 0; i < ELEMENTSOF(common_modules); i++) {
		check_one_module(R, k, common_modules[i], kerr);
		if (i == 0 && R->vendor_module[0])
			check_one_module(R, k, R->vendor_module, kerr);
	}
}

/* A VM that KVM_CREATE_VM really created outranks indirect evidence: some hosts hide vmx/svm
 * from cpuinfo or provide KVM through another module (e.g. kvm_pvm, nested guests). */
static void reconcile_kvm(struct run *R)
{
	static const char *const indirect[] = {"cpu.virt", "cpu.nested", "module.kvm",
					       "module.kvm_intel", "module.kvm_amd"};
	const kd_check *vm = kd_hostcheck_find(R->rep, "kvm.create_vm");
	const kd_check *dev = kd_hostcheck_find(R->rep, "kvm.device");
	/* In a container, KVM registered with the kernel stands in for the VM it may not create:
	 * the kernel registers it only once a vendor module (or kvm_pvm) is up. */
	const char *why = vm && vm->status == KD_CHECK_PASS ? "KVM_CREATE_VM works"
			  : R->o->container && dev && dev->status == KD_CHECK_PASS
				  ? "KVM is registered with the kernel"
				  : NULL;

	if (!why)
		return;
	for (size_t i = 0; i < ELEMENTSOF(indirect); i++) {
		kd_check *c = (kd_check *)kd_hostcheck_find(R->rep, indirect[i]);
		char *d;
		if (!c || c->status != KD_CHECK_FAIL)
			continue;
		if (asprintf(&d, "%s; but %s, so KVM is usable", c->detail, why) < 0)
			continue;
		free(c->detail);
		c->detail = d;
		c->status = KD_CHECK_WARN;
	}
}

static void check_cgroup(struct run *R)
{
	_cleanup_free_ char *mi = NULL;
	struct stat st;
	bool v1 = false, v2_unified = false;

	if (kd_lstat(R->rootfd, "sys/fs/cgroup/cgroup.controllers", &st, NULL) >= 0) {
		add_check(R, "cgroup", KD_CHECK_PASS, "cgroup v2 (unified hierarchy)");
		return;
	}
	if (read_root_file(R, "proc/self/mountinfo", KD_HOSTCHECK_FILE_MAX, true, &mi, NULL) < 0) {
		set_fix(add_check(R, "cgroup", KD_CHECK_WARN,
				  "cannot tell: no cgroup.controllers and no /proc/self/mountinfo"),
			"mount cgroup2 on /sys/fs/cgroup (systemd.unified_cgroup_hierarchy=1)");
		return;
	}
	/* mountinfo: "id parent maj:min root mountpoint opts [optional...] - fstype src opts" */
	for (char *l = mi, *nl; l && *l; l = nl) {
		nl = strchr(l, '\n');
		if (nl)
			*nl++ = '\0';
		char *dash = strstr(l, " - ");
		char mnt[512] = "", fstype[64] = "";
		if (!dash || sscanf(l, "%*s %*s %*s %*s %511s", mnt) != 1 ||
		    sscanf(dash + 3, "%63s", fstype) != 1)
			continue;
		if (strcmp(fstype, "cgroup") == 0)
			v1 = true;
		if (strcmp(fstype, "cgroup2") == 0 && strcmp(mnt, "/sys/fs/cgroup") == 0)
			v2_unified = true;
	}
	if (v2_unified)
		add_check(R, "cgroup", KD_CHECK_PASS, "cgroup v2 (unified hierarchy)");
	else if (v1)
		add_check(R, "cgroup", KD_CHECK_PASS, "cgroup v1%s",
			  " (legacy or hybrid; runc and Kata support it, v2 is preferred)");
	else
		set_fix(add_check(R, "cgroup", KD_CHECK_WARN, "no cgroup file system is mounted"),
			"mount cgroup2 on /sys/fs/cgroup");
}

/* Run argv[0] (absolute) with a time-out; keep the first KD_HOSTCHECK_CMD_OUTPUT_MAX bytes of
 * stdout+stderr. Returns the exit status, or negative errno (-ETIMEDOUT, killed). */
static int run_command(char *const argv[], char *out, size_t size)
{
	int p[2], status = 0;
	size_t len = 0;
	struct timespec t0, t;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return negative_errno();
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return negative_errno();
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, STDIN_FILENO);
		dup2(p[1], STDOUT_FILENO);
		dup2(p[1], STDERR_FILENO);
		execv(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		long el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
		struct pollfd pf = {.fd = p[0], .events = POLLIN};
		char chunk[512];
		if (el >= KD_HOSTCHECK_CMD_TIMEOUT_MS ||
		    poll(&pf, 1, (int)(KD_HOSTCHECK_CMD_TIMEOUT_MS - el)) == 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			close(p[0]);
			return -ETIMEDOUT;
		}
		ssize_t n = read(p[0], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		size_t c = (size_t)n < size - 1 - len ? (size_t)n : size - 1 - len;
		memcpy(out + len, chunk, c);
		len += c;
	}
	out[len] = '\0';
	close(p[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -ECHILD;
}

/* "1.7.2", "v1.6.20~ds1", "1.30.1-1" -> major, minor. */
static bool parse_version(const char *s, int *major_v, int *minor_v)
{
	if (*s == 'v')
		s++;
	return sscanf(s, "%d.%d", major_v, minor_v) == 2;
}

/* The first word that looks like a version ("1.7.2", "v1.6.20~ds1") from start on. */
static bool version_from(const char *out, const char *start, char *buf, size_t size)
{
	for (const char *s = start; *s; s++) {
		int a, b;
		if ((s == out || s[-1] == ' ' || s[-1] == '\t' || s[-1] == ':') &&
		    ((*s >= '0' && *s <= '9') || (*s == 'v' && s[1] >= '0' && s[1] <= '9'))) {
			snprintf(buf, size, "%.*s", (int)strcspn(s, " \t\n"), s);
			if (parse_version(buf, &a, &b))
				return true;
		}
	}
	return false;
}

/* `containerd --version`: "containerd github.com/containerd/containerd 1.6.20~ds1 <commit>";
 * `crio --version`: "crio version 1.30.1" or a "Version:  1.30.1" line. */
static bool find_version(const char *out, char *buf, size_t size)
{
	const char *p = strcasestr(out, "version");

	return (p && version_from(out, p + 7, buf, size)) || version_from(out, out, buf, size);
}

static void judge_version(struct run *R, const char *runtime, const char *version)
{
	int a = 0, b = 0;
	bool crio = strcmp(runtime, "cri-o") == 0;
	int min_a = crio ? MIN_CRIO_MAJOR : MIN_CONTAINERD_MAJOR;
	int min_b = crio ? MIN_CRIO_MINOR : MIN_CONTAINERD_MINOR;

	if (!parse_version(version, &a, &b)) {
		add_check(R, "runtime.version", KD_CHECK_WARN, "%s: cannot parse version '%s'",
			  runtime, version);
		return;
	}
	R->rt_major = a;
	R->rt_minor = b;
	R->rt_crio = crio;
	if (a > min_a || (a == min_a && b >= min_b))
		add_check(R, "runtime.version", KD_CHECK_PASS, "%s %s", runtime, version);
	else
		set_fix(add_check(R, "runtime.version", KD_CHECK_FAIL, "%s %s is older than %d.%d",
				  runtime, version, min_a, min_b),
			"upgrade %s to %d.%d or later", runtime, min_a, min_b);
}

static bool root_has_exec(struct run *R, const char *path)
{
	struct stat st;
	_cleanup_close_ int fd = kd_openat(R->rootfd, path, O_PATH, 0, KD_IN_ROOT, NULL);

	return fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
}

static void check_runtime_version(struct run *R, const char **ret_runtime)
{
	static const char *const containerd_paths[] = {"usr/bin/containerd",
						       "usr/local/bin/containerd"};
	static const char *const crio_paths[] = {"usr/bin/crio", "usr/local/bin/crio"};
	const char *found = NULL, *runtime = NULL;
	char out[KD_HOSTCHECK_CMD_OUTPUT_MAX], ver[64], abs[KD_PATH_MAX];

	*ret_runtime = NULL;
	if (R->o->runtime_version) {
		const char *v = strstr(R->o->runtime_version, "://");
		if (!v) {
			add_check(R, "runtime.version", KD_CHECK_WARN,
				  "'%s' is not <runtime>://<version>", R->o->runtime_version);
			return;
		}
		runtime = strncmp(R->o->runtime_version, "containerd", 10) == 0 ? "containerd"
			  : strncmp(R->o->runtime_version, "cri-o", 5) == 0	? "cri-o"
										: NULL;
		if (!runtime) {
			add_check(R, "runtime.version", KD_CHECK_WARN, "unsupported runtime '%.*s'",
				  (int)(v - R->o->runtime_version), R->o->runtime_version);
			return;
		}
		*ret_runtime = runtime;
		judge_version(R, runtime, v + 3);
		return;
	}
	for (size_t i = 0; i < ELEMENTSOF(containerd_paths) && !found; i++)
		if (root_has_exec(R, containerd_paths[i]))
			found = containerd_paths[i], runtime = "containerd";
	for (size_t i = 0; i < ELEMENTSOF(crio_paths) && !found; i++)
		if (root_has_exec(R, crio_paths[i]))
			found = crio_paths[i], runtime = "cri-o";
	if (!found) {
		set_fix(add_check(
				R, "runtime.version", KD_CHECK_WARN,
				"neither containerd nor CRI-O found in /usr/bin or /usr/local/bin"),
			"install containerd (>= 1.6) or CRI-O (>= 1.25)");
		return;
	}
	*ret_runtime = runtime;
	if (!R->real_root) {
		add_check(R, "runtime.version", KD_CHECK_SKIP,
			  "%s found at /%s; not run for a root other than / (pass the version)",
			  runtime, found);
		return;
	}
	snprintf(abs, sizeof(abs), "/%s", found);
	char *const argv[] = {abs, "--version", NULL};
	int r = run_command(argv, out, sizeof(out));
	if (r != 0) {
		add_check(R, "runtime.version", KD_CHECK_WARN, "%s --version: %s", abs,
			  r == -ETIMEDOUT ? "timed out"
			  : r < 0	  ? strerror(-r)
					  : "failed");
		return;
	}
	if (!find_version(out, ver, sizeof(ver))) {
		out[strcspn(out, "\n")] = '\0';
		add_check(R, "runtime.version", KD_CHECK_WARN, "%s --version printed '%.80s'", abs,
			  out);
		return;
	}
	judge_version(R, runtime, ver);
}

/* ---- snapshotter prerequisites (upstream's validate_erofs_prerequisites) ----------------- */

/* Whether line is one of text's lines. */
static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t l = nl ? (size_t)(nl - p) : strlen(p);
		if (l == n && !memcmp(p, line, n))
			return true;
		p = nl ? nl + 1 : NULL;
	}
	return false;
}

/* A kernel feature is there when its module is visible (/sys/module, /proc/modules), or the
 * running kernel's config (/boot/config-<release>) builds it in; for erofs also when
 * /proc/filesystems lists it. */
static bool kernel_feature(struct run *R, const char *module, const char *symbol, const char *fs)
{
	char path[KD_PATH_MAX], want[96], rel[256];
	_cleanup_free_ char *mods = NULL, *fss = NULL, *cfg = NULL;
	snprintf(path, sizeof(path), "sys/module/%s", module);
	if (sysfs_state(R, module) != KD_MODULE_MISSING)
		return true;
	snprintf(want, sizeof(want), "\n%s ", module);
	if (read_root_file(R, "proc/modules", KD_HOSTCHECK_FILE_MAX, false, &mods, NULL) == 0 &&
	    (!strncmp(mods, want + 1, strlen(want + 1)) || strstr(mods, want)))
		return true;
	if (fs &&
	    read_root_file(R, "proc/filesystems", KD_HOSTCHECK_FILE_MAX, false, &fss, NULL) == 0) {
		for (char *l = fss; l && *l;) {
			char *nl = strchr(l, '\n');
			if (nl)
				*nl = '\0';
			const char *name = strrchr(l, '\t');
			if (!strcmp(name ? name + 1 : l, fs))
				return true;
			l = nl ? nl + 1 : NULL;
		}
	}
	if (kernel_release(R, rel, sizeof(rel)) == 0) {
		snprintf(path, sizeof(path), "boot/config-%s", rel);
		snprintf(want, sizeof(want), "%s=y", symbol);
		if (read_file_at(R->configfd, path, 16u << 20, false, &cfg, NULL) == 0 &&
		    has_line(cfg, want))
			return true;
	}
	return false;
}

/* Whether data holds s as a whole C string (NUL after it, no printable byte before it): the
 * way getopt_long keeps an option's name in the binary. */
static bool has_c_string(const char *data, size_t len, const char *s)
{
	size_t n = strlen(s);
	for (const char *p = data; len > n && (p = memmem(p, len - (size_t)(p - data), s, n));
	     p++) {
		size_t at = (size_t)(p - data);
		if (at + n < len && p[n] == '\0' && (at == 0 || p[-1] < 0x21 || p[-1] > 0x7e))
			return true;
		if (at + n >= len)
			break;
	}
	return false;
}

#define MKFS_EROFS_MAX (64u << 20)

static void check_erofs(struct run *R)
{
	static const char *const dirs[] = {"usr/sbin", "usr/bin",	 "sbin",
					   "bin",      "usr/local/sbin", "usr/local/bin"};
	if (R->rt_crio) {
		add_check(R, "snapshotter.erofs.containerd", KD_CHECK_SKIP,
			  "CRI-O: snapshotters are a containerd setting (ignored)");
		return;
	}
	if (R->rt_major < 0)
		set_fix(add_check(R, "snapshotter.erofs.containerd", KD_CHECK_FAIL,
				  "the erofs snapshotter needs containerd 2.2 or newer; the "
				  "version is unknown"),
			"pass the runtime version (containerd://2.2.x)");
	else if (R->rt_major < 2 || (R->rt_major == 2 && R->rt_minor < 2))
		set_fix(add_check(R, "snapshotter.erofs.containerd", KD_CHECK_FAIL,
				  "containerd %d.%d has no erofs snapshotter (needs 2.2 or newer)",
				  R->rt_major, R->rt_minor),
			"upgrade containerd to 2.2 or newer");
	else
		add_check(R, "snapshotter.erofs.containerd", KD_CHECK_PASS, "containerd %d.%d",
			  R->rt_major, R->rt_minor);
	if (kernel_feature(R, "erofs", "CONFIG_EROFS_FS", "erofs"))
		add_check(R, "snapshotter.erofs.kernel", KD_CHECK_PASS,
			  "erofs file system support");
	else
		set_fix(add_check(
				R, "snapshotter.erofs.kernel", KD_CHECK_FAIL,
				"no erofs support in the kernel (module not loaded, not built in)"),
			"load or enable erofs (modprobe erofs) and make it persistent across "
			"reboots");
	if (R->o->erofs_dmverity) {
		bool dm = kernel_feature(R, "dm_mod", "CONFIG_BLK_DEV_DM", NULL);
		bool verity = kernel_feature(R, "dm_verity", "CONFIG_DM_VERITY", NULL);
		if (dm && verity)
			add_check(R, "snapshotter.erofs.dm-verity", KD_CHECK_PASS,
				  "device-mapper and dm-verity");
		else
			set_fix(add_check(R, "snapshotter.erofs.dm-verity", KD_CHECK_FAIL,
					  "EROFS_DMVERITY needs %s",
					  !dm ? "device-mapper" : "dm-verity"),
				"load or enable %s and make it persistent across reboots",
				!dm ? "dm_mod" : "dm_verity");
	}
	/* containerd's erofs differ runs the host's mkfs.erofs with --mkfs-time and --sort=none
	 * (erofs-utils 1.8.2). It is a binary of the host: its option names are looked for in
	 * it, not run. */
	char path[KD_PATH_MAX] = "";
	for (size_t i = 0; i < ELEMENTSOF(dirs) && !path[0]; i++) {
		char p[KD_PATH_MAX];
		snprintf(p, sizeof(p), "%s/mkfs.erofs", dirs[i]);
		struct stat st;
		_cleanup_close_ int fd = kd_openat(R->configfd, p, O_PATH, 0, KD_IN_ROOT, NULL);
		if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111))
			snprintf(path, sizeof(path), "%s", p);
	}
	_cleanup_free_ char *bin = NULL;
	size_t len = 0;
	kd_error e = {0};
	if (!path[0]) {
		set_fix(add_check(R, "snapshotter.erofs.mkfs", KD_CHECK_FAIL,
				  "mkfs.erofs not found in /usr/sbin, /usr/bin, /sbin, /bin, "
				  "/usr/local/sbin or /usr/local/bin"),
			"install erofs-utils >= 1.8.2");
	} else if (kd_read_file(R->configfd, path, MKFS_EROFS_MAX, &bin, &len, &e) < 0) {
		add_check(R, "snapshotter.erofs.mkfs", KD_CHECK_FAIL, "/%s: %s", path, e.msg);
	} else {
		bool t = has_c_string(bin, len, "mkfs-time"), so = has_c_string(bin, len, "sort");
		if (t && so)
			add_check(R, "snapshotter.erofs.mkfs", KD_CHECK_PASS,
				  "/%s accepts --mkfs-time and --sort", path);
		else
			set_fix(add_check(R, "snapshotter.erofs.mkfs", KD_CHECK_FAIL,
					  "/%s does not accept --%s (containerd's erofs differ is "
					  "configured to pass it)",
					  path, !t ? "mkfs-time" : "sort"),
				"install erofs-utils >= 1.8.2");
	}
	/* Warning only: the backing file system's fs-verity is not checked, and a drop-in of
	 * the admin's may turn enable_fsverity off. */
	if (kernel_feature(R, "fsverity", "CONFIG_FS_VERITY", NULL))
		add_check(R, "snapshotter.erofs.fs-verity", KD_CHECK_PASS,
			  "fs-verity support (the backing file system's is not checked)");
	else
		set_fix(add_check(R, "snapshotter.erofs.fs-verity", KD_CHECK_WARN,
				  "no fs-verity support seen; kata-deploy sets enable_fsverity = "
				  "true for the erofs snapshotter"),
			"enable CONFIG_FS_VERITY, or turn enable_fsverity off in a drop-in");
}

bool kd_hostcheck_snapshotters_ok(const kd_hostcheck_report *r)
{
	for (size_t i = 0; i < r->n_checks; i++)
		if (!strncmp(r->checks[i].id, "snapshotter.", 12) &&
		    r->checks[i].status == KD_CHECK_FAIL)
			return false;
	return true;
}

/* Conservative line-based look at containerd's top-level disabled_plugins (the CRI plugin
 * switched off, as Docker's containerd.io package ships it). It stops at the first table
 * header; a multi-line array is followed to its closing bracket. lib/toml will replace this. */
/* The CRI plugin's ids: config v2 (and v1's short name), v3+ (runtime and images halves). */
static const char *const cri_plugin_ids[] = {"cri", "io.containerd.grpc.v1.cri",
					     "io.containerd.cri.v1.runtime",
					     "io.containerd.cri.v1.images"};

/* Parse the config as containerd will (lib/toml) and report the first CRI plugin id listed in
 * the top-level disabled_plugins. Returns 1 when one is, 0 when none, < 0 when the file is not
 * a config containerd will load (err says why, with file:line:column). */
int kd_hostcheck_cri_disabled(const char *text, size_t len, char *which, size_t size, kd_error *err)
{
	_cleanup_toml_ kd_toml_doc *doc = NULL;
	int r = kd_toml_parse("/etc/containerd/config.toml", text, len, &doc, err);
	if (r < 0)
		return r;
	const kd_toml_node *root = kd_toml_root(doc), *v = kd_toml_get(root, "version");
	int64_t version = 1;
	if (v && kd_toml_get_int(v, &version) < 0)
		return kd_err(err, -EINVAL,
			      "/etc/containerd/config.toml: 'version' is not an integer");
	if (version < 1 || version > 4)
		return kd_err(
			err, -EINVAL,
			"/etc/containerd/config.toml: config version %lld is not one containerd "
			"1.6-2.x reads (1-4)",
			(long long)version);
	const kd_toml_node *dp = kd_toml_get(root, "disabled_plugins");
	if (!dp)
		return 0;
	if (kd_toml_type_of(dp) != KD_TOML_ARRAY)
		return kd_err(err, -EINVAL,
			      "/etc/containerd/config.toml: disabled_plugins is not an array");
	for (size_t i = 0; i < kd_toml_count(dp); i++) {
		const char *s;
		size_t n;
		if (kd_toml_get_string(kd_toml_at(dp, i), &s, &n) < 0)
			return kd_err(err, -EINVAL,
				      "/etc/containerd/config.toml: disabled_plugins[%zu] is not a "
				      "string",
				      i);
		for (size_t k = 0; k < ELEMENTSOF(cri_plugin_ids); k++)
			if (strlen(cri_plugin_ids[k]) == n && !memcmp(s, cri_plugin_ids[k], n)) {
				snprintf(which, size, "%s", cri_plugin_ids[k]);
				return 1;
			}
	}
	return 0;
}

static void check_runtime_config(struct run *R, const char *runtime)
{
	_cleanup_free_ char *text = NULL;
	kd_error e = {0};
	char which[64];
	int r;

	if (!runtime || strcmp(runtime, "containerd") != 0) {
		add_check(R, "runtime.config", KD_CHECK_SKIP, "%s",
			  runtime ? "CRI-O configuration is not inspected yet"
				  : "no container runtime found");
		return;
	}
	r = read_file_at(R->configfd, "etc/containerd/config.toml", KD_HOSTCHECK_FILE_MAX, false,
			 &text, &e);
	if (r == -ENOENT) {
		add_check(R, "runtime.config", KD_CHECK_PASS,
			  "no /etc/containerd/config.toml: built-in defaults (CRI enabled)");
		return;
	}
	if (r < 0) {
		add_check(R, "runtime.config", KD_CHECK_FAIL, "%s", kd_err_msg(&e));
		return;
	}
	r = kd_hostcheck_cri_disabled(text, strlen(text), which, sizeof(which), &e);
	if (r < 0) {
		set_fix(add_check(R, "runtime.config", KD_CHECK_FAIL, "%s", kd_err_msg(&e)),
			"fix /etc/containerd/config.toml: containerd refuses to start with it "
			"(check with 'containerd config dump')");
		return;
	}
	if (r > 0) {
		set_fix(add_check(
				R, "runtime.config", KD_CHECK_FAIL,
				"/etc/containerd/config.toml disables the CRI plugin "
				"(disabled_plugins contains \"%s\"): Kubernetes cannot use containerd",
				which),
			"remove \"%s\" from disabled_plugins in /etc/containerd/config.toml and "
			"restart containerd",
			which);
		return;
	}
	add_check(R, "runtime.config", KD_CHECK_PASS,
		  "/etc/containerd/config.toml keeps the CRI plugin enabled");
}

/* "opt/kata/<rest>" under the installation prefix (o->prefix, default opt/kata). */
static const char *in_prefix(const struct run *R, const char *path, char *buf, size_t size)
{
	const char *p = R->o->prefix ? R->o->prefix + strspn(R->o->prefix, "/") : "opt/kata";
	if (strncmp(path, "opt/kata", 8) || (path[8] && path[8] != '/'))
		return path;
	snprintf(buf, size, "%s%s", p, path + 8);
	return buf;
}

static void check_payload_file(struct run *R, const char *id, const char *rel, const char *what)
{
	char buf[KD_PATH_MAX];
	const char *path = in_prefix(R, rel, buf, sizeof(buf));
	if (!R->payload_present) {
		add_check(R, id, KD_CHECK_SKIP, "payload not installed: %s not checked", what);
		return;
	}
	if (root_has_exec(R, path))
		add_check(R, id, KD_CHECK_PASS, "/%s", path);
	else
		set_fix(add_check(R, id, KD_CHECK_FAIL, "%s: /%s is missing or not executable",
				  what, path),
			"reinstall the payload (kata-deploy install) with a shim that needs it");
}

static void check_qemu(struct run *R)
{
	char rel[KD_PATH_MAX];
	const char *default_rel = in_prefix(R, "opt/kata/bin/qemu-system-x86_64", rel, sizeof(rel));
	char path[KD_PATH_MAX];
	kd_qemu_caps caps = {0};
	kd_error e = {0};
	struct stat st;
	int r;

	if (!R->o->qemu && !R->payload_present) {
		add_check(R, "qemu.qmp", KD_CHECK_SKIP, "payload not installed: QEMU not probed");
		return;
	}
	if (R->o->qemu)
		snprintf(path, sizeof(path), "%s", R->o->qemu);
	else
		snprintf(path, sizeof(path), "%s/%s", R->real_root ? "" : R->rootdir, default_rel);
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 0111)) {
		set_fix(add_check(R, "qemu.qmp", KD_CHECK_FAIL, "no executable QEMU at %s", path),
			"install the payload with a QEMU shim, or pass --qemu PATH");
		return;
	}
	r = kd_qemu_probe(path, R->o->qmp_timeout_ms, &caps, &e);
	if (r < 0) {
		set_fix(add_check(R, "qemu.qmp", KD_CHECK_FAIL, "%s", kd_err_msg(&e)),
			"check that %s starts: %s -machine none -qmp stdio -nodefaults", path,
			path);
		return;
	}
	add_check(R, "qemu.qmp", KD_CHECK_PASS, "QEMU %s%s%s%s at %s", caps.version,
		  caps.package[0] ? " (" : "", caps.package, caps.package[0] ? ")" : "", path);
	if (kd_strv_find(caps.accels, "kvm"))
		add_check(R, "qemu.accel.kvm", KD_CHECK_PASS, "KVM accelerator built in");
	else
		set_fix(add_check(R, "qemu.accel.kvm", KD_CHECK_FAIL,
				  "QEMU was built without the KVM accelerator"),
			"use a QEMU built with --enable-kvm (the payload's QEMU is)");
	if (kd_strv_find(caps.machines, "q35"))
		add_check(R, "qemu.machine.q35", KD_CHECK_PASS, "q35 machine type");
	else
		set_fix(add_check(R, "qemu.machine.q35", KD_CHECK_FAIL, "no q35 machine type"),
			"use a QEMU with the q35 machine (x86_64 softmmu)");
	static const struct {
		const char *dev;
		bool required;
		const char *why;
	} devs[] = {
		{"vhost-vsock-pci", true, "the agent channel"},
		{"vhost-user-fs-pci", false, "virtio-fs shared file system"},
		{"virtio-9p-pci", false, "9p shared file system (fallback)"},
		{"virtio-blk-pci", false, "block devices"},
	};
	for (size_t i = 0; i < ELEMENTSOF(devs); i++) {
		char id[64];
		snprintf(id, sizeof(id), "qemu.device.%s", devs[i].dev);
		if (kd_strv_find(caps.devices, devs[i].dev))
			add_check(R, id, KD_CHECK_PASS, "%s", devs[i].why);
		else
			set_fix(add_check(R, id, devs[i].required ? KD_CHECK_FAIL : KD_CHECK_WARN,
					  "device %s missing (%s)", devs[i].dev, devs[i].why),
				"use a QEMU built with %s", devs[i].dev);
	}
	if (kd_strv_find(caps.cpu_models, "host"))
		add_check(R, "qemu.cpu.host", KD_CHECK_PASS, "'host' CPU model");
	else
		add_check(R, "qemu.cpu.host", KD_CHECK_WARN, "no 'host' CPU model");
	kd_qemu_caps_done(&caps);
}

/* The ids a shim requires; NULL-terminated into out. */
static size_t shim_requirements(struct run *R, const shim_req *s, const char **out, size_t max)
{
	size_t n = 0;
#define NEED(x)                                                                                    \
	do {                                                                                       \
		if (n < max - 1)                                                                   \
			out[n++] = (x);                                                            \
	} while (0)
	if (s->hv == HV_REMOTE) {
		NEED("runtime.version");
		NEED("runtime.config");
		out[n] = NULL;
		return n;
	}
	NEED("cpu.info");
	NEED("cpu.virt");
	NEED("cpu.lm");
	NEED("cpu.nested");
	NEED("kvm.device");
	NEED("kvm.create_vm");
	NEED("modules");
	NEED("module.kvm");
	if (R->vendor_module[0])
		NEED(strcmp(R->vendor_module, "kvm_intel") == 0 ? "module.kvm_intel"
								: "module.kvm_amd");
	NEED("module.vhost");
	NEED("module.vhost_net");
	NEED("module.vhost_vsock");
	NEED("runtime.version");
	NEED("runtime.config");
	switch (s->tee) {
	case TEE_TDX:
		NEED("cpu.tdx");
		break;
	case TEE_SNP:
		NEED("cpu.sev_snp");
		break;
	case TEE_SEV:
		NEED("cpu.sev");
		break;
	case TEE_SE:
		NEED("cpu.se");
		break;
	case TEE_CCA:
		NEED("cpu.cca");
		break;
	case TEE_NONE:
		break;
	}
	switch (s->hv) {
	case HV_QEMU:
		NEED("qemu.qmp");
		NEED("qemu.accel.kvm");
		NEED("qemu.machine.q35");
		NEED("qemu.device.vhost-vsock-pci");
		break;
	case HV_CLH:
		NEED("payload.cloud-hypervisor");
		break;
	case HV_FC:
		NEED("payload.firecracker");
		NEED("payload.jailer");
		break;
	case HV_OPENVMM:
		NEED("payload.openvmm");
		break;
	case HV_STRATOVIRT:
		NEED("payload.stratovirt");
		break;
	case HV_DRAGONBALL:
	case HV_REMOTE:
		break;
	}
	NEED(s->runtime_rs ? "payload.shim-runtime-rs" : "payload.shim");
	NEED("cpu.sse4_1");
#undef NEED
	out[n] = NULL;
	return n;
}

static int judge_shims(struct run *R, const shim_req *const *reqs, size_t n, kd_error *err)
{
	kd_hostcheck_report *rep = R->rep;

	rep->shims = calloc(n, sizeof(*rep->shims));
	if (!rep->shims)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const char *ids[64];
		char failed[MAX_FAILED_IDS] = "";
		kd_shim_verdict *v = &rep->shims[rep->n_shims++];

		snprintf(v->name, sizeof(v->name), "%s", reqs[i]->name);
		shim_requirements(R, reqs[i], ids, ELEMENTSOF(ids));
		for (const char **id = ids; *id; id++) {
			const kd_check *c = kd_hostcheck_find(rep, *id);
			if (!c || c->status != KD_CHECK_FAIL)
				continue;
			size_t l = strlen(failed);
			snprintf(failed + l, sizeof(failed) - l, "%s%s", l ? ", " : "", *id);
		}
		v->ok = failed[0] == '\0';
		if (!v->ok && !(v->failed = strdup(failed)))
			return kd_err(err, -ENOMEM, "out of memory");
	}
	return 0;
}

static int split_default_shims(const shim_req **out, size_t max, size_t *ret_n, kd_error *err)
{
	char buf[] = KD_HOSTCHECK_DEFAULT_SHIMS;
	size_t n = 0;

	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (n == max)
			return kd_err(err, -E2BIG, "too many shims");
		out[n++] = find_shim(t);
	}
	*ret_n = n;
	return 0;
}

int kd_hostcheck_run(const kd_hostcheck_opts *o, kd_hostcheck_report **ret, kd_error *err)
{
	_cleanup_hostcheck_report_ kd_hostcheck_report *rep = NULL;
	const shim_req *reqs[ELEMENTSOF(shim_table)];
	struct run R = {.o = o, .rootfd = -1, .configfd = -1, .rt_major = -1, .rt_minor = -1};
	bool need_qemu = false, need_local = false;
	const char *runtime = NULL;
	size_t n = 0;
	struct stat st;
	int r;

	if (o->shims) {
		for (const char *const *s = o->shims; *s; s++) {
			const shim_req *q = find_shim(*s);
			if (!q)
				return kd_err(err, -EINVAL, "unknown shim '%s'", *s);
			bool dup = false;
			for (size_t i = 0; i < n; i++)
				dup |= reqs[i] == q;
			if (dup)
				continue;
			if (n == ELEMENTSOF(reqs))
				return kd_err(err, -E2BIG, "too many shims");
			reqs[n++] = q;
		}
		if (n == 0)
			return kd_err(err, -EINVAL, "no shim to check");
	} else {
		r = split_default_shims(reqs, ELEMENTSOF(reqs), &n, err);
		if (r < 0)
			return r;
	}

	rep = calloc(1, sizeof(*rep));
	if (!rep || !(rep->checks = calloc(MAX_CHECKS, sizeof(kd_check))))
		return kd_err(err, -ENOMEM, "out of memory");
	R.rep = rep;
	R.rootdir = o->root ? o->root : "/";
	rep->root = strdup(R.rootdir);
	if (!rep->root)
		return kd_err(err, -ENOMEM, "out of memory");
	_cleanup_close_ int rootfd = kd_root_open(R.rootdir, err);
	if (rootfd < 0)
		return kd_err_wrap(err, rootfd, "host root");
	R.rootfd = R.configfd = rootfd;
	_cleanup_close_ int configfd = -1;
	if (o->config_root) {
		configfd = kd_root_open(o->config_root, err);
		if (configfd < 0)
			return kd_err_wrap(err, configfd, "runtime config root");
		R.configfd = configfd;
	}
	{
		struct stat a, b;
		R.real_root = fstat(rootfd, &a) == 0 && stat("/", &b) == 0 &&
			      a.st_dev == b.st_dev && a.st_ino == b.st_ino;
	}
	R.fix_dry = o->fix_dry_run || !R.real_root;
	rep->fix_dry_run = o->fix && R.fix_dry;
	{
		char pbuf[KD_PATH_MAX];
		R.payload_present = !o->skip_payload &&
				    kd_lstat(rootfd, in_prefix(&R, "opt/kata", pbuf, sizeof(pbuf)),
					     &st, NULL) >= 0 &&
				    S_ISDIR(st.st_mode);
	}

	for (size_t i = 0; i < n; i++) {
		need_qemu |= reqs[i]->hv == HV_QEMU;
		need_local |= reqs[i]->hv != HV_REMOTE;
	}
	if (need_local) {
		check_cpu(&R);
		for (size_t i = 0; i < n; i++)
			check_tee(&R, reqs[i]->tee);
		check_modules(&R, true);
		check_kvm(&R);
		reconcile_kvm(&R);
	}
	check_cgroup(&R);
	check_runtime_version(&R, &runtime);
	check_runtime_config(&R, runtime);
	if (o->snapshotters) {
		_cleanup_strv_ char **snaps = kd_strv_split(o->snapshotters, ',');
		if (!snaps)
			return kd_err(err, -ENOMEM, "out of memory");
		for (size_t i = 0; snaps[i]; i++)
			if (!strcmp(snaps[i], "erofs"))
				check_erofs(&R);
			else if (snaps[i][0] && strcmp(snaps[i], "nydus") != 0)
				return kd_err(err, -EINVAL,
					      "unknown snapshotter '%s' (nydus, erofs)", snaps[i]);
	}
	for (size_t i = 0; i < n; i++) {
		switch (reqs[i]->hv) {
		case HV_CLH:
			check_payload_file(&R, "payload.cloud-hypervisor",
					   "opt/kata/bin/cloud-hypervisor", "Cloud Hypervisor");
			break;
		case HV_FC:
			check_payload_file(&R, "payload.firecracker", "opt/kata/bin/firecracker",
					   "Firecracker");
			check_payload_file(&R, "payload.jailer", "opt/kata/bin/jailer",
					   "the Firecracker jailer");
			break;
		case HV_OPENVMM:
			check_payload_file(&R, "payload.openvmm", "opt/kata/bin/openvmm",
					   "OpenVMM");
			break;
		case HV_STRATOVIRT:
			check_payload_file(&R, "payload.stratovirt", "opt/kata/bin/stratovirt",
					   "StratoVirt");
			break;
		default:
			break;
		}
		if (reqs[i]->hv != HV_REMOTE) {
			if (reqs[i]->runtime_rs)
				check_payload_file(
					&R, "payload.shim-runtime-rs",
					"opt/kata/runtime-rs/bin/containerd-shim-kata-v2",
					"the runtime-rs shim (with Dragonball built in)");
			else
				check_payload_file(&R, "payload.shim",
						   "opt/kata/bin/containerd-shim-kata-v2",
						   "the Go shim");
		}
	}
	if (need_qemu && !o->skip_payload)
		check_qemu(&R);
	else if (need_qemu)
		add_check(&R, "qemu.qmp", KD_CHECK_SKIP, "payload checks skipped");
	free(R.flags);
	R.flags = NULL;
	for (size_t i = 0; i < rep->n_checks; i++)
		if (!rep->checks[i].detail)
			return kd_err(err, -ENOMEM, "out of memory");

	r = judge_shims(&R, reqs, n, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(rep);
	return 0;
}

void kd_hostcheck_report_free(kd_hostcheck_report *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_checks; i++) {
		free(r->checks[i].detail);
		free(r->checks[i].fix);
	}
	free(r->checks);
	for (size_t i = 0; i < r->n_shims; i++)
		free(r->shims[i].failed);
	free(r->shims);
	for (size_t i = 0; i < r->n_fix_actions; i++)
		free(r->fix_actions[i]);
	free(r->fix_actions);
	free(r->root);
	free(r);
}

bool kd_hostcheck_all_ok(const kd_hostcheck_report *r)
{
	for (size_t i = 0; i < r->n_shims; i++)
		if (!r->shims[i].ok)
			return false;
	return r->n_shims > 0;
}

bool kd_hostcheck_any_ok(const kd_hostcheck_report *r)
{
	for (size_t i = 0; i < r->n_shims; i++)
		if (r->shims[i].ok)
			return true;
	return false;
}

static struct json_object *jstr(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

int kd_hostcheck_to_json(const kd_hostcheck_report *r, struct json_object **ret, kd_error *err)
{
	struct json_object *root = json_object_new_object();
	struct json_object *checks = json_object_new_array();
	struct json_object *shims = json_object_new_array();
	struct json_object *fix = json_object_new_object();
	struct json_object *actions = json_object_new_array();

	if (!root || !checks || !shims || !fix || !actions) {
		json_object_put(root);
		json_object_put(checks);
		json_object_put(shims);
		json_object_put(fix);
		json_object_put(actions);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	json_object_object_add(root, "root", jstr(r->root));
	json_object_object_add(root, "ok", json_object_new_boolean(kd_hostcheck_all_ok(r)));
	for (size_t i = 0; i < r->n_checks; i++) {
		const kd_check *c = &r->checks[i];
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "id", jstr(c->id));
		json_object_object_add(o, "status",
				       jstr(c->status == KD_CHECK_FAIL
						    ? "fail"
						    : kd_check_status_to_string(c->status)));
		json_object_object_add(o, "detail", jstr(c->detail));
		json_object_object_add(o, "fix", jstr(c->fix));
		json_object_array_add(checks, o);
	}
	for (size_t i = 0; i < r->n_shims; i++) {
		const kd_shim_verdict *v = &r->shims[i];
		struct json_object *o = json_object_new_object(), *failed = json_object_new_array();
		json_object_object_add(o, "name", jstr(v->name));
		char rc[KD_HOSTCHECK_SHIM_MAX + 8];
		snprintf(rc, sizeof(rc), "kata-%s", v->name);
		json_object_object_add(o, "runtime_class", jstr(rc));
		json_object_object_add(o, "ok", json_object_new_boolean(v->ok));
		if (v->failed) {
			_cleanup_free_ char *copy = strdup(v->failed);
			for (char *save = NULL, *t = copy ? strtok_r(copy, ", ", &save) : NULL; t;
			     t = strtok_r(NULL, ", ", &save))
				json_object_array_add(failed, jstr(t));
		}
		json_object_object_add(o, "failed", failed);
		json_object_array_add(shims, o);
	}
	for (size_t i = 0; i < r->n_fix_actions; i++)
		json_object_array_add(actions, jstr(r->fix_actions[i]));
	json_object_object_add(fix, "dry_run", json_object_new_boolean(r->fix_dry_run));
	json_object_object_add(fix, "actions", actions);
	json_object_object_add(root, "checks", checks);
	json_object_object_add(root, "shims", shims);
	json_object_object_add(root, "fix", fix);
	*ret = root;
	return 0;
}

void kd_hostcheck_print(const kd_hostcheck_report *r, FILE *f)
{
	int w = (int)strlen("CHECK");

	for (size_t i = 0; i < r->n_checks; i++)
		if ((int)strlen(r->checks[i].id) > w)
			w = (int)strlen(r->checks[i].id);
	fprintf(f, "Host checks for root %s\n\n", r->root);
	fprintf(f, "%-*s  %-6s %s\n", w, "CHECK", "STATUS", "DETAIL / FIX");
	for (size_t i = 0; i < r->n_checks; i++) {
		const kd_check *c = &r->checks[i];
		fprintf(f, "%-*s  %-6s %s\n", w, c->id, kd_check_status_to_string(c->status),
			c->detail);
		if (c->fix && (c->status == KD_CHECK_FAIL || c->status == KD_CHECK_WARN))
			fprintf(f, "%-*s  %-6s fix: %s\n", w, "", "", c->fix);
	}
	if (r->n_fix_actions) {
		fprintf(f, "\n%s:\n", r->fix_dry_run ? "--fix would run (dry run)" : "--fix ran");
		for (size_t i = 0; i < r->n_fix_actions; i++)
			fprintf(f, "  %s\n", r->fix_actions[i]);
	}
	fprintf(f, "\n%-32s %s\n", "RUNTIME CLASS", "VERDICT");
	for (size_t i = 0; i < r->n_shims; i++) {
		const kd_shim_verdict *v = &r->shims[i];
		char rc[KD_HOSTCHECK_SHIM_MAX + 8];
		snprintf(rc, sizeof(rc), "kata-%s", v->name);
		if (v->ok)
			fprintf(f, "%-32s can run\n", rc);
		else
			fprintf(f, "%-32s CANNOT RUN: %s\n", rc, v->failed);
	}
}
