/* Which container runtime this node runs: the Node's status.nodeInfo.containerRuntimeVersion
 * ("containerd://1.7.2", "cri-o://1.30.1") and the systemd units present on the host tell
 * containerd, CRI-O, k3s, rke2, k0s and microk8s apart; a declared K8S_DISTRIBUTION must agree,
 * so we never write configuration into a directory the runtime does not read. */
#pragma once

#include "err.h"

typedef struct kd_agent_runtime {
	char id[32];	    /* containerd crio k3s k3s-agent rke2-server rke2-agent k0s-controller
			       k0s-worker microk8s */
	char version[64];   /* "1.7.2" */
	char unit[96];	    /* systemd unit to restart */
	char evidence[256]; /* why: "containerd://1.7.2-k3s1, unit k3s.service enabled" */
} kd_agent_runtime;

/* rootfd is the host root; distribution is K8S_DISTRIBUTION ("" = not declared). */
int kd_agent_detect(int rootfd, const char *runtime_version, const char *distribution,
		    kd_agent_runtime *ret, kd_error *err);
