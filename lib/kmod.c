#include "kmod.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libkmod.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <syslog.h>

#include "fsroot.h"
#include "log.h"

/* depmod's binary index header: magic, then version (major << 16 | minor), big endian. */
#define INDEX_MAGIC 0xB007F457u
#define INDEX_VERSION_MAJOR 0x0002u
#define INDEX_HEADER_SIZE 12
/* sysfs and procfs files we read are small; /proc/modules on a big host is ~20 KiB. */
#define PROC_MODULES_MAX (1024u * 1024)
#define INITSTATE_MAX 64
#define KD_KMOD_OPTIONS_MAX 1024 /* modprobe.d options shown per module */

DEFINE_CLEANUP(struct kmod_ctx *, kmod_unref)
DEFINE_CLEANUP(struct kmod_list *, kmod_module_unref_list)
DEFINE_CLEANUP(struct kmod_module *, kmod_module_unref)

struct kd_kmod {
	struct kmod_ctx *ctx;
	int rootfd;
	bool real_root; /* rootfd is "/": libkmod's own view of /sys is the right one */
};

/* Indexes libkmod needs; modules.builtin.alias.bin is optional (older depmod lacks it). */
static const struct {
	const char *name;
	bool optional;
} index_files[] = {
	{"modules.dep.bin", false},	     {"modules.alias.bin", false},
	{"modules.symbols.bin", false},	     {"modules.builtin.bin", false},
	{"modules.builtin.alias.bin", true},
};

static void log_kmod(void *data _unused_, int priority, const char *file _unused_,
		     int line _unused_, const char *fn _unused_, const char *format, va_list args)
{
	char buf[512];

	if (priority > LOG_INFO)
		return;
	vsnprintf(buf, sizeof(buf), format, args);
	buf[strcspn(buf, "\n")] = '\0';
	kd_debug("libkmod: %s", buf);
}

const char *kd_module_state_to_string(kd_module_state s)
{
	switch (s) {
	case KD_MODULE_MISSING:
		return "missing";
	case KD_MODULE_AVAILABLE:
		return "available";
	case KD_MODULE_LOADED:
		return "loaded";
	case KD_MODULE_BUILTIN:
		return "builtin";
	}
	return "unknown";
}

/* libkmod trusts the offsets inside an index it maps; a truncated or foreign file would make it
 * read past the mapping. Check what we can cheaply: size, magic, major version, root offset. */
static int check_index(const char *dir, const char *name, bool optional, kd_error *err)
{
	char path[KD_PATH_MAX];
	unsigned char hdr[INDEX_HEADER_SIZE];
	struct stat st;
	uint32_t magic, version, root;
	int n;

	n = snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= sizeof(path))
		return kd_err(err, -ENAMETOOLONG, "modules index path too long: %s", dir);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT && optional)
			return 0;
		return kd_err_errno(err, negative_errno(), "modules index %s (run depmod)", path);
	}
	if (fstat(fd, &st) < 0)
		return kd_err_errno(err, negative_errno(), "stat %s", path);
	if (!S_ISREG(st.st_mode))
		return kd_err(err, -EINVAL, "modules index %s is not a regular file", path);
	if ((uint64_t)st.st_size > KD_KMOD_INDEX_MAX)
		return kd_err(err, -EFBIG, "modules index %s is larger than %u bytes", path,
			      KD_KMOD_INDEX_MAX);
	if (st.st_size < INDEX_HEADER_SIZE || pread(fd, hdr, sizeof(hdr), 0) != sizeof(hdr))
		return kd_err(err, -EINVAL, "modules index %s is truncated (run depmod)", path);
	memcpy(&magic, hdr, 4);
	memcpy(&version, hdr + 4, 4);
	memcpy(&root, hdr + 8, 4);
	magic = ntohl(magic);
	version = ntohl(version);
	root = ntohl(root);
	if (magic != INDEX_MAGIC)
		return kd_err(err, -EINVAL,
			      "modules index %s is corrupt: bad magic 0x%08x (run depmod)", path,
			      magic);
	if ((version >> 16) != INDEX_VERSION_MAJOR)
		return kd_err(err, -EINVAL, "modules index %s has unsupported version %u.%u", path,
			      version >> 16, version & 0xffff);
	/* The root node offset carries flag bits in its top nibble. */
	/* An empty index is a flagless root node at the very end of the file. */
	if ((root & 0x0fffffffu) > (uint64_t)st.st_size ||
	    ((root & 0x0fffffffu) == (uint64_t)st.st_size && (root & 0xf0000000u)))
		return kd_err(err, -EINVAL, "modules index %s is truncated (run depmod)", path);
	return 0;
}

static bool same_as_slash(int rootfd)
{
	struct stat a, b;

	return fstat(rootfd, &a) == 0 && stat("/", &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

int kd_kmod_open(int rootfd, const char *modules_dir, const char *const *config_dirs, kd_kmod **ret,
		 kd_error *err)
{
	_cleanup_(kmod_unrefp) struct kmod_ctx *ctx = NULL;
	struct stat st;
	int r;

	if (!modules_dir || modules_dir[0] != '/')
		return kd_err(err, -EINVAL, "modules directory must be an absolute path");
	if (stat(modules_dir, &st) < 0)
		return kd_err_errno(err, negative_errno(), "modules directory %s", modules_dir);
	if (!S_ISDIR(st.st_mode))
		return kd_err(err, -ENOTDIR, "modules directory %s is not a directory",
			      modules_dir);
	for (size_t i = 0; i < ELEMENTSOF(index_files); i++) {
		r = check_index(modules_dir, index_files[i].name, index_files[i].optional, err);
		if (r < 0)
			return r;
	}

	ctx = kmod_new(modules_dir, (const char *const *)config_dirs);
	if (!ctx)
		return kd_err(err, -ENOMEM, "libkmod: cannot create a context for %s", modules_dir);
	kmod_set_log_fn(ctx, log_kmod, NULL);
	r = kmod_load_resources(ctx);
	if (r < 0)
		return kd_err_errno(err, r, "libkmod: cannot load the indexes in %s", modules_dir);

	kd_kmod *k = calloc(1, sizeof(*k));
	if (!k)
		return kd_err(err, -ENOMEM, "out of memory");
	k->rootfd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	if (k->rootfd < 0) {
		free(k);
		return kd_err_errno(err, negative_errno(), "dup root fd");
	}
	k->real_root = same_as_slash(rootfd);
	k->ctx = TAKE_PTR(ctx);
	*ret = k;
	return 0;
}

void kd_kmod_free(kd_kmod *k)
{
	if (!k)
		return;
	kmod_unref(k->ctx);
	if (k->rootfd >= 0)
		close(k->rootfd);
	free(k);
}

const char *kd_kmod_dirname(const kd_kmod *k)
{
	return kmod_get_dirname(k->ctx);
}

/* Read at most max-1 bytes of a small pseudo-file under the root. */
static int read_small(int rootfd, const char *path, size_t max, char **ret)
{
	_cleanup_close_ int fd = kd_openat(rootfd, path, O_RDONLY, 0, KD_NOFOLLOW, NULL);
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;

	if (fd < 0)
		return fd;
	buf = malloc(max);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n = read(fd, buf + len, max - 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == max - 1)
			return -EFBIG;
	}
	buf[len] = '\0';
	*ret = TAKE_PTR(buf);
	return 0;
}

/* Loaded per the root: /sys/module/<name>/initstate ("live", "coming", "going") exists, or the
 * name starts a line of /proc/modules. Built-in modules with parameters also have a
 * /sys/module/<name> directory, but no initstate, so they do not count here. */
static bool is_loaded(kd_kmod *k, const char *name)
{
	char path[KD_PATH_MAX];
	_cleanup_free_ char *state = NULL, *mods = NULL;
	size_t nlen = strlen(name);

	snprintf(path, sizeof(path), "sys/module/%s/initstate", name);
	if (read_small(k->rootfd, path, INITSTATE_MAX, &state) >= 0)
		return true;
	if (read_small(k->rootfd, "proc/modules", PROC_MODULES_MAX, &mods) < 0)
		return false;
	for (const char *l = mods; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (strncmp(l, name, nlen) == 0 && l[nlen] == ' ')
			return true;
	return false;
}

static int lookup_one(kd_kmod *k, const char *name, struct kmod_module **ret, kd_error *err)
{
	_cleanup_(kmod_module_unref_listp) struct kmod_list *list = NULL;
	int r;

	if (!name[0] || strlen(name) >= KD_KMOD_NAME_MAX || strchr(name, '/'))
		return kd_err(err, -EINVAL, "invalid module name '%s'", name);
	r = kmod_module_new_from_lookup(k->ctx, name, &list);
	if (r < 0)
		return kd_err_errno(err, r, "libkmod: look up module %s", name);
	if (!list) {
		*ret = NULL;
		return 0;
	}
	/* An alias may resolve to several modules; the first is the one modprobe would pick. */
	*ret = kmod_module_get_module(list);
	return 0;
}

int kd_kmod_state(kd_kmod *k, const char *name, kd_module_state *ret_state, char **ret_path,
		  kd_error *err)
{
	_cleanup_(kmod_module_unrefp) struct kmod_module *mod = NULL;
	_cleanup_free_ char *path = NULL;
	char norm[KD_KMOD_NAME_MAX];
	kd_module_state state;
	int r;

	r = lookup_one(k, name, &mod, err);
	if (r < 0)
		return r;
	if (mod) {
		snprintf(norm, sizeof(norm), "%s", kmod_module_get_name(mod));
	} else {
		/* Unknown to the index, but a loaded out-of-tree module still counts. */
		snprintf(norm, sizeof(norm), "%s", name);
		for (char *c = norm; *c; c++)
			if (*c == '-')
				*c = '_';
	}

	if (mod && kmod_module_get_initstate(mod) == KMOD_MODULE_BUILTIN &&
	    !kmod_module_get_path(mod)) {
		/* libkmod answers BUILTIN from modules.builtin.bin without touching /sys. */
		state = KD_MODULE_BUILTIN;
	} else if (is_loaded(k, norm)) {
		state = KD_MODULE_LOADED;
	} else if (mod && kmod_module_get_path(mod)) {
		const char *p = kmod_module_get_path(mod);
		if (access(p, R_OK) < 0) {
			kd_debug("kmod: %s is in the index but %s is absent", norm, p);
			state = KD_MODULE_MISSING;
		} else {
			state = KD_MODULE_AVAILABLE;
			path = strdup(p);
			if (!path)
				return kd_err(err, -ENOMEM, "out of memory");
		}
	} else {
		state = KD_MODULE_MISSING;
	}
	if (mod && state == KD_MODULE_LOADED && kmod_module_get_path(mod)) {
		path = strdup(kmod_module_get_path(mod));
		if (!path)
			return kd_err(err, -ENOMEM, "out of memory");
	}
	*ret_state = state;
	if (ret_path)
		*ret_path = TAKE_PTR(path);
	return 0;
}

/* libkmod's print_action callback carries no user data; a load is one synchronous call, so the
 * context lives in a thread-local for its duration. */
struct load_ctx {
	kd_kmod *k;
	kd_kmod_action_fn action;
	void *userdata;
};
static __thread struct load_ctx *current_load;

static void print_action(struct kmod_module *m, bool install, const char *options)
{
	struct load_ctx *c = current_load;
	const char *name = kmod_module_get_name(m);
	const char *path = kmod_module_get_path(m);

	if (!c)
		return;
	/* With a fake root libkmod is told to ignore the real /sys/module; filter here. */
	if (!c->k->real_root && is_loaded(c->k, name))
		return;
	if (c->action) {
		char opts[KD_KMOD_OPTIONS_MAX];
		size_t n;

		snprintf(opts, sizeof(opts), "%s", options ? options : "");
		for (n = strlen(opts); n && opts[n - 1] == ' '; n--)
			opts[n - 1] = '\0';
		if (install)
			path = "(install command)";
		c->action(name, path ? path : "", opts, c->userdata);
	}
}

int kd_kmod_load(kd_kmod *k, const char *name, unsigned flags, kd_kmod_action_fn action,
		 void *userdata, kd_error *err)
{
	_cleanup_(kmod_module_unrefp) struct kmod_module *mod = NULL;
	bool dry = flags & KD_KMOD_LOAD_DRY_RUN;
	struct load_ctx c = {.k = k, .action = action, .userdata = userdata};
	unsigned kflags = KMOD_PROBE_APPLY_BLACKLIST;
	int r;

	if (!dry && !k->real_root)
		return kd_err(err, -EPERM,
			      "refusing to load module %s: the root is not / (use a dry run)",
			      name);
	r = lookup_one(k, name, &mod, err);
	if (r < 0)
		return r;
	if (!mod)
		return kd_err(err, -ENOENT, "module %s not found in %s", name,
			      kmod_get_dirname(k->ctx));
	if (dry)
		kflags |= KMOD_PROBE_DRY_RUN;
	if (!k->real_root)
		kflags |= KMOD_PROBE_IGNORE_LOADED;

	current_load = &c;
	r = kmod_module_probe_insert_module(mod, kflags, NULL, NULL, NULL, print_action);
	current_load = NULL;
	if (r == KMOD_PROBE_APPLY_BLACKLIST)
		return kd_err(err, -EPERM, "module %s is blacklisted by modprobe.d", name);
	if (r > 0)
		return kd_err(err, -EPERM, "module %s was not loaded (libkmod flag 0x%x)", name, r);
	if (r < 0)
		return kd_err_errno(err, r, "load module %s", name);
	return 0;
}
