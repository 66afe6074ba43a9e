#include "crio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strv.h"
#include "toml.h"

static const char banner[] = "# Written by kata-deploy: Kata Containers runtime handlers.\n"
			     "# Removed by 'kata-deploy uninstall'.\n";

void kd_crio_dropin_path(const char *suffix, char *out, size_t size)
{
	if (suffix && *suffix)
		snprintf(out, size, "%s/99-kata-deploy-%s", KD_CRIO_DROPIN_DIR, suffix);
	else
		snprintf(out, size, "%s/99-kata-deploy", KD_CRIO_DROPIN_DIR);
}

int kd_crio_render(const kd_handler *h, size_t n, bool debug, char **ret, char ***tables,
		   kd_error *err)
{
	_cleanup_toml_ kd_toml_doc *doc = NULL;
	int r = kd_toml_parse("crio drop-in", "", 0, &doc, err);
	if (r < 0)
		return r;
	char key[512];
	/* CRI-O passes a pod annotation to the runtime only if the handler allows it: the
	 * same set containerd gets in pod_annotations. */
	const char *ann[] = {"io.katacontainers.*"};
	/* As upstream: containers/storage's overlay driver must not make its home a private
	 * bind mount, which Kata's shared mounts of the rootfs trip over. Like any drop-in
	 * key it replaces a storage_option list set before it. */
	const char *crio[] = {"crio"}, *so[] = {"overlay.skip_mount_home=true"};
	if ((r = kd_toml_add_table(doc, crio, 1, err)) < 0 ||
	    (r = kd_toml_set_strings(doc, crio, 1, "storage_option", so, 1, err)) < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		const char *p[] = {"crio", "runtime", "runtimes", h[i].name};
		if ((r = kd_toml_add_table(doc, p, 4, err)) < 0 ||
		    (r = kd_toml_set_string(doc, p, 4, "runtime_path", h[i].runtime_path, err)) <
			    0 ||
		    (r = kd_toml_set_string(doc, p, 4, "runtime_type", "vm", err)) < 0 ||
		    (r = kd_toml_set_string(doc, p, 4, "runtime_root", "/run/vc", err)) < 0 ||
		    (r = kd_toml_set_string(doc, p, 4, "runtime_config_path", h[i].config_path,
					    err)) < 0 ||
		    (r = kd_toml_set_bool(doc, p, 4, "privileged_without_host_devices", true,
					  err)) < 0 ||
		    (r = kd_toml_set_strings(doc, p, 4, "allowed_annotations", ann, 1, err)) < 0)
			return r;
		if (h[i].guest_pull &&
		    (r = kd_toml_set_bool(doc, p, 4, "runtime_pull_image", true, err)) < 0)
			return r;
		if (kd_toml_key_join(p, 4, key, sizeof(key)) < 0 || kd_strv_push(tables, key) < 0)
			return -ENOMEM;
	}
	if (debug) {
		const char *p[] = {"crio", "runtime"};
		if ((r = kd_toml_set_string(doc, p, 2, "log_level", "debug", err)) < 0)
			return r;
	}
	size_t len;
	const char *t = kd_toml_text(doc, &len);
	if (asprintf(ret, "%s%.*s", banner, (int)len, t) < 0)
		return -ENOMEM;
	return 0;
}
