#include "selfcheck.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deployer/pull.h"
#include "deployer/restart.h"
#include "fsroot.h"
#include "http.h"
#include "settings.h"

/* Debian's libcurl reads this bundle unless told otherwise (its built-in CURLOPT_CAINFO). */
#define CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"
#define CA_BUNDLE_MAX (16u << 20)
#define WAITER_SUFFIX "-wait"

static int report(FILE *out, const char *what, int r, const char *detail)
{
	fprintf(out, "%-4s %-18s %s\n", r < 0 ? "FAIL" : "ok", what, detail);
	return r < 0 ? 1 : 0;
}

static int check_ca_bundle(FILE *out)
{
	_cleanup_close_ int root = kd_root_open("/", NULL);
	_cleanup_free_ char *data = NULL;
	kd_error e = {0};
	char msg[KD_ERROR_MAX + 64];
	size_t len = 0, n = 0;
	int r = root < 0 ? root : kd_read_file(root, CA_BUNDLE, CA_BUNDLE_MAX, &data, &len, &e);

	for (const char *p = data; p && (p = strstr(p, "-----BEGIN CERTIFICATE-----")); p++)
		n++;
	if (r >= 0 && n == 0)
		r = -EINVAL;
	if (r < 0)
		snprintf(msg, sizeof(msg), "%s: %s", CA_BUNDLE,
			 e.msg[0] ? e.msg : "no PEM certificate in it");
	else
		snprintf(msg, sizeof(msg), "%s (%zu certificates)", CA_BUNDLE, n);
	return report(out, "ca-certificates", r, msg);
}

static int check_waiter(FILE *out)
{
	char self[PATH_MAX], msg[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - sizeof(WAITER_SUFFIX));
	int r = n > 0 ? 0 : -errno;
	if (r == 0) {
		self[n] = '\0';
		strcat(self, WAITER_SUFFIX);
		r = access(self, X_OK) == 0 ? 0 : -errno;
	}
	snprintf(msg, sizeof(msg), "%s%s%s", n > 0 ? self : "/proc/self/exe", r < 0 ? ": " : "",
		 r < 0 ? strerror(-r) : "");
	return report(out, "waiter", r, msg);
}

/* Where install.c creates a download file (O_TMPFILE in $TMPDIR, else /var/tmp) and where the
 * runtime config is validated (a directory in $TMPDIR, else /tmp). */
static int check_scratch(FILE *out)
{
	const char *td = getenv("TMPDIR");
	const char *dl = td && *td ? td : "/var/tmp", *val = td && *td ? td : "/tmp";
	char msg[PATH_MAX + 128], dir[PATH_MAX];
	int fails = 0, r;

	_cleanup_close_ int fd = open(dl, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	r = fd < 0 ? -errno : 0;
	snprintf(msg, sizeof(msg), "%s%s%s", dl, r < 0 ? ": " : " (writable)",
		 r < 0 ? strerror(-r) : "");
	fails += report(out, "download-dir", r, msg);

	snprintf(dir, sizeof(dir), "%s/kd-self-check.XXXXXX", val);
	r = mkdtemp(dir) ? 0 : -errno;
	if (r == 0)
		rmdir(dir);
	snprintf(msg, sizeof(msg), "%s%s%s", val, r < 0 ? ": " : " (writable)",
		 r < 0 ? strerror(-r) : "");
	fails += report(out, "validation-dir", r, msg);
	return fails;
}

int kd_agent_self_check(FILE *out)
{
	kd_error e = {0};
	int fails = 0, r;
	const char *payload = getenv("PAYLOAD");

	r = kd_restart_load_systemd(&e);
	fails += report(out, "libsystemd.so.0", r,
			r < 0 ? e.msg : "loaded (runtime restart over systemd's D-Bus API)");
	kd_err_clear(&e);
	r = kd_http_load(&e);
	fails += report(out, "libcurl.so.4", r,
			r < 0 ? e.msg : "loaded (Kubernetes API, URL and oci:// payloads)");
	fails += check_ca_bundle(out);
	fails += check_waiter(out);
	fails += check_scratch(out);
	if (!payload || !*payload)
		payload = KD_AGENT_DEFAULT_PAYLOAD;
	if (!kd_is_url(payload) && !kd_is_oci_ref(payload)) {
		r = access(payload, R_OK) == 0 ? 0 : -errno;
		char msg[PATH_MAX + 64];
		snprintf(msg, sizeof(msg), "%s%s%s", payload, r < 0 ? ": " : "",
			 r < 0 ? strerror(-r) : "");
		fails += report(out, "payload", r, msg);
	}
	return fails;
}
