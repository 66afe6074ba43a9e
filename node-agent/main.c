/* kata-deploy-agent: the DaemonSet's process. See docs/AGENT.md.
 *
 *   kata-deploy-agent [--kubeconfig PATH] [--host-root DIR] [--log-level LEVEL] [install|cleanup
 * [--force]|reset|self-check]
 *
 * install (default) stays running afterwards as a small waiter (this binary
 * re-executed with the internal action "wait", keeping the health socket) until
 * SIGTERM, then cleans up unless the DaemonSet still selects the node (a
 * rolling update). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "health.h"
#include "jobmode.h"
#include "log.h"
#include "selfcheck.h"
#include "settings.h"

#ifndef KD_VERSION
#define KD_VERSION "0.1.0"
#endif

#define HEALTH_FD_ENV "KD_AGENT_HEALTH_FD"
#define METRICS_ENV "KD_AGENT_METRICS"
#define METRICS_BUF 512
#define METRICS_TEXT_ENV "KD_AGENT_METRICS_TEXT"
#define AGENT_ENV "KD_AGENT_EXE"
#define WAITER_SUFFIX "-wait"

static void usage(FILE *f)
{
	fputs("usage: kata-deploy-agent [--kubeconfig PATH] [--host-root DIR] "
	      "[--log-level error|warn|info|debug|trace] "
	      "[install | cleanup [--force] | reset | self-check]\n"
	      "       kata-deploy-agent [--host-root DIR] [--result FILE] node-install | "
	      "node-cleanup\n"
	      "       kata-deploy-agent [--kubeconfig PATH] dispatch install|cleanup "
	      "--job-template FILE\n"
	      "           --name-prefix NAME [--cleanup-job-template FILE] [--owner-job NAME] "
	      "[--parallelism N]\n"
	      "           [--nodes A,B] [--wait-for-nodes SECONDS] [--node-settle SECONDS]\n"
	      "       kata-deploy-agent --version | --help\n"
	      "Settings come from the environment (NODE_NAME, SHIMS_<ARCH>, ...); see "
	      "docs/AGENT.md.\n"
	      "self-check opens what the agent uses at run time (libsystemd, libcurl, CA "
	      "certificates,\nthe waiter, scratch space, the payload) and exits 1 when "
	      "something is missing.\n"
	      "node-install, node-cleanup and dispatch are job mode's (the chart's "
	      "deploymentMode: job).\n",
	      f);
}

static int inherited_fd(void)
{
	const char *v = getenv(HEALTH_FD_ENV);
	char *end;
	long fd;

	if (!v || !*v)
		return -1;
	fd = strtol(v, &end, 10);
	unsetenv(HEALTH_FD_ENV);
	return *end || fd < 3 || fd > 65535 ? -1 : (int)fd;
}

static int start_health(const kd_agent_settings *s)
{
	kd_error err = {0};
	int fd = inherited_fd();

	if (s->health_port == 0 && fd < 0)
		return 0;
	if (kd_health_start(s->health_address, s->health_port, fd, &err) < 0) {
		kd_error_log("%s", kd_err_msg(&err));
		return -1;
	}
	return 0;
}

/* Replace this process by itself running `action` (or, for "wait", by the small libc-only
 * waiter installed next to it), handing over the health socket and the figures /metrics shows. */
static int reexec(const char *action)
{
	char fdbuf[16], metrics[METRICS_BUF], self[4096];
	char *argv[] = {"kata-deploy-agent", (char *)action, NULL};
	int fd = kd_health_stop();

	if (fd >= 0) {
		snprintf(fdbuf, sizeof(fdbuf), "%d", fd);
		setenv(HEALTH_FD_ENV, fdbuf, 1);
	}
	kd_agent_metrics_encode(metrics, sizeof(metrics));
	setenv(METRICS_ENV, metrics, 1);
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - sizeof(WAITER_SUFFIX));
	if (strcmp(action, "wait") == 0 && n > 0) {
		static char text[16384], waiter[4096 + sizeof(WAITER_SUFFIX)];
		self[n] = '\0';
		snprintf(waiter, sizeof(waiter), "%s%s", self, WAITER_SUFFIX);
		if (access(waiter, X_OK) == 0) {
			kd_agent_metrics_render(text, sizeof(text));
			setenv(METRICS_TEXT_ENV, text, 1);
			setenv(AGENT_ENV, self, 1);
			fflush(NULL);
			execv(waiter, argv);
			kd_error_log("exec %s: %m; waiting in this process instead", waiter);
		}
	}
	fflush(NULL);
	execv("/proc/self/exe", argv);
	kd_error_log("re-exec %s: %m", action);
	return -1;
}

/* The idle waiter: nothing but the health server until SIGTERM. */
static int run_wait(const kd_agent_settings *s)
{
	if (start_health(s) < 0)
		return 1;
	kd_info("installed; waiting for SIGTERM");
	for (;;) {
		int sig = sigwaitinfo(&kd_agent_term_signals, NULL);
		if (sig > 0) {
			kd_info("%s received: checking whether the DaemonSet still selects this node",
				strsignal(sig));
			break;
		}
	}
	setenv("KD_AGENT_ON_TERM", "1", 1);
	reexec("cleanup");
	return 1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"kubeconfig", required_argument, NULL, 'k'},
		{"host-root", required_argument, NULL, 'r'},
		{"force", no_argument, NULL, 'f'},
		{"log-level", required_argument, NULL, 'l'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{"result", required_argument, NULL, 'R'},
		{"job-template", required_argument, NULL, 'J'},
		{"cleanup-job-template", required_argument, NULL, 'C'},
		{"name-prefix", required_argument, NULL, 'P'},
		{"owner-job", required_argument, NULL, 'O'},
		{"nodes", required_argument, NULL, 'N'},
		{"parallelism", required_argument, NULL, 'p'},
		{"wait-for-nodes", required_argument, NULL, 'w'},
		{"node-settle", required_argument, NULL, 's'},
		{NULL, 0, NULL, 0},
	};
	kd_agent_dispatch_opts dop = {.parallelism = 100, .node_settle_s = 15};
	const char *result = KD_AGENT_RESULT_PATH;
	int *num = NULL;
	kd_agent_settings s;
	kd_error err = {0};
	const char *action = "install";
	bool force = false, on_term;
	int c, r;

	kd_log_setup("kata-deploy-agent", KD_LOG_INFO, false);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			setenv("KUBECONFIG", optarg, 1);
			break;
		case 'r':
			setenv("HOST_ROOT", optarg, 1);
			break;
		case 'f':
			force = true;
			break;
		case 'l':
			/* upstream's --log-level; through the environment so re-execs keep it */
			setenv("LOG_LEVEL", optarg, 1);
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("kata-deploy-agent %s\n", KD_VERSION);
			return 0;
		case 'R':
			result = optarg;
			break;
		case 'J':
			dop.job_template = optarg;
			break;
		case 'C':
			dop.cleanup_template = optarg;
			break;
		case 'P':
			dop.name_prefix = optarg;
			break;
		case 'O':
			dop.owner_job = optarg;
			break;
		case 'N':
			dop.nodes = optarg;
			break;
		case 'p':
		case 'w':
		case 's': {
			char *end;
			long v = strtol(optarg, &end, 10);
			num = c == 'p'	 ? &dop.parallelism
			      : c == 'w' ? &dop.wait_for_nodes_s
					 : &dop.node_settle_s;
			if (*end || !*optarg || v < (c == 'p' ? 1 : 0) || v > 86400) {
				fprintf(stderr,
					"kata-deploy-agent: --%s=%s: not a number in %d..86400\n",
					c == 'p'   ? "parallelism"
					: c == 'w' ? "wait-for-nodes"
						   : "node-settle",
					optarg, c == 'p' ? 1 : 0);
				return 2;
			}
			*num = (int)v;
			break;
		}
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc)
		action = argv[optind++];
	if (strcmp(action, "self-check") == 0 && optind == argc)
		return kd_agent_self_check(stdout) == 0 ? 0 : 1;
	bool dispatch_cleanup = false;
	if (strcmp(action, "dispatch") == 0) {
		const char *what = optind < argc ? argv[optind++] : "";
		if (strcmp(what, "install") != 0 && strcmp(what, "cleanup") != 0) {
			usage(stderr);
			return 2;
		}
		dispatch_cleanup = strcmp(what, "cleanup") == 0;
	}
	if (optind < argc ||
	    (strcmp(action, "install") != 0 && strcmp(action, "cleanup") != 0 &&
	     strcmp(action, "reset") != 0 && strcmp(action, "wait") != 0 &&
	     strcmp(action, "dispatch") != 0 && strcmp(action, "node-install") != 0 &&
	     strcmp(action, "node-cleanup") != 0)) {
		usage(stderr);
		return 2;
	}
	/* Blocked before any thread exists, so only sigtimedwait in this thread sees
	 * them. */
	sigemptyset(&kd_agent_term_signals);
	sigaddset(&kd_agent_term_signals, SIGTERM);
	sigaddset(&kd_agent_term_signals, SIGINT);
	sigprocmask(SIG_BLOCK, &kd_agent_term_signals, NULL);
	on_term = getenv("KD_AGENT_ON_TERM") != NULL;
	unsetenv("KD_AGENT_ON_TERM");
	if (getenv(METRICS_ENV)) {
		(void)kd_agent_metrics_decode(getenv(METRICS_ENV));
		unsetenv(METRICS_ENV);
	}

	r = kd_agent_settings_load(&s, action, &err);
	if (r < 0) {
		kd_error_log("invalid settings: %s", kd_err_msg(&err));
		kd_agent_settings_free(&s);
		return 2;
	}
	kd_log_setup("kata-deploy-agent", (kd_log_level)kd_agent_log_level(&s), false);
	if (strcmp(action, "wait") == 0) {
		r = run_wait(&s);
		kd_agent_settings_free(&s);
		return r;
	}
	if (!on_term)
		kd_agent_settings_log(&s);
	/* Job mode: one-shot, no health server. */
	if (strcmp(action, "dispatch") == 0 || strncmp(action, "node-", 5) == 0) {
		r = strcmp(action, "dispatch") == 0
			    ? kd_agent_dispatch_main(&s, dispatch_cleanup, &dop)
			    : kd_agent_job_node_main(&s, strcmp(action, "node-cleanup") == 0,
						     result);
		kd_agent_settings_free(&s);
		return r;
	}
	if (start_health(&s) < 0) {
		kd_agent_settings_free(&s);
		return 1;
	}

	if (strcmp(action, "install") == 0) {
		r = kd_agent_install(&s, NULL, &err);
		if (r < 0 && !kd_agent_terminating()) {
			kd_error_log("install failed: %s", kd_err_msg(&err));
			kd_agent_settings_free(&s);
			return 1;
		}
		if (kd_agent_terminating()) {
			if (r < 0)
				kd_info("install interrupted: %s", kd_err_msg(&err));
			kd_info("terminated during the install: checking whether the DaemonSet "
				"still selects this node");
			kd_err_clear(&err);
			action = "cleanup";
		} else {
			kd_agent_settings_free(&s);
			reexec("wait");
			return 1;
		}
	}
	if (strcmp(action, "cleanup") == 0) {
		r = kd_agent_cleanup(&s, NULL, force, &err);
		if (r < 0)
			kd_error_log("cleanup failed: %s", kd_err_msg(&err));
	} else {
		r = kd_agent_reset(&s, NULL, &err);
		if (r < 0)
			kd_error_log("reset failed: %s", kd_err_msg(&err));
	}
	kd_health_stop();
	kd_agent_settings_free(&s);
	return r < 0 ? 1 : 0;
}
