/* deployer/import: layout detection, entry and link checks, which configurations are shims,
 * file names, the split into upstream's components and the shim → components derivation, on
 * trees built in memory; then kd_import() on small tarballs written with lib/tarball, with the
 * limits lowered to reach each limit's message. */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deployer/import.h"
#include "lib/fsroot.h"
#include "lib/strv.h"
#include "lib/tarball.h"
#include "tap.h"

static char base_dir[] = "/tmp/kd-test-import-XXXXXX";

TEST(detect)
{
	const char *payload[] = {"kata-payload.json", "opt/kata/bin"};
	const char *dot_payload[] = {"./kata-payload.json"};
	const char *upstream[] = {"./", "./opt/", "./opt/kata/", "./opt/kata/bin/"};
	const char *plain[] = {"opt/kata/bin/x"};
	const char *other[] = {"./", "usr/bin/x"};
	CHECK_INT(kd_import_detect(payload, 2), KD_IMPORT_PAYLOAD);
	CHECK_INT(kd_import_detect(dot_payload, 1), KD_IMPORT_PAYLOAD);
	CHECK_INT(kd_import_detect(upstream, 4), KD_IMPORT_UPSTREAM);
	CHECK_INT(kd_import_detect(plain, 1), KD_IMPORT_UPSTREAM);
	CHECK_INT(kd_import_detect(other, 2), KD_IMPORT_OTHER);
	CHECK_INT(kd_import_detect(NULL, 0), KD_IMPORT_OTHER);
}

TEST(entry_paths)
{
	const char *rel = NULL;
	kd_error err = {0};
	CHECK_INT(kd_import_entry_path("./opt/kata/bin/x", &rel, &err), 1);
	CHECK_STR(rel, "bin/x");
	CHECK_INT(kd_import_entry_path("opt/kata/share/defaults", &rel, &err), 1);
	CHECK_STR(rel, "share/defaults");
	CHECK_INT(kd_import_entry_path("././opt/kata/a", &rel, &err), 1);
	CHECK_STR(rel, "a");
	CHECK_INT(kd_import_entry_path("./", &rel, &err), 0);
	CHECK_INT(kd_import_entry_path(".", &rel, &err), 0);
	CHECK_INT(kd_import_entry_path("./opt", &rel, &err), 0);
	CHECK_INT(kd_import_entry_path("opt/kata", &rel, &err), 0);
	CHECK_INT(kd_import_entry_path("/opt/kata/bin/x", &rel, &err), -EINVAL);
	CHECK(strstr(err.msg, "absolute"));
	CHECK_INT(kd_import_entry_path("./etc/passwd", &rel, &err), -EINVAL);
	CHECK(strstr(err.msg, "outside opt/kata/"));
	CHECK_INT(kd_import_entry_path("opt/katax/y", &rel, &err), -EINVAL);
	CHECK_INT(kd_import_entry_path("./opt/kata/../x", &rel, &err), -EINVAL);
	CHECK(strstr(err.msg, "unsafe"));
	CHECK_INT(kd_import_entry_path("opt/kata/a//b", &rel, &err), -EINVAL);
	CHECK_INT(kd_import_entry_path("opt/kata/a/./b", &rel, &err), -EINVAL);
}

TEST(links)
{
	CHECK(kd_import_link_ok("share/kata-containers/vmlinux.container", "vmlinux-6.12"));
	CHECK(kd_import_link_ok("bin/x", "../libexec/y"));
	CHECK(kd_import_link_ok("a/b/c", "../../d"));
	CHECK(!kd_import_link_ok("a/b/c", "../../../d"));
	CHECK(!kd_import_link_ok("x", "../opt/kata/x"));
	CHECK(!kd_import_link_ok("bin/x", "/etc/shadow"));
	CHECK(!kd_import_link_ok("bin/x", ""));
	CHECK(!kd_import_link_ok("bin/x", ".."));
	CHECK(kd_import_link_ok("bin/x", "./y/../z"));
}

TEST(config_shims)
{
	char shim[64];
	bool rust = true;
	const char *why = NULL;
	CHECK_INT(kd_import_config_shim("share/defaults/kata-containers/configuration-qemu.toml",
					shim, sizeof(shim), &rust, &why),
		  1);
	CHECK_STR(shim, "qemu");
	CHECK(!rust);
	CHECK_INT(kd_import_config_shim("share/defaults/kata-containers/runtime-rs/"
					"configuration-qemu-runtime-rs.toml",
					shim, sizeof(shim), &rust, &why),
		  1);
	CHECK_STR(shim, "qemu-runtime-rs");
	CHECK(rust);
	CHECK_INT(kd_import_config_shim("share/defaults/kata-containers/runtime-rs/"
					"configuration-dragonball.toml",
					shim, sizeof(shim), &rust, &why),
		  1);
	CHECK_STR(shim, "dragonball");
	CHECK_INT(kd_import_config_shim("share/defaults/kata-containers/runtime-rs/"
					"configuration-cloud-hypervisor.toml",
					shim, sizeof(shim), &rust, &why),
		  1);
	CHECK_INT(kd_import_config_shim(
			  "share/defaults/kata-containers/runtime-rs/configuration-rs-fc.toml",
			  shim, sizeof(shim), &rust, &why),
		  -EINVAL);
	CHECK(why && strstr(why, "runtime-rs only for"));
	CHECK_INT(kd_import_config_shim(
			  "share/defaults/kata-containers/configuration-qemu-runtime-rs.toml", shim,
			  sizeof(shim), &rust, &why),
		  -EINVAL);
	CHECK(why && strstr(why, "reads this shim from runtime-rs/"));
	CHECK_INT(kd_import_config_shim("share/defaults/kata-containers/configuration-Q_emu.toml",
					shim, sizeof(shim), &rust, &why),
		  -EINVAL);
	CHECK_INT(kd_import_config_shim("share/defaults/kata-containers/configuration.toml", shim,
					sizeof(shim), &rust, &why),
		  0);
	CHECK_INT(kd_import_config_shim("share/defaults/kata-containers/configuration-.toml", shim,
					sizeof(shim), &rust, &why),
		  0);
	CHECK_INT(kd_import_config_shim("share/defaults/kata-containers/x/configuration-a.toml",
					shim, sizeof(shim), &rust, &why),
		  0);
	CHECK_INT(kd_import_config_shim("etc/configuration-qemu.toml", shim, sizeof(shim), &rust,
					&why),
		  0);
	CHECK_INT(kd_import_config_shim("share/defaults/kata-containers/configuration-qemu.json",
					shim, sizeof(shim), &rust, &why),
		  0);
}

TEST(names)
{
	char v[64], a[32];
	kd_import_parse_name("kata-static-4.1.0-amd64.tar.zst", v, sizeof(v), a, sizeof(a));
	CHECK_STR(v, "4.1.0");
	CHECK_STR(a, "x86_64");
	kd_import_parse_name("/d/kata-go-static-3.2.0-alpha1-arm64.tar.xz", v, sizeof(v), a,
			     sizeof(a));
	CHECK_STR(v, "3.2.0-alpha1");
	CHECK_STR(a, "aarch64");
	kd_import_parse_name("kata-static-3.21.0-s390x.tar.zst", v, sizeof(v), a, sizeof(a));
	CHECK_STR(a, "s390x");
	kd_import_parse_name("kata-static-4.1.0.tar.zst", v, sizeof(v), a, sizeof(a));
	CHECK_STR(v, "4.1.0");
	CHECK_STR(a, "");
	kd_import_parse_name("upstream.tar.zst", v, sizeof(v), a, sizeof(a));
	CHECK_STR(v, "");
	CHECK_STR(a, "");
	kd_import_parse_name("kata-static-4 1-amd64.tar.zst", v, sizeof(v), a, sizeof(a));
	CHECK_STR(v, "");
	CHECK_STR(a, "x86_64");
}

static void add(kd_imp_tree *t, const char *path, kd_entry_type type, const char *link)
{
	kd_error err = {0};
	if (kd_imp_tree_add(t, path, type, link, type == KD_ENTRY_FILE ? 10 : 0, &err) < 0)
		abort();
}
#define F(p) add(&t, p, KD_ENTRY_FILE, NULL)
#define D(p) add(&t, p, KD_ENTRY_DIR, NULL)
#define L(p, l) add(&t, p, KD_ENTRY_SYMLINK, l)

static const char *comp(const kd_imp_tree *t, const char *path)
{
	const kd_imp_entry *e = kd_imp_tree_find(t, path);
	return e ? (e->component ? e->component : "(mixed)") : "(absent)";
}

/* A tree shaped like upstream's 4.x release, small. */
static void make_tree(kd_imp_tree *t_)
{
	kd_imp_tree t = *t_;
	const char *sk = "share/kata-containers/";
	char p[256], q[256];
	D("bin");
	F("bin/containerd-shim-kata-v2");
	F("bin/kata-runtime");
	F("bin/qemu-system-x86_64");
	F("bin/qemu-system-x86_64-snp-experimental");
	F("bin/cloud-hypervisor");
	F("bin/cloud-hypervisor-glibc");
	F("bin/firecracker");
	F("bin/jailer");
	D("libexec");
	F("libexec/virtiofsd");
	D("libexec/kata-qemu");
	F("libexec/kata-qemu/qemu-bridge-helper");
	D("runtime-rs");
	D("runtime-rs/bin");
	F("runtime-rs/bin/containerd-shim-kata-v2");
	D("share");
	D("share/kata-qemu");
	D("share/kata-qemu/qemu");
	F("share/kata-qemu/qemu/bios-256k.bin");
	D("share/kata-qemu/qemu/empty");
	D("share/kata-qemu-snp-experimental");
	F("share/kata-qemu-snp-experimental/x.rom");
	D("share/ovmf");
	F("share/ovmf/OVMF.fd");
	F("share/ovmf/AMDSEV.fd");
	D("share/kata-containers");
	const char *kernels[] = {"", "-debug", "-nvidia-gpu"};
	for (size_t i = 0; i < 3; i++)
		for (int z = 0; z < 2; z++) {
			snprintf(p, sizeof(p), "%svmlinu%c-6.12-170%s", sk, "xz"[z], kernels[i]);
			F(p);
			snprintf(p, sizeof(p), "%svmlinu%c%s.container", sk, "xz"[z], kernels[i]);
			snprintf(q, sizeof(q), "vmlinu%c-6.12-170%s", "xz"[z], kernels[i]);
			L(p, q);
			snprintf(p, sizeof(p), "%sconfig-6.12-170%s", sk, kernels[i]);
			if (z == 0)
				F(p);
		}
	F("share/kata-containers/kata-ubuntu-noble.image");
	L("share/kata-containers/kata-containers.img", "kata-ubuntu-noble.image");
	F("share/kata-containers/root_hash_base.txt");
	F("share/kata-containers/kata-ubuntu-noble-coco.image");
	L("share/kata-containers/kata-containers-coco-extension.img",
	  "kata-ubuntu-noble-coco.image");
	F("share/kata-containers/root_hash_coco-extension.txt");
	F("share/kata-containers/root_hash_nothing.txt");
	F("share/kata-containers/kata-alpine.initrd");
	L("share/kata-containers/kata-containers-initrd.img", "kata-alpine.initrd");
	D("share/defaults");
	D("share/defaults/kata-containers");
	F("share/defaults/kata-containers/configuration-qemu.toml");
	L("share/defaults/kata-containers/configuration.toml", "configuration-qemu.toml");
	D("share/defaults/kata-containers/runtime-rs");
	F("share/defaults/kata-containers/runtime-rs/configuration-qemu-runtime-rs.toml");
	F("VERSION");
	D("empty");
	(void)sk;
	*t_ = t;
}

TEST(components)
{
	kd_imp_tree t = {0};
	kd_error err = {0};
	make_tree(&t);
	CHECK_INT(kd_import_assign(&t, &err), 0);
	CHECK_STR(comp(&t, "bin/containerd-shim-kata-v2"), "shim-v2-go");
	CHECK_STR(comp(&t, "bin/kata-runtime"), "shim-v2-go");
	CHECK_STR(comp(&t, "runtime-rs"), "shim-v2-rust");
	CHECK_STR(comp(&t, "share/defaults/kata-containers/runtime-rs/"
			   "configuration-qemu-runtime-rs.toml"),
		  "shim-v2-rust");
	CHECK_STR(comp(&t, "share/defaults/kata-containers/configuration.toml"), "shim-v2-go");
	CHECK_STR(comp(&t, "share/defaults/kata-containers"), "(mixed)");
	CHECK_STR(comp(&t, "bin/qemu-system-x86_64"), "qemu");
	CHECK_STR(comp(&t, "bin/qemu-system-x86_64-snp-experimental"), "qemu-snp-experimental");
	CHECK_STR(comp(&t, "share/kata-qemu-snp-experimental"), "qemu-snp-experimental");
	CHECK_STR(comp(&t, "share/kata-qemu"), "qemu");
	CHECK_STR(comp(&t, "share/kata-qemu/qemu/empty"), "qemu");
	CHECK_STR(comp(&t, "libexec/kata-qemu"), "qemu");
	CHECK_STR(comp(&t, "libexec/virtiofsd"), "virtiofsd");
	CHECK_STR(comp(&t, "bin/cloud-hypervisor"), "cloud-hypervisor");
	CHECK_STR(comp(&t, "bin/cloud-hypervisor-glibc"), "cloud-hypervisor-glibc");
	CHECK_STR(comp(&t, "bin/jailer"), "firecracker");
	CHECK_STR(comp(&t, "share/ovmf/AMDSEV.fd"), "ovmf-sev");
	CHECK_STR(comp(&t, "share/ovmf/OVMF.fd"), "ovmf");
	CHECK_STR(comp(&t, "share/kata-containers/vmlinux.container"), "kernel");
	CHECK_STR(comp(&t, "share/kata-containers/vmlinux-6.12-170"), "kernel");
	CHECK_STR(comp(&t, "share/kata-containers/config-6.12-170"), "kernel");
	CHECK_STR(comp(&t, "share/kata-containers/vmlinuz-6.12-170-debug"), "kernel-debug");
	CHECK_STR(comp(&t, "share/kata-containers/config-6.12-170-debug"), "kernel-debug");
	CHECK_STR(comp(&t, "share/kata-containers/vmlinux-nvidia-gpu.container"),
		  "kernel-nvidia-gpu");
	CHECK_STR(comp(&t, "share/kata-containers/kata-ubuntu-noble.image"), "rootfs-image");
	CHECK_STR(comp(&t, "share/kata-containers/root_hash_base.txt"), "rootfs-image");
	CHECK_STR(comp(&t, "share/kata-containers/kata-ubuntu-noble-coco.image"),
		  "rootfs-image-coco-extension");
	CHECK_STR(comp(&t, "share/kata-containers/root_hash_coco-extension.txt"),
		  "rootfs-image-coco-extension");
	CHECK_STR(comp(&t, "share/kata-containers/root_hash_nothing.txt"), KD_IMPORT_COMMON);
	CHECK_STR(comp(&t, "share/kata-containers/kata-alpine.initrd"), "rootfs-initrd");
	CHECK_STR(comp(&t, "VERSION"), KD_IMPORT_COMMON);
	CHECK_STR(comp(&t, "empty"), KD_IMPORT_COMMON);
	CHECK_STR(comp(&t, "share"), "(mixed)");
	kd_imp_tree_done(&t);
}

static char *shim_comps(kd_imp_tree *t, const char *shim, bool rust, const char *config,
			kd_error *err, int *ret)
{
	char **v = NULL;
	static char out[1024];
	*ret = kd_import_shim_components(t, shim, rust, config, strlen(config), &v, err);
	out[0] = '\0';
	for (size_t i = 0, n = 0; v && v[i]; i++)
		n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%s", i ? " " : "", v[i]);
	kd_strv_free(v);
	return out;
}

TEST(shim_components)
{
	kd_imp_tree t = {0};
	kd_error err = {0};
	int r;
	make_tree(&t);
	L("share/kata-containers/chain.img", "kata-containers.img");
	L("loop-a", "loop-b");
	L("loop-b", "loop-a");
	L("fw", "share/ovmf");
	CHECK_INT(kd_import_assign(&t, &err), 0);

	const char *qemu = "[hypervisor.qemu]\n"
			   "path = \"/opt/kata/bin/qemu-system-x86_64\"\n"
			   "kernel = \"/opt/kata/share/kata-containers/vmlinux.container\"\n"
			   "image = \"/opt/kata/share/kata-containers/kata-containers.img\"\n"
			   "firmware = \"\"\n"
			   "valid_hypervisor_paths = [\"/opt/kata/bin/qemu-system-x86_64\", "
			   "\"/opt/kata/bin/not-shipped\"]\n"
			   "virtio_fs_daemon = \"/opt/kata/libexec/virtiofsd\"\n"
			   "vhost_user_store_path = \"/var/run/kata-containers/vhost-user\"\n"
			   "[agent.kata]\n[runtime]\n";
	CHECK_STR(shim_comps(&t, "qemu", false, qemu, &err, &r),
		  "common kernel qemu rootfs-image shim-v2-go virtiofsd");
	CHECK_INT(r, 0);
	CHECK_STR(shim_comps(&t, "qemu-runtime-rs", true, qemu, &err, &r),
		  "common kernel qemu rootfs-image shim-v2-rust virtiofsd");

	/* Links through links and through a linked directory; an array of tables. */
	const char *coco = "[hypervisor.qemu]\n"
			   "path = \"/opt/kata/bin/qemu-system-x86_64-snp-experimental\"\n"
			   "kernel = \"/opt/kata/share/kata-containers/vmlinuz-debug.container\"\n"
			   "image = \"/opt/kata/share/kata-containers/chain.img\"\n"
			   "firmware = \"/opt/kata/fw/AMDSEV.fd\"\n"
			   "[[hypervisor.qemu.guest_extension_images]]\n"
			   "name = \"coco\"\n"
			   "path = \"/opt/kata/share/kata-containers/"
			   "kata-containers-coco-extension.img\"\n";
	CHECK_STR(shim_comps(&t, "qemu-coco-dev-runtime-rs", true, coco, &err, &r),
		  "common kernel-debug ovmf-sev qemu-snp-experimental rootfs-image "
		  "rootfs-image-coco-extension shim-v2-rust");
	CHECK_INT(r, 0);

	/* A directory named: everything below it. */
	CHECK_STR(shim_comps(&t, "x", false, "a = \"/opt/kata/share/ovmf/\"\n", &err, &r),
		  "common ovmf ovmf-sev shim-v2-go");

	/* A plain value that is missing fails, naming the key; so do loops and escapes. */
	shim_comps(&t, "fc", false,
		   "[hypervisor.firecracker]\njailer_path = \"/opt/kata/bin/jailer2\"\n", &err, &r);
	CHECK_INT(r, -ENOENT);
	CHECK(strstr(err.msg, "hypervisor.firecracker.jailer_path = \"/opt/kata/bin/jailer2\" "
			      "is not in the tarball"));
	shim_comps(&t, "l", false, "[h]\np = \"/opt/kata/loop-a\"\n", &err, &r);
	CHECK_INT(r, -ENOENT);
	shim_comps(&t, "l", false, "[h]\np = \"/opt/kata/../../etc/passwd\"\n", &err, &r);
	CHECK_INT(r, -ENOENT);
	shim_comps(&t, "l", false, "[h]\np = \"/opt/kata/VERSION/x\"\n", &err, &r);
	CHECK_INT(r, -ENOENT);
	/* Paths outside the prefix are the host's business. */
	shim_comps(&t, "clh-azure", false, "[h]\nkernel = \"/usr/share/cloud-hypervisor/v.bin\"\n",
		   &err, &r);
	CHECK_INT(r, 0);
	/* Invalid TOML is refused with its position. */
	shim_comps(&t, "bad", false, "[h\n", &err, &r);
	CHECK(r < 0);
	CHECK(strstr(err.msg, "configuration-bad.toml:1"));
	kd_imp_tree_done(&t);

	/* No shim binary of the runtime: refused. */
	kd_imp_tree t2 = {0};
	add(&t2, "bin", KD_ENTRY_DIR, NULL);
	add(&t2, "bin/containerd-shim-kata-v2", KD_ENTRY_FILE, NULL);
	CHECK_INT(kd_import_assign(&t2, &err), 0);
	shim_comps(&t2, "qemu-runtime-rs", true, "", &err, &r);
	CHECK_INT(r, -ENOENT);
	CHECK(strstr(err.msg, "runtime-rs shim binary opt/kata/runtime-rs/bin/"
			      "containerd-shim-kata-v2 is not in the tarball"));
	CHECK_STR(shim_comps(&t2, "remote", false, "[hypervisor.remote]\n", &err, &r),
		  "shim-v2-go");
	kd_imp_tree_done(&t2);
}

/* A tarball written with lib/tarball: entries "./opt/kata/..." like upstream's. */
typedef struct tentry {
	const char *path;
	kd_entry_type type;
	const char *data_or_link;
	mode_t mode;
} tentry;

static int write_tar(const char *path, kd_compression c, const tentry *e, size_t n)
{
	kd_error err = {0};
	kd_tar_writer *w = NULL;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	kd_tar_write_opts o = {.compression = c};
	if (fd < 0 || kd_tar_writer_open(fd, &o, &w, &err) < 0)
		abort();
	for (size_t i = 0; i < n; i++) {
		kd_tar_entry te = {.path = e[i].path, .type = e[i].type, .mode = e[i].mode};
		if (e[i].type == KD_ENTRY_FILE)
			te.size = strlen(e[i].data_or_link);
		else
			te.link = e[i].data_or_link;
		if (kd_tar_write_header(w, &te, &err) < 0 ||
		    (te.size && kd_tar_write_data(w, e[i].data_or_link, te.size, &err) < 0))
			abort();
	}
	int r = kd_tar_writer_close(w, &err);
	kd_tar_writer_free(w);
	close(fd);
	return r;
}

static const tentry small[] = {
	{"./", KD_ENTRY_DIR, NULL, 0755},
	{"./opt/", KD_ENTRY_DIR, NULL, 0755},
	{"./opt/kata/", KD_ENTRY_DIR, NULL, 0755},
	{"./opt/kata/VERSION", KD_ENTRY_FILE, "4.1.0\n", 0644},
	{"./opt/kata/bin/containerd-shim-kata-v2", KD_ENTRY_FILE, "#!/bin/sh\n", 0755},
	{"./opt/kata/bin/qemu-system-x86_64", KD_ENTRY_FILE, "qemu\n", 0755},
	{"./opt/kata/bin/qemu-copy", KD_ENTRY_HARDLINK, "./opt/kata/bin/qemu-system-x86_64", 0755},
	{"./opt/kata/share/defaults/kata-containers/configuration-qemu.toml", KD_ENTRY_FILE,
	 "[hypervisor.qemu]\npath = \"/opt/kata/bin/qemu-system-x86_64\"\n", 0644},
};

TEST(sniff_and_import)
{
	char path[512], out[512];
	kd_error err = {0};
	kd_import_result res = {0};
	snprintf(path, sizeof(path), "%s/kata-static-4.1.0-amd64.tar.xz", base_dir);
	snprintf(out, sizeof(out), "%s/p.tar.zst", base_dir);
	CHECK_INT(write_tar(path, KD_COMPRESS_XZ, small, ELEMENTSOF(small)), 0);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK_INT(kd_import_sniff(fd), KD_IMPORT_UPSTREAM);
	close(fd);

	CHECK_INT(kd_import(path, out, NULL, &res, &err), 0);
	CHECK_STR(res.version, "4.1.0");
	CHECK_STR(res.arch, "x86_64");
	CHECK_INT(res.n_shims, 1);
	CHECK_STR(res.shims[0].name, "qemu");
	CHECK_INT(res.files, 5);
	kd_import_result_done(&res);
	fd = open(out, O_RDONLY | O_CLOEXEC);
	CHECK_INT(kd_import_sniff(fd), KD_IMPORT_PAYLOAD);
	close(fd);

	/* The payload opens and its qemu shim selects the two components. */
	kd_payload *p = NULL;
	fd = open(out, O_RDONLY | O_CLOEXEC);
	CHECK_INT(kd_payload_open(fd, out, NULL, &p, &err), 0);
	close(fd);
	if (p) {
		const kd_shim *s = kd_manifest_find_shim(kd_payload_manifest(p), "qemu");
		CHECK(s && s->n_components == 3); /* common, qemu, shim-v2-go */
		kd_payload_free(p);
	}

	/* Not a tar at all. */
	snprintf(path, sizeof(path), "%s/junk", base_dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CHECK(write(fd, "hello, not a tarball\n", 21) == 21);
	CHECK_INT(kd_import_sniff(fd), KD_IMPORT_NOT_TAR);
	close(fd);
}

TEST(limits)
{
	char path[512], out[512];
	kd_error err = {0};
	kd_import_result res = {0};
	kd_payload_limits lim = {0};
	kd_import_opts o = {.limits = &lim};
	snprintf(path, sizeof(path), "%s/kata-static-4.1.0-amd64.tar.zst", base_dir);
	snprintf(out, sizeof(out), "%s/lim.tar.zst", base_dir);
	CHECK_INT(write_tar(path, KD_COMPRESS_ZSTD, small, ELEMENTSOF(small)), 0);

	lim = (kd_payload_limits){.max_entries = 5};
	CHECK(kd_import(path, out, &o, &res, &err) < 0);
	CHECK(strstr(err.msg, "more than 5 entries"));
	lim = (kd_payload_limits){.max_entry_size = 8};
	CHECK(kd_import(path, out, &o, &res, &err) < 0);
	CHECK(strstr(err.msg, "10 bytes exceeds the limit of 8 bytes per file"));
	lim = (kd_payload_limits){.max_total = 12};
	CHECK(kd_import(path, out, &o, &res, &err) < 0);
	CHECK(strstr(err.msg, "files exceed 12 bytes in total"));
	CHECK(access(out, F_OK) < 0);

	/* Options: a digest that does not match, --shims that the tarball lacks. */
	o = (kd_import_opts){
		.sha256 = "0000000000000000000000000000000000000000000000000000000000000000"};
	CHECK_INT(kd_import(path, out, &o, &res, &err), -EBADMSG);
	CHECK(strstr(err.msg, "expected 0000"));
	CHECK(res.sha256[0] != '\0');
	char *only[] = {"clh", NULL};
	o = (kd_import_opts){.shims = only};
	CHECK_INT(kd_import(path, out, &o, &res, &err), -ENOENT);
	CHECK(strstr(err.msg, "shim 'clh': no configuration-clh.toml"));
	CHECK(access(out, F_OK) < 0);
	/* Nothing left behind in the output directory but the two inputs and the payload. */
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "test $(ls -A %s | wc -l) -eq 4", base_dir);
	CHECK_INT(system(cmd), 0);
}

int main(void)
{
	if (!mkdtemp(base_dir))
		return 1;
	RUN(detect);
	RUN(entry_paths);
	RUN(links);
	RUN(config_shims);
	RUN(names);
	RUN(components);
	RUN(shim_components);
	RUN(sniff_and_import);
	RUN(limits);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", base_dir);
	if (system(cmd) != 0)
		return 1;
	TAP_END();
}
