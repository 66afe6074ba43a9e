/* builder/recipe.c: typed parse through the key table, {{var}} expansion from versions.yaml,
 * and every refusal with its file:line. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "builder/recipe.h"
#include "strv.h"
#include "tap.h"

static kd_versions *versions(void)
{
	char path[] = "/tmp/kd-test-versions.XXXXXX";
	int fd = mkstemp(path);
	const char *text = "source_date_epoch: 1700000000\nversion: \"1.0\"\n"
			   "vars:\n  qemu: \"7.2\"\n  deb: \"1:7.2+dfsg-7\"\n  up_sha: unpinned\n";
	kd_versions *v = NULL;
	kd_error err = {0};
	if (fd < 0 || write(fd, text, strlen(text)) < 0)
		return NULL;
	close(fd);
	if (kd_versions_load(path, &v, &err) < 0)
		printf("# %s\n", kd_err_msg(&err));
	unlink(path);
	return v;
}

static int parse(const char *text, kd_recipe **ret, kd_error *err)
{
	_cleanup_versions_ kd_versions *v = versions();
	return kd_recipe_parse(text, strlen(text), "r.yaml", v, ret, err);
}

TEST(good_recipe)
{
	_cleanup_recipe_ kd_recipe *r = NULL;
	kd_error err = {0};
	CHECK_INT(parse("name: qemu\nversion: \"{{qemu}}\"\nsources:\n"
			"  - deb: qemu-system-x86\n    version: \"{{deb}}\"\n"
			"  - url: http://x/a.tar.gz?x=1\n    sha256: "
			"\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n"
			"steps:\n  - echo {{qemu}}\noutputs: [opt/kata/bin/q, opt/kata/share/]\n",
			&r, &err),
		  0);
	if (!r) {
		printf("# %s\n", kd_err_msg(&err));
		return;
	}
	CHECK_STR(r->name, "qemu");
	CHECK_STR(r->version, "7.2");
	CHECK_INT(r->n_sources, 2);
	CHECK_INT(r->sources[0].kind, KD_SOURCE_DEB);
	CHECK_STR(r->sources[0].version, "1:7.2+dfsg-7");
	CHECK_STR(r->sources[0].name, "qemu-system-x86.deb");
	CHECK_STR(r->sources[1].name, "a.tar.gz");
	CHECK_STR(r->steps[0], "echo 7.2");
	CHECK_STR(r->outputs[1], "opt/kata/share/");
	CHECK(!r->network);
}

static void expect(const char *text, const char *want)
{
	_cleanup_recipe_ kd_recipe *r = NULL;
	kd_error err = {0};
	int rc = parse(text, &r, &err);
	CHECK(rc < 0);
	CHECK(r == NULL);
	if (!strstr(kd_err_msg(&err), want)) {
		printf("#   got '%s', wanted '%s'\n", kd_err_msg(&err), want);
		tap_cur_failed = 1;
	}
}

TEST(unknown_key_names_line)
{
	expect("name: a\nversion: '1'\nsteps: [x]\n\noutputs: [opt/kata/a]\nnetwrok: true\n",
	       "r.yaml:6: recipe: unknown key 'netwrok'");
	expect("name: a\nversion: '1'\nsources:\n  - url: http://x/y\n    sha: ab\nsteps: [x]\n"
	       "outputs: [opt/kata/a]\n",
	       "r.yaml:5: sources[0]: unknown key 'sha'");
}

TEST(outputs_under_opt_kata)
{
	expect("name: a\nversion: '1'\nsteps: [x]\noutputs:\n  - opt/kata/a\n  - etc/passwd\n",
	       "r.yaml:6: outputs: 'etc/passwd' is not a path under opt/kata/");
	expect("name: a\nversion: '1'\nsteps: [x]\noutputs: [opt/kata/../../etc]\n",
	       "is not a path under opt/kata/");
	expect("name: a\nversion: '1'\nsteps: [x]\noutputs: [opt/kata/]\n",
	       "is not a path under opt/kata/");
	expect("name: a\nversion: '1'\nsteps: [x]\noutputs: [opt/kata/a, opt/kata/a]\n",
	       "listed twice");
}

TEST(required_and_types)
{
	expect("name: a\nversion: '1'\noutputs: [opt/kata/a]\n", "missing required key 'steps'");
	expect("name: a\nversion: '1'\nsteps: [x]\noutputs: []\n", "at least one output");
	expect("name: a\nversion: 1.5\nsteps: [x]\noutputs: [opt/kata/a]\n", "(quote it)");
	expect("name: a\nversion: '1'\nnetwork: yes please\nsteps: [x]\noutputs: [opt/kata/a]\n",
	       "r.yaml:3: network: expected true or false");
	expect("name: A!\nversion: '1'\nsteps: [x]\noutputs: [opt/kata/a]\n",
	       "not a valid component name");
}

TEST(sources)
{
	expect("name: a\nversion: '1'\nsources:\n  - url: http://x/y\n    sha256: abc\n"
	       "steps: [x]\noutputs: [opt/kata/a]\n",
	       "url needs sha256: 64 lowercase hex digits");
	expect("name: a\nversion: '1'\nsources:\n  - deb: p\nsteps: [x]\noutputs: [opt/kata/a]\n",
	       "deb needs an exact version");
	expect("name: a\nversion: '1'\nsources:\n  - deb: p\n    url: http://x\n    version: '1'\n"
	       "steps: [x]\noutputs: [opt/kata/a]\n",
	       "needs exactly one of url, deb");
	expect("name: a\nversion: '1'\nsources:\n  - deb: pk\n    version: '1'\n"
	       "  - deb: pk\n    version: '2'\nsteps: [x]\noutputs: [opt/kata/a]\n",
	       "two sources named 'pk.deb'");
	/* apt option injection: a name or version that is not Debian's is refused */
	expect("name: a\nversion: '1'\nsources:\n  - deb: '-oAPT::Get::x=1'\n    version: '1'\n"
	       "steps: [x]\noutputs: [opt/kata/a]\n",
	       "is not a Debian package name and version");
	expect("name: a\nversion: '1'\nsources:\n  - deb: qemu\n    version: '1 -o x'\n"
	       "steps: [x]\noutputs: [opt/kata/a]\n",
	       "is not a Debian package name and version");
}

#define GIT_OK                                                                                     \
	"  - git: https://github.com/o/r\n    tag: '4.1.0'\n    tree: "                            \
	"8836c9c8192b14a3ecebf3df69aa2863dce15cc1\n    file: r-4.1.0.tar.gz\n"

TEST(git_sources)
{
	kd_recipe *r = NULL;
	kd_error err = {0};
	CHECK_INT(parse("name: a\nversion: '1'\nsources:\n" GIT_OK
			"steps: [x]\noutputs: [opt/kata/a]\n",
			&r, &err),
		  0);
	if (r) {
		CHECK_INT(r->sources[0].kind, KD_SOURCE_GIT);
		CHECK_STR(r->sources[0].name, "r-4.1.0.tar.gz");
		CHECK_STR(r->sources[0].tag, "4.1.0");
		CHECK_STR(r->sources[0].tree, "8836c9c8192b14a3ecebf3df69aa2863dce15cc1");
		CHECK(r->sources[0].commit == NULL);
	}
	kd_recipe_free(r);
	expect("name: a\nversion: '1'\nsources:\n  - git: https://github.com/o/r\n    tag: v1\n"
	       "    file: f.tar.gz\nsteps: [x]\noutputs: [opt/kata/a]\n",
	       "git needs tree: the 40-hex git tree id");
	expect("name: a\nversion: '1'\nsources:\n  - git: https://github.com/o/r\n    tree: "
	       "8836c9c8192b14a3ecebf3df69aa2863dce15cc1\n    file: f.tar.gz\nsteps: [x]\n"
	       "outputs: [opt/kata/a]\n",
	       "git needs exactly one of tag, commit");
	expect("name: a\nversion: '1'\nsources:\n  - git: https://github.com/o/r\n    commit: abc\n"
	       "    tree: 8836c9c8192b14a3ecebf3df69aa2863dce15cc1\n    file: f.tar.gz\n"
	       "steps: [x]\noutputs: [opt/kata/a]\n",
	       "commit: 40 lowercase hex digits");
	expect("name: a\nversion: '1'\nsources:\n  - git: ftp://x/r\n    tag: v1\n    tree: "
	       "8836c9c8192b14a3ecebf3df69aa2863dce15cc1\n    file: f.tar.gz\nsteps: [x]\n"
	       "outputs: [opt/kata/a]\n",
	       "git: an http(s):// repository URL");
	expect("name: a\nversion: '1'\nsources:\n  - git: https://x/r\n    tag: '--upload-pack=x'\n"
	       "    tree: 8836c9c8192b14a3ecebf3df69aa2863dce15cc1\n    file: f.tar.gz\n"
	       "steps: [x]\noutputs: [opt/kata/a]\n",
	       "is not a valid tag");
	expect("name: a\nversion: '1'\nsources:\n" GIT_OK "    sha256: abc\nsteps: [x]\n"
	       "outputs: [opt/kata/a]\n",
	       "a git source takes git, tag or commit, tree and file only");
	expect("name: a\nversion: '1'\nsources:\n  - git: https://x/r\n    tag: v1\n    tree: "
	       "8836c9c8192b14a3ecebf3df69aa2863dce15cc1\n    file: ../f.tar.gz\nsteps: [x]\n"
	       "outputs: [opt/kata/a]\n",
	       "bad file name");
	expect("name: a\nversion: '1'\ntoolchains: [rust, cobol]\nsteps: [x]\noutputs: [opt/kata/a]\n",
	       "toolchains: 'cobol' is not one of rust, go");
}

TEST(variables)
{
	expect("name: a\nversion: '{{nope}}'\nsteps: [x]\noutputs: [opt/kata/a]\n",
	       "r.yaml:2: version: unknown variable 'nope'");
	expect("name: a\nversion: '{{qemu'\nsteps: [x]\noutputs: [opt/kata/a]\n",
	       "unterminated or empty");
	/* An upstream sha256 nobody could pin yet says so (and where), not "bad hex". */
	expect("name: a\nversion: '1'\nsources:\n  - url: http://x/k.tar.gz\n"
	       "    sha256: '{{up_sha}}'\nsteps: [x]\noutputs: [opt/kata/a]\n",
	       "r.yaml:3: sources[0]: sha256 of http://x/k.tar.gz is not pinned ('unpinned' in "
	       "versions.yaml)");
}

TEST(path_safe)
{
	CHECK(kd_recipe_path_safe("opt/kata/a", false));
	CHECK(kd_recipe_path_safe("opt/kata/a/", true));
	CHECK(!kd_recipe_path_safe("opt/kata/a/", false));
	CHECK(!kd_recipe_path_safe("/opt/kata", true));
	CHECK(!kd_recipe_path_safe("opt//kata", true));
	CHECK(!kd_recipe_path_safe("opt/./kata", true));
	CHECK(!kd_recipe_path_safe("opt/kata/..", true));
	CHECK(!kd_recipe_path_safe("", true));
}

static int shims_text(const char *text, kd_shims **ret, kd_error *err)
{
	char path[] = "/tmp/kd-test-shims.XXXXXX";
	int fd = mkstemp(path), r;
	if (fd < 0 || write(fd, text, strlen(text)) < 0)
		return -EIO;
	close(fd);
	r = kd_shims_load(path, ret, err);
	unlink(path);
	return r;
}

/* artifacts/shims.yaml: the shims built here, and upstream 4.1's others (upstream_only). */
TEST(shims_upstream_only)
{
	_cleanup_shims_ kd_shims *s = NULL;
	kd_error err = {0};

	CHECK_INT(kd_shims_load("artifacts/shims.yaml", &s, &err), 0);
	if (!s) {
		printf("# %s\n", kd_err_msg(&err));
		return;
	}
	CHECK_STR(s->shims[0].name, "qemu");
	CHECK(kd_strv_find(s->upstream_only, "clh-azure"));
	CHECK(kd_strv_find(s->upstream_only, "clh-azure-runtime-rs"));
	CHECK(kd_strv_find(s->upstream_only, "openvmm-azure-runtime-rs"));
	CHECK(!kd_strv_find(s->upstream_only, "firecracker"));
	CHECK_INT((int)(s->n_shims + kd_strv_length(s->upstream_only)), 26);

	kd_shims *t = NULL;
	CHECK_INT(shims_text("shims:\n  qemu: [a]\nupstream_only:\n  qemu:\n    x86_64: [b]\n", &t,
			     &err),
		  -EINVAL);
	CHECK(strstr(kd_err_msg(&err), "upstream_only.qemu: built here") != NULL);
	kd_err_clear(&err);
	CHECK_INT(shims_text("shims:\n  qemu: [a]\nupstream_only:\n  fc:\n    riscv64: [b]\n", &t,
			     &err),
		  -EINVAL);
	CHECK(strstr(kd_err_msg(&err), "unknown architecture 'riscv64'") != NULL);
	kd_shims_free(t);
}

/* debug_tools: in the default payload (sorted in with the shims' components), in no shim. */
TEST(shims_debug_tools)
{
	_cleanup_shims_ kd_shims *s = NULL;
	kd_shims *t = NULL;
	kd_error err = {0};

	CHECK_INT(kd_shims_load("artifacts/shims.yaml", &s, &err), 0);
	if (!s) {
		printf("# %s\n", kd_err_msg(&err));
		return;
	}
	CHECK(kd_strv_find(s->debug_tools, "kata-ctl"));
	CHECK(kd_strv_find(s->payload, "kata-ctl"));
	CHECK(!kd_strv_find(s->components, "kata-ctl"));
	CHECK_INT((int)kd_strv_length(s->payload),
		  (int)(kd_strv_length(s->components) + kd_strv_length(s->debug_tools)));

	CHECK_INT(shims_text("shims:\n  qemu: [z, a]\ndebug_tools: [m]\n", &t, &err), 0);
	if (t) {
		CHECK_STR(t->payload[0], "a");
		CHECK_STR(t->payload[1], "m");
		CHECK_STR(t->payload[2], "z");
		CHECK(t->payload[3] == NULL);
		kd_shims_free(t);
		t = NULL;
	}
	CHECK_INT(shims_text("shims:\n  qemu: [a]\n", &t, &err), 0);
	if (t) {
		CHECK(t->debug_tools == NULL);
		CHECK_STR(t->payload[0], "a");
		CHECK(t->payload[1] == NULL);
		kd_shims_free(t);
		t = NULL;
	}
	CHECK_INT(shims_text("shims:\n  qemu: [a]\ndebug_tools: [a]\n", &t, &err), -EINVAL);
	CHECK(strstr(kd_err_msg(&err), "debug_tools: a is a shim's component") != NULL);
	kd_err_clear(&err);
	CHECK_INT(shims_text("shims:\n  qemu: [a]\ndebug_tools: [b, b]\n", &t, &err), -EINVAL);
	CHECK(strstr(kd_err_msg(&err), "debug_tools: b listed twice") != NULL);
	kd_err_clear(&err);
	CHECK_INT(shims_text("shims:\n  qemu: [a]\ndebug_tools: [B/x]\n", &t, &err), -EINVAL);
	CHECK(strstr(kd_err_msg(&err), "debug_tools: bad component name") != NULL);
	kd_err_clear(&err);
	CHECK_INT(shims_text("shims:\n  qemu: [a]\ndebug_tools: b\n", &t, &err), -EINVAL);
	kd_err_clear(&err);
	kd_shims_free(t);
}

int main(void)
{
	RUN(good_recipe);
	RUN(unknown_key_names_line);
	RUN(outputs_under_opt_kata);
	RUN(required_and_types);
	RUN(sources);
	RUN(git_sources);
	RUN(variables);
	RUN(path_safe);
	RUN(shims_upstream_only);
	RUN(shims_debug_tools);
	TAP_END();
}
