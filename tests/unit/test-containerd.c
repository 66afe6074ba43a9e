/* deployer's runtime-config modules without a runtime: flavour detection + strategy per
 * situation (containerd.c), the exact text of rendered handlers for config v2 and v3, SystemdCgroup
 * inheritance, the CRI-O drop-in (crio.c), Kata's per-shim drop-ins (kataconfig.c), and through
 * kd_runtime_plan the suffix naming and snapshotter mapping (runtime.c). Host roots are temp dirs.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deployer/containerd.h"
#include "deployer/crio.h"
#include "deployer/kataconfig.h"
#include "deployer/runtime.h"
#include "fsroot.h"
#include "strv.h"
#include "tap.h"

static char base[] = "/tmp/kd-test-containerd-XXXXXX";
static int ncase;

/* A fresh root; files given as path, text, path, text, ..., NULL. */
static int make_root(const char *first, ...)
{
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/%d", base, ++ncase);
	mkdir(dir, 0755);
	int rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	va_list ap;
	va_start(ap, first);
	for (const char *p = first; p; p = va_arg(ap, const char *)) {
		const char *text = va_arg(ap, const char *);
		char d[512];
		snprintf(d, sizeof(d), "%s", p);
		char *s = strrchr(d, '/');
		if (s) {
			*s = '\0';
			kd_mkdir_p(rootfd, d, 0755, NULL, NULL, NULL);
		}
		kd_write_atomic(rootfd, p, text, strlen(text), 0644, NULL);
	}
	va_end(ap);
	return rootfd;
}

/* Detect with a given version, then choose; returns the strategy or a negative errno. */
static int strategy(int rootfd, const char *version, const char *suffix, kd_ctd_plan *p,
		    kd_error *err)
{
	kd_flavour f;
	kd_flavour_opts fo = {.runtime_version = version};
	int r = kd_flavour_detect(rootfd, &fo, &f, err);
	if (r < 0)
		return r;
	r = kd_containerd_strategy(rootfd, &f, suffix, p, err);
	close(rootfd);
	return r < 0 ? r : (int)p->strategy;
}

static const char v2_systemd[] =
	"version = 2\n"
	"[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n"
	"  SystemdCgroup = true\n";
static const char v3_plain[] = "version = 3\n";
static const kd_handler qemu_h = {"kata-qemu",
				  "qemu",
				  "/opt/kata/bin/containerd-shim-kata-v2",
				  "/opt/kata/runtimes/qemu/configuration-qemu.toml",
				  "",
				  false,
				  KD_VARIANT_PLAIN};

TEST(test_plugin_ids)
{
	CHECK_STR(kd_containerd_runtime_plugin(1), "cri");
	CHECK_STR(kd_containerd_runtime_plugin(2), "io.containerd.grpc.v1.cri");
	CHECK_STR(kd_containerd_runtime_plugin(3), "io.containerd.cri.v1.runtime");
	CHECK_STR(kd_containerd_runtime_plugin(4), "io.containerd.cri.v1.runtime");
}

TEST(test_strategy_containerd_versions)
{
	kd_ctd_plan p;
	kd_error err = {0};
	/* 1.6 and 1.7: the main file in place. */
	CHECK_INT(strategy(make_root("etc/containerd/config.toml", v2_systemd, NULL), "1.6.20",
			   NULL, &p, &err),
		  KD_CTD_INPLACE);
	CHECK_STR(p.target, "etc/containerd/config.toml");
	CHECK_INT(p.version, 2);
	CHECK_STR(p.why, "containerd 1.6 replaces whole plugin tables from imports: in-place edit "
			 "of /etc/containerd/config.toml");
	CHECK_INT(strategy(make_root("etc/containerd/config.toml", v2_systemd, NULL), "v1.7.22",
			   NULL, &p, &err),
		  KD_CTD_INPLACE);
	/* Unknown version: the strategy safe for all. */
	CHECK_INT(strategy(make_root("etc/containerd/config.toml", v2_systemd, NULL), NULL, NULL,
			   &p, &err),
		  KD_CTD_INPLACE);
	CHECK_STR(p.why, "containerd version unknown (safe for every version): in-place edit of "
			 "/etc/containerd/config.toml");
	/* 2.x without an import covering our drop-in: drop-in + imports entry. */
	CHECK_INT(strategy(make_root("etc/containerd/config.toml", v3_plain, NULL), "2.2.9", NULL,
			   &p, &err),
		  KD_CTD_DROPIN_IMPORT);
	CHECK_STR(p.target, "etc/containerd/conf.d/kata-deploy.toml");
	CHECK_STR(p.import_entry, "/etc/containerd/conf.d/kata-deploy.toml");
	CHECK_INT(p.version, 3);
	/* 2.x whose config already imports conf.d (2.2's default config): no edit of main. */
	CHECK_INT(strategy(make_root("etc/containerd/config.toml",
				     "version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n",
				     NULL),
			   "2.2.0", NULL, &p, &err),
		  KD_CTD_DROPIN);
	CHECK_STR(p.import_entry, "");
	/* A drop-in keeps the root file's version (containerd PR #12891). */
	CHECK_INT(strategy(make_root("etc/containerd/config.toml", v2_systemd, NULL), "2.1.0",
			   "blue", &p, &err),
		  KD_CTD_DROPIN_IMPORT);
	CHECK_INT(p.version, 2);
	CHECK_STR(p.target, "etc/containerd/conf.d/kata-deploy-blue.toml");
	/* No config: a minimal one, v2 for 1.x, v3 for 2.x. */
	CHECK_INT(strategy(make_root("etc/containerd/.keep", "", NULL), "1.7.0", NULL, &p, &err),
		  KD_CTD_CREATE_MAIN);
	CHECK_INT(p.version, 2);
	CHECK_INT(strategy(make_root("etc/containerd/.keep", "", NULL), "2.0.0", NULL, &p, &err),
		  KD_CTD_CREATE_MAIN);
	CHECK_INT(p.version, 3);
	CHECK_STR(kd_containerd_skeleton(3), "# Written by kata-deploy: Kata Containers runtime "
					     "handlers.\n# Removed by 'kata-deploy uninstall'.\n"
					     "version = 3\n");
}

TEST(test_strategy_1x_imports)
{
	/* 1.x replaces the CRI table from the last import that has one: that file gets ours. */
	kd_ctd_plan p;
	kd_error err = {0};
	CHECK_INT(strategy(make_root("etc/containerd/config.toml",
				     "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n",
				     "etc/containerd/conf.d/10-cri.toml", v2_systemd, NULL),
			   "1.6.20", NULL, &p, &err),
		  KD_CTD_INPLACE);
	CHECK_STR(p.target, "etc/containerd/conf.d/10-cri.toml");
}

TEST(test_strategy_distributions)
{
	kd_ctd_plan p;
	kd_error err = {0};
	const char *k3s_cfg = "var/lib/rancher/k3s/agent/etc/containerd/config.toml";
	/* k3s 1.x rendered config, no template: a template of base + ours. */
	CHECK_INT(
		strategy(make_root("etc/systemd/system/k3s.service", "", k3s_cfg, v2_systemd, NULL),
			 NULL, NULL, &p, &err),
		KD_CTD_TEMPLATE);
	CHECK_STR(p.target, "var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl");
	/* k3s v3 importing config-v3.toml.d: a drop-in there. */
	CHECK_INT(strategy(make_root("lib/systemd/system/k3s-agent.service", "", k3s_cfg,
				     "version = 3\nimports = [\"/var/lib/rancher/k3s/agent/etc/"
				     "containerd/config-v3.toml.d/*.toml\"]\n",
				     NULL),
			   NULL, "x", &p, &err),
		  KD_CTD_DROPIN);
	CHECK_STR(p.target,
		  "var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.d/kata-deploy-x.toml");
	/* k3s v3 with an admin template that does not import the dir: refused, with the fix. */
	CHECK_INT(strategy(make_root("etc/systemd/system/k3s.service", "", k3s_cfg, v3_plain,
				     "var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl",
				     "{{ template \"base\" . }}\n", NULL),
			   NULL, NULL, &p, &err),
		  -EINVAL);
	CHECK(strstr(err.msg, "add 'imports = [\"/var/lib/rancher/k3s/agent/etc/containerd/"
			      "config-v3.toml.d/*.toml\"]' to the template") != NULL);
	/* rke2 without a rendered config: start it once. */
	kd_err_clear(&err);
	CHECK_INT(strategy(make_root("etc/systemd/system/rke2-server.service", "", NULL), NULL,
			   NULL, &p, &err),
		  -ENOENT);
	CHECK(strstr(err.msg, "start rke2-server once") != NULL);
	/* k0s: containerd.d, no main edit; v3 for 2.x. */
	CHECK_INT(strategy(make_root("etc/systemd/system/k0sworker.service", "", NULL), "2.1.4",
			   NULL, &p, &err),
		  KD_CTD_DROPIN);
	CHECK_STR(p.target, "etc/k0s/containerd.d/kata-deploy.toml");
	CHECK_INT(p.version, 3);
	/* microk8s: its template, in place. */
	CHECK_INT(strategy(make_root("etc/systemd/system/snap.microk8s.daemon-containerd.service",
				     "", "var/snap/microk8s/current/args/containerd-template.toml",
				     v2_systemd, NULL),
			   "1.6.28", NULL, &p, &err),
		  KD_CTD_INPLACE);
	CHECK_STR(p.target, "var/snap/microk8s/current/args/containerd-template.toml");
}

TEST(test_strategy_k3s_1x_imports)
{
	/* A rendered v2 config importing config.toml.d (an admin template that adds the line):
	 * containerd 1.x would replace rke2's whole CRI table from our drop-in (containerd#5837),
	 * so only a known 2.x gets the drop-in; 1.x and unknown versions get the template. */
	kd_ctd_plan p;
	kd_error err = {0};
	const char *unit = "etc/systemd/system/rke2-server.service";
	const char *cfg = "var/lib/rancher/rke2/agent/etc/containerd/config.toml";
	const char *tmpl = "var/lib/rancher/rke2/agent/etc/containerd/config.toml.tmpl";
	const char *v2_imports =
		"version = 2\nimports = [\"/var/lib/rancher/rke2/agent/etc/containerd/"
		"config.toml.d/*.toml\"]\n"
		"[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n"
		"  SystemdCgroup = true\n";
	CHECK_INT(strategy(make_root(unit, "", cfg, v2_imports, NULL), "1.7.27", NULL, &p, &err),
		  KD_CTD_TEMPLATE);
	CHECK_STR(p.target, tmpl);
	CHECK(strstr(p.why, "no drop-in in config.toml.d: containerd 1.7 replaces the CRI table "
			    "from imports (containerd#5837)") != NULL);
	CHECK_INT(strategy(make_root(unit, "", cfg, v2_imports, NULL), NULL, NULL, &p, &err),
		  KD_CTD_TEMPLATE);
	CHECK_INT(strategy(make_root(unit, "", cfg, v2_imports, NULL), "2.1.5", NULL, &p, &err),
		  KD_CTD_DROPIN);
	CHECK_STR(p.target,
		  "var/lib/rancher/rke2/agent/etc/containerd/config.toml.d/kata-deploy.toml");
	CHECK_INT(p.version, 2);
	/* The admin's Go template that adds the import: 1.x cannot take ours safely. */
	CHECK_INT(strategy(make_root(unit, "", cfg, v2_imports, tmpl,
				     "imports = [\"/var/lib/rancher/rke2/agent/etc/containerd/"
				     "config.toml.d/*.toml\"]\n{{ template \"base\" . }}\n",
				     NULL),
			   NULL, NULL, &p, &err),
		  -EINVAL);
	CHECK(strstr(err.msg, "is a Go template we cannot edit safely") != NULL);
	CHECK(strstr(err.msg, "give --runtime-version if it is 2.x") != NULL);
	/* The admin's TOML template (renders as itself): edited in place, and it is the file
	 * containerd's loader gets (the rendered config.toml only follows at rke2's restart). */
	kd_err_clear(&err);
	CHECK_INT(strategy(make_root(unit, "", cfg, v2_imports, tmpl, v2_imports, NULL), "1.7.27",
			   NULL, &p, &err),
		  KD_CTD_INPLACE);
	CHECK_STR(p.target, tmpl);
	CHECK_STR(p.main, tmpl);
}

TEST(test_strategy_k3s_own_v3_template)
{
	/* containerd 2.x without the config-v3.toml.d import: our template. Reinstalling finds it
	 * and keeps it; an admin's template (even one that starts with the base line) is refused
	 * with the imports line to add. */
	kd_ctd_plan p;
	kd_error err = {0};
	const char *unit = "etc/systemd/system/rke2-server.service";
	const char *cfg = "var/lib/rancher/rke2/agent/etc/containerd/config.toml";
	const char *tmpl = "var/lib/rancher/rke2/agent/etc/containerd/config-v3.toml.tmpl";
	const char *ours = KD_K3S_TEMPLATE_BASE
		"[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.kata-qemu]\n"
		"runtime_type = \"io.containerd.kata-qemu.v2\"\n\n"
		"[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.kata-qemu.options]\n"
		"ConfigPath = \"/opt/kata/runtimes/qemu/configuration-qemu.toml\"\n\n"
		"[plugins.\"io.containerd.cri.v1.images\".runtime_platforms.kata-qemu]\n"
		"snapshotter = \"nydus\"\n";
	CHECK_INT(strategy(make_root(unit, "", cfg, v3_plain, NULL), "2.1.5", NULL, &p, &err),
		  KD_CTD_TEMPLATE);
	CHECK_STR(p.target, tmpl);
	CHECK_INT(strategy(make_root(unit, "", cfg, v3_plain, tmpl, ours, NULL), "2.1.5", NULL, &p,
			   &err),
		  KD_CTD_TEMPLATE);
	CHECK_STR(p.target, tmpl);
	const char *admin[] = {
		KD_K3S_TEMPLATE_BASE
		"[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n"
		"  cgroup_writable = true\n",
		KD_K3S_TEMPLATE_BASE
		"[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.kata-qemu]\n"
		"[debug]\nlevel = \"info\"\n",
		KD_K3S_TEMPLATE_BASE,
		"{{ template \"base\" . }}\n{{ if .NodeConfig.AgentConfig.Snapshotter }}\n"
		"[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.kata-qemu]\n{{ end }}\n",
	};
	for (size_t i = 0; i < sizeof(admin) / sizeof(admin[0]); i++) {
		kd_err_clear(&err);
		CHECK_INT(strategy(make_root(unit, "", cfg, v3_plain, tmpl, admin[i], NULL),
				   "2.1.5", NULL, &p, &err),
			  -EINVAL);
		CHECK(strstr(err.msg,
			     "add 'imports = [\"/var/lib/rancher/rke2/agent/etc/"
			     "containerd/config-v3.toml.d/*.toml\"]' to the template") != NULL);
	}
}

TEST(test_strategy_refusals)
{
	kd_ctd_plan p;
	kd_error err = {0};
	CHECK_INT(strategy(make_root("etc/containerd/config.toml", "version = 9\n", NULL), "1.7.0",
			   NULL, &p, &err),
		  -EPROTONOSUPPORT);
	CHECK(strstr(err.msg, "config version 9 is not one this kata-deploy knows (1 to 4)"));
	kd_err_clear(&err);
	CHECK(strategy(make_root("etc/containerd/config.toml", "version = 2\n[a\n", NULL), "1.7.0",
		       NULL, &p, &err) < 0);
	CHECK(strstr(err.msg, "/etc/containerd/config.toml:2:") != NULL);
	kd_err_clear(&err);
	CHECK(strategy(
		      make_root("etc/containerd/config.toml", "version = 2\nimports = [1]\n", NULL),
		      "2.0.0", NULL, &p, &err) < 0);
	CHECK(strstr(err.msg, "/etc/containerd/config.toml:2:") != NULL);
	/* Both runtimes and no --runtime: ask. */
	kd_err_clear(&err);
	kd_flavour f;
	kd_flavour_opts fo = {0};
	int rootfd = make_root("etc/containerd/config.toml", "", "etc/crio/crio.conf", "", NULL);
	CHECK(kd_flavour_detect(rootfd, &fo, &f, &err) < 0);
	CHECK(strstr(err.msg, "--runtime") != NULL);
	fo.runtime = "crio";
	CHECK_INT(kd_flavour_detect(rootfd, &fo, &f, &err), 0);
	CHECK(f.crio);
	close(rootfd);
}

TEST(test_runc_source_2x_imports)
{
	/* 2.x: runc's options set in an imported file win over the main file's; our own drop-in
	 * is not a source. */
	int rootfd = make_root(
		"etc/containerd/config.toml",
		"version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n"
		"[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n"
		"SystemdCgroup = false\n",
		"etc/containerd/conf.d/10-cri.toml", v2_systemd,
		"etc/containerd/conf.d/kata-deploy.toml",
		"version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc."
		"options]\nSystemdCgroup = false\n",
		NULL);
	kd_error err = {0};
	char *text = NULL;
	size_t len;
	kd_toml_doc *main_doc = NULL, *src = NULL;
	CHECK_INT(kd_read_file(rootfd, "etc/containerd/config.toml", 4096, &text, &len, &err), 0);
	CHECK_INT(kd_toml_parse("main", text, len, &main_doc, &err), 0);
	CHECK_INT(kd_containerd_runc_source(rootfd, "etc/containerd/config.toml", main_doc, 2,
					    "etc/containerd/conf.d/kata-deploy.toml", &src, &err),
		  0);
	CHECK(src != NULL);
	int r;
	if (src) {
		kd_toml_doc *d = NULL;
		kd_toml_parse("d", "version = 2\n", 12, &d, &err);
		r = kd_containerd_add_handlers(d, 2, &qemu_h, 1, src, false, NULL, &err);
		CHECK_INT(r, 0);
		CHECK(strstr(kd_toml_text(d, NULL), "SystemdCgroup = true\n") != NULL);
		kd_toml_free(d);
	}
	kd_toml_free(src);
	kd_toml_free(main_doc);
	free(text);
	close(rootfd);
}

static const kd_handler qemu = {"kata-qemu",
				"qemu",
				"/opt/kata/bin/containerd-shim-kata-v2",
				"/opt/kata/runtimes/qemu/configuration-qemu.toml",
				"",
				false,
				KD_VARIANT_PLAIN};
static const kd_handler gpu = {"kata-nvidia-gpu-x",
			       "nvidia-gpu",
			       "/opt/kata/bin/containerd-shim-kata-v2",
			       "/opt/kata/runtimes/nvidia-gpu/configuration-nvidia-gpu.toml",
			       "nydus",
			       false,
			       KD_VARIANT_PLAIN};

static char *render(const char *text, int version, const kd_handler *h, size_t n,
		    const char *inherit, bool debug, char ***tables, int *ret)
{
	kd_error err = {0};
	kd_toml_doc *d = NULL, *inh = NULL;
	*ret = kd_toml_parse("t", text, strlen(text), &d, &err);
	if (*ret < 0)
		return NULL;
	if (inherit && kd_toml_parse("i", inherit, strlen(inherit), &inh, &err) < 0)
		return NULL;
	*ret = kd_containerd_add_handlers(d, version, h, n, inh, debug, tables, &err);
	char *out = strdup(kd_toml_text(d, NULL));
	kd_toml_free(d);
	kd_toml_free(inh);
	return out;
}

TEST(test_render_v2_inherits_systemd_cgroup)
{
	_cleanup_strv_ char **t = calloc(1, sizeof(char *));
	int r;
	_cleanup_free_ char *out = render(v2_systemd, 2, &qemu, 1, v2_systemd, true, &t, &r);
	CHECK_INT(r, 0);
	CHECK_STR(out,
		  "version = 2\n"
		  "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n"
		  "  SystemdCgroup = true\n"
		  "\n"
		  "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.kata-qemu]\n"
		  "  runtime_type = \"io.containerd.kata-qemu.v2\"\n"
		  "  runtime_path = \"/opt/kata/bin/containerd-shim-kata-v2\"\n"
		  "  privileged_without_host_devices = true\n"
		  "  pod_annotations = [\"io.katacontainers.*\"]\n"
		  "  container_annotations = [\"io.kubernetes.container.terminationMessage*\"]\n"
		  "\n"
		  "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.kata-qemu.options]\n"
		  "  ConfigPath = \"/opt/kata/runtimes/qemu/configuration-qemu.toml\"\n"
		  "  SystemdCgroup = true\n"
		  "\n"
		  "[debug]\n"
		  "  level = \"debug\"\n");
	CHECK_INT(kd_strv_length(t), 2);
	CHECK_STR(t[0], "plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.kata-qemu");
	CHECK_STR(t[1], "debug");
}

TEST(test_render_systemd_cgroup_sources)
{
	int r;
	/* false is copied as false; absent stays absent. */
	const char *f = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes."
			"runc.options]\nSystemdCgroup = false\n";
	_cleanup_free_ char *a = render("version = 2\n", 2, &qemu, 1, f, false, NULL, &r);
	CHECK(a && strstr(a, "SystemdCgroup = false\n"));
	_cleanup_free_ char *b =
		render("version = 2\n", 2, &qemu, 1, "version = 2\n", false, NULL, &r);
	CHECK(b && !strstr(b, "SystemdCgroup"));
	/* default_runtime_name names the runc runtime whose options we copy. */
	const char *named = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n"
			    "default_runtime_name = \"crun\"\n"
			    "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.crun."
			    "options]\nSystemdCgroup = true\n";
	_cleanup_free_ char *c = render("version = 2\n", 2, &qemu, 1, named, false, NULL, &r);
	CHECK(c && strstr(c, "SystemdCgroup = true\n"));
	/* A v3 file reads v3 plugin ids. */
	const char *v3 = "version = 3\n[plugins.\"io.containerd.cri.v1.runtime\".containerd."
			 "runtimes.runc.options]\nSystemdCgroup = true\n";
	_cleanup_free_ char *d = render("version = 3\n", 3, &qemu, 1, v3, false, NULL, &r);
	CHECK(d && strstr(d, "SystemdCgroup = true\n"));
}

TEST(test_render_v3_snapshotter_and_gpu)
{
	_cleanup_strv_ char **t = calloc(1, sizeof(char *));
	kd_handler h[2] = {qemu, gpu};
	int r;
	_cleanup_free_ char *out = render(v3_plain, 3, h, 2, NULL, false, &t, &r);
	CHECK_INT(r, 0);
	CHECK_STR(
		out,
		"version = 3\n"
		"\n"
		"[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.kata-qemu]\n"
		"runtime_type = \"io.containerd.kata-qemu.v2\"\n"
		"runtime_path = \"/opt/kata/bin/containerd-shim-kata-v2\"\n"
		"privileged_without_host_devices = true\n"
		"pod_annotations = [\"io.katacontainers.*\"]\n"
		"container_annotations = [\"io.kubernetes.container.terminationMessage*\"]\n"
		"\n"
		"[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.kata-qemu.options]\n"
		"ConfigPath = \"/opt/kata/runtimes/qemu/configuration-qemu.toml\"\n"
		"\n"
		"[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.kata-nvidia-gpu-x]\n"
		"runtime_type = \"io.containerd.kata-nvidia-gpu-x.v2\"\n"
		"runtime_path = \"/opt/kata/bin/containerd-shim-kata-v2\"\n"
		"privileged_without_host_devices = true\n"
		/* upstream 4.x: no cdi.k8s.io entry for nvidia-gpu shims either */
		"pod_annotations = [\"io.katacontainers.*\"]\n"
		"container_annotations = [\"io.kubernetes.container.terminationMessage*\"]\n"
		"snapshotter = \"nydus\"\n"
		"\n"
		"[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.kata-nvidia-gpu-x."
		"options]\n"
		"ConfigPath = \"/opt/kata/runtimes/nvidia-gpu/configuration-nvidia-gpu.toml\"\n"
		"\n"
		"[plugins.\"io.containerd.cri.v1.images\".runtime_platforms.kata-nvidia-gpu-x]\n"
		"snapshotter = \"nydus\"\n");
	CHECK_INT(kd_strv_length(t), 3);
	CHECK_STR(t[2],
		  "plugins.\"io.containerd.cri.v1.images\".runtime_platforms.kata-nvidia-gpu-x");
	/* v2 has no runtime_platforms: the snapshotter stays on the handler only. */
	_cleanup_free_ char *v2 = render("version = 2\n", 2, &gpu, 1, NULL, false, NULL, &r);
	CHECK(v2 && strstr(v2, "snapshotter = \"nydus\"") && !strstr(v2, "runtime_platforms"));
}

/* The snapshotter setup's tables: added and recorded when absent, an admin's table holding our
 * values left alone, one that does not refused with the keys to set (nothing changed). */
TEST(test_snapshotter_tables)
{
	kd_error err = {0};
	kd_snap_setup ss = {.nydus = true, .nydus_name = "nydus-for-kata-tee-blue", .erofs = true};
	_cleanup_strv_ char **t = calloc(1, sizeof(char *));
	_cleanup_toml_ kd_toml_doc *d = NULL;
	CHECK_INT(kd_toml_parse("t", "version = 3\n", 12, &d, &err), 0);
	CHECK_INT(kd_containerd_add_snapshotters(d, 3, &ss, &t, &err), 0);
	CHECK_INT(kd_strv_length(t), 5);
	CHECK_STR(t[0], "plugins.\"io.containerd.cri.v1.images\"");
	CHECK_STR(t[4], "proxy_plugins.nydus-for-kata-tee-blue");
	size_t len;
	const char *txt = kd_toml_text(d, &len);
	CHECK(strstr(txt,
		     "[plugins.\"io.containerd.snapshotter.v1.erofs\"]\nenable_fsverity = true\n"
		     "set_immutable = true\ndmverity_mode = \"off\"\ndefault_size = \"10G\"\n"
		     "max_unmerged_layers = 0\n") != NULL);
	CHECK(strstr(txt, "address = \"/run/nydus-for-kata-tee-blue/containerd-nydus-grpc.sock\"\n"
			  "exports = { root = \"/var/lib/nydus-for-kata-tee-blue\" }\n") != NULL);

	/* v2, an admin's CRI table: kept when it already says false, refused when not. */
	kd_snap_setup nyd = {.nydus = true, .nydus_name = "nydus-for-kata-tee"};
	const char *ok_text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n"
			      "  disable_snapshot_annotations = false\n";
	_cleanup_toml_ kd_toml_doc *d2 = NULL;
	_cleanup_strv_ char **t2 = calloc(1, sizeof(char *));
	CHECK_INT(kd_toml_parse("t", ok_text, strlen(ok_text), &d2, &err), 0);
	CHECK_INT(kd_containerd_add_snapshotters(d2, 2, &nyd, &t2, &err), 0);
	CHECK_INT(kd_strv_length(t2), 1);
	CHECK_STR(t2[0], "proxy_plugins.nydus-for-kata-tee");
	const char *bad_text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n"
			       "  snapshotter = \"overlayfs\"\n";
	_cleanup_toml_ kd_toml_doc *d3 = NULL;
	_cleanup_strv_ char **t3 = calloc(1, sizeof(char *));
	CHECK_INT(kd_toml_parse("t", bad_text, strlen(bad_text), &d3, &err), 0);
	CHECK_INT(kd_containerd_add_snapshotters(d3, 2, &nyd, &t3, &err), -EEXIST);
	CHECK(strstr(kd_err_msg(&err), "needs disable_snapshot_annotations = false in it") != NULL);
	txt = kd_toml_text(d3, &len);
	CHECK_STR(txt, bad_text);
	CHECK_INT(kd_strv_length(t3), 0);
}

TEST(test_render_refusals_and_debug)
{
	int r;
	/* A handler of the same name that is not ours. */
	const char *taken = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd."
			    "runtimes.kata-qemu]\nruntime_type = \"x\"\n";
	_cleanup_free_ char *a = render(taken, 2, &qemu, 1, NULL, false, NULL, &r);
	CHECK_INT(r, -EEXIST);
	/* An existing [debug] table is left alone. */
	_cleanup_free_ char *b = render("version = 2\n[debug]\nlevel = \"info\"\n", 2, &qemu, 1,
					NULL, true, NULL, &r);
	CHECK(b && strstr(b, "level = \"info\"") && !strstr(b, "level = \"debug\""));
}

TEST(test_crio_dropin)
{
	_cleanup_strv_ char **t = calloc(1, sizeof(char *));
	_cleanup_free_ char *out = NULL;
	kd_error err = {0};
	CHECK_INT(kd_crio_render(&qemu, 1, true, &out, &t, &err), 0);
	CHECK_STR(out, "# Written by kata-deploy: Kata Containers runtime handlers.\n"
		       "# Removed by 'kata-deploy uninstall'.\n"
		       "[crio]\n"
		       "storage_option = [\"overlay.skip_mount_home=true\"]\n"
		       "\n"
		       "[crio.runtime.runtimes.kata-qemu]\n"
		       "runtime_path = \"/opt/kata/bin/containerd-shim-kata-v2\"\n"
		       "runtime_type = \"vm\"\n"
		       "runtime_root = \"/run/vc\"\n"
		       "runtime_config_path = \"/opt/kata/runtimes/qemu/configuration-qemu.toml\"\n"
		       "privileged_without_host_devices = true\n"
		       "allowed_annotations = [\"io.katacontainers.*\"]\n"
		       "\n"
		       "[crio.runtime]\n"
		       "log_level = \"debug\"\n");
	CHECK_STR(t[0], "crio.runtime.runtimes.kata-qemu");
	char path[256];
	kd_crio_dropin_path(NULL, path, sizeof(path));
	CHECK_STR(path, "etc/crio/crio.conf.d/99-kata-deploy");
	kd_crio_dropin_path("blue", path, sizeof(path));
	CHECK_STR(path, "etc/crio/crio.conf.d/99-kata-deploy-blue");
}

TEST(test_crio_guest_pull)
{
	_cleanup_strv_ char **t = calloc(1, sizeof(char *));
	_cleanup_free_ char *out = NULL;
	kd_error err = {0};
	kd_handler gp = qemu;
	gp.guest_pull = true;
	CHECK_INT(kd_crio_render(&gp, 1, false, &out, &t, &err), 0);
	CHECK(out && strstr(out, "allowed_annotations = [\"io.katacontainers.*\"]\n"
				 "runtime_pull_image = true\n"));
	CHECK(out && !strstr(out, "log_level"));
}

static const char pristine_qemu[] =
	"[hypervisor.qemu]\npath = \"/opt/kata/bin/qemu-system-x86_64\"\n"
	"kernel = \"/opt/kata/share/kata-containers/vmlinux.container\"\n"
	"kernel_params = \"cgroup_no_v1=all\"\nenable_annotations = [\"enable_iommu\"]\n";

static int read_pristine(void *ud, const char *path, size_t max, char **ret, size_t *ret_len,
			 kd_error *err)
{
	(void)ud, (void)max;
	if (strcmp(path, "share/defaults/kata-containers/configuration-qemu.toml") != 0)
		return kd_err(err, -ENOENT, "no %s", path);
	*ret = strdup(pristine_qemu);
	*ret_len = strlen(pristine_qemu);
	return 0;
}

TEST(test_kata_dropins)
{
	kd_tree_src src = {-1, read_pristine, NULL, NULL};
	kd_kata_opts ko = {.prefix = "/usr/local/kata",
			   .https_proxy = "http://p:3128",
			   .no_proxy = "qemu=localhost;clh=x",
			   .annotations = "a b qemu:c,d clh:e"};
	kd_kata_file f[KD_KATA_MAX_FILES];
	size_t n = 0;
	kd_error err = {0};
	CHECK_INT(kd_kata_render(&src, "qemu", KD_VARIANT_DEBUG, &ko, f, &n, &err), 0);
	CHECK_INT(n, 6);
	if (n != 6)
		return;
	CHECK_STR(f[0].path, "usr/local/kata/runtimes/qemu-debug/configuration-qemu.toml");
	CHECK(strstr(f[0].text, pristine_qemu) != NULL); /* a copy, behind a banner */
	/* QEMU under another prefix: a wrapper that tells it where its firmware is. */
	CHECK_STR(f[1].path, "usr/local/kata/runtimes/bin/qemu-system-x86_64-installation-prefix");
	CHECK_INT(f[1].mode, 0755);
	CHECK(strstr(f[1].text, "#!/bin/sh\n") == f[1].text);
	CHECK(strstr(f[1].text, "\nexec \"/usr/local/kata/bin/qemu-system-x86_64\" -L "
				"\"/usr/local/kata/share/kata-qemu/qemu/\" \"$@\"\n") != NULL);
	CHECK_STR(f[2].path,
		  "usr/local/kata/runtimes/qemu-debug/config.d/10-installation-prefix.toml");
	CHECK_STR(f[2].text,
		  "# Written by kata-deploy.\n[hypervisor.qemu]\n"
		  "path = \"/usr/local/kata/runtimes/bin/"
		  "qemu-system-x86_64-installation-prefix\"\n"
		  "kernel = \"/usr/local/kata/share/kata-containers/vmlinux.container\"\n");
	CHECK_STR(f[3].path, "usr/local/kata/runtimes/qemu-debug/config.d/20-debug.toml");
	CHECK_STR(f[3].text, "# Written by kata-deploy.\n[hypervisor.qemu]\nenable_debug = true\n\n"
			     "[runtime]\nenable_debug = true\n\n[agent.kata]\nenable_debug = true\n"
			     "debug_console_enabled = true\n");
	CHECK_STR(f[4].path, "usr/local/kata/runtimes/qemu-debug/config.d/30-kernel-params.toml");
	CHECK_STR(f[4].text, "# Written by kata-deploy.\n[hypervisor.qemu]\n"
			     "kernel_params = \"cgroup_no_v1=all agent.https_proxy=http://p:3128 "
			     "agent.no_proxy=localhost agent.log=debug initcall_debug\"\n");
	CHECK_STR(f[5].path, "usr/local/kata/runtimes/qemu-debug/config.d/40-annotations.toml");
	CHECK_STR(f[5].text,
		  "# Written by kata-deploy.\n[hypervisor.qemu]\n"
		  "enable_annotations = [\"a\", \"b\", \"c\", \"d\", \"enable_iommu\"]\n");
	kd_kata_files_free(f, n);
	/* The default prefix and no options: the copy only. */
	kd_kata_opts plain = {.prefix = "/opt/kata"};
	CHECK_INT(kd_kata_render(&src, "qemu", KD_VARIANT_PLAIN, &plain, f, &n, &err), 0);
	CHECK_INT(n, 1);
	kd_kata_files_free(f, n);
	/* k0s: the Go runtime learns k0s's kubelet root (upstream's 22-k0s-kubelet-root.toml). */
	kd_kata_opts k0s = {.prefix = "/opt/kata", .k0s = true};
	CHECK_INT(kd_kata_render(&src, "qemu", KD_VARIANT_PLAIN, &k0s, f, &n, &err), 0);
	CHECK_INT(n, 2);
	if (n == 2) {
		CHECK_STR(f[1].path, "opt/kata/runtimes/qemu/config.d/22-k0s-kubelet-root.toml");
		CHECK_STR(f[1].text, "# Written by kata-deploy.\n[runtime]\n"
				     "kubelet_root_dir = \"/var/lib/k0s/kubelet\"\n");
	}
	kd_kata_files_free(f, n);
}

/* The whole plan on a root: suffix naming and the snapshotter mapping reach the files. */
TEST(test_plan_suffix_and_snapshotter)
{
	int rootfd = make_root("etc/containerd/config.toml", v3_plain, NULL);
	char *shims[] = {"qemu", NULL};
	kd_runtime_input in = {.rootfd = rootfd,
			       .prefix = "opt/kata",
			       .treefd = -1,
			       .read_tree = read_pristine,
			       .shims = shims};
	kd_runtime_opts o = {.runtime_version = "2.2.9",
			     .suffix = "blue",
			     .snapshotter_handler_mapping = "qemu:erofs"};
	kd_config_plan p = {0};
	kd_error err = {0};
	CHECK_INT(kd_runtime_plan(&in, &o, &p, &err), 0);
	const kd_change *dropin = NULL, *main_cfg = NULL;
	for (size_t i = 0; i < p.n; i++) {
		if (!strcmp(p.changes[i].path, "etc/containerd/conf.d/kata-deploy-blue.toml"))
			dropin = &p.changes[i];
		if (!strcmp(p.changes[i].path, "etc/containerd/config.toml"))
			main_cfg = &p.changes[i];
	}
	CHECK(dropin && dropin->new_text);
	CHECK(main_cfg && main_cfg->new_text);
	if (dropin && dropin->new_text) {
		CHECK(strstr(dropin->new_text,
			     "[plugins.\"io.containerd.cri.v1.runtime\".containerd."
			     "runtimes.kata-qemu-blue]\n"));
		CHECK(strstr(dropin->new_text,
			     "runtime_type = \"io.containerd.kata-qemu-blue.v2\""));
		CHECK(strstr(dropin->new_text, "[plugins.\"io.containerd.cri.v1.images\"."
					       "runtime_platforms.kata-qemu-blue]\nsnapshotter = "
					       "\"erofs\"\n"));
	}
	if (main_cfg && main_cfg->new_text)
		CHECK(strstr(main_cfg->new_text,
			     "imports = [\"/etc/containerd/conf.d/kata-deploy-blue.toml\"]"));
	kd_config_plan_done(&p);
	/* A mapping for a shim that is not enabled is refused. */
	o.snapshotter_handler_mapping = "clh:nydus";
	CHECK(kd_runtime_plan(&in, &o, &p, &err) < 0);
	CHECK(strstr(err.msg, "shim 'clh' is not enabled") != NULL);
	close(rootfd);
}

/* containerd 1.x replaces its built-in runtimes map from a file that sets one: a plan for 1.6 on
 * Debian's packaged config (no runtimes table) keeps runc; a file with runtimes gets nothing. */
TEST(test_plan_keeps_default_runtime_1x)
{
	static const char debian[] = "version = 2\n\n[plugins]\n"
				     "  [plugins.\"io.containerd.grpc.v1.cri\"]\n"
				     "    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n"
				     "      bin_dir = \"/usr/lib/cni\"\n";
	const struct {
		const char *config, *version;
		bool want_runc;
	} cases[] = {
		{debian, "1.6.20", true},      /* in-place edit: runc added */
		{NULL, "1.6.20", true},	       /* the config we create: runc in it */
		{v2_systemd, "1.6.20", false}, /* the file names its runtimes */
		{debian, "2.2.9", false},      /* 2.x: drop-in, the defaults stay */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rootfd =
			cases[i].config
				? make_root("etc/containerd/config.toml", cases[i].config, NULL)
				: make_root("etc/systemd/system/containerd.service", "", NULL);
		char *shims[] = {"qemu", NULL};
		kd_runtime_input in = {.rootfd = rootfd,
				       .prefix = "opt/kata",
				       .treefd = -1,
				       .read_tree = read_pristine,
				       .shims = shims};
		kd_runtime_opts o = {.runtime_version = cases[i].version};
		kd_config_plan p = {0};
		kd_error err = {0};
		CHECK_INT(kd_runtime_plan(&in, &o, &p, &err), 0);
		const kd_change *c = NULL;
		for (size_t k = 0; k < p.n; k++)
			if (!strcmp(p.changes[k].path, "etc/containerd/config.toml"))
				c = &p.changes[k];
		bool has = c && c->new_text &&
			   strstr(c->new_text, "containerd.runtimes.runc]\n") != NULL;
		CHECK(has == cases[i].want_runc);
		if (has)
			CHECK(strstr(c->new_text, "runtime_type = \"io.containerd.runc.v2\"") !=
			      NULL);
		/* recorded like our handlers, so uninstall removes it */
		bool recorded = false;
		for (size_t k = 0; c && c->has_record && c->rec.tables && c->rec.tables[k]; k++)
			recorded = recorded || strstr(c->rec.tables[k], "runtimes.runc");
		CHECK(recorded == (cases[i].want_runc && c && c->has_record));
		kd_config_plan_done(&p);
		close(rootfd);
	}
}

int main(void)
{
	if (!mkdtemp(base))
		return 1;
	RUN(test_plugin_ids);
	RUN(test_strategy_containerd_versions);
	RUN(test_strategy_1x_imports);
	RUN(test_strategy_distributions);
	RUN(test_strategy_k3s_1x_imports);
	RUN(test_strategy_k3s_own_v3_template);
	RUN(test_strategy_refusals);
	RUN(test_runc_source_2x_imports);
	RUN(test_render_v2_inherits_systemd_cgroup);
	RUN(test_render_systemd_cgroup_sources);
	RUN(test_render_v3_snapshotter_and_gpu);
	RUN(test_snapshotter_tables);
	RUN(test_render_refusals_and_debug);
	RUN(test_crio_dropin);
	RUN(test_crio_guest_pull);
	RUN(test_kata_dropins);
	RUN(test_plan_suffix_and_snapshotter);
	RUN(test_plan_keeps_default_runtime_1x);
	int rootfd = open("/", O_RDONLY | O_DIRECTORY);
	kd_remove_tree(rootfd, base + 1, NULL);
	close(rootfd);
	TAP_END();
}
