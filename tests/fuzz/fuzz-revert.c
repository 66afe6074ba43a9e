/* Fuzz the three-way revert (deployer/revert.c): the input is config.toml as an admin may have
 * left it after an install wrote two handler tables into it and two `imports` entries (our
 * drop-in's and the user drop-in's). Whatever it holds, an uninstall (force) that produces text
 * produces valid TOML without any of our tables or imports entries, and leaves the file alone
 * only when it is no longer TOML; an install (no force) never removes an edited table. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "deployer/containerd.h"
#include "deployer/flavour.h"
#include "deployer/revert.h"
#include "digest.h"
#include "strv.h"
#include "toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RT "plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes."
#define BASE "version = 2\n\n[" RT "runc]\n  runtime_type = \"io.containerd.runc.v2\"\n"
#define WRITTEN                                                                                      \
	BASE "\n[" RT "kata-clh]\n  runtime_type = \"io.containerd.kata-clh.v2\"\n\n[" RT            \
	     "kata-clh.options]\n  ConfigPath = \"/opt/kata/runtimes/clh/configuration-clh.toml\"\n" \
	     "\n[" RT "kata-qemu]\n  runtime_type = \"io.containerd.kata-qemu.v2\"\n\n[" RT          \
	     "kata-qemu.options]\n  ConfigPath = \"/opt/kata/runtimes/qemu/configuration-qemu.toml\"\n"

static const char *tables[] = {RT "kata-clh", RT "kata-qemu"};
static const char *our_imports[] = {"/etc/containerd/conf.d/kata-deploy.toml",
				    "/etc/containerd/conf.d/zz-kata-deploy-user.toml"};

static bool has_table(const kd_toml_doc *doc, const char *key)
{
	char buf[512];
	const char *parts[16];
	size_t s, e;
	int n = kd_toml_key_split(key, buf, sizeof(buf), parts, 16);
	return n > 0 && kd_toml_table_range(doc, parts, (size_t)n, &s, &e) == 0;
}

static void make_record(kd_config_file *rec)
{
	kd_toml_doc *doc = NULL;
	size_t len;
	memset(rec, 0, sizeof(*rec));
	rec->path = strdup("etc/containerd/config.toml");
	rec->base = strdup(BASE);
	rec->tables = calloc(1, sizeof(char *));
	rec->texts = calloc(1, sizeof(char *));
	for (size_t i = 0; i < sizeof(our_imports) / sizeof(our_imports[0]); i++)
		if (kd_strv_push(&rec->imports, our_imports[i]) < 0)
			abort();
	rec->import_key = true;
	kd_sha256_buf(WRITTEN, strlen(WRITTEN), rec->result_sha);
	rec->result_len = strlen(WRITTEN);
	if (kd_toml_parse("c", WRITTEN, strlen(WRITTEN), &doc, NULL) < 0)
		abort();
	const char *t = kd_toml_text(doc, &len);
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		char buf[512];
		const char *parts[16];
		size_t s, e;
		int n = kd_toml_key_split(tables[i], buf, sizeof(buf), parts, 16);
		if (n <= 0 || kd_toml_table_range(doc, parts, (size_t)n, &s, &e) < 0)
			abort();
		char *txt = strndup(t + s, e - s);
		if (kd_strv_push(&rec->tables, tables[i]) < 0 || kd_strv_push(&rec->texts, txt) < 0)
			abort();
		free(txt);
	}
	kd_toml_free(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static kd_config_file rec;
	static bool made;
	char why[8192];

	if (size > 65536)
		return 0;
	if (!made) {
		make_record(&rec);
		made = true;
	}
	char *cur = malloc(size + 1);
	if (!cur)
		abort();
	memcpy(cur, data, size);
	cur[size] = '\0';
	kd_toml_doc *cdoc = NULL;
	bool valid = kd_toml_parse("c", cur, size, &cdoc, NULL) >= 0;
	for (int force = 0; force <= 1; force++) {
		char *text = NULL;
		size_t len = 0;
		kd_error err = {0};
		int r = kd_revert_text(&rec, cur, size, force, &text, &len, why, sizeof(why), &err);
		if (r == KD_REVERT_TEXT) {
			kd_toml_doc *doc = NULL;
			if (!text || strlen(text) != len ||
			    kd_toml_parse("result", text, len, &doc, NULL) < 0)
				abort();
			for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
				if (has_table(doc, tables[i]))
					abort(); /* one of ours survived */
			int v;
			char **imports = NULL;
			if (kd_containerd_root_info(doc, "result", &v, &imports, NULL) >= 0)
				for (size_t i = 0; i < sizeof(our_imports) / sizeof(our_imports[0]);
				     i++)
					if (kd_strv_find(imports, our_imports[i]))
						abort(); /* an imports entry of ours survived */
			kd_strv_free(imports);
			kd_toml_free(doc);
		} else if (text) {
			abort();
		}
		if (force && valid && r == KD_REVERT_LEAVE)
			abort(); /* uninstall leaves a file it could have cleaned */
		free(text);
	}
	kd_toml_free(cdoc);
	free(cur);
	return 0;
}
