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

/* kubeconfig: --kubeconfig (NULL: settings / in-cluster). Each returns 0 or < 0 with err. */
int kd_agent_install(const kd_agent_settings *s, const char *kubeconfig, kd_error *err);
/* Release and uninstall, unless the DaemonSet still selects this node and force is false. */
int kd_agent_cleanup(const kd_agent_settings *s, const char *kubeconfig, bool force, kd_error *err);
int kd_agent_reset(const kd_agent_settings *s, const char *kubeconfig, kd_error *err);
