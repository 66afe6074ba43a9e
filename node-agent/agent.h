/* The node agent's work: claim the Node, check the host, run the engine on the host root,
 * restart the runtime, wait for Ready and the runtime handlers, label the Node, drop the
 * startup taints and tell the cluster (Events); and the way back on SIGTERM when the DaemonSet
 * no longer selects this node (cleanup) or on request (reset). */
#pragma once

#include <signal.h>
#include <stdbool.h>

#include "err.h"
#include "settings.h"

/* SIGTERM/SIGINT are blocked in every thread and read with sigtimedwait by the agent, so a
 * termination request interrupts a wait at once but never an engine step. */
extern sigset_t kd_agent_term_signals;
/* True once a termination signal arrived (consumes it; remembered). */
bool kd_agent_terminating(void);
/* Sleep ms, unless a termination signal arrives first (then true). */
bool kd_agent_sleep(int ms);

/* kubeconfig: --kubeconfig (NULL: settings / in-cluster). Each returns 0 or < 0 with err. */
int kd_agent_install(const kd_agent_settings *s, const char *kubeconfig, kd_error *err);
/* Release and uninstall, unless the DaemonSet still selects this node and force is false. */
int kd_agent_cleanup(const kd_agent_settings *s, const char *kubeconfig, bool force, kd_error *err);
int kd_agent_reset(const kd_agent_settings *s, const char *kubeconfig, kd_error *err);

/* Job mode (node-agent/jobmode.c, docs/AGENT.md "Job mode"): a per-node Job does the host part
 * with no API access; the dispatcher does the API part for each node. */
#define KD_AGENT_EVENT_MESSAGE_MAX 1024 /* the API's limit on an Event's message */
#define KD_AGENT_HOST_EVENTS_MAX 8	/* Events one per-node Job's result may carry */

/* An Event the host part wants on its Node (HostCheckWarning, CRIDisabled): the per-node Job
 * has no API access, so it carries them in its result and the dispatcher posts them. */
typedef struct kd_agent_host_event {
	bool warning;
	char reason[64];
	char action[32];
	char message[KD_AGENT_EVENT_MESSAGE_MAX + 1];
} kd_agent_host_event;

/* Is reason one the host part of an install posts (and so one the dispatcher re-posts)? */
bool kd_agent_host_event_known(const char *reason);

typedef struct kd_agent_job_result {
	char version[128];   /* install: the payload's version */
	char id[17];	     /* install: its version directory */
	char source[1024];   /* install: PAYLOAD as the Job had it */
	char prefix[512];    /* <prefix>/opt/kata[-sfx] */
	char runtime[32];    /* containerd, crio, k3s, ... */
	bool config_changed; /* the runtime's config changed (and so it was restarted) */
	unsigned kept;	     /* cleanup: host files not restored exactly */
	char **installed;    /* install: the shims installed */
	char **skipped;	     /* install: enabled, not in the payload */
	kd_agent_host_event events[KD_AGENT_HOST_EVENTS_MAX]; /* also on failure */
	size_t n_events;
	unsigned events_dropped; /* posted beyond KD_AGENT_HOST_EVENTS_MAX, or cut for size */
} kd_agent_job_result;
void kd_agent_job_result_done(kd_agent_job_result *r);

/* The per-node Job's work on HOST_ROOT, no API call: detect the runtime (from
 * NODE_RUNTIME_VERSION, which the dispatcher read from the Node), host checks and the engine's
 * install; or the engine's uninstall (cleanup). */
int kd_agent_job_host(const kd_agent_settings *s, bool cleanup, kd_agent_job_result *res,
		      kd_error *err);

/* The dispatcher's work for the node s->node_name: claim it (install) or release its labels
 * and release identity (cleanup), let run create its Job and wait for the Job's result (run
 * fills res->events also when it fails), post the result's host Events, then, for an install,
 * wait for Ready and the handlers, label, set the release identity annotation and drop the
 * startup taints; for a cleanup, wait for Ready. Events as the DaemonSet's agent posts them. A
 * failed install takes its claim back. release: the Helm release ("" unknown); dispatcher:
 * "<namespace>/<Job>" of the dispatcher ("" none). */
typedef int (*kd_agent_job_run_fn)(const char *runtime_version, kd_agent_job_result *res, void *ud,
				   kd_error *err);
typedef struct kd_agent_job_owner {
	const char *release;
	const char *dispatcher;
} kd_agent_job_owner;
int kd_agent_job_dispatch(const kd_agent_settings *s, const char *kubeconfig, bool cleanup,
			  const kd_agent_job_owner *owner, kd_agent_job_run_fn run, void *ud,
			  kd_error *err);
