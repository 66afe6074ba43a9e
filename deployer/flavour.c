#include "flavour.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsroot.h"
#include "log.h"
#include "strv.h"

#define VERSION_OUTPUT_MAX 4096

/* Where distributions install unit files; /etc first (an admin's unit shadows the package's). */
static const char *const unit_dirs[] = {"etc/systemd/system", "lib/systemd/system",
					"usr/lib/systemd/system", "usr/local/lib/systemd/system"};

static const struct flavour_info {
	kd_flavour_id id;
	const char *name;
	const char *unit;   /* the unit that tells us it is there, and the one to restart */
	const char *config; /* main config, relative to the root */
	const char *distribution;
} flavours[] = {
	{KD_FLAVOUR_MICROK8S, "microk8s", "snap.microk8s.daemon-containerd.service",
	 "var/snap/microk8s/current/args/containerd-template.toml", "microk8s"},
	{KD_FLAVOUR_RKE2_AGENT, "rke2-agent", "rke2-agent.service",
	 "var/lib/rancher/rke2/agent/etc/containerd/config.toml", "rke2"},
	{KD_FLAVOUR_RKE2_SERVER, "rke2-server", "rke2-server.service",
	 "var/lib/rancher/rke2/agent/etc/containerd/config.toml", "rke2"},
	{KD_FLAVOUR_K3S_AGENT, "k3s-agent", "k3s-agent.service",
	 "var/lib/rancher/k3s/agent/etc/containerd/config.toml", "k3s"},
	{KD_FLAVOUR_K3S, "k3s", "k3s.service",
	 "var/lib/rancher/k3s/agent/etc/containerd/config.toml", "k3s"},
	/* k0s reloads containerd.d by itself: no unit to restart. */
	{KD_FLAVOUR_K0S_CONTROLLER, "k0s-controller", "k0scontroller.service",
	 "etc/k0s/containerd.toml", "k0s"},
	{KD_FLAVOUR_K0S_WORKER, "k0s-worker", "k0sworker.service", "etc/k0s/containerd.toml",
	 "k0s"},
	{KD_FLAVOUR_CRIO, "crio", "crio.service", "etc/crio/crio.conf", "k8s"},
	{KD_FLAVOUR_CONTAINERD, "containerd", "containerd.service", "etc/containerd/config.toml",
	 "k8s"},
};

static const struct flavour_info *info_of(kd_flavour_id id)
{
	for (size_t i = 0; i < ELEMENTSOF(flavours); i++)
		if (flavours[i].id == id)
			return &flavours[i];
	return NULL;
}

const char *kd_flavour_name(kd_flavour_id id)
{
	const struct flavour_info *fi = info_of(id);
	return fi ? fi->name : "none";
}

bool kd_flavour_is_k3s_like(kd_flavour_id id)
{
	return id == KD_FLAVOUR_K3S || id == KD_FLAVOUR_K3S_AGENT || id == KD_FLAVOUR_RKE2_SERVER ||
	       id == KD_FLAVOUR_RKE2_AGENT;
}

bool kd_flavour_is_k0s(kd_flavour_id id)
{
	return id == KD_FLAVOUR_K0S_CONTROLLER || id == KD_FLAVOUR_K0S_WORKER;
}

static bool exists(int rootfd, const char *path)
{
	struct stat st;
	return kd_lstat(rootfd, path, &st, NULL) == 0;
}

/* A runtime's config directory tells it is installed only when something is in it: an empty
 * one is what a DaemonSet's DirectoryOrCreate hostPath leaves on a node without that runtime. */
static bool config_dir_used(int rootfd, const char *path)
{
	struct stat st;
	if (kd_lstat(rootfd, path, &st, NULL) < 0)
		return false;
	if (!S_ISDIR(st.st_mode))
		return true;
	int fd = kd_openat(rootfd, path, O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, NULL);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return true; /* unreadable: assume it is used */
	}
	bool used = false;
	for (struct dirent *de; !used && (de = readdir(d));)
		used = strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
	closedir(d);
	return used;
}

static bool has_unit(int rootfd, const char *unit)
{
	char path[KD_PATH_MAX];
	for (size_t i = 0; i < ELEMENTSOF(unit_dirs); i++) {
		snprintf(path, sizeof(path), "%s/%s", unit_dirs[i], unit);
		if (exists(rootfd, path))
			return true;
	}
	return false;
}

int kd_version_parse(const char *s, int *ret_major, int *ret_minor, int *ret_patch)
{
	for (const char *p = s; p && *p; p++) {
		if (!isdigit((unsigned char)*p) ||
		    (p > s && isalnum((unsigned char)p[-1]) && p[-1] != 'v' && p[-1] != 'V'))
			continue;
		char *end;
		long maj = strtol(p, &end, 10), min = 0, pat = 0;
		if (*end != '.' || !isdigit((unsigned char)end[1]))
			continue;
		min = strtol(end + 1, &end, 10);
		if (*end == '.' && isdigit((unsigned char)end[1]))
			pat = strtol(end + 1, &end, 10);
		if (maj > 1000 || min > 100000 || pat > 100000)
			continue;
		*ret_major = (int)maj;
		*ret_minor = (int)min;
		*ret_patch = (int)pat;
		return 0;
	}
	return -EINVAL;
}

int kd_version_check(const char *what, const char *s, kd_error *err)
{
	int a, b, c;
	if (kd_version_parse(s, &a, &b, &c) == 0)
		return 0;
	/* The same scan without the range check: an x.y that is there but too large. */
	for (const char *p = s; p && *p; p++) {
		if (!isdigit((unsigned char)*p) ||
		    (p > s && isalnum((unsigned char)p[-1]) && p[-1] != 'v' && p[-1] != 'V'))
			continue;
		const char *e = p + strspn(p, "0123456789");
		if (*e == '.' && isdigit((unsigned char)e[1]))
			return kd_err(err, -EINVAL,
				      "%s '%s': a version number is out of range (major at most "
				      "1000, minor and patch at most 100000)",
				      what, s);
	}
	return kd_err(err, -EINVAL,
		      "%s '%s' has no x.y version number (e.g. 1.7, 1.7.2 or containerd://1.7.2)",
		      what, s);
}

bool kd_flavour_at_least(const kd_flavour *f, int major, int minor)
{
	if (f->major < 0)
		return false;
	return f->major > major || (f->major == major && f->minor >= minor);
}

/* `<binary> --version`, run only when the root is the host we run on. */
static int ask_binary(const char *binary, char *out, size_t size, kd_error *err)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return kd_err_errno(err, negative_errno(), "pipe");
	pid_t pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return kd_err_errno(err, negative_errno(), "fork");
	}
	if (pid == 0) {
		dup2(pfd[1], STDOUT_FILENO);
		execl(binary, binary, "--version", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	size_t n = 0;
	ssize_t k;
	while (n + 1 < size && (k = read(pfd[0], out + n, size - 1 - n)) > 0)
		n += (size_t)k;
	out[n] = '\0';
	close(pfd[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return kd_err(err, -EIO, "'%s --version' failed", binary);
	return 0;
}

static const char *host_binary(const char *name)
{
	static char path[64];
	const char *dirs[] = {"/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin"};
	for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
		snprintf(path, sizeof(path), "%s/%s", dirs[i], name);
		if (access(path, X_OK) == 0)
			return path;
	}
	return NULL;
}

static bool distribution_allows(const char *distribution, kd_flavour_id id)
{
	if (!distribution || !strcmp(distribution, "auto") || id == KD_FLAVOUR_CRIO)
		return true;
	const struct flavour_info *fi = info_of(id);
	return fi && !strcmp(fi->distribution, distribution);
}

int kd_flavour_detect(int rootfd, const kd_flavour_opts *o, kd_flavour *ret, kd_error *err)
{
	kd_flavour f = {.major = -1};
	const char *rt = o->runtime ? o->runtime : "auto";
	const char *dist = o->distribution;
	static const char *const dists[] = {"auto", "k8s", "k3s", "rke2", "k0s", "microk8s"};
	bool known = false;
	for (size_t i = 0; i < ELEMENTSOF(dists); i++)
		known = known || (dist && !strcmp(dist, dists[i]));
	if (dist && !known)
		return kd_err(err, -EINVAL,
			      "unknown distribution '%s' (k8s, k3s, rke2, k0s, microk8s, auto)",
			      dist);
	if (strcmp(rt, "auto") && strcmp(rt, "containerd") && strcmp(rt, "crio") &&
	    strcmp(rt, "none"))
		return kd_err(err, -EINVAL, "unknown runtime '%s' (containerd, crio, auto, none)",
			      rt);
	if (!strcmp(rt, "none")) {
		*ret = f;
		return 0;
	}

	/* The distributions first (they carry their own containerd), then plain runtimes. */
	kd_flavour_id found = KD_FLAVOUR_NONE;
	if (strcmp(rt, "crio") != 0) {
		for (size_t i = 0; i < ELEMENTSOF(flavours) && !found; i++) {
			const struct flavour_info *fi = &flavours[i];
			if (fi->id == KD_FLAVOUR_CRIO || fi->id == KD_FLAVOUR_CONTAINERD)
				continue;
			if (has_unit(rootfd, fi->unit))
				found = fi->id;
		}
	}
	bool ctd = has_unit(rootfd, "containerd.service") ||
		   config_dir_used(rootfd, "etc/containerd") ||
		   exists(rootfd, "usr/bin/containerd") ||
		   exists(rootfd, "usr/local/bin/containerd");
	bool crio = has_unit(rootfd, "crio.service") || config_dir_used(rootfd, "etc/crio") ||
		    exists(rootfd, "usr/bin/crio") || exists(rootfd, "usr/local/bin/crio");
	if (!found) {
		if (!strcmp(rt, "crio"))
			found = KD_FLAVOUR_CRIO;
		else if (!strcmp(rt, "containerd"))
			found = KD_FLAVOUR_CONTAINERD;
		else if (ctd && crio)
			return kd_err(err, -EINVAL,
				      "both containerd and CRI-O are on this host; choose one with "
				      "--runtime containerd|crio");
		else if (ctd)
			found = KD_FLAVOUR_CONTAINERD;
		else if (crio)
			found = KD_FLAVOUR_CRIO;
	}
	if (!found) {
		if (dist && strcmp(dist, "auto") && strcmp(dist, "k8s"))
			return kd_err(
				err, -ENOENT,
				"distribution '%s' was declared, but none of its systemd units "
				"is on this host",
				dist);
		*ret = f;
		return 0;
	}
	if (!distribution_allows(dist, found))
		return kd_err(
			err, -EINVAL,
			"the host runs %s, but the distribution was declared as '%s'; use "
			"--distribution %s (a wrong one writes config where the runtime never "
			"reads it)",
			kd_flavour_name(found), dist, info_of(found)->distribution);
	const struct flavour_info *fi = info_of(found);
	f.id = found;
	f.crio = found == KD_FLAVOUR_CRIO;
	snprintf(f.name, sizeof(f.name), "%s", fi->name);
	if (!kd_flavour_is_k0s(found))
		snprintf(f.unit, sizeof(f.unit), "%s", fi->unit);
	const char *cfg = o->config_path ? o->config_path : fi->config;
	while (*cfg == '/')
		cfg++;
	if (!*cfg || !kd_path_is_safe(cfg))
		return kd_err(err, -EINVAL, "config path '%s' is not a clean path", cfg);
	snprintf(f.config, sizeof(f.config), "%s", cfg);
	snprintf(f.config_dir, sizeof(f.config_dir), "%s", cfg);
	char *slash = strrchr(f.config_dir, '/');
	if (slash)
		*slash = '\0';
	else
		f.config_dir[0] = '\0';

	/* The version: told by the caller, else the binary of the host we run on. */
	if (o->runtime_version) {
		if (kd_version_parse(o->runtime_version, &f.major, &f.minor, &f.patch) < 0)
			return kd_version_check("runtime version", o->runtime_version, err);
	} else if (o->binary || (o->root_is_host && found == KD_FLAVOUR_CONTAINERD) ||
		   (o->root_is_host && found == KD_FLAVOUR_CRIO)) {
		const char *bin =
			o->binary ? o->binary : host_binary(f.crio ? "crio" : "containerd");
		char out[VERSION_OUTPUT_MAX];
		kd_error e2 = {0};
		if (bin && ask_binary(bin, out, sizeof(out), &e2) == 0 &&
		    kd_version_parse(out, &f.major, &f.minor, &f.patch) == 0)
			kd_debug("%s version %d.%d.%d (from %s)", f.name, f.major, f.minor, f.patch,
				 bin);
		else
			kd_warn("could not learn the %s version%s%s; treating it as unknown",
				f.name, bin ? " from " : "", bin ? bin : "");
	}
	*ret = f;
	return 0;
}

int kd_containerd_root_info(const kd_toml_doc *doc, const char *name, int *ret_version,
			    char ***ret_imports, kd_error *err)
{
	const kd_toml_node *root = kd_toml_root(doc);
	const kd_toml_node *v = kd_toml_get(root, "version");
	int64_t version = 1;
	unsigned line, col;
	if (v && kd_toml_get_int(v, &version) < 0) {
		kd_toml_position(doc, v, &line, &col);
		return kd_err(err, -EINVAL, "%s:%u:%u: 'version' must be an integer, not %s", name,
			      line, col, kd_toml_type_name(kd_toml_type_of(v)));
	}
	char **imports = calloc(1, sizeof(char *));
	if (!imports)
		return -ENOMEM;
	const kd_toml_node *im = kd_toml_get(root, "imports");
	if (im && kd_toml_type_of(im) != KD_TOML_ARRAY) {
		kd_strv_free(imports);
		kd_toml_position(doc, im, &line, &col);
		return kd_err(err, -EINVAL, "%s:%u:%u: 'imports' must be an array of strings", name,
			      line, col);
	}
	size_t n = im ? kd_toml_count(im) : 0;
	if (n > KD_CONTAINERD_MAX_IMPORTS) {
		kd_strv_free(imports);
		kd_toml_position(doc, im, &line, &col);
		return kd_err(err, -E2BIG, "%s:%u:%u: more than %d imports", name, line, col,
			      KD_CONTAINERD_MAX_IMPORTS);
	}
	for (size_t i = 0; i < n; i++) {
		const kd_toml_node *e = kd_toml_at(im, i);
		const char *s;
		if (kd_toml_get_string(e, &s, NULL) < 0) {
			kd_strv_free(imports);
			kd_toml_position(doc, e, &line, &col);
			return kd_err(err, -EINVAL,
				      "%s:%u:%u: imports entry %zu is %s, not a string", name, line,
				      col, i + 1, kd_toml_type_name(kd_toml_type_of(e)));
		}
		if (kd_strv_push(&imports, s) < 0) {
			kd_strv_free(imports);
			return -ENOMEM;
		}
	}
	*ret_version = (int)(version < 0 || version > 1000 ? -1 : version);
	*ret_imports = imports;
	return 0;
}
