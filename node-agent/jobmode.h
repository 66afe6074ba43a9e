/* Job mode: the per-node Job's one-shot host work and the dispatcher that fans those Jobs out
 * (node-agent/jobmode.c, docs/AGENT.md "Job mode"). */
#pragma once

#include <stdbool.h>

#include "settings.h"

#define KD_AGENT_RESULT_PATH "/dev/termination-log"

/* node-install / node-cleanup: no API access; the result is one JSON line written to
 * result_path (the pod's terminationMessagePath). Returns the exit status. */
int kd_agent_job_node_main(const kd_agent_settings *s, bool cleanup, const char *result_path);

typedef struct kd_agent_dispatch_opts {
	const char *job_template;     /* the per-node Job (YAML) of this action */
	const char *cleanup_template; /* install: the cleanup Job, for nodes no longer selected */
	const char *name_prefix;      /* Job names: <prefix>-install|cleanup-<node>-<hash> */
	const char *owner_job;	      /* the dispatcher's own Job: owner of the per-node Jobs */
	const char *nodes;	      /* comma separated: these nodes, not the selection */
	int parallelism;	      /* Jobs at once */
	int wait_for_nodes_s;	      /* install: wait this long for a selected node */
	int node_settle_s;	      /* install: the selection unchanged this long */
} kd_agent_dispatch_opts;

/* dispatch install|cleanup. Returns the exit status: 0 every node done, 1 one failed (or the
 * selection stayed empty with wait_for_nodes_s > 0), 2 bad options. */
int kd_agent_dispatch_main(const kd_agent_settings *s, bool cleanup,
			   const kd_agent_dispatch_opts *o);
