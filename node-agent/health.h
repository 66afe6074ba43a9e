/* The agent's HTTP endpoints for the kubelet and Prometheus: /healthz (alive), /readyz (200 only
 * once the node is installed), /metrics (install duration, state, runtime restarts, errors, API
 * calls). libmicrohttpd parses HTTP; a thread of ours accepts, drives it (external epoll mode)
 * and ends each connection at a total deadline from accept, the oldest first when full (its own
 * timeout is an idle one). The listening socket is ours, so it can be handed over across exec to
 * the small idle waiter (docs/AGENT.md). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

typedef enum kd_agent_state {
	KD_AGENT_STARTING = 0,
	KD_AGENT_INSTALLING,
	KD_AGENT_INSTALLED,
	KD_AGENT_FAILED,
	KD_AGENT_CLEANING,
	KD_AGENT_STATE_COUNT,
} kd_agent_state;

/* Every figure /metrics shows; updated by the agent, read by the server thread. */
typedef struct kd_agent_metrics {
	uint64_t state; /* kd_agent_state */
	uint64_t ready;
	uint64_t install_duration_ms;
	uint64_t runtime_restarts;
	uint64_t errors;
	uint64_t api_requests, api_failures, api_conflicts;
} kd_agent_metrics;

extern kd_agent_metrics kd_agent_metrics_now;

void kd_agent_metric_set(uint64_t *field, uint64_t v);
void kd_agent_metric_inc(uint64_t *field);
const char *kd_agent_state_name(kd_agent_state s);

/* Serialise / restore the figures for the waiter ("k=v,k=v"). */
void kd_agent_metrics_encode(char *buf, size_t size);
int kd_agent_metrics_decode(const char *s);

/* The Prometheus text of /metrics; returns its length (may exceed size: truncated). */
int kd_agent_metrics_render(char *buf, size_t size);

/* Listen on addr:port (IPv4), or serve an inherited listening socket when listen_fd >= 0. */
int kd_health_start(const char *addr, int port, int listen_fd, kd_error *err);
/* Stop serving; returns the listening socket (still open, CLOEXEC cleared) for a handover, or
 * -1 when there is none. */
int kd_health_stop(void);
