#include "snapshotter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strv.h"

bool kd_snapshotter_listed(const char *setup, const char *s)
{
	size_t n = strlen(s);
	for (const char *p = setup; p && *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == n && !strncmp(p, s, n))
			return true;
		p = e ? e + 1 : NULL;
	}
	return false;
}

void kd_snapshotter_select(const kd_manifest *m, const char *setup, bool *mask)
{
	if (!kd_snapshotter_listed(setup, "nydus"))
		return;
	for (size_t i = 0; i < m->n_components; i++)
		if (!strcmp(m->components[i].name, KD_NYDUS_COMPONENT))
			mask[i] = true;
}

void kd_nydus_files_done(kd_nydus_files *f)
{
	free(f->unit);
	free(f->dropin);
	free(f->config);
	memset(f, 0, sizeof(*f));
}

int kd_nydus_render(const char *name, const char *prefix, const char *runtime_unit,
		    kd_nydus_files *ret, kd_error *err)
{
	kd_nydus_files f = {0};
	snprintf(f.unit_path, sizeof(f.unit_path), "etc/systemd/system/%s.service", name);
	snprintf(f.dropin_path, sizeof(f.dropin_path),
		 "etc/systemd/system/%s.d/kata-deploy-%s.conf", runtime_unit, name);
	snprintf(f.config_path, sizeof(f.config_path), "%s/%s/%s.toml", prefix, KD_NYDUS_CONFIG_DIR,
		 name);
	/* Upstream's config-guest-pulling.toml: the proxy fs driver (Kata pulls the image in
	 * the guest), Kata volume information in the mount options. */
	if (asprintf(&f.config,
		     "# Written by kata-deploy: the %s snapshotter's configuration.\n"
		     "# Removed by 'kata-deploy uninstall'.\n"
		     "version = 1\n"
		     "root = \"/var/lib/%s\"\n"
		     "address = \"/run/%s/containerd-nydus-grpc.sock\"\n"
		     "\n"
		     "[daemon]\n"
		     "fs_driver = \"proxy\"\n"
		     "\n"
		     "[snapshot]\n"
		     "enable_kata_volume = true\n"
		     "nydus_overlayfs_path = \"/%s/%s\"\n",
		     name, name, name, prefix, KD_NYDUS_OVERLAYFS) < 0)
		f.config = NULL;
	/* Ordered before the runtime, restarted and stopped with it (PartOf); the runtime
	 * pulls it in through the drop-in instead of an [Install] section, so that no
	 * `systemctl enable` link is made outside what uninstall reverts. */
	if (asprintf(&f.unit,
		     "# Written by kata-deploy: the nydus snapshotter for Kata Containers.\n"
		     "# Removed by 'kata-deploy uninstall'.\n"
		     "[Unit]\n"
		     "Description=Nydus snapshotter for Kata Containers (%s)\n"
		     "After=network.target local-fs.target\n"
		     "Before=%s\n"
		     "PartOf=%s\n"
		     "\n"
		     "[Service]\n"
		     "ExecStart=/%s/%s --config /%s --log-to-stdout\n"
		     "Restart=always\n"
		     "RestartSec=5\n",
		     name, runtime_unit, runtime_unit, prefix, KD_NYDUS_GRPC, f.config_path) < 0)
		f.unit = NULL;
	if (asprintf(&f.dropin,
		     "# Written by kata-deploy: %s starts with this unit.\n"
		     "# Removed by 'kata-deploy uninstall'.\n"
		     "[Unit]\n"
		     "Wants=%s.service\n"
		     "After=%s.service\n",
		     name, name, name) < 0)
		f.dropin = NULL;
	if (!f.config || !f.unit || !f.dropin) {
		kd_nydus_files_done(&f);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	*ret = f;
	return 0;
}
