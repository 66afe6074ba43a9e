/* `kata-deploy check`: run the host checks (deployer/hostcheck.c) and print a table or JSON.
 * Exit 0: every requested shim can run; 1: some cannot; 2: usage or internal error. */
#include "cmd-check.h"

#include <getopt.h>
#include <string.h>

#include "engine.h"
#include "fsroot.h"
#include "hostcheck.h"
#include "json.h"
#include "log.h"
#include "state.h"
#include "strv.h"

#define MAX_SHIM_ARGS 64

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: kata-deploy check [OPTIONS]\n"
		"Check whether this host can run Kata Containers, shim by shim.\n\n"
		"  --root DIR              host root to inspect (default /)\n"
		"  --output text|json      output format (default text)\n"
		"  --fix                   load kernel modules that are available but not loaded\n"
		"                          (only planned, never loaded, when --root is not /)\n"
		"  --dry-run               with --fix: show the module loads without doing them\n"
		"  --shims LIST            comma/space separated shims (default: the installed\n"
		"                          shims, or %s when nothing is installed)\n"
		"  --modules-dir DIR       modules tree (default <root>/lib/modules/<release>)\n"
		"  --qemu PATH             QEMU binary to probe (default "
		"<root>/opt/kata/bin/qemu-system-x86_64)\n"
		"  --runtime-version V     container runtime as the node reports it, e.g. "
		"containerd://1.7.2\n"
		"  --no-payload            do not look at the installed payload\n"
		"  --setup-snapshotter L   + the prerequisites of these snapshotters (erofs:\n"
		"                          containerd 2.2, kernel erofs, mkfs.erofs >= 1.8.2)\n"
		"  --erofs-dmverity        + device-mapper and dm-verity for erofs\n"
		"  --prefix DIR            installation prefix inside the root (default " KD_DEFAULT_PREFIX
		")\n"
		"  --state-dir DIR         state directory inside the root (default " KD_DEFAULT_STATE_DIR
		")\n"
		"  --lock-timeout SEC      accepted like every command's; check takes no lock\n"
		"  --log-level LEVEL       error|warning|info|debug (default info)\n"
		"  --log-json              log as JSON lines\n"
		"  --qmp-timeout MS        time limit for the QEMU probe (default %d)\n"
		"  -h, --help              this help\n\n"
		"Exit status: 0 every requested shim can run (and no --setup-snapshotter check failed), 1 some cannot, 2 usage or internal "
		"error.\n",
		KD_HOSTCHECK_DEFAULT_SHIMS, 10000);
}

int kd_cmd_check(int argc, char **argv)
{
	enum {
		OPT_ROOT = 256,
		OPT_OUTPUT,
		OPT_FIX,
		OPT_DRY,
		OPT_SHIMS,
		OPT_MODDIR,
		OPT_QEMU,
		OPT_RTVER,
		OPT_NOPAYLOAD,
		OPT_QMPTO,
		OPT_PREFIX,
		OPT_STATE_DIR,
		OPT_LOCK_TIMEOUT,
		OPT_LOG_LEVEL,
		OPT_LOG_JSON,
		OPT_SNAP,
		OPT_EROFS_DMV,
	};
	static const struct option longopts[] = {
		{"root", required_argument, NULL, OPT_ROOT},
		{"output", required_argument, NULL, OPT_OUTPUT},
		{"fix", no_argument, NULL, OPT_FIX},
		{"dry-run", no_argument, NULL, OPT_DRY},
		{"shims", required_argument, NULL, OPT_SHIMS},
		{"modules-dir", required_argument, NULL, OPT_MODDIR},
		{"qemu", required_argument, NULL, OPT_QEMU},
		{"runtime-version", required_argument, NULL, OPT_RTVER},
		{"no-payload", no_argument, NULL, OPT_NOPAYLOAD},
		{"qmp-timeout", required_argument, NULL, OPT_QMPTO},
		{"prefix", required_argument, NULL, OPT_PREFIX},
		{"state-dir", required_argument, NULL, OPT_STATE_DIR},
		{"lock-timeout", required_argument, NULL, OPT_LOCK_TIMEOUT},
		{"log-level", required_argument, NULL, OPT_LOG_LEVEL},
		{"log-json", no_argument, NULL, OPT_LOG_JSON},
		{"setup-snapshotter", required_argument, NULL, OPT_SNAP},
		{"erofs-dmverity", no_argument, NULL, OPT_EROFS_DMV},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	kd_hostcheck_opts o = {0};
	_cleanup_hostcheck_report_ kd_hostcheck_report *rep = NULL;
	_cleanup_free_ char *shimbuf = NULL;
	const char *shims[MAX_SHIM_ARGS + 1];
	bool json = false, json_log = false;
	kd_log_level level = KD_LOG_INFO;
	const char *state_dir = KD_DEFAULT_STATE_DIR;
	_cleanup_strv_ char **installed = NULL;
	_cleanup_free_ char *state_prefix = NULL;
	kd_error err = {0};
	int c, r;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_ROOT:
			o.root = optarg;
			break;
		case OPT_OUTPUT:
			if (strcmp(optarg, "json") == 0)
				json = true;
			else if (strcmp(optarg, "text") == 0)
				json = false;
			else {
				fprintf(stderr,
					"kata-deploy check: --output must be text or json\n");
				return 2;
			}
			break;
		case OPT_FIX:
			o.fix = true;
			break;
		case OPT_DRY:
			o.fix_dry_run = true;
			break;
		case OPT_SHIMS: {
			size_t n = 0;
			free(shimbuf);
			shimbuf = strdup(optarg);
			if (!shimbuf)
				return 2;
			for (char *save = NULL, *t = strtok_r(shimbuf, ", ", &save); t;
			     t = strtok_r(NULL, ", ", &save)) {
				if (n == MAX_SHIM_ARGS) {
					fprintf(stderr, "kata-deploy check: too many shims\n");
					return 2;
				}
				if (!kd_hostcheck_shim_known(t)) {
					char known[2048];
					(void)kd_hostcheck_known_shims(known, sizeof(known));
					fprintf(stderr,
						"kata-deploy check: unknown shim '%s' (known: %s)\n",
						t, known);
					return 2;
				}
				shims[n++] = t;
			}
			if (n == 0) {
				fprintf(stderr,
					"kata-deploy check: --shims needs at least one shim\n");
				return 2;
			}
			shims[n] = NULL;
			o.shims = shims;
			break;
		}
		case OPT_PREFIX:
			o.prefix = optarg;
			break;
		case OPT_STATE_DIR:
			state_dir = optarg;
			break;
		case OPT_LOCK_TIMEOUT:
			break;
		case OPT_LOG_LEVEL:
			if (kd_log_level_from_string(optarg, &level) < 0) {
				fprintf(stderr,
					"kata-deploy check: --log-level: '%s' is not one of "
					"error|warning|info|debug\n",
					optarg);
				return 2;
			}
			break;
		case OPT_LOG_JSON:
			json_log = true;
			break;
		case OPT_MODDIR:
			o.modules_dir = optarg;
			break;
		case OPT_QEMU:
			o.qemu = optarg;
			break;
		case OPT_RTVER:
			o.runtime_version = optarg;
			break;
		case OPT_NOPAYLOAD:
			o.skip_payload = true;
			break;
		case OPT_SNAP:
			o.snapshotters = optarg;
			break;
		case OPT_EROFS_DMV:
			o.erofs_dmverity = true;
			break;
		case OPT_QMPTO: {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v <= 0 || v > 600000) {
				fprintf(stderr, "kata-deploy check: bad --qmp-timeout '%s'\n",
					optarg);
				return 2;
			}
			o.qmp_timeout_ms = (int)v;
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr,
				"kata-deploy check: unknown option or missing value: '%s'\n"
				"Try 'kata-deploy check --help'.\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kata-deploy check: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (o.fix_dry_run && !o.fix) {
		fprintf(stderr, "kata-deploy check: --dry-run only makes sense with --fix\n");
		return 2;
	}
	if (o.modules_dir && o.modules_dir[0] != '/') {
		fprintf(stderr, "kata-deploy check: --modules-dir must be an absolute path\n");
		return 2;
	}
	if (o.qemu && o.qemu[0] != '/') {
		fprintf(stderr, "kata-deploy check: --qemu must be an absolute path\n");
		return 2;
	}
	kd_log_setup("kata-deploy", level, json_log);
	if (!o.shims && !o.skip_payload) {
		/* Default to what is installed: check what this host is meant to run. */
		kd_error e = {0};
		kd_state st;
		_cleanup_close_ int rootfd = kd_root_open(o.root ? o.root : "/", &e);
		if (rootfd >= 0 && kd_state_load(rootfd, state_dir, &st, &e) == 0) {
			for (size_t i = 0;
			     st.has_current && st.current.shims && st.current.shims[i]; i++) {
				const char *n = st.current.shims[i];
				if (!kd_hostcheck_shim_known(n))
					kd_warn("check: installed shim '%s' has no host checks", n);
				else if (kd_strv_push(&installed, n) < 0)
					return 2;
			}
			if (!o.prefix && st.prefix && (state_prefix = strdup(st.prefix)))
				o.prefix = state_prefix;
			kd_state_done(&st);
		}
		if (installed && installed[0])
			o.shims = (const char *const *)installed;
	}
	kd_debug("check: root=%s output=%s fix=%d dry-run=%d modules-dir=%s qemu=%s payload=%s",
		 o.root ? o.root : "/", json ? "json" : "text", o.fix, o.fix_dry_run,
		 o.modules_dir ? o.modules_dir : "(auto)", o.qemu ? o.qemu : "(payload)",
		 o.skip_payload ? "skipped" : "auto");

	r = kd_hostcheck_run(&o, &rep, &err);
	if (r < 0) {
		fprintf(stderr, "kata-deploy check: %s\n", kd_err_msg(&err));
		return 2;
	}
	if (json) {
		_cleanup_json_ struct json_object *j = NULL;
		_cleanup_free_ char *text = NULL;
		if (kd_hostcheck_to_json(rep, &j, &err) < 0 ||
		    kd_json_format(j, KD_JSON_PRETTY, &text, NULL, &err) < 0) {
			fprintf(stderr, "kata-deploy check: %s\n", kd_err_msg(&err));
			return 2;
		}
		fputs(text, stdout);
	} else {
		kd_hostcheck_print(rep, stdout);
	}
	if (fflush(stdout) != 0)
		return 2;
	return kd_hostcheck_all_ok(rep) && kd_hostcheck_snapshotters_ok(rep) ? 0 : 1;
}
