/* kata-deploy: the host CLI. One function per verb; each parses its options into the engine's
 * option structs, calls the engine once and prints the error chain once. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd-check.h"
#include "engine.h"
#include "fsroot.h"
#include "hostcheck.h"
#include "import.h"
#include "json.h"
#include "log.h"
#include "payload.h"
#include "pull.h"
#include "restart.h"
#include "sign.h"
#include "strv.h"

#define EXIT_USAGE 2
#define EXIT_BUSY 3
#define EXIT_NOT_DONE 4 /* status: installed, but a restart or a recovery is still pending */

#ifndef KD_VERSION
#define KD_VERSION "0.1.0"
#endif

typedef struct common {
	const char *root;
	kd_engine_opts e;
	kd_log_level level;
	bool json_log;
	bool quiet;
} common;

enum { OPT_ROOT = 1000, OPT_PREFIX, OPT_STATE_DIR, OPT_LOCK_TIMEOUT, OPT_LOG_LEVEL, OPT_LOG_JSON };

#define COMMON_LONGOPTS                                                                            \
	{"root", required_argument, NULL, OPT_ROOT},                                               \
		{"prefix", required_argument, NULL, OPT_PREFIX},                                   \
		{"state-dir", required_argument, NULL, OPT_STATE_DIR},                             \
		{"lock-timeout", required_argument, NULL, OPT_LOCK_TIMEOUT},                       \
		{"log-level", required_argument, NULL, OPT_LOG_LEVEL},                             \
		{"log-json", no_argument, NULL, OPT_LOG_JSON}, {"quiet", no_argument, NULL, 'q'},  \
	{                                                                                          \
		"help", no_argument, NULL, 'h'                                                     \
	}

static const char common_help[] =
	"Common options:\n"
	"  --root DIR            host root to work on (default /)\n"
	"  --prefix DIR          installation prefix inside the root (default " KD_DEFAULT_PREFIX
	")\n"
	"  --state-dir DIR       state directory inside the root (default " KD_DEFAULT_STATE_DIR
	")\n"
	"  --lock-timeout SEC    wait this long for another run's lock (default 60; -1: fail at once)\n"
	"  --log-level LEVEL     error|warning|info|debug (default info)\n"
	"  --log-json            log as JSON lines\n"
	"  -q, --quiet           warnings and errors only, no download progress\n"
	"  -h, --help            this help\n";

/* Returns 1 if handled, 0 if not a common option, -1 on a bad value. */
static int common_opt(common *c, int opt, const char *arg)
{
	switch (opt) {
	case OPT_ROOT:
		c->root = arg;
		return 1;
	case OPT_PREFIX:
		c->e.prefix = arg;
		return 1;
	case OPT_STATE_DIR:
		c->e.state_dir = arg;
		return 1;
	case OPT_LOCK_TIMEOUT: {
		char *end;
		long v = strtol(arg, &end, 10);
		if (*end || v < -1 || v > 86400) {
			fprintf(stderr,
				"kata-deploy: --lock-timeout: '%s' is not a number of seconds "
				"(-1..86400)\n",
				arg);
			return -1;
		}
		c->e.lock_timeout_s = v == 0 ? -1 : (int)v;
		return 1;
	}
	case OPT_LOG_LEVEL:
		if (kd_log_level_from_string(arg, &c->level) < 0) {
			fprintf(stderr,
				"kata-deploy: --log-level: '%s' is not one of "
				"error|warning|info|debug\n",
				arg);
			return -1;
		}
		return 1;
	case OPT_LOG_JSON:
		c->json_log = true;
		return 1;
	case 'q':
		c->quiet = true;
		c->level = KD_LOG_WARNING;
		return 1;
	}
	return 0;
}

static int open_root(const common *c, kd_error *err)
{
	kd_log_setup("kata-deploy", c->level, c->json_log);
	return kd_root_open(c->root, err);
}

static int exit_code(const kd_error *err)
{
	return err->code == -EBUSY ? EXIT_BUSY : EXIT_FAILURE;
}

/* A permission error from a non-root user is the missing privilege, not a path to debug. */
static const char *privilege_hint(const kd_error *err)
{
	if ((err->code == -EACCES || err->code == -EPERM || err->code == -EROFS) && geteuid() != 0)
		return err->code == -EROFS ? ""
					   : " (kata-deploy changes the host as root: run it as "
					     "root, or give --root a directory you own)";
	return "";
}

static int fail(const kd_error *err)
{
	kd_error_log("%s%s", kd_err_msg(err), privilege_hint(err));
	return exit_code(err);
}

/* --output json: the error object on stdout as well, so a caller parsing stdout sees it. */
static int fail_json(const kd_error *err)
{
	_cleanup_json_ struct json_object *j = json_object_new_object();
	char msg[4096];
	snprintf(msg, sizeof(msg), "%s%s", kd_err_msg(err), privilege_hint(err));
	json_object_object_add(j, "ok", json_object_new_boolean(false));
	json_object_object_add(j, "error", json_object_new_string(msg));
	json_object_object_add(j, "errno", json_object_new_int(-err->code));
	json_object_object_add(j, "exit", json_object_new_int(exit_code(err)));
	printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN |
								 JSON_C_TO_STRING_NOSLASHESCAPE));
	return fail(err);
}

/* A --sha256 value as people paste it: either case is accepted, lower case is compared. */
static bool sha256_arg(char *s)
{
	for (char *p = s; *p; p++)
		if (*p >= 'A' && *p <= 'F')
			*p = (char)(*p - 'A' + 'a');
	return kd_sha256_hex_valid(s);
}

static int usage_error(const char *verb, const char *msg)
{
	fprintf(stderr, "kata-deploy %s: %s\nTry 'kata-deploy %s --help'.\n", verb, msg, verb);
	return EXIT_USAGE;
}

/* getopt's own messages are off (opterr = 0): one line names the option. */
static int bad_option(const char *verb, char **argv)
{
	char msg[512];
	if (optopt > ' ' && optopt < 127 && optopt != '?')
		snprintf(msg, sizeof(msg), "unknown option or missing value: '-%c'", optopt);
	else
		snprintf(msg, sizeof(msg), "unknown option or missing value: '%s'",
			 argv[optind - 1]);
	return usage_error(verb, msg);
}

static const char install_help[] =
	"Usage: kata-deploy install --payload PATH|URL|oci://REGISTRY/REPO:TAG [options]\n"
	"Verify the payload, extract the components the chosen shims need into a new version\n"
	"directory, verify every file, then switch to it atomically. The previous version is kept\n"
	"for 'rollback'. Installing the same payload and shims again changes nothing.\n\n"
	"  --payload PATH|URL    payload file (.tar.zst made by 'payload pack', 'payload import' or\n"
	"                        kata-build; upstream's kata-static-*.tar.* need 'payload import')\n"
	"  --payload oci://REGISTRY[:PORT]/REPO:TAG|@sha256:HEX   a payload pushed by\n"
	"                        'kata-build push --payload': only the chosen shims' component\n"
	"                        blobs are pulled (resumable, cached in --blob-cache)\n"
	"  --sha256 HEX          expected sha256 of the payload file (64 hex digits); oci://:\n"
	"                        of the artifact's manifest\n"
	"  --shims LIST          comma-separated shims (default: every shim in the payload)\n"
	"  --skip-missing-shims  leave out the --shims the payload does not have (named on\n"
	"                        stderr and in the result) instead of refusing; fails only when\n"
	"                        none of them is in the payload\n"
	"  --public-key FILE     verify the payload's detached signature with this PEM key\n"
	"  --signature PATH|URL  the signature (default: payload + .sig; oci://: the registry's\n"
	"                        tag sha256-<manifest hex>.sig)\n"
	"  --registry-auth FILE  oci://: credentials, a docker config.json / dockerconfigjson\n"
	"                        Secret (default $REGISTRY_AUTH_FILE)\n"
	"  --plain-http          oci://: talk to the registry over http:// (needs a pin:\n"
	"                        --sha256, @sha256:, or --public-key; else --insecure)\n"
	"  --registry-ca FILE    oci://: CA certificates (PEM) for the registry's TLS\n"
	"  --blob-cache DIR      oci://: blobs and partial downloads (default\n"
	"                        $TMPDIR or /var/tmp + /kata-deploy-blobs)\n"
	"  --output text|json    result format (json: the result or the error object on stdout)\n"
	"  --insecure            allow a plain http:// payload (or --plain-http registry) that\n"
	"                        neither --sha256 nor a signature (--public-key) pins (refused\n"
	"                        otherwise)\n"
	"  --arch A              the root's machine architecture (default: this machine's);\n"
	"                        a payload built for another one is refused\n"
	"Runtime configuration (docs/RUNTIME-CONFIG.md):\n"
	"  --runtime containerd|crio|auto|none   (default auto: detected on the root)\n"
	"  --runtime-version V   runtime version when its binary cannot be asked (root != /)\n"
	"  --runtime-binary PATH the runtime's binary, to validate with its own loader\n"
	"  --distribution k8s|k3s|rke2|k0s|microk8s|auto\n"
	"  --config PATH         main runtime config file inside the root\n"
	"  --restart systemd|none|command:CMD  (default systemd on /, none on another root)\n"
	"  --suffix S            multi-install: handlers kata-<shim>-S, files *-S\n"
	"  --debug               runtime debug logging + kata-<shim>-debug handlers (Kata, guest\n"
	"                        and agent debug, debug console)\n"
	"  --devkit              + kata-<shim>-devkit handlers (needs --debug and the devkit\n"
	"                        guest extension image in the payload)\n"
	"  --agent-https-proxy V URL, or shim=URL;shim=URL\n"
	"  --agent-no-proxy V    list, or shim=list;shim=list\n"
	"  --allowed-hypervisor-annotations 'a b shim:c,d'\n"
	"  --snapshotter-handler-mapping shim:snapshotter,...\n"
	"  --pull-type-mapping shim:guest-pull|default,...  (CRI-O: runtime_pull_image)\n"
	"  --custom-configs DIR  user drop-ins DIR/dropin-<shim|handler>.toml (50-user-overrides)\n"
	"  --custom-runtimes     + the handlers of DIR/custom-runtimes.list, one\n"
	"                        handler:baseShim:snapshotter:pullType per line\n"
	"  --setup-snapshotter nydus,erofs  set up snapshotters (containerd): nydus = the\n"
	"                        managed nydus-for-kata-tee service, erofs = containerd 2.2's\n"
	"  --erofs-merge-mode merged|unmerged   (default merged: runtime-rs shims only)\n"
	"  --erofs-snapshotter-mode disk|memory (rw layer: 10G on disk, or in memory)\n"
	"  --erofs-dmverity      dm-verity for the erofs layers\n"
	"  --force-guest-pull shim,...  Kata pulls every image in the guest for these shims\n"
	"  --containerd-user-drop-in FILE  your containerd TOML, installed beside ours as\n"
	"                        zz-kata-deploy-user.toml and merged after it (containerd 2.x)\n";

/* A value that must be one of a list: a wrong one is a usage error (exit 2), named once. */
static bool one_of(const char *verb, const char *opt, const char *arg, const char *const *list)
{
	for (size_t i = 0; list[i]; i++)
		if (!strcmp(arg, list[i]))
			return true;
	fprintf(stderr, "kata-deploy %s: %s: '%s' is not one of", verb, opt, arg);
	for (size_t i = 0; list[i]; i++)
		fprintf(stderr, "%s%s", i ? "|" : " ", list[i]);
	fprintf(stderr, "\nTry 'kata-deploy %s --help'.\n", verb);
	return false;
}

static bool restart_valid(const char *verb, const char *arg)
{
	kd_error err = {0};
	if (kd_restart_validate(arg, &err) == 0)
		return true;
	fprintf(stderr, "kata-deploy %s: %s\nTry 'kata-deploy %s --help'.\n", verb,
		kd_err_msg(&err), verb);
	return false;
}

/* Runtime options shared by install and plan. Returns 1 if handled, 0 if not one of them, -1
 * on a bad value (already reported). */
enum {
	O_RT_RUNTIME = 200,
	O_RT_VERSION,
	O_RT_BINARY,
	O_RT_DIST,
	O_RT_CONFIG,
	O_RT_RESTART,
	O_RT_SUFFIX,
	O_RT_DEBUG,
	O_RT_DEVKIT,
	O_RT_HTTPS,
	O_RT_NOPROXY,
	O_RT_ANN,
	O_RT_SNAP,
	O_RT_PULL,
	O_RT_DEFSHIM,
	O_RT_CUSTOM_DIR,
	O_RT_CUSTOM,
	O_RT_SETUP_SNAP,
	O_RT_EROFS_MERGE,
	O_RT_EROFS_MODE,
	O_RT_EROFS_DMV,
	O_RT_FORCE_GP,
	O_RT_USER_DROPIN,
};
#define RUNTIME_LONGOPTS                                                                           \
	{"runtime", required_argument, NULL, O_RT_RUNTIME},                                        \
		{"runtime-version", required_argument, NULL, O_RT_VERSION},                        \
		{"runtime-binary", required_argument, NULL, O_RT_BINARY},                          \
		{"distribution", required_argument, NULL, O_RT_DIST},                              \
		{"config", required_argument, NULL, O_RT_CONFIG},                                  \
		{"restart", required_argument, NULL, O_RT_RESTART},                                \
		{"suffix", required_argument, NULL, O_RT_SUFFIX},                                  \
		{"debug", no_argument, NULL, O_RT_DEBUG},                                          \
		{"devkit", no_argument, NULL, O_RT_DEVKIT},                                        \
		{"agent-https-proxy", required_argument, NULL, O_RT_HTTPS},                        \
		{"agent-no-proxy", required_argument, NULL, O_RT_NOPROXY},                         \
		{"allowed-hypervisor-annotations", required_argument, NULL, O_RT_ANN},             \
		{"snapshotter-handler-mapping", required_argument, NULL, O_RT_SNAP},               \
		{"pull-type-mapping", required_argument, NULL, O_RT_PULL},                         \
		{"custom-configs", required_argument, NULL, O_RT_CUSTOM_DIR},                      \
		{"custom-runtimes", no_argument, NULL, O_RT_CUSTOM},                               \
		{"setup-snapshotter", required_argument, NULL, O_RT_SETUP_SNAP},                   \
		{"erofs-merge-mode", required_argument, NULL, O_RT_EROFS_MERGE},                   \
		{"erofs-snapshotter-mode", required_argument, NULL, O_RT_EROFS_MODE},              \
		{"erofs-dmverity", no_argument, NULL, O_RT_EROFS_DMV},                             \
		{"force-guest-pull", required_argument, NULL, O_RT_FORCE_GP},                      \
		{"containerd-user-drop-in", required_argument, NULL, O_RT_USER_DROPIN},            \
	{                                                                                          \
		"default-shim", required_argument, NULL, O_RT_DEFSHIM                              \
	}

static int runtime_opt(const char *verb, kd_runtime_opts *rt, int opt, const char *arg)
{
	static const char *const runtimes[] = {"containerd", "crio", "auto", "none", NULL};
	static const char *const dists[] = {"k8s", "k3s", "rke2", "k0s", "microk8s", "auto", NULL};
	switch (opt) {
	case O_RT_RUNTIME:
		if (!one_of(verb, "--runtime", arg, runtimes))
			return -1;
		rt->runtime = arg;
		return 1;
	case O_RT_VERSION: {
		kd_error e = {0};
		if (kd_version_check("--runtime-version", arg, &e) < 0) {
			usage_error(verb, e.msg);
			return -1;
		}
		rt->runtime_version = arg;
		return 1;
	}
	case O_RT_BINARY:
		rt->runtime_binary = arg;
		return 1;
	case O_RT_DIST:
		if (!one_of(verb, "--distribution", arg, dists))
			return -1;
		rt->distribution = arg;
		return 1;
	case O_RT_CONFIG:
		rt->config_path = arg;
		return 1;
	case O_RT_RESTART:
		if (!restart_valid(verb, arg))
			return -1;
		rt->restart = arg;
		return 1;
	case O_RT_SUFFIX:
		rt->suffix = arg;
		return 1;
	case O_RT_DEBUG:
		rt->debug = true;
		return 1;
	case O_RT_DEVKIT:
		rt->devkit = true;
		return 1;
	case O_RT_CUSTOM_DIR:
		rt->custom_configs = arg;
		return 1;
	case O_RT_CUSTOM:
		rt->custom_runtimes = true;
		return 1;
	case O_RT_SETUP_SNAP:
		rt->snapshotter_setup = arg;
		return 1;
	case O_RT_EROFS_MERGE: {
		static const char *const l[] = {"merged", "unmerged", NULL};
		if (!one_of(verb, "--erofs-merge-mode", arg, l))
			return -1;
		rt->erofs_merge_mode = arg;
		return 1;
	}
	case O_RT_EROFS_MODE: {
		static const char *const l[] = {"disk", "memory", NULL};
		if (!one_of(verb, "--erofs-snapshotter-mode", arg, l))
			return -1;
		rt->erofs_snapshotter_mode = arg;
		return 1;
	}
	case O_RT_EROFS_DMV:
		rt->erofs_dmverity = true;
		return 1;
	case O_RT_FORCE_GP:
		rt->force_guest_pull = arg;
		return 1;
	case O_RT_USER_DROPIN: {
		/* Kept in the state for rollback: an absolute path. */
		static char abs[PATH_MAX];
		if (!realpath(arg, abs)) {
			char msg[PATH_MAX + 64];
			snprintf(msg, sizeof(msg), "--containerd-user-drop-in '%s': %s", arg,
				 strerror(errno));
			usage_error(verb, msg);
			return -1;
		}
		rt->containerd_user_dropin = abs;
		return 1;
	}
	case O_RT_HTTPS:
	case O_RT_NOPROXY: {
		kd_error e = {0};
		if (kd_kata_check_proxy(opt == O_RT_HTTPS ? "--agent-https-proxy"
							  : "--agent-no-proxy",
					arg, &e) < 0) {
			usage_error(verb, e.msg);
			return -1;
		}
		if (opt == O_RT_HTTPS)
			rt->agent_https_proxy = arg;
		else
			rt->agent_no_proxy = arg;
		return 1;
	}
	case O_RT_ANN:
		rt->allowed_hypervisor_annotations = arg;
		return 1;
	case O_RT_SNAP:
		rt->snapshotter_handler_mapping = arg;
		return 1;
	case O_RT_PULL:
		rt->pull_type_mapping = arg;
		return 1;
	case O_RT_DEFSHIM:
		/* The default 'kata' RuntimeClass is the agent's (DEFAULT_SHIM_<ARCH>): a host has
		 * no RuntimeClass, and containerd's default runtime stays runc. */
		fprintf(stderr,
			"kata-deploy %s: --default-shim names the shim of the default 'kata' "
			"RuntimeClass, which only the Kubernetes agent creates (DEFAULT_SHIM_<ARCH>); "
			"on a host it would change nothing: drop it (pods choose a handler with "
			"runtimeClassName, ctr with --runtime io.containerd.kata-%s.v2)\n",
			verb, arg);
		return -1;
	}
	return 0;
}

static const char plan_help[] =
	"Usage: kata-deploy plan --payload PATH|URL [install options]\n"
	"Show what 'kata-deploy install' with the same options would do, and write nothing: the\n"
	"payload is verified and summed up (version dir, files, bytes, links that switch), every\n"
	"runtime config file, drop-in and Kata configuration drop-in it would create or change is\n"
	"shown as a unified diff, the new files are validated as install would (our TOML parser and\n"
	"the runtime's own loader), and the restart it would do is named. Takes only a shared lock;\n"
	"refuses to run while an interrupted run waits for 'kata-deploy recover'.\n"
	"Takes every option of 'kata-deploy install' except --output.\n";

/* Docker's containerd.io package ships disabled_plugins = ["cri"]: the handlers we add would
 * then serve no kubelet. A plain host may want only ctr, so warn, do not refuse. */
static void warn_cri_disabled(int rootfd, const kd_runtime_opts *rt, const char *verb)
{
	if (rt->runtime && strcmp(rt->runtime, "containerd") && strcmp(rt->runtime, "auto"))
		return;
	const char *path = rt->config_path ? rt->config_path : "etc/containerd/config.toml";
	path += strspn(path, "/");
	_cleanup_free_ char *text = NULL;
	size_t len;
	char which[64];
	kd_error e = {0};
	if (kd_read_file(rootfd, path, 4u << 20, &text, &len, &e) < 0)
		return;
	if (kd_hostcheck_cri_disabled(text, len, which, sizeof(which), &e) > 0)
		kd_warn("%s: /%s disables containerd's CRI plugin (disabled_plugins contains "
			"\"%s\", the default of Docker's containerd.io package): the kata handlers "
			"will serve ctr and nerdctl, but no kubelet; remove \"%s\" from "
			"disabled_plugins and restart containerd to use Kata from Kubernetes",
			verb, path, which, which);
}

static int cmd_install(int argc, char **argv, bool plan)
{
	common c = {.root = "/", .level = KD_LOG_INFO};
	kd_install_opts o = {0};
	_cleanup_strv_ char **shims = NULL;
	bool json = false;
	bool insecure = false;
	enum {
		O_PAYLOAD = 1,
		O_SHA,
		O_SHIMS,
		O_KEY,
		O_SIG,
		O_OUTPUT,
		O_INSECURE,
		O_SKIP_MISSING,
		O_ARCH,
		O_REG_AUTH,
		O_PLAIN_HTTP,
		O_BLOB_CACHE,
		O_REG_CA
	};
	static const struct option longopts[] = {
		COMMON_LONGOPTS,
		{"payload", required_argument, NULL, O_PAYLOAD},
		{"sha256", required_argument, NULL, O_SHA},
		{"shims", required_argument, NULL, O_SHIMS},
		{"public-key", required_argument, NULL, O_KEY},
		{"signature", required_argument, NULL, O_SIG},
		{"output", required_argument, NULL, O_OUTPUT},
		{"insecure", no_argument, NULL, O_INSECURE},
		{"skip-missing-shims", no_argument, NULL, O_SKIP_MISSING},
		{"arch", required_argument, NULL, O_ARCH},
		{"registry-auth", required_argument, NULL, O_REG_AUTH},
		{"plain-http", no_argument, NULL, O_PLAIN_HTTP},
		{"blob-cache", required_argument, NULL, O_BLOB_CACHE},
		{"registry-ca", required_argument, NULL, O_REG_CA},
		RUNTIME_LONGOPTS,
		{}};
	const char *verb = plan ? "plan" : "install";
	int opt;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "hq", longopts, NULL)) != -1) {
		int h = common_opt(&c, opt, optarg);
		if (h == 0)
			h = runtime_opt(verb, &o.rt, opt, optarg);
		if (h < 0)
			return EXIT_USAGE;
		if (h > 0)
			continue;
		switch (opt) {
		case 'h':
			if (plan)
				printf("%s\nInstall options:\n%s\n%s", plan_help,
				       strstr(install_help, "\n\n") + 2, common_help);
			else
				printf("%s\n%s", install_help, common_help);
			return 0;
		case O_PAYLOAD:
			o.payload = optarg;
			break;
		case O_SHA:
			if (!sha256_arg(optarg))
				return usage_error(verb, "--sha256 must be 64 hex digits");
			o.sha256 = optarg;
			break;
		case O_INSECURE:
			insecure = true;
			break;
		case O_SKIP_MISSING:
			if (plan)
				return usage_error(verb,
						   "--skip-missing-shims is not an option of plan");
			o.skip_missing_shims = true;
			break;
		case O_ARCH:
			o.arch = optarg;
			break;
		case O_REG_AUTH:
			o.registry_auth = optarg;
			break;
		case O_PLAIN_HTTP:
			o.plain_http = true;
			break;
		case O_BLOB_CACHE:
			o.blob_cache = optarg;
			break;
		case O_REG_CA:
			o.registry_ca = optarg;
			break;
		case O_SHIMS:
			kd_strv_free(shims);
			shims = kd_strv_split(optarg, ',');
			if (!shims || !shims[0])
				return usage_error(verb, "--shims: empty list");
			break;
		case O_KEY:
			o.public_key = optarg;
			break;
		case O_SIG:
			o.signature = optarg;
			break;
		case O_OUTPUT:
			if (plan)
				return usage_error(verb, "--output is not an option of plan");
			if (strcmp(optarg, "json") && strcmp(optarg, "text"))
				return usage_error(verb, "--output must be text or json");
			json = strcmp(optarg, "json") == 0;
			break;
		default:
			return bad_option(verb, argv);
		}
	}
	if (optind < argc)
		return usage_error(verb, "unexpected argument");
	if (!o.payload)
		return usage_error(verb, "--payload is required");
	bool oci = kd_is_oci_ref(o.payload);
	if (!oci && (o.plain_http || o.registry_auth || o.blob_cache || o.registry_ca))
		return usage_error(verb, "--plain-http, --registry-auth, --registry-ca and "
					 "--blob-cache are for oci:// payloads");
	if (oci && !o.registry_auth && getenv("REGISTRY_AUTH_FILE") &&
	    *getenv("REGISTRY_AUTH_FILE"))
		o.registry_auth = getenv("REGISTRY_AUTH_FILE");
	/* oci://...@sha256:HEX pins the manifest as --sha256 does. */
	bool oci_pinned = oci && strstr(o.payload, "@sha256:");
	if ((!strncasecmp(o.payload, "http://", 7) || (oci && o.plain_http)) && !o.sha256 &&
	    !o.public_key && !oci_pinned) {
		if (!insecure)
			return usage_error(
				verb, "refusing a plain http payload that nothing authenticates: "
				      "anyone on the path could swap the root-owned binaries it "
				      "installs. Pin it with --sha256 HEX or a signature "
				      "(--public-key), use https://, or accept the risk with "
				      "--insecure");
		kd_log_setup("kata-deploy", c.level, c.json_log);
		kd_warn("%s: --insecure: INSTALLING AN UNAUTHENTICATED PAYLOAD over plain http "
			"(%s): no --sha256, no signature; whoever controls the network path "
			"chooses the binaries this host runs as root",
			verb, o.payload);
	}
	o.e = c.e;
	o.shims = shims;
	o.progress = !c.quiet;
	/* Every local file these options name must be a regular file: a FIFO would block its
	 * first open or read with the host lock held. Checked without opening it for reading. */
	char sigpath[4096];
	snprintf(sigpath, sizeof(sigpath), "%s%s", o.signature ? o.signature : o.payload,
		 o.signature ? "" : ".sig");
	const struct {
		const char *opt, *path;
	} files[] = {{"--payload", o.payload},
		     {"--public-key", o.public_key},
		     {o.signature ? "--signature" : "the signature (--payload + .sig)",
		      o.public_key ? sigpath : NULL},
		     {"--registry-auth", o.registry_auth},
		     {"--registry-ca", o.registry_ca}};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (!files[i].path || strstr(files[i].path, "://"))
			continue;
		_cleanup_close_ int fd = open(files[i].path, O_PATH | O_CLOEXEC);
		struct stat st;
		if (fd >= 0 && fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
			char msg[4200];
			snprintf(msg, sizeof(msg), "%s %s: not a regular file (a %s)", files[i].opt,
				 files[i].path, kd_mode_type_name(st.st_mode));
			return usage_error(verb, msg);
		}
	}
	if (!strstr(o.payload, "://")) {
		/* Upstream's release tarball is not a payload: say what to do with it. */
		_cleanup_close_ int pfd = open(o.payload, O_RDONLY | O_CLOEXEC);
		if (pfd >= 0 && kd_import_sniff(pfd) == KD_IMPORT_UPSTREAM) {
			kd_error_log(
				"%s: '%s' is an upstream Kata release tarball (an opt/kata/ tree "
				"without a kata-deploy manifest), not a payload: convert it "
				"first with 'kata-deploy payload import %s -o payload.tar.zst "
				"--sha256 <its published sha256>', then install payload.tar.zst",
				verb, o.payload, o.payload);
			return EXIT_FAILURE;
		}
	}

	kd_error err = {0};
	_cleanup_close_ int rootfd = open_root(&c, &err);
	if (rootfd < 0)
		return json ? fail_json(&err) : fail(&err);
	char shimlist[1024] = "all";
	for (size_t i = 0, n = 0; shims && shims[i] && n < sizeof(shimlist); i++)
		n += (size_t)snprintf(shimlist + n, sizeof(shimlist) - n, "%s%s", i ? "," : "",
				      shims[i]);
	kd_info("%s: root=%s prefix=%s state-dir=%s payload=%s shims=%s public-key=%s", verb,
		c.root, o.e.prefix ? o.e.prefix : KD_DEFAULT_PREFIX,
		o.e.state_dir ? o.e.state_dir : KD_DEFAULT_STATE_DIR, o.payload, shimlist,
		o.public_key ? o.public_key : "none");
	kd_info("%s: runtime=%s runtime-version=%s distribution=%s config=%s restart=%s "
		"suffix=%s debug=%s",
		verb, o.rt.runtime ? o.rt.runtime : "auto",
		o.rt.runtime_version ? o.rt.runtime_version : "(ask the binary)",
		o.rt.distribution ? o.rt.distribution : "auto",
		o.rt.config_path ? o.rt.config_path : "(per flavour)",
		o.rt.restart ? o.rt.restart : "(systemd on /, else none)",
		o.rt.suffix ? o.rt.suffix : "", o.rt.debug ? "yes" : "no");
	warn_cri_disabled(rootfd, &o.rt, verb);
	if (plan) {
		_cleanup_free_ char *text = NULL;
		bool changes;
		if (kd_engine_plan(rootfd, &o, &text, &changes, &err) < 0)
			return fail(&err);
		fputs(text, stdout);
		printf("plan: %s\n", changes ? "install would make the changes above"
					     : "install would change nothing");
		return 0;
	}
	kd_install_result res;
	if (kd_engine_install(rootfd, &o, &res, &err) < 0)
		return json ? fail_json(&err) : fail(&err);
	if (json) {
		_cleanup_json_ struct json_object *sh = json_object_new_array(),
						  *sk = json_object_new_array();
		for (char **x = res.shims; sh && x && *x; x++)
			json_object_array_add(sh, json_object_new_string(*x));
		for (char **x = res.skipped; sk && x && *x; x++)
			json_object_array_add(sk, json_object_new_string(*x));
		printf("{\"ok\":true,\"changed\":%s,\"id\":\"%s\",\"version\":\"%s\",\"files_written\":%llu,"
		       "\"files_linked\":%llu,\"bytes_written\":%llu,\"shims\":%s,\"skipped\":%s}\n",
		       res.changed ? "true" : "false", res.id, res.version,
		       (unsigned long long)res.stats.files_written,
		       (unsigned long long)res.stats.files_linked,
		       (unsigned long long)res.stats.bytes_written,
		       json_object_to_json_string_ext(sh, JSON_C_TO_STRING_PLAIN),
		       json_object_to_json_string_ext(sk, JSON_C_TO_STRING_PLAIN));
	} else if (res.changed) {
		printf("installed %s (version dir %s): %llu files written, %llu reused, %llu bytes%s\n",
		       res.version, res.id, (unsigned long long)res.stats.files_written,
		       (unsigned long long)res.stats.files_linked,
		       (unsigned long long)res.stats.bytes_written,
		       res.config_changed ? "; runtime config updated" : "");
	} else if (res.config_changed) {
		printf("%s (version dir %s) is already installed; runtime config updated\n",
		       res.version, res.id);
	} else {
		printf("%s (version dir %s) is already installed: nothing to do\n", res.version,
		       res.id);
	}
	if (!json && res.skipped && res.skipped[0]) {
		printf("left out, not in the payload:");
		for (char **x = res.skipped; *x; x++)
			printf(" %s", *x);
		printf("\n");
	}
	kd_install_result_done(&res);
	return 0;
}

static void print_list(const char *label, struct json_object *a)
{
	printf("%s", label);
	size_t n = json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
	for (size_t i = 0; i < n; i++)
		printf("%s%s", i ? ", " : "",
		       json_object_get_string(json_object_array_get_idx(a, i)));
	printf("%s\n", n ? "" : "none");
}

static void print_status_runtime(struct json_object *st)
{
	struct json_object *rt = NULL, *v;
	if (!json_object_object_get_ex(st, "handlers", &v))
		return;
	if (json_object_object_get_ex(st, "runtime", &rt) && rt) {
		const char *unit = json_object_get_string(json_object_object_get(rt, "unit"));
		const char *restart = json_object_get_string(json_object_object_get(rt, "restart"));
		printf("runtime:    %s%s%s%s, restart %s\n",
		       json_object_get_string(json_object_object_get(rt, "flavour")),
		       unit && *unit ? " (unit " : "", unit && *unit ? unit : "",
		       unit && *unit ? ")" : "", restart ? restart : "default");
	}
	print_list("handlers:   ", v);
	print_list("configs:    ", json_object_object_get(st, "config_files"));
	printf("restart:    %s\n",
	       json_object_get_boolean(json_object_object_get(st, "restart_pending"))
		       ? "PENDING: the runtime has not loaded the handlers written; run "
			 "'kata-deploy install' again (it retries) or restart it by hand"
		       : "done");
}

static const char *status_not_done(struct json_object *st)
{
	const char *phase = json_object_get_string(json_object_object_get(st, "phase"));
	if (json_object_get_boolean(json_object_object_get(st, "in_progress")))
		return "another kata-deploy run is in progress (it holds the host lock)";
	if (strcmp(json_object_get_string(json_object_object_get(st, "journal")), "clean"))
		return "an interrupted run waits for 'kata-deploy recover'";
	if (phase && strcmp(phase, "installed"))
		return "an uninstall is under way: run 'kata-deploy uninstall' again";
	return "a runtime restart is pending";
}

static int simple_verb(int argc, char **argv, const char *verb, const char *help, int which)
{
	common c = {.root = "/", .level = KD_LOG_INFO};
	bool json = false;
	enum { O_OUTPUT = 1, O_RESTART };
	static const struct option longopts[] = {COMMON_LONGOPTS,
						 {"output", required_argument, NULL, O_OUTPUT},
						 {"restart", required_argument, NULL, O_RESTART},
						 {}};
	int opt;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "hq", longopts, NULL)) != -1) {
		int h = common_opt(&c, opt, optarg);
		if (h < 0)
			return EXIT_USAGE;
		if (h > 0)
			continue;
		if (opt == 'h') {
			printf("%s\n%s", help, common_help);
			return 0;
		}
		if (opt == O_RESTART && (which == 0 || which == 1)) {
			if (!restart_valid(verb, optarg))
				return EXIT_USAGE;
			c.e.restart = optarg;
			continue;
		}
		if (opt == O_OUTPUT && which == 2 &&
		    (!strcmp(optarg, "json") || !strcmp(optarg, "text"))) {
			json = !strcmp(optarg, "json");
			continue;
		}
		if (opt == O_OUTPUT && which == 2)
			return usage_error(verb, "--output must be text or json");
		return bad_option(verb, argv);
	}
	if (optind < argc)
		return usage_error(verb, "unexpected argument");
	kd_error err = {0};
	_cleanup_close_ int rootfd = open_root(&c, &err);
	if (rootfd < 0)
		return fail(&err);
	if (which == 0) {
		bool changed;
		unsigned kept = 0;
		if (kd_engine_uninstall(rootfd, &c.e, &changed, &kept, &err) < 0)
			return fail(&err);
		if (!changed)
			printf("nothing is installed: nothing to do\n");
		else if (kept)
			printf("uninstalled, but %u thing(s) could not be restored exactly (changed "
			       "since install): the warnings above say what was kept and why\n",
			       kept);
		else
			printf("uninstalled: the root is as it was before the first install\n");
	} else if (which == 3) {
		if (kd_engine_recover(rootfd, &c.e, &err) < 0)
			return fail(&err);
		printf("no interrupted run is left on this root\n");
	} else if (which == 1) {
		if (kd_engine_rollback(rootfd, &c.e, &err) < 0)
			return fail(&err);
		printf("rolled back to the previous version\n");
	} else {
		_cleanup_json_ struct json_object *st = NULL;
		if (kd_engine_status(rootfd, &c.e, &st, &err) < 0)
			return fail(&err);
		if (json) {
			printf("%s\n", json_object_to_json_string_ext(
					       st, JSON_C_TO_STRING_PRETTY |
							   JSON_C_TO_STRING_NOSLASHESCAPE));
			return json_object_get_boolean(json_object_object_get(st, "done"))
				       ? 0
				       : EXIT_NOT_DONE;
		}
		struct json_object *cur = NULL, *prev = NULL, *v;
		if (!json_object_get_boolean(json_object_object_get(st, "installed"))) {
			printf("installed:  no\n");
		} else {
			json_object_object_get_ex(st, "current", &cur);
			json_object_object_get_ex(st, "previous", &prev);
			printf("installed:  yes, prefix /%s\n",
			       json_object_get_string(json_object_object_get(st, "prefix")));
			printf("version:    %s (dir %s, payload sha256 %.16s…, %s)\n",
			       json_object_get_string(json_object_object_get(cur, "version")),
			       json_object_get_string(json_object_object_get(cur, "id")),
			       json_object_get_string(
				       json_object_object_get(cur, "payload_sha256")),
			       json_object_get_string(json_object_object_get(cur, "installed_at")));
			v = json_object_object_get(cur, "shims");
			printf("shims:      ");
			for (size_t i = 0; i < json_object_array_length(v); i++)
				printf("%s%s", i ? ", " : "",
				       json_object_get_string(json_object_array_get_idx(v, i)));
			v = json_object_object_get(cur, "components");
			printf("\ncomponents: ");
			for (size_t i = 0; i < json_object_array_length(v); i++)
				printf("%s%s", i ? ", " : "",
				       json_object_get_string(json_object_array_get_idx(v, i)));
			printf("\nprevious:   ");
			if (prev)
				printf("%s (dir %s)\n",
				       json_object_get_string(
					       json_object_object_get(prev, "version")),
				       json_object_get_string(json_object_object_get(prev, "id")));
			else
				printf("none\n");
		}
		print_status_runtime(st);
		printf("journal:    %s\n",
		       json_object_get_string(json_object_object_get(st, "journal")));
		if (!json_object_get_boolean(json_object_object_get(st, "done")))
			printf("state:      NOT DONE: %s\n", status_not_done(st));
		return json_object_get_boolean(json_object_object_get(st, "done")) ? 0
										   : EXIT_NOT_DONE;
	}
	return 0;
}

static const char uninstall_help[] =
	"Usage: kata-deploy uninstall [options]\n"
	"Remove every version, link, directory and state file kata-deploy created and restore\n"
	"every file it changed, so the root is as it was before the first install. An\n"
	"interrupted uninstall is finished by running it again. Runtime configs are reverted\n"
	"three-way (docs/RUNTIME-CONFIG.md), then the runtime is restarted.\n"
	"  --restart systemd|none|command:CMD   override the mode recorded at install\n";
static const char recover_help[] =
	"Usage: kata-deploy recover [options]\n"
	"Finish or undo an interrupted install, rollback or uninstall (every command does this\n"
	"first anyway), and change nothing else.\n";
static const char rollback_help[] =
	"Usage: kata-deploy rollback [options]\n"
	"Switch atomically back to the previous installed version (and its runtime config).\n"
	"  --restart systemd|none|command:CMD   override the mode recorded at install\n";
static const char status_help[] =
	"Usage: kata-deploy status [--output text|json] [options]\n"
	"Show the installed version, shims, components, previous version, the runtime handlers\n"
	"written, the runtime config files changed, whether a runtime restart is still pending\n"
	"and the journal state.\n"
	"Exit status: 0 installed and settled (or nothing installed), 1 failure, 2 usage error,\n"
	"4 not done: a restart is pending (it failed or was interrupted: 'install' again retries\n"
	"it), an interrupted run waits for 'recover', or an uninstall is under way.\n";

static const char pack_help[] =
	"Usage: kata-deploy payload pack DIR -o FILE [--spec FILE] [--version V] [--arch A]\n"
	"                                [--sign KEY [--sign-pubkey PUB]] [--level N] [--mtime EPOCH]\n"
	"Pack DIR (which holds opt/kata/) into a payload: a reproducible tar.zst with its\n"
	"manifest first. --spec names components and shims (docs/PAYLOAD.md); --sign writes\n"
	"FILE.sig with the PEM private key KEY and records the key's fingerprint in the manifest,\n"
	"so installs then require that public key and a valid signature; --sign-pubkey PUB also\n"
	"checks the new signature against PUB (a key pair that does not match is refused).\n"
	"--mtime defaults to $SOURCE_DATE_EPOCH or 0.\n"
	"Without --spec there is one component 'kata' and a shim per configuration-<shim>.toml in\n"
	"share/defaults/kata-containers/ (Go runtime) and its runtime-rs/ (runtime-rs shims).\n"
	"       kata-deploy payload import TARBALL -o FILE [--sha256 HEX] [--shims LIST]\n"
	"                                  [--version V] [--arch A] [--sign KEY [--sign-pubkey PUB]]\n"
	"                                  [--level N] [--mtime EPOCH]\n"
	"Turn upstream's release tarball (kata-static-<version>-<arch>.tar.zst or .tar.xz) into a\n"
	"payload: every entry is checked (paths below opt/kata/, no devices, setuid bits or links\n"
	"out of the tree, the payload size limits), the tree is split into upstream's components\n"
	"(kata-static-<component>) and each shim of the Go runtime and of runtime-rs gets the\n"
	"components its configuration names (docs/PAYLOAD.md). --sha256 pins the tarball (without\n"
	"it the digest is printed with a warning); --shims imports only those shims, each of which\n"
	"must work (otherwise a shim whose configuration names a file the tarball lacks is left\n"
	"out with a warning). Version and architecture come from opt/kata/VERSION and the file name.\n"
	"       kata-deploy payload keygen PRIVATE.pem PUBLIC.pem\n"
	"Make an Ed25519 key pair for signing payloads.\n";

static int cmd_payload_import(int argc, char **argv)
{
	kd_import_opts o = {.zstd_level = 10};
	_cleanup_strv_ char **shims = NULL;
	const char *out = NULL;
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	if (sde)
		o.mtime = strtoll(sde, NULL, 10);
	enum { I_SHA = 1, I_SHIMS, I_VERSION, I_ARCH, I_SIGN, I_PUB, I_LEVEL, I_MTIME };
	static const struct option longopts[] = {{"output", required_argument, NULL, 'o'},
						 {"sha256", required_argument, NULL, I_SHA},
						 {"shims", required_argument, NULL, I_SHIMS},
						 {"version", required_argument, NULL, I_VERSION},
						 {"arch", required_argument, NULL, I_ARCH},
						 {"sign", required_argument, NULL, I_SIGN},
						 {"sign-pubkey", required_argument, NULL, I_PUB},
						 {"level", required_argument, NULL, I_LEVEL},
						 {"mtime", required_argument, NULL, I_MTIME},
						 {"help", no_argument, NULL, 'h'},
						 {}};
	int opt;
	optind = 2;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'o':
			out = optarg;
			break;
		case I_SHA:
			if (!sha256_arg(optarg))
				return usage_error("payload", "--sha256 must be 64 hex digits");
			o.sha256 = optarg;
			break;
		case I_SHIMS:
			kd_strv_free(shims);
			shims = kd_strv_split(optarg, ',');
			if (!shims || !shims[0])
				return usage_error("payload", "--shims: empty list");
			break;
		case I_VERSION:
			o.version = optarg;
			break;
		case I_ARCH:
			o.arch = optarg;
			break;
		case I_SIGN:
			o.sign_key = optarg;
			break;
		case I_PUB:
			o.sign_pubkey = optarg;
			break;
		case I_LEVEL:
			o.zstd_level = atoi(optarg);
			if (o.zstd_level < 1 || o.zstd_level > 19)
				return usage_error("payload", "--level must be 1..19");
			break;
		case I_MTIME:
			o.mtime = strtoll(optarg, NULL, 10);
			break;
		case 'h':
			printf("%s", pack_help);
			return 0;
		default:
			return bad_option("payload", argv);
		}
	}
	if (optind + 1 != argc || !out)
		return usage_error("payload", "import needs TARBALL and -o FILE");
	if (o.sign_pubkey && !o.sign_key)
		return usage_error("payload", "--sign-pubkey needs --sign");
	o.shims = shims;
	kd_info("payload import: %s -> %s sha256=%s shims=%s version=%s arch=%s sign=%s",
		argv[optind], out, o.sha256 ? o.sha256 : "(not pinned)", shims ? "listed" : "all",
		o.version ? o.version : "(from the tarball)", o.arch ? o.arch : "(from the name)",
		o.sign_key ? o.sign_key : "no");
	kd_error err = {0};
	kd_import_result res = {0};
	int r = kd_import(argv[optind], out, &o, &res, &err);
	if (!o.sha256 && res.sha256[0])
		kd_warn("payload import: no --sha256 given: '%s' has sha256 %s; compare it with "
			"upstream's published checksum and pin it with --sha256",
			argv[optind], res.sha256);
	if (r < 0)
		return fail(&err);
	for (size_t i = 0; res.left_out && res.left_out[i]; i++)
		kd_warn("payload import: left out %s", res.left_out[i]);
	printf("wrote %s%s: Kata %s for %s, %llu files, %llu bytes (configurations: %zu Go "
	       "runtime, %zu runtime-rs)\n",
	       out, o.sign_key ? " and its .sig" : "", res.version, res.arch,
	       (unsigned long long)res.files, (unsigned long long)res.bytes, res.go_configs,
	       res.rs_configs);
	printf("components:\n");
	for (size_t i = 0; res.components && res.components[i]; i++)
		printf("  %s\n", res.components[i]);
	printf("shims:\n");
	for (size_t i = 0; i < res.n_shims; i++) {
		printf("  %s (%s, %llu bytes):", res.shims[i].name,
		       res.shims[i].rust ? "runtime-rs" : "Go runtime",
		       (unsigned long long)res.shims[i].bytes);
		for (size_t j = 0; res.shims[i].components[j]; j++)
			printf(" %s", res.shims[i].components[j]);
		printf("\n");
	}
	kd_import_result_done(&res);
	return 0;
}

static int cmd_payload(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		printf("%s", pack_help);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	kd_log_setup("kata-deploy", KD_LOG_INFO, false);
	kd_error err = {0};
	if (!strcmp(argv[1], "keygen")) {
		if (argc != 4)
			return usage_error("payload", "keygen takes PRIVATE.pem PUBLIC.pem");
		if (kd_sign_keygen(argv[2], argv[3], &err) < 0)
			return fail(&err);
		printf("wrote %s and %s\n", argv[2], argv[3]);
		return 0;
	}
	if (!strcmp(argv[1], "import"))
		return cmd_payload_import(argc, argv);
	if (strcmp(argv[1], "pack"))
		return usage_error("payload", "unknown subcommand (pack, import, keygen)");
	kd_pack_opts o = {.zstd_level = 10};
	const char *out = NULL;
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	if (sde)
		o.mtime = strtoll(sde, NULL, 10);
	static const struct option longopts[] = {{"output", required_argument, NULL, 'o'},
						 {"spec", required_argument, NULL, 's'},
						 {"version", required_argument, NULL, 'V'},
						 {"arch", required_argument, NULL, 'a'},
						 {"sign", required_argument, NULL, 'k'},
						 {"sign-pubkey", required_argument, NULL, 'P'},
						 {"level", required_argument, NULL, 'l'},
						 {"mtime", required_argument, NULL, 'm'},
						 {"help", no_argument, NULL, 'h'},
						 {}};
	int opt;
	optind = 2;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'o':
			out = optarg;
			break;
		case 's':
			o.spec_path = optarg;
			break;
		case 'V':
			o.version = optarg;
			break;
		case 'a':
			o.arch = optarg;
			break;
		case 'k':
			o.sign_key = optarg;
			break;
		case 'P':
			o.sign_pubkey = optarg;
			break;
		case 'l':
			o.zstd_level = atoi(optarg);
			if (o.zstd_level < 1 || o.zstd_level > 19)
				return usage_error("payload", "--level must be 1..19");
			break;
		case 'm':
			o.mtime = strtoll(optarg, NULL, 10);
			break;
		case 'h':
			printf("%s", pack_help);
			return 0;
		default:
			return bad_option("payload", argv);
		}
	}
	if (optind + 1 != argc || !out)
		return usage_error("payload", "pack needs DIR and -o FILE");
	if (o.sign_pubkey && !o.sign_key)
		return usage_error("payload", "--sign-pubkey needs --sign");
	{
		char sub[4200];
		struct stat st;
		snprintf(sub, sizeof(sub), "%s/opt/kata", argv[optind]);
		if (stat(sub, &st) < 0 || !S_ISDIR(st.st_mode)) {
			snprintf(sub, sizeof(sub),
				 "'%s' does not hold opt/kata/: DIR is the directory above "
				 "opt/kata (the payload's paths start with opt/kata/)%s",
				 argv[optind],
				 strstr(argv[optind], "opt/kata")
					 ? "; give the part before opt/kata"
					 : "");
			return usage_error("payload", sub);
		}
	}
	_cleanup_free_ char *inferred = NULL;
	if (!o.spec_path) {
		/* Shims of both runtimes, runtime-rs's included (deployer/import.c). */
		_cleanup_strv_ char **left_out = NULL;
		if (kd_import_pack_spec(argv[optind], &inferred, &left_out, &err) < 0)
			return fail(&err);
		for (size_t i = 0; left_out && left_out[i]; i++)
			kd_warn("payload pack: not a shim: %s", left_out[i]);
		o.spec_path = inferred;
	}
	int r = kd_payload_pack(argv[optind], out, &o, &err);
	if (inferred)
		unlink(inferred);
	if (r < 0)
		return fail(&err);
	printf("wrote %s%s\n", out, o.sign_key ? " and its .sig" : "");
	return 0;
}

static const char main_help[] =
	"Usage: kata-deploy COMMAND [options]\n"
	"Install Kata Containers on a host, with or without Kubernetes.\n\n"
	"Commands:\n"
	"  install      install a payload (verify, extract, switch atomically)\n"
	"  plan         what install would change (unified diff of every config), writing nothing\n"
	"  uninstall    remove everything kata-deploy installed; the root is restored exactly\n"
	"  rollback     switch back to the previous version\n"
	"  status       show what is installed\n"
	"  recover      finish or undo an interrupted run, nothing else\n"
	"  check        can this host run Kata? (CPU, /dev/kvm, modules, runtime, hypervisor)\n"
	"  payload      pack a payload from a directory, import upstream's release tarball,\n"
	"               make signing keys\n"
	"  version      print the version\n\n"
	"Run 'kata-deploy COMMAND --help' for a command's options.\n"
	"Exit status: 0 success, 1 failure (the error is printed once), 2 usage error,\n"
	"3 another run holds the host lock, 4 (status) the node is not done. 'check' has its own\n"
	"(see its --help). -q/--quiet: warnings and errors only. Man page: kata-deploy(8).\n";

int main(int argc, char **argv)
{
	kd_log_setup("kata-deploy", KD_LOG_INFO, false);
	if (argc < 2) {
		fprintf(stderr, "%s", main_help);
		return EXIT_USAGE;
	}
	const char *verb = argv[1];
	argv++;
	argc--;
	if (!strcmp(verb, "install"))
		return cmd_install(argc, argv, false);
	if (!strcmp(verb, "plan"))
		return cmd_install(argc, argv, true);
	if (!strcmp(verb, "uninstall"))
		return simple_verb(argc, argv, verb, uninstall_help, 0);
	if (!strcmp(verb, "rollback"))
		return simple_verb(argc, argv, verb, rollback_help, 1);
	if (!strcmp(verb, "recover"))
		return simple_verb(argc, argv, verb, recover_help, 3);
	if (!strcmp(verb, "status"))
		return simple_verb(argc, argv, verb, status_help, 2);
	if (!strcmp(verb, "payload"))
		return cmd_payload(argc, argv);
	if (!strcmp(verb, "check"))
		return kd_cmd_check(argc, argv);
	if (!strcmp(verb, "version") || !strcmp(verb, "--version")) {
		printf("kata-deploy %s\n", KD_VERSION);
		return 0;
	}
	if (!strcmp(verb, "help") || !strcmp(verb, "--help") || !strcmp(verb, "-h")) {
		printf("%s", main_help);
		return 0;
	}
	fprintf(stderr, "kata-deploy: unknown command '%s'\n\n%s", verb, main_help);
	return EXIT_USAGE;
}
