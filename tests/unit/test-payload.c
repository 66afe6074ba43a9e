/* lib/payload: pack → open → extract → verify round trips on a generated tree, determinism,
 * shim selection, reuse, signatures, and one test per hostile payload (made by
 * tests/tools/mkhostile.py), each checking the message names the culprit and that nothing
 * appeared outside the destination. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/digest.h"
#include "lib/fsroot.h"
#include "lib/json.h"
#include "lib/payload.h"
#include "lib/sign.h"
#include "tap.h"

static char base_dir[] = "/tmp/kd-test-payload-XXXXXX";
static int counter;

static char *tmp_path(const char *name)
{
	char *p;
	if (asprintf(&p, "%s/%s", base_dir, name) < 0)
		abort();
	return p;
}

/* A fresh directory under base_dir for one test. */
static char *fresh_dir(const char *tag)
{
	char name[64];
	snprintf(name, sizeof(name), "%s-%d", tag, counter++);
	char *p = tmp_path(name);
	if (mkdir(p, 0755) < 0)
		abort();
	return p;
}

static void write_file(const char *dir, const char *rel, const void *data, size_t len, mode_t mode)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len) {
		perror(path);
		abort();
	}
	fchmod(fd, mode);
	close(fd);
}

static void mkdirs(const char *dir, const char *rel)
{
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s/%s'", dir, rel);
	if (system(cmd) != 0)
		abort();
}

static void fill(uint8_t *buf, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (uint8_t)(seed >> 16);
	}
}

/* SRC/opt/kata with files of every kind, odd modes to normalise, duplicates, an empty dir. */
static char *make_tree(void)
{
	char *src = fresh_dir("src");
	char kata[4096];
	static uint8_t buf[1 << 21];

	snprintf(kata, sizeof(kata), "%s/opt/kata", src);
	mkdirs(kata, "bin");
	mkdirs(kata, "libexec");
	mkdirs(kata, "share/defaults/kata-containers");
	mkdirs(kata, "share/kata-containers");
	mkdirs(kata, "share/kata-qemu");
	mkdirs(kata, "var/empty");
	chmod(kata, 0700);
	fill(buf, 300000, 1);
	write_file(kata, "bin/containerd-shim-kata-v2", buf, 300000, 0700);
	fill(buf, sizeof(buf), 2);
	write_file(kata, "bin/qemu-system-x86_64", buf, sizeof(buf), 0751);
	fill(buf, 70000, 3);
	write_file(kata, "bin/cloud-hypervisor", buf, 70000, 0755);
	fill(buf, 1 << 20, 4);
	write_file(kata, "share/kata-qemu/qemu.img", buf, 1 << 20, 0600);
	write_file(kata, "share/defaults/kata-containers/configuration-qemu.toml",
		   "[hypervisor.qemu]\n", 18, 0644);
	write_file(kata, "share/defaults/kata-containers/configuration-clh.toml",
		   "[hypervisor.clh]\n", 17, 0664);
	fill(buf, 4096, 5);
	write_file(kata, "share/kata-containers/vmlinux-6.1", buf, 4096, 0644);
	char link[4200];
	snprintf(link, sizeof(link), "%s/share/kata-containers/vmlinux.container", kata);
	if (symlink("vmlinux-6.1", link) < 0)
		abort();
	write_file(kata, "libexec/dup1", "same bytes\n", 11, 0755);
	write_file(kata, "libexec/dup2", "same bytes\n", 11, 0755);
	write_file(kata, "libexec/empty", "", 0, 0644);
	return src;
}

static const char spec_yaml[] =
	"version: 3.21.0\n"
	"arch: x86_64\n"
	"components:\n"
	"  - name: kata\n"
	"    version: 3.21.0\n"
	"    paths: [bin/containerd-shim-kata-v2, libexec/, share/defaults/, var/]\n"
	"  - name: kernel\n"
	"    version: '6.1'\n"
	"    paths: [share/kata-containers/]\n"
	"  - name: qemu\n"
	"    version: 9.0.0\n"
	"    paths: [bin/qemu-system-x86_64, share/kata-qemu/]\n"
	"  - name: clh\n"
	"    version: '40.0'\n"
	"    paths: [bin/cloud-hypervisor]\n"
	"shims:\n"
	"  qemu: [kata, kernel, qemu]\n"
	"  clh: [kata, kernel, clh]\n";

static int pack(const char *src, const char *out, const char *spec, int threads, kd_error *err)
{
	kd_pack_opts o = {.spec_path = spec,
			  .version = spec ? NULL : "1.2.3",
			  .arch = "x86_64",
			  .zstd_level = 3,
			  .threads = threads,
			  .mtime = 1700000000};
	return kd_payload_pack(src, out, &o, err);
}

static int open_payload(const char *path, const kd_payload_verify *v, kd_payload **ret,
			kd_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = kd_payload_open(fd, path, v, ret, err);
	close(fd);
	return r;
}

static int open_dir(const char *path)
{
	mkdir(path, 0755);
	return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static bool has(const char *haystack, const char *needle)
{
	if (!strstr(haystack, needle)) {
		printf("#   message \"%s\" does not contain \"%s\"\n", haystack, needle);
		return false;
	}
	return true;
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *de;
	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static mode_t mode_of(const char *dir, const char *rel)
{
	char p[4200];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	if (lstat(p, &st) < 0)
		return (mode_t)-1;
	return st.st_mode & 07777;
}

static ino_t ino_of(const char *dir, const char *rel)
{
	char p[4200];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	if (lstat(p, &st) < 0)
		return 0;
	return st.st_ino;
}

static char *tree_src;	    /* generated once */
static char *payload_plain; /* packed without a spec */
static char *payload_spec;  /* packed with spec_yaml */
static char *payload_v1;    /* payload_plain rewritten as format 1 (tests/tools/payload-v1.py) */

TEST(pack_open_extract_verify)
{
	kd_error err = {0};
	kd_payload *p = NULL;
	kd_extract_stats st = {0};
	char *dest = tmp_path("roundtrip");
	char cmd[8400];

	CHECK_INT(open_payload(payload_plain, NULL, &p, &err), 0);
	if (!p) {
		printf("#   %s\n", kd_err_msg(&err));
		return;
	}
	const kd_manifest *m = kd_payload_manifest(p);
	CHECK_STR(m->version, "1.2.3");
	CHECK_STR(m->arch, "x86_64");
	CHECK_INT(m->n_components, 1);
	CHECK_STR(m->components[0].name, "kata");
	CHECK(kd_sha256_hex_valid(kd_payload_digest(p)));
	int dfd = open_dir(dest);
	CHECK_INT(kd_payload_extract(p, dfd, NULL, &st, &err), 0);
	CHECK_INT(st.files_written, 9); /* 10 regular files, one stored as a hardlink */
	CHECK_INT(st.files_linked, 0);
	CHECK_INT(st.entries_skipped, 0);
	CHECK_INT(kd_payload_verify_tree(m, NULL, dfd, true, &err), 0);
	snprintf(cmd, sizeof(cmd), "diff -r --no-dereference '%s/opt/kata' '%s'", tree_src, dest);
	CHECK_INT(system(cmd), 0);
	/* Modes are normalised: 0755 for directories and executables, 0644 otherwise. */
	CHECK_INT(mode_of(dest, "bin/containerd-shim-kata-v2"), 0755);
	CHECK_INT(mode_of(dest, "bin/qemu-system-x86_64"), 0755);
	CHECK_INT(mode_of(dest, "share/kata-qemu/qemu.img"), 0644);
	CHECK_INT(mode_of(dest, "share/defaults/kata-containers/configuration-clh.toml"), 0644);
	CHECK_INT(mode_of(dest, "var/empty"), 0755);
	/* Identical files are stored once and extracted as hardlinks. */
	const kd_pfile *f = kd_manifest_find(m, "libexec/dup2");
	CHECK(f && f->type == KD_FILE_HARDLINK && strcmp(f->target, "libexec/dup1") == 0);
	CHECK(ino_of(dest, "libexec/dup1") == ino_of(dest, "libexec/dup2"));
	/* verify_tree notices a change. */
	write_file(dest, "libexec/empty", "x", 1, 0644);
	CHECK(kd_payload_verify_tree(m, NULL, dfd, false, &err) == -EBADMSG);
	CHECK(has(err.msg, "libexec/empty"));
	close(dfd);
	kd_payload_free(p);
	free(dest);
}

/* Files are created with their mode and chmod'ed only when the umask clears bits of it: under a
 * strict umask every mode is still the manifest's. */
TEST(extract_modes_under_umask)
{
	kd_error err = {0};
	kd_payload *p = NULL;
	char *dest = tmp_path("umask");

	CHECK_INT(open_payload(payload_plain, NULL, &p, &err), 0);
	if (!p)
		return;
	int dfd = open_dir(dest);
	mode_t old = umask(077);
	CHECK_INT(kd_payload_extract(p, dfd, NULL, NULL, &err), 0);
	umask(old);
	CHECK_INT(mode_of(dest, "bin/containerd-shim-kata-v2"), 0755);
	CHECK_INT(mode_of(dest, "share/kata-qemu/qemu.img"), 0644);
	CHECK_INT(mode_of(dest, "libexec/dup2"), 0755);
	CHECK_INT(mode_of(dest, "var/empty"), 0755);
	CHECK_INT(kd_payload_verify_tree(kd_payload_manifest(p), NULL, dfd, true, &err), 0);
	close(dfd);
	kd_payload_free(p);
	free(dest);
}

TEST(verify_tree_rehash)
{
	kd_error err = {0};
	kd_payload *p = NULL;
	char *dest = tmp_path("rehash");
	static uint8_t buf[4096];

	CHECK_INT(open_payload(payload_plain, NULL, &p, &err), 0);
	if (!p)
		return;
	int dfd = open_dir(dest);
	CHECK_INT(kd_payload_extract(p, dfd, NULL, NULL, &err), 0);
	/* Same size, different bytes: only a rehash sees it. */
	fill(buf, sizeof(buf), 99);
	write_file(dest, "share/kata-containers/vmlinux-6.1", buf, sizeof(buf), 0644);
	CHECK_INT(kd_payload_verify_tree(kd_payload_manifest(p), NULL, dfd, false, &err), 0);
	CHECK_INT(kd_payload_verify_tree(kd_payload_manifest(p), NULL, dfd, true, &err), -EBADMSG);
	CHECK(has(err.msg, "vmlinux-6.1") && has(err.msg, "sha256"));
	/* Both digests in full. */
	const kd_pfile *vf =
		kd_manifest_find(kd_payload_manifest(p), "share/kata-containers/vmlinux-6.1");
	char want[200], hex[KD_SHA256_HEX_LEN + 1], mhex[KD_SHA256_HEX_LEN + 1] = "?";
	kd_sha256_buf(buf, sizeof(buf), hex);
	if (vf)
		kd_hex(vf->sha256, sizeof(vf->sha256), mhex);
	snprintf(want, sizeof(want), "sha256 is %s, the manifest says %s", hex, mhex);
	CHECK(vf && strlen(mhex) == 64 && has(err.msg, want));
	close(dfd);
	kd_payload_free(p);
	free(dest);
}

static const char *tmp_path_static(const char *name)
{
	static char buf[4200];
	snprintf(buf, sizeof(buf), "%s/%s", base_dir, name);
	return buf;
}

TEST(deterministic)
{
	kd_error err = {0};
	char *a = tmp_path("det-a.tar.zst"), *b = tmp_path("det-b.tar.zst");
	char cmd[4200];

	CHECK_INT(pack(tree_src, a, NULL, 1, &err), 0);
	/* A different worker count and a touched source tree give the same bytes. */
	snprintf(cmd, sizeof(cmd), "touch '%s/opt/kata/bin/cloud-hypervisor'", tree_src);
	CHECK_INT(system(cmd), 0);
	CHECK_INT(pack(tree_src, b, NULL, 2, &err), 0);
	snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s' && cmp -s '%s' '%s'", a, b, a, payload_plain);
	CHECK_INT(system(cmd), 0);
	/* Format 2 with several components, four workers on any machine. */
	char *c = tmp_path("det-c.tar.zst");
	CHECK_INT(pack(tree_src, c, tmp_path_static("spec.yaml"), 4, &err), 0);
	snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", c, payload_spec);
	CHECK_INT(system(cmd), 0);
	free(c);
	/* The tar is readable by GNU tar, manifest first, sorted, uid/gid 0, fixed mtime. */
	snprintf(cmd, sizeof(cmd),
		 "tar -I zstd --numeric-owner --full-time -tvf '%s' > '%s.list' && "
		 "head -n1 '%s.list' | grep -q ' kata-payload.json$' && "
		 "! grep -v ' 0/0 ' '%s.list' && ! grep -v '2023-11-14 22:13:20' '%s.list'",
		 a, a, a, a, a);
	CHECK_INT(system(cmd), 0);
	free(a);
	free(b);
}

TEST(inferred_shims)
{
	kd_error err = {0};
	kd_payload *p = NULL;
	bool mask[1];

	CHECK_INT(open_payload(payload_plain, NULL, &p, &err), 0);
	if (!p)
		return;
	const kd_manifest *m = kd_payload_manifest(p);
	CHECK_INT(m->n_shims, 2);
	CHECK_STR(m->shims[0].name, "clh");
	CHECK_STR(m->shims[1].name, "qemu");
	CHECK_STR(m->shims[1].components[0], "kata");
	const char *bad[] = {"fc"};
	CHECK_INT(kd_manifest_select(m, bad, 1, mask, &err), -ENOENT);
	CHECK(has(err.msg, "'fc'") && has(err.msg, "clh, qemu"));
	kd_payload_free(p);
}

TEST(spec_selection)
{
	kd_error err = {0};
	kd_payload *p = NULL;
	kd_extract_stats st = {0};
	char *dest = tmp_path("select");

	CHECK_INT(open_payload(payload_spec, NULL, &p, &err), 0);
	if (!p) {
		printf("#   %s\n", kd_err_msg(&err));
		return;
	}
	const kd_manifest *m = kd_payload_manifest(p);
	CHECK_INT(m->n_components, 4);
	CHECK_STR(m->version, "3.21.0");
	CHECK_STR(m->components[1].version, "6.1");
	bool mask[4];
	const char *shims[] = {"clh"};
	CHECK_INT(kd_manifest_select(m, shims, 1, mask, &err), 0);
	CHECK(mask[0] && mask[1] && !mask[2] && mask[3]);
	int dfd = open_dir(dest);
	kd_extract_opts o = {.component_mask = mask, .reuse_dirfd = -1};
	CHECK_INT(kd_payload_extract(p, dfd, &o, &st, &err), 0);
	CHECK(mode_of(dest, "bin/cloud-hypervisor") == 0755);
	CHECK(mode_of(dest, "bin/qemu-system-x86_64") == (mode_t)-1);
	CHECK(mode_of(dest, "share/kata-qemu") == (mode_t)-1);
	CHECK(mode_of(dest, "share/kata-containers/vmlinux.container") == 0777);
	CHECK_INT(st.entries_skipped, 3); /* qemu binary, share/kata-qemu/, its image */
	CHECK_INT(kd_payload_verify_tree(m, mask, dfd, true, &err), 0);
	/* The whole payload does not verify against this partial tree. */
	CHECK_INT(kd_payload_verify_tree(m, NULL, dfd, false, &err), -EBADMSG);
	CHECK(has(err.msg, "'opt/kata/bin/qemu-system-x86_64' is missing"));
	close(dfd);
	kd_payload_free(p);
	free(dest);
}

TEST(spec_errors)
{
	kd_error err = {0};
	char *out = tmp_path("spec-bad.tar.zst"), *spec = tmp_path("spec-bad.yaml");
	int fd;

	/* A file that no component claims. */
	fd = open(spec, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	dprintf(fd, "version: '1'\ncomponents:\n  - name: a\n    paths: [bin/, share/, var/]\n");
	close(fd);
	CHECK(pack(tree_src, out, spec, 1, &err) < 0);
	CHECK(has(err.msg, "opt/kata/libexec") && has(err.msg, "no component"));
	/* A file claimed twice. */
	fd = open(spec, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	dprintf(fd, "version: '1'\ncomponents:\n  - name: a\n    paths: [bin/, share/, libexec/, "
		    "var/]\n  - name: b\n    paths: [bin/cloud-hypervisor]\n");
	close(fd);
	CHECK(pack(tree_src, out, spec, 1, &err) < 0);
	CHECK(has(err.msg, "opt/kata/bin/cloud-hypervisor") && has(err.msg, "'a' and 'b'"));
	/* A shim naming an unknown component. */
	fd = open(spec, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	dprintf(fd, "version: '1'\ncomponents:\n  - name: a\n    paths: [bin/, share/, libexec/, "
		    "var/]\nshims:\n  qemu: [a, nope]\n");
	close(fd);
	CHECK(pack(tree_src, out, spec, 1, &err) < 0);
	CHECK(has(err.msg, "'nope'"));
	/* A path that is not a string is named by its place (was ".paths" written over itself). */
	fd = open(spec, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	dprintf(fd, "version: '1'\ncomponents:\n  - name: a\n    paths: [bin/, 7]\n");
	close(fd);
	err = (kd_error){0};
	CHECK(pack(tree_src, out, spec, 1, &err) < 0);
	CHECK(has(err.msg, "components[0].paths[1]: expected string"));
	CHECK(access(out, F_OK) < 0); /* nothing left behind */
	free(out);
	free(spec);
}

TEST(reuse_previous_tree)
{
	kd_error err = {0};
	kd_payload *p = NULL;
	kd_extract_stats st = {0};
	char *d1 = tmp_path("reuse-1"), *d2 = tmp_path("reuse-2");

	CHECK_INT(open_payload(payload_plain, NULL, &p, &err), 0);
	if (!p)
		return;
	int fd1 = open_dir(d1), fd2 = open_dir(d2);
	CHECK_INT(kd_payload_extract(p, fd1, NULL, NULL, &err), 0);
	/* One file of the old tree differs: it must be written, not linked. */
	static uint8_t buf[4096];
	fill(buf, sizeof(buf), 77);
	write_file(d1, "share/kata-containers/vmlinux-6.1", buf, 100, 0644);
	/* Another edited in place: same size, mode and inode, one byte different (issue 14). */
	char path[4200];
	uint8_t c;
	snprintf(path, sizeof(path), "%s/bin/containerd-shim-kata-v2", d1);
	int tfd = open(path, O_RDWR);
	CHECK(tfd >= 0 && pread(tfd, &c, 1, 0) == 1);
	c ^= 1;
	CHECK(tfd >= 0 && pwrite(tfd, &c, 1, 0) == 1);
	close(tfd);
	kd_extract_opts o = {.reuse_dirfd = fd1, .reuse_manifest = kd_payload_manifest(p)};
	CHECK_INT(kd_payload_extract(p, fd2, &o, &st, &err), 0);
	CHECK_INT(st.files_linked, 7);
	CHECK_INT(st.files_written, 2);
	CHECK_INT(st.files_changed, 1);
	CHECK_STR(st.first_changed, "opt/kata/bin/containerd-shim-kata-v2");
	CHECK(ino_of(d1, "bin/containerd-shim-kata-v2") !=
	      ino_of(d2, "bin/containerd-shim-kata-v2"));
	CHECK(ino_of(d1, "bin/qemu-system-x86_64") == ino_of(d2, "bin/qemu-system-x86_64"));
	CHECK(ino_of(d1, "share/kata-containers/vmlinux-6.1") !=
	      ino_of(d2, "share/kata-containers/vmlinux-6.1"));
	CHECK_INT(kd_payload_verify_tree(kd_payload_manifest(p), NULL, fd2, true, &err), 0);
	close(fd1);
	close(fd2);
	kd_payload_free(p);
	free(d1);
	free(d2);
}

static int read_all(const char *path, uint8_t *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, size);
	close(fd);
	return (int)n;
}

TEST(signatures)
{
	kd_error err = {0};
	kd_payload *p = NULL;
	char *dir = fresh_dir("sign");
	char priv[4200], pub[4200], priv2[4200], pub2[4200], out[4200], sigp[4300];
	uint8_t sig[600];

	snprintf(priv, sizeof(priv), "%s/key.pem", dir);
	snprintf(pub, sizeof(pub), "%s/key.pub", dir);
	snprintf(priv2, sizeof(priv2), "%s/other.pem", dir);
	snprintf(pub2, sizeof(pub2), "%s/other.pub", dir);
	snprintf(out, sizeof(out), "%s/signed.tar.zst", dir);
	snprintf(sigp, sizeof(sigp), "%s.sig", out);
	CHECK_INT(kd_sign_keygen(priv, pub, &err), 0);
	CHECK_INT(kd_sign_keygen(priv2, pub2, &err), 0);
	kd_pack_opts o = {.version = "1",
			  .arch = "x86_64",
			  .sign_key = priv,
			  .sign_pubkey = pub,
			  .zstd_level = 1,
			  .threads = 1};
	CHECK_INT(kd_payload_pack(tree_src, out, &o, &err), 0);
	int n = read_all(sigp, sig, sizeof(sig));
	CHECK(n > 0);

	kd_payload_verify v = {.pubkey_path = pub, .sig = sig, .siglen = (size_t)n};
	CHECK_INT(open_payload(out, &v, &p, &err), 0);
	char fp[65];
	CHECK_INT(kd_pubkey_fingerprint(pub, fp, &err), 0);
	if (p)
		CHECK_STR(kd_payload_manifest(p)->signing_key, fp);
	kd_payload_free(p);
	p = NULL;

	/* Signed manifest, no key given: refused, naming the fingerprint. */
	CHECK(open_payload(out, NULL, &p, &err) < 0);
	CHECK(has(err.msg, fp));
	/* A flipped signature byte. */
	sig[n / 2] ^= 1;
	CHECK_INT(open_payload(out, &v, &p, &err), -EBADMSG);
	CHECK(has(err.msg, "signature"));
	sig[n / 2] ^= 1;
	/* The right signature checked with another key. */
	v.pubkey_path = pub2;
	CHECK(open_payload(out, &v, &p, &err) < 0);
	CHECK(has(err.msg, "signature"));
	/* No signature bytes. */
	v = (kd_payload_verify){.pubkey_path = pub};
	CHECK_INT(open_payload(out, &v, &p, &err), -EINVAL);
	/* A payload whose bytes changed after signing. */
	char cmd[8400];
	snprintf(cmd, sizeof(cmd), "printf x >> '%s'", out);
	CHECK_INT(system(cmd), 0);
	v = (kd_payload_verify){.pubkey_path = pub, .sig = sig, .siglen = (size_t)n};
	CHECK_INT(open_payload(out, &v, &p, &err), -EBADMSG);
	CHECK(p == NULL);

	/* Signed without the public key (pack --sign KEY): the fingerprint comes from the
	 * private key, so an install without a key is still refused. */
	o.sign_pubkey = NULL;
	CHECK_INT(kd_payload_pack(tree_src, out, &o, &err), 0);
	n = read_all(sigp, sig, sizeof(sig));
	CHECK(n > 0);
	v = (kd_payload_verify){.pubkey_path = pub, .sig = sig, .siglen = (size_t)n};
	CHECK_INT(open_payload(out, &v, &p, &err), 0);
	if (p)
		CHECK_STR(kd_payload_manifest(p)->signing_key, fp);
	kd_payload_free(p);
	p = NULL;
	CHECK(open_payload(out, NULL, &p, &err) < 0);
	CHECK(has(err.msg, fp));
	free(dir);
}

TEST(expected_digest)
{
	kd_error err = {0};
	kd_payload *p = NULL;
	char good[65];

	CHECK_INT(open_payload(payload_plain, NULL, &p, &err), 0);
	if (!p)
		return;
	snprintf(good, sizeof(good), "%s", kd_payload_digest(p));
	kd_payload_free(p);
	p = NULL;
	kd_payload_verify v = {.expect_sha256 = good};
	CHECK_INT(open_payload(payload_plain, &v, &p, &err), 0);
	kd_payload_free(p);
	p = NULL;
	good[0] = good[0] == '0' ? '1' : '0';
	CHECK_INT(open_payload(payload_plain, &v, &p, &err), -EBADMSG);
	CHECK(has(err.msg, good) && has(err.msg, "expected"));
}

/* ---- hostile payloads ----------------------------------------------------------------- */

typedef struct hostile {
	const char *name;
	bool open_fails; /* refused by kd_payload_open (manifest validation) */
	const char *culprit;
	const char *why;
} hostile;

static const hostile hostiles[] = {
	{"dotdot", false, "opt/kata/../outside/dotdot", "unsafe path"},
	{"absolute", false, "/absolute'", "absolute"},
	{"outside-prefix", false, "'etc/evil'", "outside opt/kata/"},
	{"symlink-escape-manifest", true, "bin/esc", "escapes"},
	{"symlink-escape", false, "opt/kata/bin/esc", "symlink to"},
	{"hardlink-escape", false, "opt/kata/bin/h", "hardlink to"},
	{"hardlink-escape-manifest", true, "bin/h", "hardlink"},
	{"symlink-then-file", false, "'opt/kata/lib'", "is a symlink in the archive"},
	{"symlink-then-file-manifest", true, "lib/x", "not a directory"},
	{"device", false, "opt/kata/bin/null", "character device"},
	{"fifo", false, "opt/kata/bin/fifo", "FIFO"},
	{"setuid", false, "opt/kata/bin/su", "setuid"},
	{"setuid-manifest", true, "bin/su", "setuid"},
	{"size-mismatch", false, "opt/kata/bin/big", "size"},
	/* Both digests in full (issue 13 reported "the manifest says 0" for 0399b87d…). */
	{"digest-mismatch", false, "opt/kata/bin/c",
	 "sha256 is 92e78d0b032962f47792a9fa95fd981ef63e1e3ef074d536d6304c75eddbe29f, the manifest "
	 "says 1ea7a9b77da8c725742658e48d686d50bdaaf7f8b0289b1061adec3d249e5071"},
	{"not-in-manifest", false, "'opt/kata/bin/extra' is not in the manifest", ""},
	{"missing", false, "opt/kata/share/c", "missing"},
	{"duplicate", false, "opt/kata/bin/d", "twice"},
	{"type-mismatch", false, "opt/kata/bin/t", "is a dir in the archive"},
	{"chain-escape", true, "symlink 'd1/d2/d3/d4/d5/d6/x'", "through the link"},
	{"writable-file", true, "'share/w': mode 0666", "lets group and others write it"},
	{"writable-exec", true, "'bin/w': mode 0777", "lets group and others write it"},
	{"writable-dir", true, "'wdir': mode 0777", "lets group and others write it"},
	{"group-writable-dir", true, "'gdir': mode 0775", "lets its group write it"},
	{"writable-tar", false, "'opt/kata/share/t': mode 0666", "lets group or others write it"},
	{"reserved-name", true, "'.#kd.staging-x'", "reserved for kata-deploy's temporary files"},
	{"reserved-name-deep", true, "'share/.#kd.1.tmp'",
	 "names starting with '.#kd.' are reserved"},
};

static const char *src_dir(void)
{
	const char *s = getenv("KD_SRCDIR");
	return s ? s : ".";
}

/* Nothing may appear in dir/outside, and dir holds only what the test put there. */
static void check_contained(const char *dir)
{
	char outside[4200];
	snprintf(outside, sizeof(outside), "%s/outside", dir);
	CHECK_INT(count_entries(outside), 0);
	CHECK_INT(count_entries(dir), 3); /* dest, outside, p.tar.zst */
}

static void run_hostile(const hostile *h)
{
	kd_error err = {0};
	kd_payload *p = NULL;
	char *dir = fresh_dir(h->name);
	char out[4200], dest[4200], outside[4200], cmd[16000];

	snprintf(out, sizeof(out), "%s/p.tar.zst", dir);
	snprintf(dest, sizeof(dest), "%s/dest", dir);
	snprintf(outside, sizeof(outside), "%s/outside", dir);
	mkdir(outside, 0755);
	snprintf(cmd, sizeof(cmd), "python3 '%s/tests/tools/mkhostile.py' '%s' '%s' '%s'",
		 src_dir(), h->name, out, outside);
	if (system(cmd) != 0) {
		printf("#   %s: mkhostile failed\n", h->name);
		tap_cur_failed = 1;
		return;
	}
	int dfd = open_dir(dest);
	int r = open_payload(out, NULL, &p, &err);
	if (h->open_fails) {
		if (r >= 0)
			printf("#   %s: open succeeded\n", h->name);
		CHECK(r < 0);
	} else {
		if (r < 0)
			printf("#   %s: open failed: %s\n", h->name, err.msg);
		CHECK_INT(r, 0);
		if (p) {
			r = kd_payload_extract(p, dfd, NULL, NULL, &err);
			if (r >= 0)
				printf("#   %s: extract succeeded\n", h->name);
			CHECK(r < 0);
		}
	}
	if (r < 0)
		CHECK(has(err.msg, h->culprit) && has(err.msg, h->why));
	check_contained(dir);
	close(dfd);
	kd_payload_free(p);
	free(dir);
}

#define HOSTILE(id, idx)                                                                           \
	TEST(hostile_##id)                                                                         \
	{                                                                                          \
		run_hostile(&hostiles[idx]);                                                       \
	}
HOSTILE(dotdot, 0)
HOSTILE(absolute, 1)
HOSTILE(outside_prefix, 2)
HOSTILE(symlink_escape_manifest, 3)
HOSTILE(symlink_escape, 4)
HOSTILE(hardlink_escape, 5)
HOSTILE(hardlink_escape_manifest, 6)
HOSTILE(symlink_then_file, 7)
HOSTILE(symlink_then_file_manifest, 8)
HOSTILE(device, 9)
HOSTILE(fifo, 10)
HOSTILE(setuid, 11)
HOSTILE(setuid_manifest, 12)
HOSTILE(size_mismatch, 13)
HOSTILE(digest_mismatch, 14)
HOSTILE(not_in_manifest, 15)
HOSTILE(missing_file, 16)
HOSTILE(duplicate_entry, 17)
HOSTILE(type_mismatch, 18)
HOSTILE(chain_escape, 19)
HOSTILE(writable_file, 20)
HOSTILE(writable_exec, 21)
HOSTILE(writable_dir, 22)
HOSTILE(group_writable_dir, 23)
HOSTILE(writable_tar, 24)
HOSTILE(reserved_name, 25)
HOSTILE(reserved_name_deep, 26)

/* A symlink planted in the destination is never followed. */
TEST(planted_symlink_in_dest)
{
	kd_error err = {0};
	kd_payload *p = NULL;
	char *dir = fresh_dir("planted");
	char dest[4200], outside[4200], link[4300];

	snprintf(dest, sizeof(dest), "%s/dest", dir);
	snprintf(outside, sizeof(outside), "%s/outside", dir);
	mkdir(outside, 0755);
	int dfd = open_dir(dest);
	snprintf(link, sizeof(link), "%s/bin", dest);
	CHECK_INT(symlink(outside, link), 0);
	CHECK_INT(open_payload(payload_plain, NULL, &p, &err), 0);
	if (p)
		CHECK(kd_payload_extract(p, dfd, NULL, NULL, &err) < 0);
	CHECK(has(err.msg, "opt/kata/bin"));
	CHECK_INT(count_entries(outside), 0);
	close(dfd);
	kd_payload_free(p);
	free(dir);
}

static void extract_with_limits(const kd_payload_limits *lim, const char *culprit, const char *why)
{
	kd_error err = {0};
	kd_payload *p = NULL;
	char *dir = fresh_dir("limit");
	char dest[4200];

	snprintf(dest, sizeof(dest), "%s/dest", dir);
	int dfd = open_dir(dest);
	CHECK_INT(open_payload(payload_plain, NULL, &p, &err), 0);
	kd_extract_opts o = {.reuse_dirfd = -1, .limits = lim};
	if (p)
		CHECK(kd_payload_extract(p, dfd, &o, NULL, &err) < 0);
	CHECK(has(err.msg, culprit) && has(err.msg, why));
	close(dfd);
	kd_payload_free(p);
	free(dir);
}

TEST(limit_entry_size)
{
	kd_payload_limits lim = {.max_entry_size = 100000};
	extract_with_limits(&lim, "opt/kata/bin/containerd-shim-kata-v2",
			    "exceeds the limit of 100000 bytes per file");
}

TEST(limit_entries)
{
	kd_payload_limits lim = {.max_entries = 5};
	extract_with_limits(&lim, "archive: more than 6 entries", "");
}

TEST(limit_total)
{
	kd_payload_limits lim = {.max_total = 2500000};
	extract_with_limits(&lim, "opt/kata/", "exceed 2500000 bytes in total");
}

static void damaged(const char *tag, const char *payload, void (*damage)(const char *path),
		    const char *why)
{
	kd_error err = {0};
	kd_payload *p = NULL;
	char *dir = fresh_dir(tag);
	char out[4200], dest[4200], outside[4200], cmd[8600];

	snprintf(out, sizeof(out), "%s/p.tar.zst", dir);
	snprintf(dest, sizeof(dest), "%s/dest", dir);
	snprintf(outside, sizeof(outside), "%s/outside", dir);
	mkdir(outside, 0755);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", payload, out);
	CHECK_INT(system(cmd), 0);
	damage(out);
	int dfd = open_dir(dest);
	int r = open_payload(out, NULL, &p, &err);
	if (r >= 0)
		r = kd_payload_extract(p, dfd, NULL, NULL, &err);
	CHECK(r < 0);
	/* Without a zstd frame checksum, corruption may decode to other bytes: then the file's
	 * sha256 catches it. */
	if (!strstr(err.msg, "sha256 is"))
		CHECK(has(err.msg, why));
	check_contained(dir);
	close(dfd);
	kd_payload_free(p);
	free(dir);
}

static void truncate_half(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0 || truncate(path, st.st_size / 2) < 0)
		abort();
}

static void corrupt_middle(const char *path)
{
	struct stat st;
	uint8_t junk[4096];
	int fd = open(path, O_RDWR);
	if (fd < 0 || fstat(fd, &st) < 0)
		abort();
	fill(junk, sizeof(junk), 1234);
	if (pwrite(fd, junk, sizeof(junk), st.st_size / 2) != (ssize_t)sizeof(junk))
		abort();
	close(fd);
}

TEST(truncated_zstd)
{
	/* Format 2 loses its index at the end; format 1 runs out of zstd input. */
	damaged("truncated", payload_plain, truncate_half, "no frame index at the end");
	damaged("truncated-v1", payload_v1, truncate_half, "archive:");
}

TEST(corrupt_zstd)
{
	/* Format 2: the frame's sha256 no longer matches, refused before decompression. */
	damaged("corrupt", payload_plain, corrupt_middle, "component 'kata' is damaged");
	damaged("corrupt-v1", payload_v1, corrupt_middle, "archive:");
}

/* ---- format 2: one frame per component ----------------------------------------------- */

typedef struct frame_rec {
	uint64_t offset, size, tar_size;
} frame_rec;

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* The frame index at the end of a payload, read the way docs/PAYLOAD.md describes it. Returns
 * the frame count and fills recs (at most max), or -1. */
static int read_index(const char *path, frame_rec *recs, int max, uint64_t *ret_index_at)
{
	uint8_t tail[16], rec[56];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), n;

	if (fd < 0 || fstat(fd, &st) < 0 ||
	    pread(fd, tail, sizeof(tail), st.st_size - 16) != (ssize_t)sizeof(tail) ||
	    memcmp(tail + 8, "KDPAYIX2", 8) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	n = (int)(tail[0] | tail[1] << 8 | tail[2] << 16 | (uint32_t)tail[3] << 24);
	uint64_t start = (uint64_t)st.st_size - 16 - (uint64_t)n * 56;
	for (int i = 0; i < n && i < max; i++) {
		if (pread(fd, rec, sizeof(rec), (off_t)(start + (uint64_t)i * 56)) != 56)
			abort();
		recs[i] = (frame_rec){le64(rec), le64(rec + 8), le64(rec + 16)};
	}
	if (ret_index_at)
		*ret_index_at = start - 8;
	close(fd);
	return n;
}

static void patch(const char *path, uint64_t off, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || pwrite(fd, data, len, (off_t)off) != (ssize_t)len)
		abort();
	close(fd);
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static char *copy_payload(const char *tag, const char *from)
{
	char *dir = fresh_dir(tag), cmd[8600];
	char *out = NULL;
	if (asprintf(&out, "%s/p.tar.zst", dir) < 0)
		abort();
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, out);
	if (system(cmd) != 0)
		abort();
	free(dir);
	return out;
}

/* Extract the components of shim into a fresh dir; returns the result, fills stats. */
static int extract_shim(const char *path, const char *shim, const kd_payload_verify *v,
			kd_extract_stats *st, char **ret_dest, kd_error *err)
{
	kd_payload *p = NULL;
	bool mask[8] = {0};
	char *dest = fresh_dir("dest");
	int dfd = open_dir(dest);
	int r = open_payload(path, v, &p, err);
	if (r >= 0 && shim) {
		const char *shims[] = {shim};
		r = kd_manifest_select(kd_payload_manifest(p), shims, 1, mask, err);
	}
	if (r >= 0) {
		kd_extract_opts o = {.component_mask = shim ? mask : NULL, .reuse_dirfd = -1};
		r = kd_payload_extract(p, dfd, &o, st, err);
		if (r >= 0)
			r = kd_payload_verify_tree(kd_payload_manifest(p), shim ? mask : NULL, dfd,
						   true, err);
	}
	close(dfd);
	kd_payload_free(p);
	if (ret_dest)
		*ret_dest = dest;
	else
		free(dest);
	return r;
}

TEST(format2_layout)
{
	kd_error err = {0};
	kd_payload *p = NULL;
	frame_rec f[8];
	uint64_t index_at = 0;
	struct stat st;
	char cmd[8600];

	CHECK_INT(open_payload(payload_spec, NULL, &p, &err), 0);
	if (!p)
		return;
	const kd_manifest *m = kd_payload_manifest(p);
	CHECK_INT(kd_payload_format(p), 2);
	CHECK_INT(m->format, 2);
	/* The manifest's frame, one per component, the end of the archive. */
	int n = read_index(payload_spec, f, 8, &index_at);
	CHECK_INT(n, (int)m->n_components + 2);
	CHECK(stat(payload_spec, &st) == 0 &&
	      index_at + 8 + 16 + (uint64_t)n * 56 == (uint64_t)st.st_size);
	CHECK(f[0].offset == 0 && f[n - 1].offset + f[n - 1].size == index_at);
	CHECK(f[n - 1].tar_size == 1024); /* two zero blocks */
	for (int i = 1; i + 1 < n && i < 8; i++) {
		const kd_component *c = &m->components[i - 1];
		CHECK(f[i].offset == f[i - 1].offset + f[i - 1].size);
		CHECK(f[i].size == c->blob_size && f[i].tar_size == c->tar_size);
		/* Each component's frame is a blob on its own: its bytes hash to the manifest's
		 * digest and decompress alone to tar entries of that component only. */
		snprintf(
			cmd, sizeof(cmd),
			"test \"$(tail -c +%llu '%s' | head -c %llu | sha256sum | cut -c1-64)\" = %s"
			" && tail -c +%llu '%s' | head -c %llu | zstd -dc | "
			"tar -tf - 2>/dev/null | grep -c . >/dev/null",
			(unsigned long long)f[i].offset + 1, payload_spec,
			(unsigned long long)f[i].size, c->blob_sha256,
			(unsigned long long)f[i].offset + 1, payload_spec,
			(unsigned long long)f[i].size);
		CHECK_INT(system(cmd), 0);
	}
	/* Ordinary tools still read it as one tar.zst (the index is a skippable frame). */
	char *dir = fresh_dir("gnutar");
	/* Modes are normalised by pack, so compare contents only. */
	snprintf(
		cmd, sizeof(cmd),
		"tar -I zstd -xf '%s' -C '%s' && diff -r '%s/opt/kata' '%s/opt/kata' >/dev/null && "
		"zstd -t -q '%s'",
		payload_spec, dir, dir, tree_src, payload_spec);
	CHECK_INT(system(cmd), 0);
	free(dir);
	kd_payload_free(p);
}

/* Bytes decompressed by an install of a subset = the manifest's frame, the chosen components'
 * frames and the end of the archive; bytes read = those frames' compressed bytes. */
TEST(format2_reads_only_selected)
{
	kd_error err = {0};
	kd_extract_stats all = {0}, sub = {0};
	frame_rec f[8];
	int n = read_index(payload_spec, f, 8, NULL);

	CHECK_INT(n, 6); /* kata, kernel, qemu, clh */
	CHECK_INT(extract_shim(payload_spec, NULL, NULL, &all, NULL, &err), 0);
	CHECK_INT(extract_shim(payload_spec, "clh", NULL, &sub, NULL, &err), 0);
	uint64_t tar_all = 0, read_all = 0;
	for (int i = 0; i < n; i++) {
		tar_all += f[i].tar_size;
		read_all += f[i].size;
	}
	CHECK(all.bytes_decompressed == tar_all);
	CHECK(all.bytes_read == read_all);
	/* clh needs kata, kernel, clh: not qemu (frame 3), the largest. */
	CHECK(sub.bytes_decompressed == tar_all - f[3].tar_size);
	CHECK(sub.bytes_read == read_all - f[3].size);
	CHECK(f[3].tar_size > (2u << 20));
	printf("#   all: %llu decompressed; clh: %llu\n",
	       (unsigned long long)all.bytes_decompressed,
	       (unsigned long long)sub.bytes_decompressed);
}

TEST(format2_damaged_frames)
{
	kd_error err = {0};
	kd_extract_stats st = {0};
	frame_rec f[8];
	char *dest = NULL, digest[KD_SHA256_HEX_LEN + 1];
	int n = read_index(payload_spec, f, 8, NULL);
	uint8_t junk[64];

	CHECK_INT(n, 6);
	if (n != 6)
		return;
	fill(junk, sizeof(junk), 77);
	char *bad = copy_payload("qemu-damaged", payload_spec);
	patch(bad, f[3].offset + f[3].size / 2, junk, sizeof(junk));
	/* qemu's frame is damaged: clh does not need it, so its install works... */
	CHECK_INT(extract_shim(bad, "clh", NULL, &st, NULL, &err), 0);
	/* ...qemu's is refused before anything is written. */
	err = (kd_error){0};
	CHECK(extract_shim(bad, "qemu", NULL, &st, &dest, &err) < 0);
	CHECK(has(err.msg, "component 'qemu' is damaged"));
	CHECK_INT(count_entries(dest), 0);
	free(dest);
	/* An expected digest covers every byte: then nothing of it is used. */
	kd_payload *p = NULL;
	int fd = open(payload_spec, O_RDONLY);
	uint8_t bin[KD_SHA256_LEN];
	CHECK_INT(kd_sha256_fd(fd, bin, NULL, &err), 0);
	close(fd);
	kd_hex(bin, sizeof(bin), digest);
	kd_payload_verify v = {.expect_sha256 = digest};
	err = (kd_error){0};
	CHECK(open_payload(bad, &v, &p, &err) < 0);
	CHECK(has(err.msg, "expected"));
	free(bad);

	/* The manifest's own frame damaged: refused at open. */
	bad = copy_payload("manifest-damaged", payload_spec);
	patch(bad, f[0].size / 2, junk, 8);
	err = (kd_error){0};
	CHECK(open_payload(bad, NULL, &p, &err) < 0);
	CHECK(has(err.msg, "the manifest's frame has sha256"));
	free(bad);
}

TEST(format2_bad_index)
{
	kd_error err = {0};
	kd_payload *p = NULL;
	frame_rec f[8];
	uint64_t index_at = 0;
	uint8_t v[8];
	int n = read_index(payload_spec, f, 8, &index_at);
	struct {
		const char *tag, *msg;
		int rec;   /* record to change, -1: the trailer's count */
		int field; /* 0 offset, 1 size, 2 tar size */
		int64_t delta;
	} cases[] = {
		{"idx-offset", "frame index: frame 2 starts at", 2, 0, 7},
		{"idx-size", "does not fit before the index", 4, 1, 1 << 30},
		{"idx-tar", "frame index: frame 1: bad tar size", 1, 2, 1},
		{"idx-count", "frame index: 4000 frames", -1, 0, 4000 - 6},
	};

	CHECK_INT(n, 6);
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		char *bad = copy_payload(cases[i].tag, payload_spec);
		if (cases[i].rec < 0) {
			uint8_t cnt[4] = {(uint8_t)(n + cases[i].delta),
					  (uint8_t)((n + cases[i].delta) >> 8), 0, 0};
			patch(bad, index_at + 8 + (uint64_t)n * 56, cnt, 4);
		} else {
			const frame_rec *r = &f[cases[i].rec];
			uint64_t old = cases[i].field == 0   ? r->offset
				       : cases[i].field == 1 ? r->size
							     : r->tar_size;
			put_le64(v, old + (uint64_t)cases[i].delta);
			patch(bad, index_at + 8 + (uint64_t)cases[i].rec * 56 + 8 * cases[i].field,
			      v, 8);
		}
		err = (kd_error){0};
		CHECK(open_payload(bad, NULL, &p, &err) < 0);
		CHECK(has(err.msg, cases[i].msg));
		free(bad);
	}
	/* A consistent index that moves the border between two components: the sizes no longer
	 * match the manifest. */
	char *bad = copy_payload("idx-border", payload_spec);
	put_le64(v, f[1].size + 5);
	patch(bad, index_at + 8 + 1 * 56 + 8, v, 8);
	put_le64(v, f[2].offset + 5);
	patch(bad, index_at + 8 + 2 * 56, v, 8);
	put_le64(v, f[2].size - 5);
	patch(bad, index_at + 8 + 2 * 56 + 8, v, 8);
	err = (kd_error){0};
	CHECK(open_payload(bad, NULL, &p, &err) < 0);
	CHECK(has(err.msg, "in the index,"));
	free(bad);
	/* Truncated inside the index. */
	bad = copy_payload("idx-truncated", payload_spec);
	CHECK_INT(truncate(bad, (off_t)index_at + 20), 0);
	err = (kd_error){0};
	CHECK(open_payload(bad, NULL, &p, &err) < 0);
	CHECK(has(err.msg, "no frame index at the end of the file (truncated?)"));
	free(bad);
}

/* A payload of which only some frames are here (an oci:// pull): zeros instead of qemu's frame,
 * the manifest's frame authenticated by the caller. */
static void range_sha256(const char *path, uint64_t off, uint64_t size, char hex[65])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t *buf = malloc(size);
	if (fd < 0 || !buf || pread(fd, buf, size, (off_t)off) != (ssize_t)size)
		abort();
	kd_sha256_buf(buf, size, hex);
	free(buf);
	close(fd);
}

TEST(format2_partial)
{
	kd_error err = {0};
	kd_extract_stats st = {0};
	frame_rec f[8];
	char f0[KD_SHA256_HEX_LEN + 1], wrong[KD_SHA256_HEX_LEN + 1];
	int n = read_index(payload_spec, f, 8, NULL);
	CHECK_INT(n, 6);
	if (n != 6)
		return;
	range_sha256(payload_spec, f[0].offset, f[0].size, f0);
	memset(wrong, 'a', KD_SHA256_HEX_LEN);
	wrong[KD_SHA256_HEX_LEN] = '\0';

	/* kd_payload_blobs: the frames, the last one to the end of the file. */
	{
		kd_payload *p = NULL;
		kd_payload_blob *b = NULL;
		size_t nb = 0;
		struct stat sst;
		CHECK_INT(open_payload(payload_spec, NULL, &p, &err), 0);
		CHECK_INT(kd_payload_blobs(p, &b, &nb, &err), 0);
		CHECK_INT(nb, 6);
		CHECK(stat(payload_spec, &sst) == 0);
		uint64_t at = 0;
		for (size_t i = 0; i < nb; i++) {
			CHECK(b[i].offset == at);
			at += b[i].size;
		}
		CHECK(at == (uint64_t)sst.st_size);
		free(b);
		kd_payload_free(p);
	}

	char *part = copy_payload("partial", payload_spec);
	uint8_t *zeros = calloc(1, f[3].size);
	patch(part, f[3].offset, zeros, f[3].size); /* qemu was not pulled */
	free(zeros);
	bool present[4] = {true, true, false, true}; /* kata, kernel, qemu, clh */
	kd_payload_verify v = {.manifest_frame_sha256 = f0,
			       .present = present,
			       .n_present = 4,
			       .digest = wrong /* any identity the caller gives */};
	char *dest = NULL;
	CHECK_INT(extract_shim(part, "clh", &v, &st, NULL, &err), 0);
	CHECK(st.bytes_read == f[0].size + f[1].size + f[2].size + f[4].size + f[5].size);
	err = (kd_error){0};
	CHECK(extract_shim(part, "qemu", &v, &st, &dest, &err) < 0);
	CHECK(has(err.msg, "component 'qemu' was not pulled"));
	CHECK_INT(count_entries(dest), 0);
	free(dest);
	{
		kd_payload *p = NULL;
		CHECK_INT(open_payload(part, &v, &p, &err), 0);
		CHECK_STR(kd_payload_digest(p), wrong);
		kd_payload_free(p);
	}
	/* Claiming the zeros are qemu's frame: damaged, refused. */
	bool all[4] = {true, true, true, true};
	v.present = all;
	err = (kd_error){0};
	CHECK(extract_shim(part, "qemu", &v, &st, NULL, &err) < 0);
	CHECK(has(err.msg, "component 'qemu' is damaged"));
	/* The manifest's frame must be the one the caller authenticated. */
	v.manifest_frame_sha256 = wrong;
	err = (kd_error){0};
	CHECK(extract_shim(part, "clh", &v, &st, NULL, &err) < 0);
	CHECK(has(err.msg, "the manifest's frame has sha256"));
	free(part);
}

TEST(format1_still_reads)
{
	kd_error err = {0};
	kd_extract_stats st = {0};
	kd_payload *p = NULL;
	char *dest = NULL, cmd[8600];

	CHECK_INT(open_payload(payload_v1, NULL, &p, &err), 0);
	CHECK(p && kd_payload_format(p) == 1);
	kd_payload_free(p);
	CHECK_INT(extract_shim(payload_v1, "qemu", NULL, &st, &dest, &err), 0);
	CHECK(st.files_written > 0 && st.entries_skipped == 0);
	snprintf(cmd, sizeof(cmd),
		 "cmp -s '%s/bin/qemu-system-x86_64' '%s/opt/kata/bin/qemu-system-x86_64'", dest,
		 tree_src);
	CHECK_INT(system(cmd), 0);
	free(dest);
}

TEST(no_shims_refused)
{
	kd_error err = {0};
	kd_payload *p = NULL;
	char *src = fresh_dir("noshims"), *out = tmp_path("noshims.tar.zst");
	char kata[4200], cmd[8600];

	snprintf(kata, sizeof(kata), "%s/opt/kata", src);
	mkdirs(kata, "bin");
	write_file(kata, "bin/x", "x\n", 2, 0755);
	/* No configuration-<shim>.toml to infer shims from. */
	CHECK(pack(src, out, NULL, 1, &err) < 0);
	CHECK(has(err.msg, "no shims"));
	/* A spec without shims. */
	char *spec = tmp_path("noshims.yaml");
	static const char y[] = "version: '1'\ncomponents:\n  - name: k\n    paths: [bin/]\n";
	write_file(base_dir, "noshims.yaml", y, sizeof(y) - 1, 0644);
	err = (kd_error){0};
	CHECK(pack(src, out, spec, 1, &err) < 0);
	CHECK(has(err.msg, "the spec declares no shims"));
	/* A payload that has none anyway (an old packer) is refused when opened. */
	snprintf(cmd, sizeof(cmd), "python3 '%s/tests/tools/payload-v1.py' '%s' '%s' --no-shims",
		 src_dir(), payload_spec, out);
	CHECK_INT(system(cmd), 0);
	err = (kd_error){0};
	CHECK(open_payload(out, NULL, &p, &err) < 0);
	CHECK(has(err.msg, "declares no shims"));
	free(spec);
	free(src);
	free(out);
}

/* ---- manifest ------------------------------------------------------------------------ */

static int parse(const char *json, kd_error *err)
{
	kd_manifest *m = NULL;
	int r = kd_manifest_parse(json, strlen(json), &m, err);
	kd_manifest_free(m);
	return r;
}

#define SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HEAD                                                                                       \
	"{\"format\":1,\"version\":\"1\",\"arch\":\"x86_64\",\"components\":[{\"name\":\"k\",\"version\":\"1\",\"files\":["
#define TAIL "]}]}"
#define DIRS6                                                                                      \
	"{\"path\":\"d1\",\"type\":\"dir\",\"mode\":\"0755\"},{\"path\":\"d1/d2\",\"type\":"       \
	"\"dir\",\"mode\":\"0755\"},{\"path\":\"d1/d2/d3\",\"type\":\"dir\",\"mode\":\"0755\"},"   \
	"{\"path\":\"d1/d2/d3/d4\",\"type\":\"dir\",\"mode\":\"0755\"},{\"path\":"                 \
	"\"d1/d2/d3/d4/d5\",\"type\":\"dir\",\"mode\":\"0755\"},{\"path\":\"d1/d2/d3/d4/d5/d6\","  \
	"\"type\":\"dir\",\"mode\":\"0755\"}"

TEST(manifest_validation)
{
	kd_error err = {0};
	kd_manifest *m = NULL;
	const char *ok =
		HEAD "{\"path\":\"bin\",\"type\":\"dir\",\"mode\":\"0755\"},"
		     "{\"path\":\"bin/a\",\"type\":\"file\",\"mode\":\"0755\",\"size\":3,"
		     "\"sha256\":\"" SHA "\"},"
		     "{\"path\":\"bin/l\",\"type\":\"symlink\",\"mode\":\"0777\",\"target\":"
		     "\"a\"}" TAIL;
	CHECK_INT(kd_manifest_parse(ok, strlen(ok), &m, &err), 0);
	if (m) {
		char *json = NULL;
		kd_manifest *m2 = NULL;
		CHECK_INT(kd_manifest_to_json(m, &json, &err), 0);
		CHECK_INT(kd_manifest_parse(json, strlen(json), &m2, &err), 0);
		CHECK(m2 && m2->n_files == 3 && strcmp(m2->files[2].target, "a") == 0);
		/* Canonical: keys sorted. */
		CHECK(json && strncmp(json, "{\"arch\":", 8) == 0);
		free(json);
		kd_manifest_free(m2);
	}
	kd_manifest_free(m);

	struct {
		const char *json, *msg;
	} bad[] = {
		{"{\"format\":3,\"version\":\"1\",\"arch\":\"x\",\"components\":[]}",
		 "unsupported format 3 (expected 1 to 2)"},
		{"{\"format\":0,\"version\":\"1\",\"arch\":\"x\",\"components\":[]}", "format 0"},
		/* Format 2 names each component's frame. */
		{"{\"format\":2,\"version\":\"1\",\"arch\":\"x\",\"components\":[{\"name\":\"k\","
		 "\"version\":\"1\",\"files\":[]}]}",
		 "components[0].blob_sha256: missing"},
		{"{\"format\":2,\"version\":\"1\",\"arch\":\"x\",\"components\":[{\"name\":\"k\","
		 "\"version\":\"1\",\"files\":[],\"blob_sha256\":\"" SHA "\",\"blob_size\":9}]}",
		 "components[0].tar_size: missing"},
		{"{\"format\":2,\"version\":\"1\",\"arch\":\"x\",\"components\":[{\"name\":\"k\","
		 "\"version\":\"1\",\"files\":[],\"blob_sha256\":\"ABC\",\"blob_size\":9,"
		 "\"tar_size\":0}]}",
		 "blob_sha256 must be 64 lowercase hex digits"},
		{"{\"format\":2,\"version\":\"1\",\"arch\":\"x\",\"components\":[{\"name\":\"k\","
		 "\"version\":\"1\",\"files\":[],\"blob_sha256\":\"" SHA "\",\"blob_size\":-1,"
		 "\"tar_size\":0}]}",
		 "components[0].blob_size: expected a non-negative integer"},
		{HEAD
		 "{\"path\":\"../a\",\"type\":\"file\",\"mode\":\"0644\",\"size\":1,\"sha256\":"
		 "\"" SHA "\"}" TAIL,
		 "unsafe path '../a'"},
		{HEAD
		 "{\"path\":\"a\",\"type\":\"file\",\"mode\":\"0644\",\"size\":1,\"sha256\":\"" SHA
		 "\"},{\"path\":\"a\",\"type\":\"dir\",\"mode\":\"0755\"}" TAIL,
		 "duplicate path 'a'"},
		{HEAD
		 "{\"path\":\"a\",\"type\":\"file\",\"mode\":\"2755\",\"size\":1,\"sha256\":\"" SHA
		 "\"}" TAIL,
		 "setuid"},
		{HEAD
		 "{\"path\":\"a\",\"type\":\"file\",\"mode\":\"0644\",\"size\":1,\"sha256\":\"ABC\"}" TAIL,
		 "sha256"},
		{HEAD
		 "{\"path\":\"l\",\"type\":\"symlink\",\"mode\":\"0777\",\"target\":\"/etc\"}" TAIL,
		 "escapes"},
		{HEAD
		 "{\"path\":\"l\",\"type\":\"symlink\",\"mode\":\"0777\",\"target\":\"x/../..\"}" TAIL,
		 "escapes"},
		/* Issue 14: each link stays inside lexically, the chain does not (s leads to the
		 * root, x climbs from there). */
		{HEAD DIRS6
		 ",{\"path\":\"d1/d2/d3/d4/d5/d6/s\",\"type\":\"symlink\",\"mode\":"
		 "\"0777\",\"target\":\"../../../../../..\"},{\"path\":\"d1/d2/d3/d4/d5/d6/x\","
		 "\"type\":\"symlink\",\"mode\":\"0777\",\"target\":"
		 "\"s/../../../../../../../etc/shadow\"}" TAIL,
		 "symlink 'd1/d2/d3/d4/d5/d6/x' -> 's/../../../../../../../etc/shadow' escapes "
		 "opt/kata/ through the link 'd1/d2/d3/d4/d5/d6/s'"},
		/* The escaping link reached through another link's text, not its own. */
		{HEAD
		 "{\"path\":\"a\",\"type\":\"dir\",\"mode\":\"0755\"},{\"path\":\"a/up\","
		 "\"type\":\"symlink\",\"mode\":\"0777\",\"target\":\"..\"},{\"path\":"
		 "\"b\",\"type\":\"symlink\",\"mode\":\"0777\",\"target\":\"a/up/a/up/..\"}" TAIL,
		 "symlink 'b' -> 'a/up/a/up/..' escapes opt/kata/ through the link 'a/up'"},
		{HEAD "{\"path\":\"l1\",\"type\":\"symlink\",\"mode\":\"0777\",\"target\":"
		      "\"l2\"},{\"path\":\"l2\",\"type\":\"symlink\",\"mode\":\"0777\","
		      "\"target\":\"l1\"}" TAIL,
		 "is part of a cycle"},
		{HEAD "{\"path\":\"a\",\"type\":\"fifo\",\"mode\":\"0644\"}" TAIL, "unknown type"},
		{HEAD "{\"path\":\"d/a\",\"type\":\"dir\",\"mode\":\"0755\"}" TAIL,
		 "parent of 'd/a'"},
		{HEAD
		 "{\"path\":\"h\",\"type\":\"hardlink\",\"mode\":\"0644\",\"target\":\"z\"}" TAIL,
		 "hardlink 'h'"},
		{HEAD "]},{\"name\":\"k\",\"version\":\"1\",\"files\":[" TAIL,
		 "duplicate component"},
		{"{\"format\":1,\"version\":\"1\",\"arch\":\"x\",\"components\":[],\"shims\":{\"q\":"
		 "[\"none\"]}}",
		 "unknown component 'none'"},
		{"{\"format\":1,\"version\":\"1\",\"arch\":\"x\",\"components\":[],\"signing_key\":"
		 "\"abc\"}",
		 "signing_key"},
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		kd_err_clear(&err);
		CHECK(parse(bad[i].json, &err) < 0);
		if (!has(err.msg, bad[i].msg))
			printf("#   bad[%zu]: got '%s'\n", i, err.msg);
		CHECK(has(err.msg, bad[i].msg));
	}
}

/* A chain of n links l0 -> l1 -> ... -> l(n-1) -> f, each in dir d. */
static char *link_chain(unsigned n)
{
	size_t cap = 4096 + (size_t)n * 128, len;
	char *s = malloc(cap);
	len = (size_t)snprintf(s, cap,
			       HEAD "{\"path\":\"d\",\"type\":\"dir\",\"mode\":\"0755\"},"
				    "{\"path\":\"d/f\",\"type\":\"file\",\"mode\":\"0644\","
				    "\"size\":1,\"sha256\":\"" SHA "\"}");
	for (unsigned i = 0; i < n; i++) {
		char next[32];
		if (i + 1 < n)
			snprintf(next, sizeof(next), "../d/l%u", i + 1);
		else
			snprintf(next, sizeof(next), "f");
		len += (size_t)snprintf(s + len, cap - len,
					",{\"path\":\"d/l%u\",\"type\":\"symlink\",\"mode\":"
					"\"0777\",\"target\":\"%s\"}",
					i, next);
	}
	snprintf(s + len, cap - len, TAIL);
	return s;
}

/* Links resolved through each other as the kernel would (issue 14): what stays inside the tree
 * is accepted however it gets there; chains longer than the kernel follows are refused. */
TEST(manifest_links)
{
	kd_error err = {0};
	const char *ok[] = {
		/* Upstream's shape: a link to a file beside it, a link to that link. */
		HEAD "{\"path\":\"s\",\"type\":\"dir\",\"mode\":\"0755\"},{\"path\":\"s/img\","
		     "\"type\":\"file\",\"mode\":\"0644\",\"size\":1,\"sha256\":\"" SHA "\"},"
		     "{\"path\":\"s/k.img\",\"type\":\"symlink\",\"mode\":\"0777\",\"target\":"
		     "\"img\"},{\"path\":\"s/l.img\",\"type\":\"symlink\",\"mode\":\"0777\","
		     "\"target\":\"./k.img\"}" TAIL,
		/* Up to the root through a link, then down again: inside at every step. */
		HEAD DIRS6
		",{\"path\":\"d1/d2/d3/d4/d5/d6/s\",\"type\":\"symlink\",\"mode\":"
		"\"0777\",\"target\":\"../../../../../..\"},{\"path\":\"d1/d2/d3/d4/d5/d6/x\","
		"\"type\":\"symlink\",\"mode\":\"0777\",\"target\":\"s/d1/d2/../d2/d3\"}" TAIL,
		/* Through a component the manifest does not have: walked as a directory. */
		HEAD "{\"path\":\"a\",\"type\":\"symlink\",\"mode\":\"0777\",\"target\":"
		     "\"nothing/..\"}" TAIL,
	};
	for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
		kd_err_clear(&err);
		if (parse(ok[i], &err) < 0)
			printf("#   ok[%zu]: %s\n", i, err.msg);
		CHECK_INT(parse(ok[i], &err), 0);
	}
	char *forty = link_chain(40), *more = link_chain(41);
	kd_err_clear(&err);
	CHECK_INT(parse(forty, &err), 0);
	CHECK(parse(more, &err) == -ELOOP && has(err.msg, "more than 40 links in a chain"));
	free(forty);
	free(more);
}

/* The manifest reader: RFC 8259 syntax with positions, escapes decoded, what json-c let through
 * refused, and the checks of the typed getters with their messages. */
TEST(manifest_reader)
{
	kd_error err = {0};
	kd_manifest *m = NULL;
	/* Escapes (a surrogate pair among them), whitespace everywhere, an unknown key of any
	 * type, nulls as absent. */
	const char *ok =
		" {\n\t\"format\" : 1 , \"version\":\"1\\u002e0\", \"arch\":\"x86_64\",\"future\":"
		"{\"x\":[1.5e3,-0.25,true,false,null,{}]},\"signing_key\":null,\"components\":["
		"{\"name\":\"k\",\"version\":\"\\ud83d\\ude00\",\"files\":[{\"path\":\"b\\u0069n\","
		"\"type\":\"dir\",\"mode\":\"0755\",\"size\":null},{\"path\":\"bin\\/\\u00e9\","
		"\"type\":\"file\",\"mode\":\"0644\",\"size\":0,\"sha256\":\"" SHA
		"\"}]}],\"shims\":"
		"{\"q\":[\"k\"]}}\r\n";
	CHECK_INT(kd_manifest_parse(ok, strlen(ok), &m, &err), 0);
	if (!m)
		printf("# %s\n", err.msg);
	if (m) {
		CHECK_STR(m->version, "1.0");
		CHECK_STR(m->components[0].version, "\xf0\x9f\x98\x80");
		CHECK_STR(m->files[0].path, "bin");
		CHECK_STR(m->files[1].path, "bin/\xc3\xa9");
		CHECK(m->signing_key == NULL && m->n_shims == 1);
	}
	kd_manifest_free(m);

#define DOC(files) HEAD files TAIL
	struct {
		const char *json, *msg;
	} bad[] = {
		{"", "kata-payload.json:1:1: unexpected end of JSON input"},
		{"{\"format\":1", "kata-payload.json:1:12: unexpected end of JSON input"},
		{"{\"format\":1}x", "kata-payload.json:1:13: trailing data after JSON value"},
		{"{\"format\":1,}", "kata-payload.json:1:13: unexpected character"},
		{"{'format':1}", "kata-payload.json:1:2: unexpected character"},
		{"{\"format\" 1}", "1:11: object property name separator ':' expected"},
		{"{\"format\":1 \"x\":2}", "1:13: object value separator ',' expected"},
		{"[1 2]", "1:4: array value separator ',' expected"},
		{"{\"a\":01}", "1:7: object value separator ',' expected"},
		{"{\"a\":1.}", "1:8: unexpected character"},
		{"{\"a\":tru}", "1:9: unexpected character"},
		{"{\"a\":\"x\ty\"}", "1:8: control character in a string"},
		{"{\"a\":\"\xc3\x28\"}", "1:7: invalid UTF-8 in a string"},
		{"{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8"},
		{"{\"a\":\"\xc0\xaf\"}", "invalid UTF-8"},
		{"{\"a\":\"\\x\"}", "1:7: invalid escape sequence in a string"},
		{"{\"a\":\"\\u12G4\"}", "invalid \\u escape"},
		{"{\"a\":\"\\ud800\"}", "1:7: unpaired UTF-16 surrogate"},
		{"{\"a\":\"\\udc00\\ud800\"}", "unpaired UTF-16 surrogate"},
		{"{\"a\\u0000b\":1}", "1:2: NUL character (\\u0000) in an object key"},
		{"{\"format\":1,\"form\\u0061t\":1}", "1:13: duplicate key \"form\\u0061t\""},
		{"{\"a\":{\"b\":1,\"c\":2,\"d\":3,\"e\":4,\"f\":5,\"g\":6,\"h\":7,\"i\":8,\"j\":9,\"c\":0}}",
		 "1:61: duplicate key \"c\""},
		{"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
		 "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
		 "1:65: JSON nested deeper than 64 levels"},
		{"null", "manifest: expected an object, got null"},
		{"[]", "manifest: expected object, got array"},
		{"{}", "format: missing"},
		{"{\"format\":null}", "format: missing"},
		{"{\"format\":1.0}", "format: expected integer, got double"},
		{"{\"format\":\"1\"}", "format: expected integer, got string"},
		{"{\"format\":99999999999999999999}", "format: integer out of range"},
		{"{\"format\":1,\"version\":1}", "version: expected string, got int"},
		{"{\"format\":1,\"version\":\"1\",\"arch\":\"x\",\"components\":{}}",
		 "components: expected array, got object"},
		{"{\"format\":1,\"version\":\"1\",\"arch\":\"x\",\"components\":[],\"shims\":[]}",
		 "shims: expected object, got array"},
		{"{\"format\":1,\"version\":\"1\",\"arch\":\"x\",\"components\":[],\"shims\":{\"q\":"
		 "null}}",
		 "shims.q: expected array, got null"},
		{"{\"format\":1,\"version\":\"1\",\"arch\":\"x\",\"components\":[],\"shims\":{\"q\":"
		 "[1]}}",
		 "shims.q[0]: expected string, got int"},
		{"{\"format\":1,\"version\":\"a/b\",\"arch\":\"x\",\"components\":[]}",
		 "version: invalid character"},
		{"{\"format\":1,\"version\":\"1\",\"arch\":\"x\",\"components\":[7]}",
		 "components[0]: expected object, got int"},
		{DOC("{\"path\":\"a\\u0000b\",\"type\":\"dir\",\"mode\":\"0755\"}"),
		 "components[0].files[0].path: string contains a NUL character"},
		{DOC("{\"type\":\"dir\",\"mode\":\"0755\"}"),
		 "components[0].files[0].path: missing"},
		{DOC("[]"), "components[0].files[0]: expected object, got array"},
		{DOC("{\"path\":\"a\",\"type\":\"file\",\"mode\":\"0644\",\"size\":-1,\"sha256\":\"" SHA
		     "\"}"),
		 "components[0].files[0].size: expected a non-negative integer, got -1"},
		{DOC("{\"path\":\"a\",\"type\":\"file\",\"mode\":\"0644\",\"size\":1e3,\"sha256\":\"" SHA
		     "\"}"),
		 "components[0].files[0].size: expected integer, got double"},
		{DOC("{\"path\":\"a\",\"type\":\"file\",\"mode\":\"0644\",\"size\":18446744073709551616,"
		     "\"sha256\":\"" SHA "\"}"),
		 "components[0].files[0].size: integer out of range"},
		{DOC("{\"path\":\"a\",\"type\":\"file\",\"mode\":\"0644\",\"size\":4294967297,"
		     "\"sha256\":\"" SHA "\"}"),
		 "size 4294967297 exceeds the limit"},
		{DOC("{\"path\":\"a\",\"type\":\"dir\",\"mode\":\"0755\",\"path\":\"b\"}"),
		 "duplicate key \"path\""},
	};
#undef DOC
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		kd_err_clear(&err);
		CHECK(parse(bad[i].json, &err) < 0);
		CHECK(has(err.msg, bad[i].msg));
	}
	kd_err_clear(&err);
	char *big = malloc(KD_PAYLOAD_MAX_MANIFEST + 2);
	if (big) {
		memset(big, ' ', KD_PAYLOAD_MAX_MANIFEST + 1);
		big[KD_PAYLOAD_MAX_MANIFEST + 1] = '\0';
		CHECK_INT(parse(big, &err), -EFBIG);
		CHECK(has(err.msg, "manifest: larger than"));
		free(big);
	}
}

/* kd_manifest_to_json writes what kd_json_format(KD_JSON_CANONICAL) prints for the same
 * document, escapes included. */
TEST(manifest_canonical)
{
	kd_error err = {0};
	kd_manifest *m = NULL;
	const char *doc =
		"{\"version\":\"1\",\"signing_key\":\"" SHA "\",\"shims\":{\"z\":[\"k\",\"e\"],"
		"\"a\":[],\"\\u00e9\":[\"e\"]},\"format\":1,\"components\":[{\"name\":\"k\",\"version\":"
		"\"1\",\"files\":[{\"type\":\"dir\",\"path\":\"d\",\"mode\":\"755\"},{\"type\":\"file\","
		"\"sha256\":\"" SHA
		"\",\"size\":4294967296,\"path\":\"d/\\\"q\\\\\\u007f\",\"mode\":"
		"\"0600\"},{\"type\":\"hardlink\",\"target\":\"d/\\\"q\\\\\\u007f\",\"path\":\"d/h\","
		"\"mode\":\"0600\"},{\"type\":\"symlink\",\"target\":\"\\u00e9\",\"path\":\"d/l\","
		"\"mode\":\"0777\"}]},{\"name\":\"e\",\"version\":\"2\",\"files\":[]}],\"arch\":\"a\"}";
	CHECK_INT(kd_manifest_parse(doc, strlen(doc), &m, &err), 0);
	if (!m)
		return;
	char *mine = NULL, *ref = NULL;
	struct json_object *tree = NULL;
	CHECK_INT(kd_manifest_to_json(m, &mine, &err), 0);
	CHECK_INT(kd_json_parse(mine, strlen(mine), "canonical", &tree, &err), 0);
	CHECK_INT(kd_json_format(tree, KD_JSON_CANONICAL, &ref, NULL, &err), 0);
	CHECK_STR(mine, ref);
	CHECK(has(mine, "\"size\":4294967296"));
	CHECK(has(mine, "\"shims\":{\"a\":[],\"z\":[\"k\",\"e\"],\"\xc3\xa9\":[\"e\"]}"));
	json_object_put(tree);
	free(mine);
	free(ref);
	kd_manifest_free(m);
}

int main(void)
{
	kd_error err = {0};

	if (!mkdtemp(base_dir))
		return 1;
	tree_src = make_tree();
	payload_plain = tmp_path("plain.tar.zst");
	payload_spec = tmp_path("spec.tar.zst");
	char *spec = tmp_path("spec.yaml");
	int fd = open(spec, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, spec_yaml, sizeof(spec_yaml) - 1) < 0)
		return 1;
	close(fd);
	if (pack(tree_src, payload_plain, NULL, 1, &err) < 0 ||
	    pack(tree_src, payload_spec, spec, 1, &err) < 0) {
		printf("Bail out! pack: %s\n", kd_err_msg(&err));
		return 1;
	}
	payload_v1 = tmp_path("plain-v1.tar.zst");
	char cmd[8400];
	snprintf(cmd, sizeof(cmd), "python3 '%s/tests/tools/payload-v1.py' '%s' '%s'", src_dir(),
		 payload_plain, payload_v1);
	if (system(cmd) != 0) {
		printf("Bail out! %s failed\n", cmd);
		return 1;
	}

	RUN(pack_open_extract_verify);
	RUN(extract_modes_under_umask);
	RUN(verify_tree_rehash);
	RUN(deterministic);
	RUN(inferred_shims);
	RUN(spec_selection);
	RUN(spec_errors);
	RUN(reuse_previous_tree);
	RUN(signatures);
	RUN(expected_digest);
	RUN(hostile_dotdot);
	RUN(hostile_absolute);
	RUN(hostile_outside_prefix);
	RUN(hostile_symlink_escape_manifest);
	RUN(hostile_symlink_escape);
	RUN(hostile_hardlink_escape);
	RUN(hostile_hardlink_escape_manifest);
	RUN(hostile_symlink_then_file);
	RUN(hostile_symlink_then_file_manifest);
	RUN(hostile_device);
	RUN(hostile_fifo);
	RUN(hostile_setuid);
	RUN(hostile_setuid_manifest);
	RUN(hostile_size_mismatch);
	RUN(hostile_digest_mismatch);
	RUN(hostile_not_in_manifest);
	RUN(hostile_missing_file);
	RUN(hostile_duplicate_entry);
	RUN(hostile_type_mismatch);
	RUN(hostile_chain_escape);
	RUN(hostile_writable_file);
	RUN(hostile_writable_exec);
	RUN(hostile_writable_dir);
	RUN(hostile_group_writable_dir);
	RUN(hostile_writable_tar);
	RUN(hostile_reserved_name);
	RUN(hostile_reserved_name_deep);
	RUN(planted_symlink_in_dest);
	RUN(limit_entry_size);
	RUN(limit_entries);
	RUN(limit_total);
	RUN(truncated_zstd);
	RUN(corrupt_zstd);
	RUN(format2_layout);
	RUN(format2_reads_only_selected);
	RUN(format2_damaged_frames);
	RUN(format2_bad_index);
	RUN(format2_partial);
	RUN(format1_still_reads);
	RUN(no_shims_refused);
	RUN(manifest_validation);
	RUN(manifest_links);
	RUN(manifest_reader);
	RUN(manifest_canonical);

	if (!tap_failed) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base_dir);
		if (system(cmd) != 0)
			return 1;
	}
	free(spec);
	TAP_END();
}
