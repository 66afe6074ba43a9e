/* kata-deploy payload import: upstream's kata-static tarball → our payload. The tarball is
 * staged entry by entry (every path, type, mode, link and size checked) in a directory next to
 * the output, split into upstream's components, and packed by kd_payload_pack() with a spec we
 * write, so the payload format stays lib/payload's alone. */
#include "import.h"

#include <dirent.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsroot.h"
#include "json.h"
#include "kataconfig.h"
#include "strv.h"
#include "toml.h"

#define TOP "opt/kata/"
#define TOP_LEN (sizeof(TOP) - 1)
#define SNIFF_ENTRIES 16
#define IO_BLOCK (1u << 20)

/* ---- layout detection ---------------------------------------------------------------------- */

static const char *skip_dot_slash(const char *p)
{
	while (p[0] == '.' && p[1] == '/')
		for (p += 2; *p == '/';)
			p++;
	return p;
}

kd_import_kind kd_import_detect(const char *const *paths, size_t n)
{
	if (n == 0)
		return KD_IMPORT_OTHER;
	if (strcmp(skip_dot_slash(paths[0]), KD_PAYLOAD_MANIFEST_NAME) == 0)
		return KD_IMPORT_PAYLOAD;
	for (size_t i = 0; i < n; i++) {
		const char *p = skip_dot_slash(paths[i]);
		if (strncmp(p, TOP, TOP_LEN) == 0 || strcmp(p, "opt/kata") == 0)
			return KD_IMPORT_UPSTREAM;
	}
	return KD_IMPORT_OTHER;
}

kd_import_kind kd_import_sniff(int fd)
{
	_cleanup_tar_reader_ kd_tar_reader *r = NULL;
	kd_tar_read_opts ro = {.max_entries = SNIFF_ENTRIES};
	char *paths[SNIFF_ENTRIES];
	kd_import_kind kind = KD_IMPORT_NOT_TAR;
	size_t n = 0;

	if (kd_tar_open(fd, &ro, &r, NULL) < 0)
		return KD_IMPORT_NOT_TAR;
	for (;;) {
		kd_tar_entry e;
		int k = kd_tar_next(r, &e, NULL);
		if (k <= 0 || !(paths[n] = strdup(e.path)))
			break;
		n++;
		kind = kd_import_detect((const char *const *)paths, n);
		if (kind != KD_IMPORT_OTHER || n == SNIFF_ENTRIES)
			break;
	}
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	return kind;
}

/* ---- entry checks -------------------------------------------------------------------------- */

int kd_import_entry_path(const char *path, const char **ret_rel, kd_error *err)
{
	if (path[0] == '/')
		return kd_err(err, -EINVAL, "'%s': absolute path", path);
	const char *p = skip_dot_slash(path);
	if (*p == '\0' || strcmp(p, ".") == 0 || strcmp(p, "opt") == 0 ||
	    strcmp(p, "opt/kata") == 0) {
		*ret_rel = NULL;
		return 0;
	}
	if (strncmp(p, TOP, TOP_LEN) != 0)
		return kd_err(err, -EINVAL, "'%s': outside opt/kata/", path);
	p += TOP_LEN;
	if (!kd_path_is_safe(p))
		return kd_err(err, -EINVAL, "'%s': unsafe path ('..', '.' or empty components)",
			      path);
	*ret_rel = p;
	return 1;
}

/* Lexically normalise a '/'-separated path in place ("a/./b/../c" → "a/c"). -1 if ".." would
 * climb above the start. */
static int normalize(char *path)
{
	char *out = path, *s = path;
	size_t depth = 0;

	while (*s) {
		char *e = strchrnul(s, '/');
		size_t n = (size_t)(e - s);
		if (n == 0 || (n == 1 && s[0] == '.')) {
			/* nothing */
		} else if (n == 2 && s[0] == '.' && s[1] == '.') {
			if (depth == 0)
				return -1;
			depth--;
			while (out > path && out[-1] != '/')
				out--;
			if (out > path)
				out--;
		} else {
			if (out > path)
				*out++ = '/';
			memmove(out, s, n);
			out += n;
			depth++;
		}
		s = *e ? e + 1 : e;
	}
	*out = '\0';
	return 0;
}

bool kd_import_link_ok(const char *rel, const char *target)
{
	char buf[2 * KD_PATH_MAX + 2];
	const char *slash = strrchr(rel, '/');
	size_t dl = slash ? (size_t)(slash - rel) : 0;

	if (!*target || target[0] == '/' || strlen(target) > KD_PATH_MAX || dl > KD_PATH_MAX)
		return false;
	snprintf(buf, sizeof(buf), "%.*s%s%s", (int)dl, rel, dl ? "/" : "", target);
	return normalize(buf) == 0 && buf[0] != '\0';
}

/* ---- shims --------------------------------------------------------------------------------- */

static bool valid_shim_name(const char *s, size_t n)
{
	if (n == 0 || n > KD_IMPORT_MAX_SHIM_NAME || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

int kd_import_config_shim(const char *rel, char *shim, size_t size, bool *ret_rust,
			  const char **ret_reason)
{
	const char *name;
	bool rust;

	if (strncmp(rel, KD_IMPORT_RS_CONFIG_DIR, strlen(KD_IMPORT_RS_CONFIG_DIR)) == 0) {
		name = rel + strlen(KD_IMPORT_RS_CONFIG_DIR);
		rust = true;
	} else if (strncmp(rel, KD_IMPORT_GO_CONFIG_DIR, strlen(KD_IMPORT_GO_CONFIG_DIR)) == 0) {
		name = rel + strlen(KD_IMPORT_GO_CONFIG_DIR);
		rust = false;
	} else {
		return 0;
	}
	if (strncmp(name, "configuration-", 14) != 0 || strchr(name, '/'))
		return 0;
	name += 14;
	size_t n = strlen(name);
	if (n <= 5 || strcmp(name + n - 5, ".toml") != 0)
		return 0;
	n -= 5;
	if (!valid_shim_name(name, n) || n >= size) {
		*ret_reason = "not a shim name (lowercase letters, digits and '-', at most 40)";
		return -EINVAL;
	}
	memcpy(shim, name, n);
	shim[n] = '\0';
	if (rust && !kd_shim_is_rust(shim)) {
		*ret_reason =
			"a runtime-rs configuration, but kata-deploy runs runtime-rs only for "
			"dragonball, cloud-hypervisor and *-runtime-rs shims (upstream's "
			"kata-deploy has no such shim either)";
		return -EINVAL;
	}
	if (!rust && kd_shim_is_rust(shim)) {
		*ret_reason =
			"a Go runtime configuration with a runtime-rs shim's name: kata-deploy "
			"reads this shim from runtime-rs/";
		return -EINVAL;
	}
	*ret_rust = rust;
	return 1;
}

/* ---- the tree ------------------------------------------------------------------------------ */

/* Path order with '/' lowest, so that a directory's descendants follow it contiguously. */
static int path_cmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned char x = (unsigned char)(*a == '/' ? 1 : *a);
		unsigned char y = (unsigned char)(*b == '/' ? 1 : *b);
		if (x != y || !x)
			return x < y ? -1 : x > y ? 1 : 0;
	}
}

static int entry_cmp(const void *a, const void *b)
{
	return path_cmp(((const kd_imp_entry *)a)->path, ((const kd_imp_entry *)b)->path);
}

int kd_imp_tree_add(kd_imp_tree *t, const char *path, kd_entry_type type, const char *link,
		    uint64_t size, kd_error *err)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 256;
		kd_imp_entry *e = reallocarray(t->e, cap, sizeof(*e));
		if (!e)
			return kd_err(err, -ENOMEM, "out of memory");
		t->e = e;
		t->cap = cap;
	}
	kd_imp_entry *e = &t->e[t->n];
	*e = (kd_imp_entry){.type = type, .size = size};
	e->path = strdup(path);
	e->link = link ? strdup(link) : NULL;
	if (!e->path || (link && !e->link)) {
		free(e->path);
		free(e->link);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	t->n++;
	t->sorted = false;
	return 0;
}

void kd_imp_tree_done(kd_imp_tree *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->e[i].path);
		free(t->e[i].link);
		free(t->e[i].component);
	}
	free(t->e);
	*t = (kd_imp_tree){0};
}

static void tree_sort(kd_imp_tree *t)
{
	if (!t->sorted)
		qsort(t->e, t->n, sizeof(*t->e), entry_cmp);
	t->sorted = true;
}

const kd_imp_entry *kd_imp_tree_find(const kd_imp_tree *t, const char *path)
{
	size_t lo = 0, hi = t->n;

	if (!t->sorted) {
		for (size_t i = 0; i < t->n; i++)
			if (strcmp(t->e[i].path, path) == 0)
				return &t->e[i];
		return NULL;
	}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = path_cmp(t->e[mid].path, path);
		if (c == 0)
			return &t->e[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* One past the last descendant of the directory at index i (the tree is sorted). */
static size_t subtree_end(const kd_imp_tree *t, size_t i)
{
	size_t n = strlen(t->e[i].path), j = i + 1;
	while (j < t->n && strncmp(t->e[j].path, t->e[i].path, n) == 0 && t->e[j].path[n] == '/')
		j++;
	return j;
}

/* ---- components ---------------------------------------------------------------------------- */

static bool has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool valid_component(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 128)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || strchr("-._+", s[i])))
			return false;
	return true;
}

/* "<name><suffix>" into buf when the suffix is empty or starts with '-'; NULL otherwise. */
static const char *with_suffix(char *buf, size_t size, const char *name, const char *suffix,
			       size_t suffix_len)
{
	if (suffix_len > 0 && suffix[0] != '-')
		return NULL;
	snprintf(buf, size, "%s%.*s", name, (int)suffix_len, suffix);
	return valid_component(buf) ? buf : NULL;
}

/* The component a path belongs to by its name alone, or NULL. Names and directories are
 * those of upstream's build scripts (tools/packaging/kata-deploy/local-build/
 * kata-deploy-binaries.sh, tools/packaging/static-build/, src/runtime{,-rs}/Makefile). */
static const char *classify_path(const char *p, bool dir, char *buf, size_t size)
{
	static const struct {
		const char *path; /* exact, or a directory when it ends in '/' */
		const char *component;
	} fixed[] = {
		{KD_IMPORT_RS_CONFIG_DIR, "shim-v2-rust"},
		{"runtime-rs/", "shim-v2-rust"},
		{KD_IMPORT_GO_CONFIG_DIR, "shim-v2-go"},
		{KD_IMPORT_GO_SHIM_BINARY, "shim-v2-go"},
		{"bin/kata-runtime", "shim-v2-go"},
		{"bin/kata-monitor", "shim-v2-go"},
		{"bin/kata-collect-data.sh", "shim-v2-go"},
		{"share/bash-completion/", "shim-v2-go"},
		{"libexec/virtiofsd", "virtiofsd"},
		{"libexec/nydusd", "nydus"},
		{"bin/nydusd", "nydus"},
		{"bin/nydus-image", "nydus"},
		{"bin/nydusctl", "nydus"},
		{"bin/firecracker", "firecracker"},
		{"bin/jailer", "firecracker"},
		{"bin/openvmm", "openvmm"},
		{"bin/stratovirt", "stratovirt"},
		{"share/ovmf/AMDSEV.fd", "ovmf-sev"},
		{"share/ovmf/OVMF.inteltdx.fd", "ovmf-tdx"},
		{"share/ovmf/", "ovmf"},
		{"share/aavmf/", "ovmf"},
	};
	char full[KD_PATH_MAX + 2];

	snprintf(full, sizeof(full), "%s%s", p, dir ? "/" : "");
	for (size_t i = 0; i < ELEMENTSOF(fixed); i++) {
		const char *f = fixed[i].path;
		size_t n = strlen(f);
		if (f[n - 1] == '/' ? strncmp(full, f, n) == 0 : strcmp(full, f) == 0)
			return fixed[i].component;
	}
	/* QEMU and its flavours: bin/qemu-system-<arch>[-<flavour>], share/kata-qemu[-<flavour>]/,
	 * libexec/kata-qemu[-<flavour>]/ (the flavours' configure --datadir/--libexecdir). */
	if (!dir && has_prefix(p, "bin/qemu-system-") && !strchr(p + 4, '/')) {
		const char *s = strchr(p + strlen("bin/qemu-system-"), '-');
		return with_suffix(buf, size, "qemu", s ? s : "", s ? strlen(s) : 0);
	}
	const char *q = has_prefix(p, "share/kata-qemu")     ? p + strlen("share/kata-qemu")
			: has_prefix(p, "libexec/kata-qemu") ? p + strlen("libexec/kata-qemu")
							     : NULL;
	if (q && (*q == '/' || *q == '-')) {
		size_t n = strcspn(q, "/");
		if (q[n] == '/' || dir)
			return with_suffix(buf, size, "qemu", q, n);
	}
	if (!dir && has_prefix(p, "bin/cloud-hypervisor") && !strchr(p + 4, '/')) {
		const char *s = p + strlen("bin/cloud-hypervisor");
		return with_suffix(buf, size, "cloud-hypervisor", s, strlen(s));
	}
	/* Guest kernels and images: the links the runtimes' configurations name. */
	if (!dir && has_prefix(p, "share/kata-containers/") && !strchr(p + 22, '/')) {
		const char *name = p + 22;
		size_t n = strlen(name);
		if ((has_prefix(name, "vmlinux") || has_prefix(name, "vmlinuz")) && n >= 17 &&
		    strcmp(name + n - 10, ".container") == 0)
			return with_suffix(buf, size, "kernel", name + 7, n - 17);
		if (has_prefix(name, "kata-containers-initrd") && n >= 26 &&
		    strcmp(name + n - 4, ".img") == 0)
			return with_suffix(buf, size, "rootfs-initrd", name + 22, n - 26);
		if (has_prefix(name, "kata-containers") && n >= 19 &&
		    strcmp(name + n - 4, ".img") == 0)
			return with_suffix(buf, size, "rootfs-image", name + 15, n - 19);
	}
	return NULL;
}

static int set_component(kd_imp_entry *e, const char *c, kd_error *err)
{
	free(e->component);
	e->component = strdup(c);
	return e->component ? 0 : kd_err(err, -ENOMEM, "out of memory");
}

/* A symlink's target path below opt/kata/ (lexical), into buf. */
static bool link_target(const kd_imp_entry *e, char *buf, size_t size)
{
	const char *slash = strrchr(e->path, '/');
	size_t dl = slash ? (size_t)(slash - e->path) : 0;
	if (!e->link || (size_t)snprintf(buf, size, "%.*s%s%s", (int)dl, e->path, dl ? "/" : "",
					 e->link) >= size)
		return false;
	return normalize(buf) == 0;
}

static bool component_present(const kd_imp_tree *t, const char *c)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->e[i].component && strcmp(t->e[i].component, c) == 0)
			return true;
	return false;
}

int kd_import_assign(kd_imp_tree *t, kd_error *err)
{
	char buf[256], path[2 * KD_PATH_MAX + 2];
	int r;

	tree_sort(t);
	for (size_t i = 0; i < t->n; i++) {
		kd_imp_entry *e = &t->e[i];
		free(e->component);
		e->component = NULL;
		if (e->type == KD_ENTRY_DIR)
			continue; /* below, from their contents */
		const char *c = classify_path(e->path, false, buf, sizeof(buf));
		if (c && (r = set_component(e, c, err)) < 0)
			return r;
	}
	/* A named link gives its component to what it points at (chains included). */
	for (bool changed = true; changed;) {
		changed = false;
		for (size_t i = 0; i < t->n; i++) {
			kd_imp_entry *e = &t->e[i];
			if (e->type != KD_ENTRY_SYMLINK || !e->component ||
			    !link_target(e, path, sizeof(path)))
				continue;
			kd_imp_entry *target = (kd_imp_entry *)kd_imp_tree_find(t, path);
			if (!target || target->component || target->type == KD_ENTRY_DIR)
				continue;
			if ((r = set_component(target, e->component, err)) < 0)
				return r;
			changed = true;
		}
	}
	/* share/kata-containers/{config,System.map}-<K> go with vmlinux-<K> / vmlinuz-<K>;
	 * root_hash_<variant>.txt with the image of that variant ("base": the plain image). */
	for (size_t i = 0; i < t->n; i++) {
		kd_imp_entry *e = &t->e[i];
		const char *p = e->path, *k = NULL;
		if (e->component || e->type == KD_ENTRY_DIR ||
		    !has_prefix(p, "share/kata-containers/") || strchr(p + 22, '/'))
			continue;
		p += 22;
		if (has_prefix(p, "config-"))
			k = p + 7;
		else if (has_prefix(p, "System.map-"))
			k = p + 11;
		if (k) {
			const kd_imp_entry *v = NULL;
			snprintf(path, sizeof(path), "share/kata-containers/vmlinux-%s", k);
			if (!(v = kd_imp_tree_find(t, path)) || !v->component) {
				snprintf(path, sizeof(path), "share/kata-containers/vmlinuz-%s", k);
				v = kd_imp_tree_find(t, path);
			}
			if (v && v->component && (r = set_component(e, v->component, err)) < 0)
				return r;
			continue;
		}
		size_t n = strlen(p);
		if (has_prefix(p, "root_hash_") && n > 14 && strcmp(p + n - 4, ".txt") == 0) {
			snprintf(buf, sizeof(buf), "rootfs-image%s%.*s",
				 strncmp(p + 10, "base.txt", 8) == 0 ? "" : "-",
				 strncmp(p + 10, "base.txt", 8) == 0 ? 0 : (int)(n - 14), p + 10);
			if (valid_component(buf) && component_present(t, buf) &&
			    (r = set_component(e, buf, err)) < 0)
				return r;
		}
	}
	for (size_t i = 0; i < t->n; i++)
		if (!t->e[i].component && t->e[i].type != KD_ENTRY_DIR &&
		    (r = set_component(&t->e[i], KD_IMPORT_COMMON, err)) < 0)
			return r;
	/* Directories: the one component of everything below, or (empty) their own by path;
	 * directories below mixed ones keep NULL and go with their first descendant. */
	for (size_t i = t->n; i-- > 0;) {
		kd_imp_entry *e = &t->e[i];
		if (e->type != KD_ENTRY_DIR)
			continue;
		size_t end = subtree_end(t, i);
		const char *c = NULL;
		bool mixed = false;
		for (size_t j = i + 1; j < end && !mixed; j++) {
			const char *cj = t->e[j].component;
			if (!cj)
				mixed = true; /* a mixed directory */
			else if (!c)
				c = cj;
			else if (strcmp(c, cj) != 0)
				mixed = true;
		}
		if (mixed)
			continue;
		if (!c) {
			c = classify_path(e->path, true, buf, sizeof(buf));
			if (!c)
				c = KD_IMPORT_COMMON;
		}
		if ((r = set_component(e, c, err)) < 0)
			return r;
	}
	return 0;
}

/* ---- what a shim needs --------------------------------------------------------------------- */

static int add_unique(char ***set, const char *s, kd_error *err)
{
	if (kd_strv_find(*set, s))
		return 0;
	return kd_strv_push(set, s) < 0 ? kd_err(err, -ENOMEM, "out of memory") : 0;
}

static int add_entry(const kd_imp_tree *t, const kd_imp_entry *e, char ***set, kd_error *err)
{
	int r;
	if (e->component && (r = add_unique(set, e->component, err)) < 0)
		return r;
	if (e->type != KD_ENTRY_DIR)
		return 0;
	size_t i = (size_t)(e - t->e), end = subtree_end(t, i);
	for (size_t j = i + 1; j < end; j++)
		if (t->e[j].component && (r = add_unique(set, t->e[j].component, err)) < 0)
			return r;
	return 0;
}

/* Add the components on the way to rel: each symlink passed, then the entry (a directory with
 * all below it). -ENOENT when the path does not resolve inside the tree. */
static int resolve_ref(const kd_imp_tree *t, const char *rel, char ***set, kd_error *err)
{
	char cur[2 * KD_PATH_MAX + 2], next[2 * KD_PATH_MAX + 2];
	int r;

	if (strlen(rel) > KD_PATH_MAX)
		return -ENOENT;
	snprintf(cur, sizeof(cur), "%s", rel);
	if (normalize(cur) < 0 || !cur[0])
		return -ENOENT;
	for (unsigned hops = 0; hops <= KD_IMPORT_MAX_LINK_HOPS; hops++) {
		bool relinked = false;
		for (char *s = cur;;) {
			char *e = strchrnul(s, '/');
			char saved = *e;
			*e = '\0';
			const kd_imp_entry *ent = kd_imp_tree_find(t, cur);
			*e = saved;
			if (!ent)
				return -ENOENT;
			if (ent->type == KD_ENTRY_SYMLINK) {
				if (ent->component &&
				    (r = add_unique(set, ent->component, err)) < 0)
					return r;
				char tgt[2 * KD_PATH_MAX + 2];
				if (!link_target(ent, tgt, sizeof(tgt)) ||
				    (size_t)snprintf(next, sizeof(next), "%s%s", tgt, e) >=
					    sizeof(next) ||
				    normalize(next) < 0 || !next[0])
					return -ENOENT;
				memcpy(cur, next, strlen(next) + 1);
				relinked = true;
				break;
			}
			if (!saved)
				return add_entry(t, ent, set, err);
			if (ent->type != KD_ENTRY_DIR)
				return -ENOENT;
			s = e + 1;
		}
		if (!relinked)
			break;
	}
	return -ELOOP;
}

typedef struct ref_walk {
	const kd_imp_tree *t;
	char ***set;
	kd_error *err;
	char key[512];
} ref_walk;

static int walk_refs(ref_walk *w, const kd_toml_node *n, bool in_array)
{
	const char *s;
	size_t len, klen = strlen(w->key);
	int r;

	switch (kd_toml_type_of(n)) {
	case KD_TOML_TABLE:
	case KD_TOML_ARRAY:
		for (const kd_toml_node *c = kd_toml_first(n); c; c = kd_toml_next(c)) {
			const char *k = kd_toml_key(c, NULL);
			if (k)
				snprintf(w->key + klen, sizeof(w->key) - klen, "%s%s",
					 klen ? "." : "", k);
			r = walk_refs(w, c, kd_toml_type_of(n) == KD_TOML_ARRAY);
			w->key[klen] = '\0';
			if (r < 0)
				return r;
		}
		return 0;
	case KD_TOML_STRING:
		if (kd_toml_get_string(n, &s, &len) < 0 || strlen(s) != len ||
		    !has_prefix(s, KD_IMPORT_UPSTREAM_PREFIX))
			return 0;
		s += strlen(KD_IMPORT_UPSTREAM_PREFIX);
		r = resolve_ref(w->t, s, w->set, w->err);
		if (r == -ENOENT || r == -ELOOP) {
			if (in_array)
				return 0;
			return kd_err(w->err, -ENOENT, "%s = \"%s%s\" is not in the tarball",
				      w->key, KD_IMPORT_UPSTREAM_PREFIX, s);
		}
		return r;
	default:
		return 0;
	}
}

int kd_import_shim_components(const kd_imp_tree *t, const char *shim, bool rust, const char *config,
			      size_t len, char ***ret, kd_error *err)
{
	_cleanup_strv_ char **set = NULL;
	_cleanup_toml_ kd_toml_doc *doc = NULL;
	char name[128];
	const char *binary = rust ? KD_IMPORT_RS_SHIM_BINARY : KD_IMPORT_GO_SHIM_BINARY;
	int r;

	snprintf(name, sizeof(name), "configuration-%s.toml", shim);
	if ((r = kd_toml_parse(name, config, len, &doc, err)) < 0)
		return r;
	r = resolve_ref(t, binary, &set, err);
	if (r == -ENOENT || r == -ELOOP)
		return kd_err(err, -ENOENT, "the %s shim binary %s%s is not in the tarball",
			      rust ? "runtime-rs" : "Go runtime", TOP, binary);
	if (r < 0)
		return r;
	snprintf(name, sizeof(name), "%sconfiguration-%s.toml",
		 rust ? KD_IMPORT_RS_CONFIG_DIR : KD_IMPORT_GO_CONFIG_DIR, shim);
	const kd_imp_entry *ce = kd_imp_tree_find(t, name);
	if (ce && ce->component && (r = add_unique(&set, ce->component, err)) < 0)
		return r;
	ref_walk w = {.t = t, .set = &set, .err = err};
	if ((r = walk_refs(&w, kd_toml_root(doc), false)) < 0)
		return r;
	if (component_present(t, KD_IMPORT_COMMON) &&
	    (r = add_unique(&set, KD_IMPORT_COMMON, err)) < 0)
		return r;
	if (set)
		kd_strv_sort(set);
	*ret = TAKE_PTR(set);
	return 0;
}

/* ---- names and versions -------------------------------------------------------------------- */

static bool valid_version(const char *s)
{
	return valid_component(s) || (strlen(s) <= 128 && *s &&
				      strspn(s, "0123456789abcdefghijk"
						"lmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
						"._+~-") == strlen(s));
}

void kd_import_parse_name(const char *path, char *ret_version, size_t vsize, char *ret_arch,
			  size_t asize)
{
	static const struct {
		const char *name, *arch;
	} arches[] = {
		{"amd64", "x86_64"},	{"x86_64", "x86_64"}, {"arm64", "aarch64"},
		{"aarch64", "aarch64"}, {"s390x", "s390x"},   {"ppc64le", "ppc64le"},
		{"riscv64", "riscv64"},
	};
	static const char *const exts[] = {".tar.zst", ".tar.xz", ".tar.gz", ".tzst",
					   ".txz",     ".tgz",	  ".tar"};
	char name[256];
	const char *base = strrchr(path, '/');

	ret_version[0] = ret_arch[0] = '\0';
	snprintf(name, sizeof(name), "%s", base ? base + 1 : path);
	size_t n = strlen(name);
	for (size_t i = 0; i < ELEMENTSOF(exts); i++) {
		size_t k = strlen(exts[i]);
		if (n > k && strcmp(name + n - k, exts[i]) == 0) {
			name[n - k] = '\0';
			break;
		}
	}
	char *v = strstr(name, "static-");
	if (!v)
		return;
	v += strlen("static-");
	char *dash = strrchr(v, '-');
	if (dash) {
		for (size_t i = 0; i < ELEMENTSOF(arches); i++)
			if (strcmp(dash + 1, arches[i].name) == 0) {
				snprintf(ret_arch, asize, "%s", arches[i].arch);
				*dash = '\0';
				break;
			}
	}
	if (*v && valid_version(v) && strlen(v) < vsize)
		snprintf(ret_version, vsize, "%s", v);
}

/* ---- staging the tarball ------------------------------------------------------------------- */

typedef struct stage {
	int katafd;
	kd_imp_tree *tree;
	uint64_t max_entries, max_entry_size, max_total;
	uint64_t entries, total;
	uint8_t *buf;
} stage;

static int dir_created(const char *path, void *userdata)
{
	stage *s = userdata;
	return kd_imp_tree_add(s->tree, path, KD_ENTRY_DIR, NULL, 0, NULL);
}

static int stage_parent(stage *s, const char *rel, const char **ret_base, kd_error *err)
{
	char dir[KD_PATH_MAX + 1];
	const char *slash = strrchr(rel, '/');
	int r;

	if (slash) {
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - rel), rel);
		if ((r = kd_mkdir_p(s->katafd, dir, 0755, dir_created, s, err)) < 0)
			return r;
	}
	return kd_open_parent(s->katafd, rel, ret_base, err);
}

static int stage_file(stage *s, kd_tar_reader *rd, const kd_tar_entry *e, const char *rel,
		      kd_error *err)
{
	const char *base;
	uint64_t got = 0;
	int r;

	_cleanup_close_ int pfd = stage_parent(s, rel, &base, err);
	if (pfd < 0)
		return pfd;
	_cleanup_close_ int fd =
		openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		       (e->mode & 0111) ? 0755 : 0644);
	if (fd < 0 && errno == EEXIST)
		return kd_err(err, -EEXIST, "'%s': appears twice in the tarball", e->path);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "create '%s'", e->path);
	for (;;) {
		const void *data;
		size_t len;
		r = kd_tar_read_block(rd, &data, &len, err);
		if (r < 0)
			return kd_err_wrap(err, r, "'%s'", e->path);
		if (r == 0)
			break;
		got += len;
		if (got > e->size)
			return kd_err(err, -EBADMSG, "'%s': more data than its header says",
				      e->path);
		for (const uint8_t *p = data; len > 0;) {
			ssize_t w = write(fd, p, len);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return kd_err_errno(err, negative_errno(), "write '%s'", e->path);
			p += w;
			len -= (size_t)w;
		}
	}
	if (got != e->size)
		return kd_err(err, -EBADMSG, "'%s': truncated (%llu of %llu bytes)", e->path,
			      (unsigned long long)got, (unsigned long long)e->size);
	return kd_imp_tree_add(s->tree, rel, KD_ENTRY_FILE, NULL, e->size, err);
}

static int stage_hardlink(stage *s, const kd_tar_entry *e, const char *rel, kd_error *err)
{
	const char *trel, *base, *tbase;
	struct stat st;
	int r = kd_import_entry_path(e->link, &trel, err);

	if (r < 0)
		return kd_err_wrap(err, r, "hardlink '%s'", e->path);
	if (r == 0)
		return kd_err(err, -EINVAL, "hardlink '%s' -> '%s': not a file below opt/kata/",
			      e->path, e->link);
	if (kd_lstat(s->katafd, trel, &st, NULL) < 0 || !S_ISREG(st.st_mode))
		return kd_err(err, -EINVAL,
			      "hardlink '%s' -> '%s': the target is not an earlier regular file",
			      e->path, e->link);
	_cleanup_close_ int tfd = kd_open_parent(s->katafd, trel, &tbase, err);
	if (tfd < 0)
		return tfd;
	_cleanup_close_ int pfd = stage_parent(s, rel, &base, err);
	if (pfd < 0)
		return pfd;
	if (linkat(tfd, tbase, pfd, base, 0) < 0)
		return errno == EEXIST
			       ? kd_err(err, -EEXIST, "'%s': appears twice in the tarball", e->path)
			       : kd_err_errno(err, negative_errno(), "link '%s'", e->path);
	return kd_imp_tree_add(s->tree, rel, KD_ENTRY_FILE, NULL, (uint64_t)st.st_size, err);
}

static int stage_entry(stage *s, kd_tar_reader *rd, const kd_tar_entry *e, kd_error *err)
{
	const char *rel, *base;
	int r;

	if (++s->entries > s->max_entries)
		return kd_err(err, -E2BIG, "archive: more than %llu entries",
			      (unsigned long long)s->max_entries);
	if ((r = kd_import_entry_path(e->path, &rel, err)) < 0)
		return r;
	if (e->type != KD_ENTRY_FILE && e->type != KD_ENTRY_DIR && e->type != KD_ENTRY_SYMLINK &&
	    e->type != KD_ENTRY_HARDLINK)
		return kd_err(err, -EINVAL,
			      "'%s': a %s; only files, directories and links are accepted", e->path,
			      kd_entry_type_name(e->type));
	if (e->type != KD_ENTRY_SYMLINK && (e->mode & 07000))
		return kd_err(err, -EPERM, "'%s': setuid, setgid or sticky mode %04o is refused",
			      e->path, (unsigned)(e->mode & 07777));
	if (r == 0) {
		if (e->type != KD_ENTRY_DIR)
			return kd_err(err, -EINVAL, "'%s': a %s where a directory belongs", e->path,
				      kd_entry_type_name(e->type));
		return 0;
	}
	switch (e->type) {
	case KD_ENTRY_DIR:
		return kd_mkdir_p(s->katafd, rel, 0755, dir_created, s, err) < 0
			       ? kd_err_wrap(err, -EEXIST, "'%s'", e->path)
			       : 0;
	case KD_ENTRY_SYMLINK: {
		if (!kd_import_link_ok(rel, e->link))
			return kd_err(err, -EINVAL,
				      "symlink '%s' -> '%s': absolute, or it leaves opt/kata/",
				      e->path, e->link);
		_cleanup_close_ int pfd = stage_parent(s, rel, &base, err);
		if (pfd < 0)
			return pfd;
		if (symlinkat(e->link, pfd, base) < 0)
			return errno == EEXIST
				       ? kd_err(err, -EEXIST, "'%s': appears twice in the tarball",
						e->path)
				       : kd_err_errno(err, negative_errno(), "symlink '%s'",
						      e->path);
		return kd_imp_tree_add(s->tree, rel, KD_ENTRY_SYMLINK, e->link, 0, err);
	}
	case KD_ENTRY_HARDLINK:
		return stage_hardlink(s, e, rel, err);
	default:
		if (e->size > s->max_entry_size)
			return kd_err(err, -EFBIG,
				      "'%s': %llu bytes exceeds the limit of %llu bytes per file",
				      e->path, (unsigned long long)e->size,
				      (unsigned long long)s->max_entry_size);
		if (e->size > s->max_total - s->total)
			return kd_err(err, -EFBIG, "'%s': files exceed %llu bytes in total",
				      e->path, (unsigned long long)s->max_total);
		s->total += e->size;
		return stage_file(s, rd, e, rel, err);
	}
}

static int stage_tarball(int fd, const char *name, stage *s, kd_error *err)
{
	_cleanup_tar_reader_ kd_tar_reader *rd = NULL;
	kd_tar_read_opts ro = {.max_entries = s->max_entries + 1, .decompress_thread = true};
	bool first = true;
	int r;

	if ((r = kd_tar_open(fd, &ro, &rd, err)) < 0)
		return kd_err_wrap(err, r, "'%s'", name);
	for (;;) {
		kd_tar_entry e;
		r = kd_tar_next(rd, &e, err);
		if (r < 0)
			return kd_err_wrap(err, r, "'%s'", name);
		if (r == 0)
			break;
		if (first && strcmp(skip_dot_slash(e.path), KD_PAYLOAD_MANIFEST_NAME) == 0)
			return kd_err(err, -EINVAL,
				      "'%s' is already a kata-deploy payload (its first entry is "
				      "%s): install it as it is",
				      name, KD_PAYLOAD_MANIFEST_NAME);
		first = false;
		if ((r = stage_entry(s, rd, &e, err)) < 0)
			return kd_err_wrap(err, r, "'%s'", name);
	}
	if (s->tree->n == 0)
		return kd_err(err, -EINVAL, "'%s': no opt/kata/ tree in it", name);
	return 0;
}

/* ---- the spec for kd_payload_pack ---------------------------------------------------------- */

static int json_add_string(struct json_object *arr, const char *s, kd_error *err)
{
	struct json_object *v = json_object_new_string(s);
	if (!v || json_object_array_add(arr, v) < 0) {
		json_object_put(v);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	return 0;
}

static struct json_object *component_obj(struct json_object *comps, const char *name,
					 const char *version)
{
	for (size_t i = 0; i < json_object_array_length(comps); i++) {
		struct json_object *c = json_object_array_get_idx(comps, i);
		if (strcmp(json_object_get_string(json_object_object_get(c, "name")), name) == 0)
			return json_object_object_get(c, "paths");
	}
	struct json_object *c = json_object_new_object(), *paths = json_object_new_array();
	if (!c || !paths || json_object_object_add(c, "name", json_object_new_string(name)) < 0 ||
	    (version &&
	     json_object_object_add(c, "version", json_object_new_string(version)) < 0) ||
	    json_object_object_add(c, "paths", paths) < 0 || json_object_array_add(comps, c) < 0) {
		json_object_put(c);
		return NULL;
	}
	return paths;
}

/* Each component claims its files, and whole directories where everything below is its own. */
static int spec_components(const kd_imp_tree *t, const char *version, struct json_object *comps,
			   kd_error *err)
{
	char path[KD_PATH_MAX + 2];
	int r;

	for (size_t i = 0; i < t->n;) {
		const kd_imp_entry *e = &t->e[i];
		if (e->type == KD_ENTRY_DIR && !e->component) {
			i++;
			continue;
		}
		struct json_object *paths = component_obj(comps, e->component, version);
		if (!paths)
			return kd_err(err, -ENOMEM, "out of memory");
		snprintf(path, sizeof(path), "%s%s", e->path, e->type == KD_ENTRY_DIR ? "/" : "");
		if ((r = json_add_string(paths, path, err)) < 0)
			return r;
		i = e->type == KD_ENTRY_DIR ? subtree_end(t, i) : i + 1;
	}
	return 0;
}

static int shims_obj(const kd_import_shim *shims, size_t n, struct json_object **ret, kd_error *err)
{
	_cleanup_json_ struct json_object *o = json_object_new_object();
	int r;

	if (!o)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		struct json_object *a = json_object_new_array();
		if (!a || json_object_object_add(o, shims[i].name, a) < 0) {
			json_object_put(a);
			return kd_err(err, -ENOMEM, "out of memory");
		}
		for (size_t j = 0; shims[i].components[j]; j++)
			if ((r = json_add_string(a, shims[i].components[j], err)) < 0)
				return r;
	}
	*ret = TAKE_PTR(o);
	return 0;
}

/* ---- import -------------------------------------------------------------------------------- */

void kd_import_result_done(kd_import_result *r)
{
	free(r->version);
	free(r->arch);
	for (size_t i = 0; i < r->n_shims; i++) {
		free(r->shims[i].name);
		kd_strv_free(r->shims[i].components);
	}
	free(r->shims);
	kd_strv_free(r->left_out);
	kd_strv_free(r->components);
	*r = (kd_import_result){0};
}

static int push_fmt(char ***v, kd_error *err, const char *fmt, ...) _printf_(3, 4);
static int push_fmt(char ***v, kd_error *err, const char *fmt, ...)
{
	_cleanup_free_ char *s = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0 || kd_strv_push(v, s) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	return 0;
}

static int cmp_shim(const void *a, const void *b)
{
	return strcmp(((const kd_import_shim *)a)->name, ((const kd_import_shim *)b)->name);
}

/* Every configuration of the tree → the shims that work (or, when o->shims names them, the
 * named ones, each of which must work). */
static int find_shims(int katafd, const kd_imp_tree *t, const kd_import_opts *o,
		      kd_import_result *res, kd_error *err)
{
	char shim[64];
	int r;

	res->shims = calloc(t->n ? t->n : 1, sizeof(kd_import_shim));
	if (!res->shims)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < t->n; i++) {
		const kd_imp_entry *e = &t->e[i];
		const char *reason = NULL;
		bool rust = false;
		if (e->type == KD_ENTRY_DIR)
			continue;
		int k = kd_import_config_shim(e->path, shim, sizeof(shim), &rust, &reason);
		if (k == 0)
			continue;
		if (has_prefix(e->path, KD_IMPORT_RS_CONFIG_DIR))
			res->rs_configs++;
		else
			res->go_configs++;
		if (k < 0) {
			if ((r = push_fmt(&res->left_out, err, "%s%s: %s", TOP, e->path, reason)) <
			    0)
				return r;
			continue;
		}
		bool wanted = !o->shims || kd_strv_find(o->shims, shim);
		if (!wanted)
			continue;
		_cleanup_free_ char *text = NULL;
		_cleanup_strv_ char **comps = NULL;
		size_t len;
		kd_error e2 = {0};
		if (e->type != KD_ENTRY_FILE)
			r = kd_err(&e2, -EINVAL, "%s%s is a %s, not a file", TOP, e->path,
				   kd_entry_type_name(e->type));
		else if ((r = kd_read_file(katafd, e->path, KD_IMPORT_MAX_CONFIG, &text, &len,
					   &e2)) >= 0)
			r = kd_import_shim_components(t, shim, rust, text, len, &comps, &e2);
		if (r == -ENOMEM)
			return kd_err(err, r, "%s", kd_err_msg(&e2));
		if (r < 0 && o->shims)
			return kd_err(err, r, "shim '%s': %s", shim, kd_err_msg(&e2));
		if (r < 0) {
			if ((r = push_fmt(&res->left_out, err, "%s: %s", shim, kd_err_msg(&e2))) <
			    0)
				return r;
			continue;
		}
		kd_import_shim *sh = &res->shims[res->n_shims];
		if (!(sh->name = strdup(shim)))
			return kd_err(err, -ENOMEM, "out of memory");
		sh->rust = rust;
		sh->components = TAKE_PTR(comps);
		res->n_shims++;
		for (size_t j = 0; j < t->n; j++)
			if (t->e[j].type == KD_ENTRY_FILE &&
			    kd_strv_find(sh->components, t->e[j].component))
				sh->bytes += t->e[j].size;
	}
	for (size_t i = 0; o->shims && o->shims[i]; i++) {
		bool found = false;
		for (size_t j = 0; j < res->n_shims && !found; j++)
			found = strcmp(res->shims[j].name, o->shims[i]) == 0;
		if (!found)
			return kd_err(err, -ENOENT,
				      "shim '%s': no configuration-%s.toml in %s%s or %s%s",
				      o->shims[i], o->shims[i], TOP, KD_IMPORT_GO_CONFIG_DIR, TOP,
				      KD_IMPORT_RS_CONFIG_DIR);
	}
	qsort(res->shims, res->n_shims, sizeof(*res->shims), cmp_shim);
	if (res->n_shims == 0) {
		char why[1024] = "";
		for (size_t i = 0, n = 0; res->left_out && res->left_out[i] && n < sizeof(why); i++)
			n += (size_t)snprintf(why + n, sizeof(why) - n, "; %s", res->left_out[i]);
		return kd_err(
			err, -ENOENT,
			"no shim to import: the tarball has no usable configuration-<shim>.toml "
			"in %s%s or %s%s%s",
			TOP, KD_IMPORT_GO_CONFIG_DIR, TOP, KD_IMPORT_RS_CONFIG_DIR, why);
	}
	return 0;
}

static int read_version_file(int katafd, char **ret)
{
	_cleanup_free_ char *data = NULL;
	size_t len;

	if (kd_read_file(katafd, "VERSION", 256, &data, &len, NULL) < 0)
		return 0;
	data[strcspn(data, "\r\n")] = '\0';
	if (!valid_version(data))
		return 0;
	*ret = TAKE_PTR(data);
	return 1;
}

static int component_stats(const kd_imp_tree *t, kd_import_result *res, kd_error *err)
{
	_cleanup_strv_ char **names = NULL;
	int r;

	for (size_t i = 0; i < t->n; i++)
		if (t->e[i].component && (r = add_unique(&names, t->e[i].component, err)) < 0)
			return r;
	if (names)
		kd_strv_sort(names);
	for (size_t i = 0; names && names[i]; i++) {
		uint64_t files = 0, bytes = 0;
		for (size_t j = 0; j < t->n; j++)
			if (t->e[j].type != KD_ENTRY_DIR && t->e[j].component &&
			    strcmp(t->e[j].component, names[i]) == 0) {
				files++;
				bytes += t->e[j].size;
			}
		if ((r = push_fmt(&res->components, err, "%s (%llu files, %llu bytes)", names[i],
				  (unsigned long long)files, (unsigned long long)bytes)) < 0)
			return r;
		res->files += files;
		res->bytes += bytes;
	}
	return 0;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

typedef struct staging {
	int outdirfd;
	char name[64];
} staging;

static void staging_remove(staging *s)
{
	if (s->outdirfd >= 0 && s->name[0])
		kd_remove_tree(s->outdirfd, s->name, NULL);
	if (s->outdirfd >= 0)
		close(s->outdirfd);
}

static int split_dir(const char *path, char **ret_dir, const char **ret_base, kd_error *err)
{
	char *dir = strdup(path);
	if (!dir)
		return kd_err(err, -ENOMEM, "out of memory");
	char *slash = strrchr(dir, '/');
	*ret_base = slash ? path + (slash - dir) + 1 : path;
	if (slash)
		slash[1] = '\0';
	else
		strcpy(dir, ".");
	*ret_dir = dir;
	return 0;
}

static int do_import(int fd, const char *in_path, const char *out_path, const kd_import_opts *o,
		     kd_import_result *res, kd_error *err)
{
	_cleanup_(staging_remove) staging st = {.outdirfd = -1};
	_cleanup_(kd_imp_tree_done) kd_imp_tree tree = {0};
	_cleanup_free_ char *outdir = NULL, *srcdir = NULL, *spec_path = NULL, *file_version = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_json_ struct json_object *spec = NULL;
	_cleanup_close_ int stagefd = -1, katafd = -1;
	const char *outbase = NULL;
	char name_version[160], name_arch[32];
	struct stat before, after;
	uint8_t bin[KD_SHA256_LEN];
	int r;

	if (fstat(fd, &before) < 0)
		return kd_err_errno(err, negative_errno(), "stat '%s'", in_path);
	if (!S_ISREG(before.st_mode))
		return kd_err(err, -EINVAL, "'%s' is not a regular file", in_path);
	if ((r = kd_sha256_fd(fd, bin, NULL, err)) < 0)
		return kd_err_wrap(err, r, "hash '%s'", in_path);
	kd_hex(bin, sizeof(bin), res->sha256);
	if (o->sha256) {
		if (!kd_sha256_hex_valid(o->sha256))
			return kd_err(err, -EINVAL, "--sha256 '%s' is not 64 lowercase hex digits",
				      o->sha256);
		if (strcmp(o->sha256, res->sha256) != 0)
			return kd_err(err, -EBADMSG, "'%s': sha256 is %s, expected %s", in_path,
				      res->sha256, o->sha256);
	}

	if ((r = split_dir(out_path, &outdir, &outbase, err)) < 0)
		return r;
	if (!*outbase)
		return kd_err(err, -EINVAL, "output '%s' names a directory", out_path);
	st.outdirfd = kd_root_open(outdir, err);
	if (st.outdirfd < 0)
		return kd_err_wrap(err, st.outdirfd, "output directory");
	uint64_t rnd = 0;
	if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		rnd = (uint64_t)getpid() * 2654435761u;
	snprintf(st.name, sizeof(st.name), KD_TMP_PREFIX "import-%016llx", (unsigned long long)rnd);
	if (mkdirat(st.outdirfd, st.name, 0700) < 0) {
		st.name[0] = '\0';
		return kd_err_errno(err, negative_errno(), "create a staging directory in '%s'",
				    outdir);
	}
	stagefd = kd_openat(st.outdirfd, st.name, O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, err);
	if (stagefd < 0)
		return stagefd;
	if ((r = kd_mkdir_p(stagefd, "opt/kata", 0755, NULL, NULL, err)) < 0)
		return r;
	katafd = kd_openat(stagefd, "opt/kata", O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, err);
	if (katafd < 0)
		return katafd;

	const kd_payload_limits *lim = o->limits;
	stage s = {
		.katafd = katafd,
		.tree = &tree,
		.max_entries = lim && lim->max_entries ? lim->max_entries : KD_PAYLOAD_MAX_ENTRIES,
		.max_entry_size = lim && lim->max_entry_size ? lim->max_entry_size
							     : KD_PAYLOAD_MAX_ENTRY_SIZE,
		.max_total = lim && lim->max_total ? lim->max_total : KD_PAYLOAD_MAX_TOTAL,
	};
	if ((r = stage_tarball(fd, in_path, &s, err)) < 0)
		return r;
	if (fstat(fd, &after) < 0)
		return kd_err_errno(err, negative_errno(), "stat '%s'", in_path);
	if (!same_file(&before, &after))
		return kd_err(err, -EAGAIN, "'%s' changed while it was imported", in_path);

	if ((r = kd_import_assign(&tree, err)) < 0)
		return r;
	kd_import_parse_name(in_path, name_version, sizeof(name_version), name_arch,
			     sizeof(name_arch));
	read_version_file(katafd, &file_version);
	const char *version = o->version	? o->version
			      : file_version	? file_version
			      : name_version[0] ? name_version
						: NULL;
	const char *arch = o->arch ? o->arch : name_arch[0] ? name_arch : NULL;
	if (!version)
		return kd_err(err, -EINVAL,
			      "'%s': no version: the tree has no opt/kata/VERSION and the file is "
			      "not named kata-static-<version>-<arch>.tar.*; give --version",
			      in_path);
	if (!arch)
		return kd_err(err, -EINVAL,
			      "'%s': cannot tell the architecture from the file name "
			      "(kata-static-<version>-<arch>.tar.*); give --arch",
			      in_path);
	if (!(res->version = strdup(version)) || !(res->arch = strdup(arch)))
		return kd_err(err, -ENOMEM, "out of memory");
	if ((r = find_shims(katafd, &tree, o, res, err)) < 0 ||
	    (r = component_stats(&tree, res, err)) < 0)
		return kd_err_wrap(err, r, "'%s'", in_path);

	struct json_object *comps = json_object_new_array(), *shims = NULL;
	spec = json_object_new_object();
	if (!spec || !comps || json_object_object_add(spec, "components", comps) < 0) {
		json_object_put(comps);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	if ((r = spec_components(&tree, version, comps, err)) < 0 ||
	    (r = shims_obj(res->shims, res->n_shims, &shims, err)) < 0)
		return r;
	if (json_object_object_add(spec, "shims", shims) < 0) {
		json_object_put(shims);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	if ((r = kd_json_write_atomic(stagefd, "import-spec.json", spec, KD_JSON_CANONICAL, 0644,
				      err)) < 0)
		return r;
	if (asprintf(&srcdir, "%s/%s", outdir, st.name) < 0 ||
	    asprintf(&spec_path, "%s/import-spec.json", srcdir) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	kd_pack_opts po = {
		.spec_path = spec_path,
		.version = version,
		.arch = arch,
		.sign_key = o->sign_key,
		.sign_pubkey = o->sign_pubkey,
		.zstd_level = o->zstd_level,
		.threads = o->threads,
		.mtime = o->mtime,
	};
	if ((r = kd_payload_pack(srcdir, out_path, &po, err)) < 0)
		return r;
	return 0;
}

int kd_import(const char *in_path, const char *out_path, const kd_import_opts *o,
	      kd_import_result *ret, kd_error *err)
{
	static const kd_import_opts defaults = {0};
	kd_import_result res = {0};
	int r;

	_cleanup_close_ int fd = open(in_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "open '%s'", in_path);
	r = do_import(fd, in_path, out_path, o ? o : &defaults, &res, err);
	if (r < 0) {
		/* The digest is worth keeping for the message about a missing --sha256. */
		memcpy(ret->sha256, res.sha256, sizeof(res.sha256));
		kd_import_result_done(&res);
		return kd_err_wrap(err, r, "import");
	}
	*ret = res;
	return 0;
}

/* ---- payload pack without a spec ----------------------------------------------------------- */

static int list_dir(int rootfd, const char *path, char ***ret, bool mark_dirs, kd_error *err)
{
	_cleanup_close_ int fd =
		kd_openat(rootfd, path, O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, err);
	if (fd < 0)
		return fd == -ENOENT ? (kd_err_clear(err), 0) : fd;
	DIR *d = fdopendir(fd);
	if (!d)
		return kd_err_errno(err, negative_errno(), "open directory '%s'", path);
	fd = -1;
	struct dirent *de;
	int r = 0;
	while ((errno = 0, de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		struct stat sb;
		if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (!mark_dirs && S_ISDIR(sb.st_mode))
			continue;
		if ((r = push_fmt(ret, err, "%s%s", de->d_name,
				  mark_dirs && S_ISDIR(sb.st_mode) ? "/" : "")) < 0)
			break;
	}
	closedir(d);
	if (r >= 0 && *ret)
		kd_strv_sort(*ret);
	return r;
}

int kd_import_pack_spec(const char *srcdir, char **ret_spec_path, char ***ret_left_out,
			kd_error *err)
{
	static const char *const dirs[] = {KD_IMPORT_GO_CONFIG_DIR, KD_IMPORT_RS_CONFIG_DIR};
	_cleanup_close_ int rootfd = kd_root_open(srcdir, err), katafd = -1;
	_cleanup_strv_ char **top = NULL, **left_out = NULL;
	_cleanup_json_ struct json_object *spec = json_object_new_object();
	_cleanup_free_ char *json = NULL, *path = NULL;
	struct json_object *comps = json_object_new_array(), *shims = json_object_new_object();
	struct json_object *paths = NULL;
	int r;

	if (rootfd < 0) {
		json_object_put(comps);
		json_object_put(shims);
		return rootfd;
	}
	if (!spec || !comps || !shims || json_object_object_add(spec, "components", comps) < 0) {
		json_object_put(comps);
		json_object_put(shims);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	if (json_object_object_add(spec, "shims", shims) < 0) {
		json_object_put(shims);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	katafd = kd_openat(rootfd, "opt/kata", O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, err);
	if (katafd < 0)
		return kd_err_wrap(err, katafd, "pack '%s'", srcdir);
	if (!(paths = component_obj(comps, "kata", NULL)))
		return kd_err(err, -ENOMEM, "out of memory");
	if ((r = list_dir(katafd, ".", &top, true, err)) < 0)
		return kd_err_wrap(err, r, "pack '%s'", srcdir);
	for (size_t i = 0; top && top[i]; i++)
		if ((r = json_add_string(paths, top[i], err)) < 0)
			return r;
	for (size_t d = 0; d < ELEMENTSOF(dirs); d++) {
		_cleanup_strv_ char **names = NULL;
		char dir[128];
		snprintf(dir, sizeof(dir), "%.*s", (int)strlen(dirs[d]) - 1, dirs[d]);
		if ((r = list_dir(katafd, dir, &names, false, err)) < 0)
			return kd_err_wrap(err, r, "pack '%s'", srcdir);
		for (size_t i = 0; names && names[i]; i++) {
			char rel[KD_PATH_MAX + 1], shim[64];
			const char *reason = NULL;
			bool rust;
			snprintf(rel, sizeof(rel), "%s%s", dirs[d], names[i]);
			int k = kd_import_config_shim(rel, shim, sizeof(shim), &rust, &reason);
			if (k < 0 &&
			    (r = push_fmt(&left_out, err, "%s%s: %s", TOP, rel, reason)) < 0)
				return r;
			if (k <= 0)
				continue;
			struct json_object *a = json_object_new_array();
			if (!a || json_object_object_add(shims, shim, a) < 0) {
				json_object_put(a);
				return kd_err(err, -ENOMEM, "out of memory");
			}
			if ((r = json_add_string(a, "kata", err)) < 0)
				return r;
		}
	}
	if ((r = kd_json_format(spec, KD_JSON_CANONICAL, &json, NULL, err)) < 0)
		return r;
	const char *tmp = getenv("TMPDIR");
	if (asprintf(&path, "%s/kd-pack-spec-XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	_cleanup_close_ int fd = mkstemp(path);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "create '%s'", path);
	size_t len = strlen(json);
	if (write(fd, json, len) != (ssize_t)len) {
		r = kd_err_errno(err, negative_errno(), "write '%s'", path);
		unlink(path);
		return r;
	}
	*ret_spec_path = TAKE_PTR(path);
	*ret_left_out = TAKE_PTR(left_out);
	return 0;
}
