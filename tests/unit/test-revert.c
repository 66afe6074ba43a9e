/* deployer/revert.c: the three-way revert of one runtime config file. Byte for byte when the file
 * is as kata-deploy wrote it; comment lines an admin added (after, before, or inside one of our
 * tables) kept; an edit of one of our tables refused for an install (the file is left) and, for
 * uninstall (force), removed with the table and named (issue 14 item 11). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deployer/containerd.h"
#include "deployer/revert.h"
#include "digest.h"
#include "strv.h"
#include "tap.h"
#include "toml.h"

#define BASE                                                                                       \
	"version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n"        \
	"  runtime_type = \"io.containerd.runc.v2\"\n"
#define RT "plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes."
#define QEMU                                                                                       \
	"\n[" RT "kata-qemu]\n  runtime_type = \"io.containerd.kata-qemu.v2\"\n"                   \
	"  privileged_without_host_devices = true\n\n[" RT "kata-qemu.options]\n"                  \
	"  ConfigPath = \"/opt/kata/runtimes/qemu/configuration-qemu.toml\"\n"
#define CLH                                                                                        \
	"\n[" RT "kata-clh]\n  runtime_type = \"io.containerd.kata-clh.v2\"\n\n[" RT               \
	"kata-clh.options]\n  ConfigPath = \"/opt/kata/runtimes/clh/configuration-clh.toml\"\n"
#define WRITTEN BASE CLH QEMU

/* The record kata-deploy keeps for WRITTEN: its tables' exact text in that file. */
static void record(kd_config_file *rec, bool with_len)
{
	static const char *tables[] = {RT "kata-clh", RT "kata-qemu"};
	kd_toml_doc *doc = NULL;
	kd_error err = {0};
	size_t len;

	memset(rec, 0, sizeof(*rec));
	rec->path = strdup("etc/containerd/config.toml");
	rec->base = strdup(BASE);
	rec->tables = calloc(1, sizeof(char *));
	rec->texts = calloc(1, sizeof(char *));
	kd_sha256_buf(WRITTEN, strlen(WRITTEN), rec->result_sha);
	rec->result_len = with_len ? strlen(WRITTEN) : 0;
	CHECK_INT(kd_toml_parse("config.toml", WRITTEN, strlen(WRITTEN), &doc, &err), 0);
	const char *t = kd_toml_text(doc, &len);
	for (size_t i = 0; i < ELEMENTSOF(tables); i++) {
		char buf[512];
		const char *parts[16];
		size_t s, e;
		int n = kd_toml_key_split(tables[i], buf, sizeof(buf), parts, 16);
		CHECK_INT(kd_toml_table_range(doc, parts, (size_t)n, &s, &e), 0);
		char *txt = strndup(t + s, e - s);
		kd_strv_push(&rec->tables, tables[i]);
		kd_strv_push(&rec->texts, txt);
		free(txt);
	}
	kd_toml_free(doc);
}

static bool has(const char *s, const char *sub)
{
	if (!strstr(s, sub))
		printf("#   message \"%s\" does not contain \"%s\"\n", s, sub);
	return strstr(s, sub) != NULL;
}

typedef struct outcome {
	int r;
	char *text;
	char why[4096];
} outcome;

static void revert(const char *cur, bool force, bool with_len, outcome *o)
{
	kd_config_file rec;
	kd_error err = {0};
	size_t len = 0;

	record(&rec, with_len);
	o->r = kd_revert_text(&rec, cur, strlen(cur), force, &o->text, &len, o->why, sizeof(o->why),
			      &err);
	if (o->r < 0)
		printf("#   %s\n", err.msg);
	CHECK(!o->text || strlen(o->text) == len);
	kd_config_file_done(&rec);
}

TEST(exact)
{
	outcome o;
	revert(WRITTEN, false, true, &o);
	CHECK_INT(o.r, KD_REVERT_TEXT);
	CHECK_STR(o.text, BASE);
	CHECK_STR(o.why, "");
	free(o.text);
}

/* The case: install, printf '# c\n' >> config.toml, uninstall. */
TEST(appended_comment)
{
	outcome o;
	revert(WRITTEN "# c\n", true, true, &o);
	CHECK_INT(o.r, KD_REVERT_TEXT);
	CHECK_STR(o.text, BASE "# c\n");
	CHECK(has(o.why,
		  "1 line(s) were added after what kata-deploy wrote since install ('# c')"));
	CHECK(has(o.why, "kept those lines after the original content"));
	free(o.text);
	/* The same for an install, which builds on this result. */
	revert(WRITTEN "\n# c\n# d\n", false, true, &o);
	CHECK_STR(o.text, BASE "\n# c\n# d\n");
	free(o.text);
}

TEST(prepended_comment)
{
	outcome o;
	revert("# managed by ops\n" WRITTEN, true, true, &o);
	CHECK_INT(o.r, KD_REVERT_TEXT);
	CHECK_STR(o.text, "# managed by ops\n" BASE);
	CHECK(has(o.why, "added before what kata-deploy wrote"));
	free(o.text);
}

/* A state written before result_len was recorded: the comment after our last table is not in
 * its range, so the structural removal keeps it too. */
TEST(appended_comment_old_state)
{
	outcome o;
	revert(WRITTEN "# c\n", true, false, &o);
	CHECK_INT(o.r, KD_REVERT_TEXT);
	CHECK(o.text && !strstr(o.text, "kata") && strstr(o.text, "# c\n") &&
	      !strncmp(o.text, BASE, strlen(BASE)));
	CHECK(has(o.why, "removed the kata-deploy table(s) [" RT "kata-clh], [" RT "kata-qemu]"));
	free(o.text);
}

TEST(comment_inside_our_table)
{
	outcome o;
	const char *cur = BASE CLH
		"\n[" RT "kata-qemu]\n  runtime_type = \"io.containerd.kata-qemu.v2\"\n"
		"  # qemu for the batch jobs\n  privileged_without_host_devices = true\n\n[" RT
		"kata-qemu.options]\n  ConfigPath = \"/opt/kata/runtimes/qemu/"
		"configuration-qemu.toml\"\n";
	revert(cur, false, true, &o);
	CHECK_INT(o.r, KD_REVERT_TEXT);
	CHECK(o.text && !strstr(o.text, "kata-qemu") && !strstr(o.text, "kata-clh") &&
	      strstr(o.text, "  # qemu for the batch jobs\n"));
	CHECK(has(o.why, "including 1 line(s) added inside [" RT
			 "kata-qemu] ('# qemu for the batch jobs'): comments and blank lines are "
			 "no part of a table"));
	free(o.text);
}

TEST(key_edited_in_our_table)
{
	outcome o;
	const char *cur =
		BASE CLH "\n[" RT "kata-qemu]\n  runtime_type = \"io.containerd.kata-qemu.v2\"\n"
			 "  privileged_without_host_devices = false\n\n[" RT
			 "kata-qemu.options]\n  ConfigPath = \"/opt/kata/runtimes/qemu/"
			 "configuration-qemu.toml\"\n";
	/* An install does not overwrite an admin's edit of our table: it leaves the file. */
	revert(cur, false, true, &o);
	CHECK_INT(o.r, KD_REVERT_LEAVE);
	CHECK(o.text == NULL);
	CHECK(has(o.why, "the kata-deploy tables were edited since install: [" RT "kata-qemu]"));
	/* Uninstall removes the table whole (its shim is gone) and names the edit. */
	revert(cur, true, true, &o);
	CHECK_INT(o.r, KD_REVERT_TEXT);
	CHECK_STR(o.text, BASE);
	CHECK(has(o.why, "'privileged_without_host_devices = false'"));
	CHECK(has(o.why, "were removed with them (a kata-deploy table goes whole"));
	free(o.text);
}

TEST(key_appended)
{
	outcome o;
	revert(WRITTEN "  foo = 1\n", true, true, &o);
	CHECK_INT(o.r, KD_REVERT_TEXT);
	CHECK(o.text && !strstr(o.text, "foo") && !strstr(o.text, "kata"));
	CHECK(has(o.why, "[" RT "kata-qemu] (1 line(s) added: 'foo = 1')"));
	free(o.text);
}

TEST(other_table_edited)
{
	outcome o;
	char cur[4096];
	snprintf(cur, sizeof(cur), "%s", WRITTEN);
	char *p = strstr(cur, "io.containerd.runc.v2");
	memcpy(p, "io.containerd.runX.v2", 21);
	revert(cur, false, true, &o);
	CHECK_INT(o.r, KD_REVERT_TEXT);
	CHECK(o.text && strstr(o.text, "runX") && !strstr(o.text, "kata"));
	CHECK(has(o.why, "kept everything else"));
	free(o.text);
}

int main(void)
{
	RUN(exact);
	RUN(appended_comment);
	RUN(prepended_comment);
	RUN(appended_comment_old_state);
	RUN(comment_inside_our_table);
	RUN(key_edited_in_our_table);
	RUN(key_appended);
	RUN(other_table_edited);
	TAP_END();
}
