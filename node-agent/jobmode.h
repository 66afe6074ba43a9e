/* Job mode: the per-node Job's one-shot host work and the dispatcher that fans those Jobs out
 * (node-agent/jobmode.c, docs/AGENT.md "Job mode"). */
#pragma once

#include <stdbool.h>

#include "agent.h"
#include "settings.h"

#define KD_AGENT_RESULT_PATH "/dev/termination-log"
#define KD_AGENT_RESULT_MAX 4096 /* the kubelet keeps 4096 bytes of a termination message */
#define KD_AGENT_RESULT_TEXT_MAX (KD_AGENT_RESULT_MAX - 1) /* and the line's newline */

/* node-install / node-cleanup: no API access; the result is one JSON line written to
 * result_path (the pod's terminationMessagePath). Returns the exit status. */
int kd_agent_job_node_main(const kd_agent_settings *s, bool cleanup, const char *result_path);

/* The result line (no newline) of a per-node Job: its fields, or error (then only the Events
 * besides), with the Events the host part would have posted. At most KD_AGENT_RESULT_TEXT_MAX
 * bytes, always whole JSON: the error and the Events' messages are cut at a character boundary
 * (marked "..."), then the last Events dropped (counted in eventsDropped). NULL: no memory. */
char *kd_agent_job_result_text(bool cleanup, const kd_agent_job_result *res, const char *error);
/* The dispatcher's reading of it: res filled (free with kd_agent_job_result_done); the Events
 * also when the result is an error, which is returned as err (-EIO), as is a text that is no
 * result (the log tail of FallbackToLogsOnError). */
int kd_agent_job_result_parse(const char *msg, bool cleanup, kd_agent_job_result *res,
			      kd_error *err);

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
