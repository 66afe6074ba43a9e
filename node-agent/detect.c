#include "detect.h"

#include <string.h>
#include <sys/stat.h>

#include "fsroot.h"

/* Unit files live in these directories; a unit is "enabled" when a *.wants link
 * points at it. */
static const char *const unit_dirs[] = {"etc/systemd/system", "usr/lib/systemd/system",
					"lib/systemd/system"};
static const char *const wants_dirs[] = {"etc/systemd/system/multi-user.target.wants",
					 "etc/systemd/system/default.target.wants"};

/* 2: enabled, 1: unit file present, 0: absent. */
static int unit_state(int rootfd, const char *unit)
{
	char p[256];
	struct stat st;
	int state = 0;

	for (size_t i = 0; i < ELEMENTSOF(wants_dirs); i++) {
		snprintf(p, sizeof(p), "%s/%s", wants_dirs[i], unit);
		if (kd_lstat(rootfd, p, &st, NULL) == 0)
			return 2;
	}
	for (size_t i = 0; i < ELEMENTSOF(unit_dirs); i++) {
		snprintf(p, sizeof(p), "%s/%s", unit_dirs[i], unit);
		if (kd_lstat(rootfd, p, &st, NULL) == 0)
			state = 1;
	}
	return state;
}

static const struct {
	const char *id, *unit;
} flavours[] = {
	{"rke2-agent", "rke2-agent.service"},	     {"rke2-server", "rke2-server.service"},
	{"k3s-agent", "k3s-agent.service"},	     {"k3s", "k3s.service"},
	{"k0s-controller", "k0scontroller.service"}, {"k0s-worker", "k0sworker.service"},
};

/* Which runtimes a declared distribution allows. */
static bool compatible(const char *dist, const char *id)
{
	if (!*dist || strcmp(id, "crio") == 0)
		return true;
	if (strcmp(dist, "k3s") == 0)
		return strncmp(id, "k3s", 3) == 0;
	if (strcmp(dist, "rke2") == 0)
		return strncmp(id, "rke2", 4) == 0;
	if (strcmp(dist, "k0s") == 0)
		return strncmp(id, "k0s", 3) == 0;
	if (strcmp(dist, "microk8s") == 0)
		return strcmp(id, "microk8s") == 0;
	return strcmp(id, "containerd") == 0; /* k8s */
}

static const char *dist_of(const char *id)
{
	if (strncmp(id, "k3s", 3) == 0)
		return "k3s";
	if (strncmp(id, "rke2", 4) == 0)
		return "rke2";
	if (strncmp(id, "k0s", 3) == 0)
		return "k0s";
	if (strcmp(id, "microk8s") == 0)
		return "microk8s";
	return "k8s";
}

int kd_agent_detect(int rootfd, const char *rv, const char *dist, kd_agent_runtime *ret,
		    kd_error *err)
{
	kd_agent_runtime rt;
	const char *sep = rv ? strstr(rv, "://") : NULL;
	int best = 0;

	memset(&rt, 0, sizeof(rt));

	if (!rv || !*rv)
		return kd_err(err, -EINVAL,
			      "the Node reports no status.nodeInfo.containerRuntimeVersion");
	if (!sep)
		return kd_err(err, -EINVAL,
			      "containerRuntimeVersion '%s' is not <runtime>://<version>", rv);
	snprintf(rt.version, sizeof(rt.version), "%s", sep + 3);
	if (strcmp(dist, "microk8s") == 0 ||
	    unit_state(rootfd, "snap.microk8s.daemon-containerd.service") > 0) {
		snprintf(rt.id, sizeof(rt.id), "microk8s");
		snprintf(rt.unit, sizeof(rt.unit), "snap.microk8s.daemon-containerd.service");
		snprintf(rt.evidence, sizeof(rt.evidence), "%s, microk8s containerd unit", rv);
	} else if (strncmp(rv, "cri-o://", 8) == 0 || strncmp(rv, "crio://", 7) == 0) {
		snprintf(rt.id, sizeof(rt.id), "crio");
		snprintf(rt.unit, sizeof(rt.unit), "crio.service");
		snprintf(rt.evidence, sizeof(rt.evidence), "%s", rv);
	} else if (strncmp(rv, "containerd://", 13) == 0) {
		/* An enabled unit wins over a merely installed one: rke2 installs both
		 * units. */
		for (size_t i = 0; i < ELEMENTSOF(flavours); i++) {
			int st = unit_state(rootfd, flavours[i].unit);
			if (st > best) {
				best = st;
				snprintf(rt.id, sizeof(rt.id), "%s", flavours[i].id);
				snprintf(rt.unit, sizeof(rt.unit), "%s", flavours[i].unit);
				snprintf(rt.evidence, sizeof(rt.evidence), "%s, unit %s %s", rv,
					 flavours[i].unit, st == 2 ? "enabled" : "present");
			}
		}
		if (!best) {
			snprintf(rt.id, sizeof(rt.id), "containerd");
			snprintf(rt.unit, sizeof(rt.unit), "containerd.service");
			snprintf(rt.evidence, sizeof(rt.evidence), "%s", rv);
		}
	} else
		return kd_err(err, -EOPNOTSUPP,
			      "container runtime '%.*s' (%s) is not supported: containerd "
			      "and CRI-O are",
			      (int)(sep - rv), rv, rv);
	if (!compatible(dist, rt.id))
		return kd_err(err, -EINVAL,
			      "K8S_DISTRIBUTION=%s does not match this node: detected %s (%s); set "
			      "K8S_DISTRIBUTION=%s (chart value k8sDistribution)",
			      dist, rt.id, rt.evidence, dist_of(rt.id));
	*ret = rt;
	return 0;
}
