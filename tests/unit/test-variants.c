/* Debug and devkit handler variants (runtime.c build_handlers, kataconfig.c): the handler names
 * kata-<shim>[-suffix][-debug|-devkit], one Kata configuration directory per variant, debug
 * settings only in the debug variant, the devkit guest extension image appended to the
 * payload's own images, and the refusals (devkit without debug, no devkit image, bad dm-verity
 * parameters). Custom runtimes (custom.c): the list format and its refusals, their handlers and
 * directories, user drop-ins. Host roots are temp dirs; the payload tree is a callback. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deployer/containerd.h"
#include "deployer/crio.h"
#include "deployer/custom.h"
#include "deployer/kataconfig.h"
#include "deployer/runtime.h"
#include "fsroot.h"
#include "strv.h"
#include "tap.h"

static char base[] = "/tmp/kd-test-variants-XXXXXX";
static int ncase;

static const char pristine_qemu[] =
	"[hypervisor.qemu]\n"
	"path = \"/opt/kata/bin/qemu-system-x86_64\"\n"
	"kernel_params = \"cgroup_no_v1=all\"\n"
	"\n"
	"[[hypervisor.qemu.guest_extension_images]]\n"
	"name = \"coco\"\n"
	"path = \"/opt/kata/share/kata-containers/kata-containers-coco-extension.img\"\n"
	"verity_params = \"root_hash=aa,salt=bb\"\n"
	"read_only = true\n";

/* The payload tree: which optional files it has. */
typedef struct tree {
	bool devkit_image;
	const char *root_hash; /* NULL: no root_hash_devkit-extension.txt */
} tree;

static int read_tree(void *ud, const char *path, size_t max, char **ret, size_t *ret_len,
		     kd_error *err)
{
	const tree *t = ud;
	const char *text = NULL;
	(void)max;
	if (!strcmp(path, "share/defaults/kata-containers/configuration-qemu.toml"))
		text = pristine_qemu;
	else if (!strcmp(path, KD_DEVKIT_ROOT_HASH))
		text = t->root_hash;
	else if (!strcmp(path, KD_DEVKIT_IMAGE) && t->devkit_image)
		text = "an image";
	if (!text)
		return kd_err(err, -ENOENT, "no %s", path);
	*ret = strdup(text);
	*ret_len = strlen(text);
	return 0;
}

static int make_root(const char *path, const char *text)
{
	char dir[512], d[512];
	snprintf(dir, sizeof(dir), "%s/%d", base, ++ncase);
	mkdir(dir, 0755);
	int rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	snprintf(d, sizeof(d), "%s", path);
	*strrchr(d, '/') = '\0';
	kd_mkdir_p(rootfd, d, 0755, NULL, NULL, NULL);
	kd_write_atomic(rootfd, path, text, strlen(text), 0644, NULL);
	return rootfd;
}

static const kd_change *find(const kd_config_plan *p, const char *path)
{
	for (size_t i = 0; i < p->n; i++)
		if (!strcmp(p->changes[i].path, path))
			return &p->changes[i];
	return NULL;
}

static const char *text_of(const kd_config_plan *p, const char *path)
{
	const kd_change *c = find(p, path);
	return c && c->new_text ? c->new_text : "";
}

/* A plan's input: root, prefix, the qemu shim, the payload tree t. */
static kd_runtime_input input(int rootfd, const char *prefix, char **shims, tree *t)
{
	return (kd_runtime_input){.rootfd = rootfd,
				  .prefix = prefix,
				  .treefd = -1,
				  .read_tree = read_tree,
				  .read_tree_userdata = t,
				  .shims = shims};
}

TEST(test_names_and_dirs)
{
	char rp[256], cp[256];
	CHECK_STR(kd_variant_suffix(KD_VARIANT_PLAIN), "");
	CHECK_STR(kd_variant_suffix(KD_VARIANT_DEBUG), "-debug");
	CHECK_STR(kd_variant_suffix(KD_VARIANT_DEVKIT), "-devkit");
	kd_kata_paths("/opt/kata", "qemu-runtime-rs", KD_VARIANT_DEBUG, rp, sizeof(rp), cp,
		      sizeof(cp));
	CHECK_STR(rp, "/opt/kata/runtime-rs/bin/containerd-shim-kata-v2");
	CHECK_STR(cp, "/opt/kata/runtimes/qemu-runtime-rs-debug/"
		      "configuration-qemu-runtime-rs.toml");
}

/* containerd 2.x with debug + devkit: three handlers per shim, each with its own directory. */
TEST(test_plan_containerd_variants)
{
	int rootfd = make_root("etc/containerd/config.toml", "version = 3\n");
	char *shims[] = {"qemu", NULL};
	tree t = {.devkit_image = true, .root_hash = "\n  root_hash=cc,salt=dd \n\n"};
	kd_runtime_input in = input(rootfd, "opt/kata", shims, &t);
	kd_runtime_opts o = {.runtime_version = "2.2.9",
			     .debug = true,
			     .devkit = true,
			     .snapshotter_handler_mapping = "qemu:nydus"};
	kd_config_plan p = {0};
	kd_error err = {0};
	CHECK_INT(kd_runtime_plan(&in, &o, &p, &err), 0);
	const char *d = text_of(&p, "etc/containerd/conf.d/kata-deploy.toml");
	const char *names[] = {"kata-qemu", "kata-qemu-debug", "kata-qemu-devkit"};
	const char *dirs[] = {"qemu", "qemu-debug", "qemu-devkit"};
	for (size_t i = 0; i < 3; i++) {
		char want[512];
		snprintf(want, sizeof(want),
			 "[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.%s]\n",
			 names[i]);
		CHECK(strstr(d, want) != NULL);
		snprintf(want, sizeof(want), "runtime_type = \"io.containerd.%s.v2\"", names[i]);
		CHECK(strstr(d, want) != NULL);
		snprintf(want, sizeof(want),
			 "ConfigPath = \"/opt/kata/runtimes/%s/configuration-qemu.toml\"", dirs[i]);
		CHECK(strstr(d, want) != NULL);
		/* The variants share the shim's snapshotter mapping. */
		snprintf(want, sizeof(want), "runtime_platforms.%s]\nsnapshotter = \"nydus\"\n",
			 names[i]);
		CHECK(strstr(d, want) != NULL);
		snprintf(want, sizeof(want), "opt/kata/runtimes/%s/configuration-qemu.toml",
			 dirs[i]);
		CHECK(find(&p, want) != NULL);
	}
	/* containerd's own debug logging is on. */
	CHECK(strstr(d, "[debug]\nlevel = \"debug\"\n") != NULL);
	/* Debug settings only in the debug variant. */
	CHECK(!find(&p, "opt/kata/runtimes/qemu/config.d/20-debug.toml"));
	CHECK(!find(&p, "opt/kata/runtimes/qemu/config.d/30-kernel-params.toml"));
	CHECK(!find(&p, "opt/kata/runtimes/qemu-devkit/config.d/20-debug.toml"));
	CHECK(strstr(text_of(&p, "opt/kata/runtimes/qemu-debug/config.d/20-debug.toml"),
		     "[runtime]\nenable_debug = true\n") != NULL);
	CHECK_STR(text_of(&p, "opt/kata/runtimes/qemu-debug/config.d/30-kernel-params.toml"),
		  "# Written by kata-deploy.\n[hypervisor.qemu]\n"
		  "kernel_params = \"cgroup_no_v1=all agent.log=debug initcall_debug\"\n");
	/* devkit: the console and the payload's images repeated, then devkit's. */
	CHECK_STR(text_of(&p, "opt/kata/runtimes/qemu-devkit/config.d/25-devkit.toml"),
		  "# Written by kata-deploy.\n[agent.kata]\ndebug_console_enabled = true\n\n"
		  "[hypervisor.qemu]\nguest_extension_images = [{ \"name\" = \"coco\", \"path\" = "
		  "\"/opt/kata/share/kata-containers/kata-containers-coco-extension.img\", "
		  "\"verity_params\" = \"root_hash=aa,salt=bb\", \"read_only\" = true }, "
		  "{ name = \"devkit\", path = \"/opt/kata/share/kata-containers/"
		  "kata-containers-devkit-extension.img\", verity_params = "
		  "\"root_hash=cc,salt=dd\" }]\n");
	CHECK(!find(&p, "opt/kata/runtimes/qemu/config.d/25-devkit.toml"));
	kd_config_plan_done(&p);

	/* Debug off again: one handler, no variant directory. */
	o.debug = o.devkit = false;
	CHECK_INT(kd_runtime_plan(&in, &o, &p, &err), 0);
	d = text_of(&p, "etc/containerd/conf.d/kata-deploy.toml");
	CHECK(strstr(d, "kata-qemu-debug") == NULL && strstr(d, "[debug]") == NULL);
	CHECK(!find(&p, "opt/kata/runtimes/qemu-debug/configuration-qemu.toml"));
	kd_config_plan_done(&p);
	close(rootfd);
}

/* CRI-O and a suffix: kata-<shim>-<suffix>-debug, in the suffixed drop-in. */
TEST(test_plan_crio_suffix_debug)
{
	int rootfd = make_root("etc/crio/crio.conf", "[crio]\n");
	char *shims[] = {"qemu", NULL};
	tree t = {0};
	kd_runtime_input in = input(rootfd, "opt/kata-blue", shims, &t);
	kd_runtime_opts o = {
		.runtime = "crio", .runtime_version = "1.34.0", .debug = true, .suffix = "blue"};
	kd_config_plan p = {0};
	kd_error err = {0};
	CHECK_INT(kd_runtime_plan(&in, &o, &p, &err), 0);
	const char *d = text_of(&p, "etc/crio/crio.conf.d/99-kata-deploy-blue");
	CHECK(strstr(d, "[crio.runtime.runtimes.kata-qemu-blue]\n") != NULL);
	CHECK(strstr(d, "[crio.runtime.runtimes.kata-qemu-blue-debug]\n") != NULL);
	CHECK(strstr(d, "runtime_config_path = "
			"\"/opt/kata-blue/runtimes/qemu-debug/configuration-qemu.toml\"") != NULL);
	CHECK(strstr(d, "log_level = \"debug\"") != NULL);
	CHECK(find(&p, "opt/kata-blue/runtimes/qemu-debug/config.d/20-debug.toml") != NULL);
	kd_config_plan_done(&p);
	close(rootfd);
}

static void refused(kd_runtime_opts *o, tree *t, const char *want)
{
	int rootfd = make_root("etc/containerd/config.toml", "version = 3\n");
	char *shims[] = {"qemu", NULL};
	kd_runtime_input in = input(rootfd, "opt/kata", shims, t);
	kd_config_plan p = {0};
	kd_error err = {0};
	o->runtime_version = "2.2.9";
	CHECK(kd_runtime_plan(&in, o, &p, &err) < 0);
	if (!strstr(err.msg, want))
		printf("#   error was: %s\n", err.msg);
	CHECK(strstr(err.msg, want) != NULL);
	close(rootfd);
}

TEST(test_refusals)
{
	tree with = {.devkit_image = true}, without = {0};
	kd_runtime_opts o = {.devkit = true};
	refused(&o, &with, "--devkit needs --debug");
	o = (kd_runtime_opts){.debug = true, .devkit = true};
	refused(&o, &without, "the payload has no " KD_DEVKIT_IMAGE);
	tree two = {.devkit_image = true, .root_hash = "root_hash=a\nsalt=b\n"};
	o = (kd_runtime_opts){.debug = true, .devkit = true};
	refused(&o, &two, "expected one line of dm-verity parameters, found 2");
	tree none = {.devkit_image = true, .root_hash = "\n \n"};
	o = (kd_runtime_opts){.debug = true, .devkit = true};
	refused(&o, &none, "found 0");
}

/* Without a root hash file the devkit image goes in without dm-verity parameters. */
TEST(test_devkit_without_root_hash)
{
	kd_tree_src src = {-1, read_tree, &(tree){.devkit_image = true}, NULL};
	kd_kata_opts ko = {.prefix = "/usr/local/kata"};
	kd_kata_file f[KD_KATA_MAX_FILES];
	size_t n = 0;
	kd_error err = {0};
	CHECK_INT(kd_kata_render(&src, "qemu", KD_VARIANT_DEVKIT, &ko, f, &n, &err), 0);
	const char *devkit = NULL;
	for (size_t i = 0; i < n; i++)
		if (strstr(f[i].path, "/config.d/25-devkit.toml"))
			devkit = f[i].text;
	CHECK(devkit &&
	      strstr(devkit, "{ name = \"devkit\", path = \"/usr/local/kata/share/"
			     "kata-containers/kata-containers-devkit-extension.img\" }]"));
	/* The payload's image paths follow the prefix too. */
	CHECK(devkit && strstr(devkit, "\"/usr/local/kata/share/kata-containers/"
				       "kata-containers-coco-extension.img\""));
	kd_kata_files_free(f, n);
}

/* Another prefix: every /opt/kata/ string and list of the hypervisor table moves, and
 * valid_hypervisor_paths admits the QEMU wrapper. */
static const char pristine_paths[] =
	"[hypervisor.qemu]\npath = \"/opt/kata/bin/qemu-system-x86_64\"\n"
	"valid_hypervisor_paths = [\"/opt/kata/bin/qemu-system-x86_64\"]\n"
	"virtio_fs_daemon = \"/opt/kata/libexec/virtiofsd\"\n"
	"valid_file_mem_backends = [\"\"]\nmachine_type = \"q35\"\n";

static int read_paths(void *ud, const char *path, size_t max, char **ret, size_t *ret_len,
		      kd_error *err)
{
	(void)ud, (void)max;
	if (strcmp(path, "share/defaults/kata-containers/configuration-qemu.toml") != 0)
		return kd_err(err, -ENOENT, "no %s", path);
	*ret = strdup(pristine_paths);
	*ret_len = strlen(pristine_paths);
	return 0;
}

TEST(test_installation_prefix)
{
	kd_tree_src src = {-1, read_paths, NULL, NULL};
	kd_kata_opts ko = {.prefix = "/srv/kata"};
	kd_kata_file f[KD_KATA_MAX_FILES];
	size_t n = 0;
	kd_error err = {0};
	CHECK_INT(kd_kata_render(&src, "qemu", KD_VARIANT_PLAIN, &ko, f, &n, &err), 0);
	CHECK_INT(n, 3);
	if (n == 3)
		CHECK_STR(
			f[2].text,
			"# Written by kata-deploy.\n[hypervisor.qemu]\n"
			"path = \"/srv/kata/runtimes/bin/qemu-system-x86_64-installation-prefix\"\n"
			"valid_hypervisor_paths = [\"/srv/kata/bin/qemu-system-x86_64\", "
			"\"/srv/kata/runtimes/bin/qemu-system-x86_64-installation-prefix\"]\n"
			"virtio_fs_daemon = \"/srv/kata/libexec/virtiofsd\"\n");
	kd_kata_files_free(f, n);
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

TEST(test_custom_list)
{
	_cleanup_free_ kd_custom_runtime *c = NULL;
	size_t n = 0;
	kd_error err = {0};
	CHECK_INT(kd_custom_parse("l",
				  "# mine\n\nkata-a:qemu:nydus:guest-pull\n kata-b : clh \n"
				  "kata-c:qemu::default # comment\n",
				  &c, &n, &err),
		  0);
	CHECK_INT(n, 3);
	if (n == 3) {
		CHECK_STR(c[0].handler, "kata-a");
		CHECK_STR(c[0].snapshotter, "nydus");
		CHECK(c[0].guest_pull);
		CHECK_STR(c[1].handler, "kata-b");
		CHECK_STR(c[1].base, "clh");
		CHECK_STR(c[1].snapshotter, "");
		CHECK(!c[2].guest_pull);
	}
	struct {
		const char *text, *want;
	} bad[] = {
		{"\nKata-A:qemu\n", "l:2: handler 'Kata-A' must be 1-63 lowercase"},
		{"kata-a\n", "l:1: custom runtime 'kata-a' has no base shim"},
		{"kata-a:qemuu\n", "l:1: unknown base shim 'qemuu'"},
		{"kata-a:qemu::fast\n", "l:1: pull type 'fast' of 'kata-a' is not guest-pull"},
		{"kata-a:qemu\nkata-a:clh\n", "l:2: handler 'kata-a' is listed twice"},
		{"kata-a:qemu:x:default:y\n", "l:1: more than 4 fields"},
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		_cleanup_free_ kd_custom_runtime *x = NULL;
		kd_err_clear(&err);
		CHECK(kd_custom_parse("l", bad[i].text, &x, &n, &err) < 0);
		if (!strstr(err.msg, bad[i].want))
			printf("#   '%s': %s\n", bad[i].want, err.msg);
		CHECK(strstr(err.msg, bad[i].want) != NULL);
	}
}

/* A custom configs dir: one custom runtime with its drop-in, and a drop-in for qemu (which the
 * debug variant shares). */
TEST(test_plan_custom)
{
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/cc", base);
	mkdir(dir, 0755);
	write_file(dir, KD_CUSTOM_LIST, "kata-mine:qemu:nydus:\n");
	write_file(dir, "dropin-qemu.toml", "[hypervisor.qemu]\ndefault_vcpus = 2\n");
	write_file(dir, "dropin-kata-mine.toml", "[hypervisor.qemu]\ndefault_memory = 4096\n");
	int rootfd = make_root("etc/containerd/config.toml", "version = 3\n");
	char *shims[] = {"qemu", NULL};
	tree t = {0};
	kd_runtime_input in = input(rootfd, "opt/kata", shims, &t);
	kd_runtime_opts o = {.runtime_version = "2.2.9",
			     .debug = true,
			     .custom_configs = dir,
			     .custom_runtimes = true};
	kd_config_plan p = {0};
	kd_error err = {0};
	CHECK_INT(kd_runtime_plan(&in, &o, &p, &err), 0);
	if (err.msg[0])
		printf("#   %s\n", err.msg);
	const char *d = text_of(&p, "etc/containerd/conf.d/kata-deploy.toml");
	CHECK(strstr(d, "containerd.runtimes.kata-mine]\n") != NULL);
	CHECK(strstr(d, "runtime_type = \"io.containerd.kata-mine.v2\"") != NULL);
	CHECK(strstr(d,
		     "ConfigPath = \"/opt/kata/runtimes/custom/kata-mine/configuration-qemu.toml\"") !=
	      NULL);
	CHECK(strstr(d, "runtime_platforms.kata-mine]\nsnapshotter = \"nydus\"\n") != NULL);
	CHECK(find(&p, "opt/kata/runtimes/custom/kata-mine/configuration-qemu.toml") != NULL);
	CHECK(strstr(text_of(&p,
			     "opt/kata/runtimes/custom/kata-mine/config.d/50-user-overrides.toml"),
		     "\n[hypervisor.qemu]\ndefault_memory = 4096\n") != NULL);
	CHECK(strstr(text_of(&p, "opt/kata/runtimes/qemu/config.d/50-user-overrides.toml"),
		     "default_vcpus = 2") != NULL);
	CHECK(strstr(text_of(&p, "opt/kata/runtimes/qemu-debug/config.d/50-user-overrides.toml"),
		     "default_vcpus = 2") != NULL);
	/* A custom runtime is not a debug variant. */
	CHECK(!find(&p, "opt/kata/runtimes/custom/kata-mine/config.d/20-debug.toml"));
	kd_config_plan_done(&p);

	/* Without --custom-runtimes the list is not read; drop-ins still are. */
	o.custom_runtimes = false;
	CHECK_INT(kd_runtime_plan(&in, &o, &p, &err), 0);
	CHECK(strstr(text_of(&p, "etc/containerd/conf.d/kata-deploy.toml"), "kata-mine") == NULL);
	CHECK(find(&p, "opt/kata/runtimes/qemu/config.d/50-user-overrides.toml") != NULL);
	kd_config_plan_done(&p);

	/* Refusals: base shim not enabled, a name taken by a shim, a drop-in that is not TOML. */
	o.custom_runtimes = true;
	write_file(dir, KD_CUSTOM_LIST, "kata-mine:clh\n");
	kd_err_clear(&err);
	CHECK(kd_runtime_plan(&in, &o, &p, &err) < 0);
	CHECK(strstr(err.msg, "custom runtime 'kata-mine': its base shim 'clh' is not enabled"));
	write_file(dir, KD_CUSTOM_LIST, "kata-qemu-debug:qemu\n");
	kd_err_clear(&err);
	CHECK(kd_runtime_plan(&in, &o, &p, &err) < 0);
	CHECK(strstr(err.msg, "custom runtime 'kata-qemu-debug': a shim's handler has that name"));
	write_file(dir, KD_CUSTOM_LIST, "kata-mine:qemu\n");
	write_file(dir, "dropin-kata-mine.toml", "[hypervisor.qemu\n");
	kd_err_clear(&err);
	CHECK(kd_runtime_plan(&in, &o, &p, &err) < 0);
	CHECK(strstr(err.msg, "dropin-kata-mine.toml:1:") != NULL);
	o.custom_configs = NULL;
	kd_err_clear(&err);
	CHECK(kd_runtime_plan(&in, &o, &p, &err) < 0);
	CHECK(strstr(err.msg, "--custom-runtimes needs --custom-configs DIR"));
	close(rootfd);
}

int main(void)
{
	if (!mkdtemp(base))
		return 1;
	RUN(test_names_and_dirs);
	RUN(test_plan_containerd_variants);
	RUN(test_plan_crio_suffix_debug);
	RUN(test_refusals);
	RUN(test_devkit_without_root_hash);
	RUN(test_installation_prefix);
	RUN(test_custom_list);
	RUN(test_plan_custom);
	int rootfd = open("/", O_RDONLY | O_DIRECTORY);
	kd_remove_tree(rootfd, base + 1, NULL);
	close(rootfd);
	TAP_END();
}
