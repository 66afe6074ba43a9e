#!/usr/bin/env python3
"""Checks the output of `helm template` of the kata-deploy chart.

    check-rendered.py CASE < rendered.yaml

Every render must satisfy the contract with the node agent (command, env names, probes,
host mounts, RBAC verbs, RuntimeClasses, the custom-configs ConfigMap). CASE adds the expectations of one values file
(see CASES). The expected overheads and RBAC rules are written out here on purpose instead
of being read from the chart, so that the test is an independent oracle.
Prints one "ok - ..." line per check and exits 1 on the first failed case.
Needs PyYAML (Debian package python3-yaml).
"""
import os
import sys

import yaml

# The Kata release the payload is built from: RuntimeClasses carry it (katacontainers.io/kata-version).
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../artifacts/versions.yaml")) as f:
    KATA_VERSION = yaml.safe_load(f)["vars"]["kata_version"]

# Reference §3.2: RuntimeClass overhead (memory, cpu) per shim.
OVERHEAD = {}
for s in ("clh clh-azure clh-runtime-rs clh-azure-runtime-rs openvmm-azure-runtime-rs "
          "dragonball fc firecracker").split():
    OVERHEAD[s] = ("130Mi", "250m")
for s in "qemu qemu-runtime-rs qemu-coco-dev-runtime-rs qemu-nvidia-cpu qemu-nvidia-cpu-runtime-rs".split():
    OVERHEAD[s] = ("320Mi", "250m")
OVERHEAD["qemu-coco-dev"] = ("160Mi", "250m")
for s in "qemu-se qemu-se-runtime-rs".split():
    OVERHEAD[s] = ("1024Mi", "1")
for s in "qemu-snp qemu-snp-runtime-rs qemu-tdx qemu-tdx-runtime-rs".split():
    OVERHEAD[s] = ("2048Mi", "1")
for s in ("qemu-nvidia-gpu qemu-nvidia-gpu-runtime-rs qemu-nvidia-gpu-snp qemu-nvidia-gpu-snp-runtime-rs "
          "qemu-nvidia-gpu-tdx qemu-nvidia-gpu-tdx-runtime-rs").split():
    OVERHEAD[s] = ("10240Mi", "1")
OVERHEAD["remote"] = ("120Mi", "250m")

ARCHS = ("X86_64", "AARCH64", "S390X", "PPC64LE")
ENV_NAMES = {"NODE_NAME", "POD_NAMESPACE", "DAEMONSET_NAME", "DEBUG", "DEVKIT", "K8S_DISTRIBUTION", "HEALTH_PORT",
             "INSTALLATION_PREFIX", "MULTI_INSTALL_SUFFIX", "STARTUP_TAINTS", "AGENT_HTTPS_PROXY",
             "AGENT_NO_PROXY", "CUSTOM_RUNTIMES_ENABLED", "CUSTOM_CONFIGS_DIR", "RUNTIME_RESTART", "HOST_CHECK",
             "EXPERIMENTAL_SETUP_SNAPSHOTTER", "EROFS_MERGE_MODE", "EROFS_SNAPSHOTTER_MODE", "EROFS_DMVERITY"}
for a in ARCHS:
    ENV_NAMES |= {f"{v}_{a}" for v in ("SHIMS", "DEFAULT_SHIM", "ALLOWED_HYPERVISOR_ANNOTATIONS",
                                       "SNAPSHOTTER_HANDLER_MAPPING", "PULL_TYPE_MAPPING",
                                       "EXPERIMENTAL_FORCE_GUEST_PULL")}

# Only with payload.source set (an oci:// or URL payload instead of the image's).
PAYLOAD_ENV = {"PAYLOAD", "PAYLOAD_SHA256", "PAYLOAD_PLAIN_HTTP", "PAYLOAD_REGISTRY_AUTH"}

# The agent's API calls, exactly (contract with node-agent).
CLUSTER_RULES = {("", "nodes"): {"get", "patch"}}
NS_RULES = {("apps", "daemonsets"): {"get", "list"},
            ("", "events"): {"create", "patch"},
            ("events.k8s.io", "events"): {"create", "patch"}}

# Mounted only with runtimeRestart systemd (path: readOnly); /etc/systemd/system only when the
# whole /etc is not mounted. The systemd restart uses <root>/run/systemd/private, not the bus.
# Connecting to a socket needs write permission on the socket file, not a writable mount:
# /run/systemd is read-only (tests/integration/test-systemd-restart.sh connects through one).
SYSTEMD_MOUNTS = {"/run/systemd": True, "/etc/systemd/system": True}
# Always: the host lock's directory (rw) and /lib (modules tree and unit files, read-only).
ALWAYS_MOUNTS = {"/run/kata-deploy": False, "/lib": True}
STATE = "/var/lib/kata-deploy"
CUSTOM_DIR = "/custom-configs"
KATA_RUNTIME = {"katacontainers.io/kata-runtime": "true"}
# The agent's owner label of an install without a suffix (upstream's instance label).
OWNER_DEFAULT = {"kata-deploy.katacontainers.io/default": "true"}
# The agent's per-shim node label (node-agent/settings.h KD_AGENT_SHIM_LABEL_PREFIX): set where the
# shim is installed; every RuntimeClass of the shim (and of custom runtimes based on it) selects it.
SHIM_LABEL = "handler.kata-deploy.katacontainers.io/kata-{shim}{sfx}"


def shim_sel(shim, sfx=""):
    return {SHIM_LABEL.format(shim=shim, sfx=sfx): "true"}


# What upstream 4.1.0's values.yaml enables per architecture (shims.*.enabled: ~ unless
# disabled, supportedArches exactly as upstream's).
UPSTREAM_41_SHIMS = {
    "X86_64": ["clh", "clh-azure", "clh-azure-runtime-rs", "clh-runtime-rs", "dragonball", "fc",
               "openvmm-azure-runtime-rs", "qemu", "qemu-coco-dev", "qemu-coco-dev-runtime-rs",
               "qemu-nvidia-cpu", "qemu-nvidia-cpu-runtime-rs", "qemu-nvidia-gpu",
               "qemu-nvidia-gpu-runtime-rs", "qemu-nvidia-gpu-snp", "qemu-nvidia-gpu-snp-runtime-rs",
               "qemu-nvidia-gpu-tdx", "qemu-nvidia-gpu-tdx-runtime-rs", "qemu-runtime-rs", "qemu-snp",
               "qemu-snp-runtime-rs", "qemu-tdx", "qemu-tdx-runtime-rs"],
    "AARCH64": ["qemu", "qemu-coco-dev-runtime-rs", "qemu-nvidia-cpu", "qemu-nvidia-cpu-runtime-rs",
                "qemu-nvidia-gpu-runtime-rs", "qemu-runtime-rs"],
    "S390X": ["qemu", "qemu-coco-dev", "qemu-coco-dev-runtime-rs", "qemu-runtime-rs", "qemu-se",
              "qemu-se-runtime-rs"],
    "PPC64LE": ["qemu", "qemu-runtime-rs"],
}
# ... and its per-shim containerd.snapshotter and crio.guestPull, as the agent's variables.
UPSTREAM_41_SNAPSHOTTERS = {
    "X86_64": ",".join(['fc:devmapper', 'qemu-coco-dev:nydus', 'qemu-coco-dev-runtime-rs:nydus', 'qemu-nvidia-gpu-snp:nydus', 'qemu-nvidia-gpu-snp-runtime-rs:nydus', 'qemu-nvidia-gpu-tdx:nydus', 'qemu-nvidia-gpu-tdx-runtime-rs:nydus', 'qemu-snp:nydus', 'qemu-snp-runtime-rs:nydus', 'qemu-tdx:nydus', 'qemu-tdx-runtime-rs:nydus']),
    "AARCH64": ",".join(['qemu-coco-dev-runtime-rs:nydus']),
    "S390X": ",".join(['qemu-coco-dev:nydus', 'qemu-coco-dev-runtime-rs:nydus', 'qemu-se:nydus', 'qemu-se-runtime-rs:nydus']),
}
UPSTREAM_41_PULL = {
    "X86_64": ",".join(s + ":guest-pull" for s in ['qemu-coco-dev', 'qemu-coco-dev-runtime-rs', 'qemu-nvidia-gpu-snp', 'qemu-nvidia-gpu-snp-runtime-rs', 'qemu-nvidia-gpu-tdx', 'qemu-nvidia-gpu-tdx-runtime-rs', 'qemu-snp', 'qemu-snp-runtime-rs', 'qemu-tdx', 'qemu-tdx-runtime-rs']),
    "AARCH64": ",".join(s + ":guest-pull" for s in ['qemu-coco-dev-runtime-rs']),
    "S390X": ",".join(s + ":guest-pull" for s in ['qemu-coco-dev', 'qemu-coco-dev-runtime-rs', 'qemu-se', 'qemu-se-runtime-rs']),
}

DISTRO_DIR = {"k3s": "/var/lib/rancher/k3s/agent/etc/containerd",
              "rke2": "/var/lib/rancher/rke2/agent/etc/containerd",
              "k0s": "/etc/k0s", "microk8s": "/var/snap/microk8s/current/args"}

# Per values file: what the render must contain.
BASE = dict(sfx="", ns="kube-system", distro="k8s", runtime_dirs={"/etc"}, restart="systemd", host_check="true",
            probes=("livenessProbe", "readinessProbe", "startupProbe"),
            install_dir="/opt", shims={a: ["qemu"] for a in ARCHS}, default={a: "qemu" for a in ARCHS},
            default_rc=None, debug="false", devkit="false", taints="", max_unavailable=1, grace=600,
            image="ghcr.io/kata-deploy-c/kata-deploy:0.1.0", https="", noproxy="",
            ann={}, snap={}, pull={}, extra_selector={}, pod_annotations={}, hook=True,
            # custom_data: the <daemonset>-custom-configs ConfigMap's data, exactly (None: no
            # ConfigMap); custom_rc: RuntimeClass name -> (handler, (memory, cpu) or None,
            # scheduling.nodeSelector) of the custom runtimes.
            custom_enabled="false", custom_data=None, custom_rc={},
            # seLinuxOptions of the agent container (the value seLinuxOptions), None: absent.
            selinux=None)


def case(**kw):
    c = dict(BASE)
    c.update(kw)
    return c


CASES = {
    "default": case(),
    "k3s": case(distro="k3s", runtime_dirs={DISTRO_DIR["k3s"]},
                shims={"X86_64": ["clh", "qemu"], "AARCH64": ["qemu"], "S390X": ["qemu"],
                       "PPC64LE": ["qemu"]},
                default_rc=("kata", "kata-qemu", "qemu")),
    "rke2": case(distro="rke2", runtime_dirs={DISTRO_DIR["rke2"]},
                 taints="kata.example/not-ready:NoSchedule", max_unavailable="25%"),
    "k0s": case(distro="k0s", runtime_dirs={DISTRO_DIR["k0s"]}, extra_selector={"kubernetes.io/os": "linux"}),
    "microk8s": case(distro="microk8s", runtime_dirs={DISTRO_DIR["microk8s"]}, debug="true"),
    "crio": case(runtime_dirs={"/etc/crio"},
                 shims={"X86_64": ["qemu", "qemu-coco-dev"], "AARCH64": ["qemu"],
                        "S390X": ["qemu", "qemu-coco-dev"], "PPC64LE": ["qemu"]},
                 default={"X86_64": "qemu", "AARCH64": "qemu", "S390X": "qemu-coco-dev", "PPC64LE": "qemu"},
                 ann={a: "qemu-coco-dev:default_memory,default_vcpus" for a in ("X86_64", "S390X")},
                 pull={a: "qemu-coco-dev:guest-pull" for a in ("X86_64", "S390X")}),
    "multi-install": case(sfx="next", install_dir="/usr/local",
                          shims={a: ["qemu", "qemu-runtime-rs"] for a in ARCHS},
                          https="qemu-runtime-rs=http://proxy.example:3128",
                          noproxy="qemu-runtime-rs=10.0.0.0/8,.svc"),
    "upstream-style": case(
        shims={"X86_64": ["qemu", "qemu-runtime-rs", "qemu-snp", "qemu-tdx"], "AARCH64": ["qemu", "qemu-runtime-rs"],
               "S390X": ["qemu", "qemu-runtime-rs"], "PPC64LE": ["qemu", "qemu-runtime-rs"]},
        default={a: "qemu-runtime-rs" for a in ARCHS},
        default_rc=("kata", "kata-qemu-runtime-rs", "qemu-runtime-rs"),
        ann={a: "qemu:default_vcpus" for a in ARCHS},
        snap={"X86_64": "qemu-snp:nydus,qemu-tdx:nydus"},
        pull={"X86_64": "qemu-snp:guest-pull,qemu-tdx:guest-pull"},
        https="qemu-tdx=http://proxy.example:3128", noproxy="qemu-tdx=localhost",
        extra_selector={"node-role.kubernetes.io/worker": ""},
        pod_annotations={"example.com/team": "platform"}),
    # debug + devkit (set on the command line by test-helm.sh): three RuntimeClasses per shim.
    "debug-devkit": case(debug="true", devkit="true"),
    # Two custom runtimes (a generated RuntimeClass inheriting qemu's overhead, one written in
    # full) and a drop-in for qemu.
    "custom-runtimes": case(
        shims={"X86_64": ["qemu", "qemu-coco-dev"], "AARCH64": ["qemu"], "S390X": ["qemu", "qemu-coco-dev"],
               "PPC64LE": ["qemu"]},
        pull={a: "qemu-coco-dev:guest-pull" for a in ("X86_64", "S390X")},
        custom_enabled="true",
        custom_data={
            "custom-runtimes.list": "kata-coco-guest-pull:qemu-coco-dev::guest-pull\n"
                                    "kata-qemu-nydus-big:qemu:nydus:\n",
            "dropin-kata-qemu-nydus-big.toml": "[hypervisor.qemu]\ndefault_vcpus = 4\ndefault_memory = 8192\n",
            "dropin-qemu.toml": "[hypervisor.qemu]\ndefault_memory = 3072\n",
        },
        custom_rc={"kata-qemu-nydus-big": ("kata-qemu-nydus-big", OVERHEAD["qemu"],
                                           dict(KATA_RUNTIME, **OWNER_DEFAULT, **shim_sel("qemu"))),
                   "kata-coco": ("kata-coco-guest-pull", ("640Mi", "500m"),
                                 dict(KATA_RUNTIME, **{"example.com/tee": "true"}))}),
    # test-helm.sh --set: suffix "next", qemu-nvidia-gpu enabled, a custom runtime on it without
    # inherited overhead (the base shim's nodeSelector is
    # kept), a runtimeClass map whose handler is replaced, pullType default, and a drop-in of
    # a disabled shim (clh), which is left out.
    "custom-set": case(
        sfx="next", custom_enabled="true",
        shims={"X86_64": ["qemu", "qemu-nvidia-gpu"], "AARCH64": ["qemu"], "S390X": ["qemu"],
               "PPC64LE": ["qemu"]},
        custom_data={"custom-runtimes.list": "kata-gpu-lean:qemu-nvidia-gpu::default\nkata-y:qemu::\n"},
        custom_rc={"kata-gpu-lean": ("kata-gpu-lean", None,
                                     dict(KATA_RUNTIME, **{"kata-deploy.katacontainers.io/next": "true",
                                                           "nvidia.com/cc.ready.state": "false"},
                                          **shim_sel("qemu-nvidia-gpu", "-next"))),
                   "kata-y-rc": ("kata-y", None, {})}),
    # test-helm.sh --set: qemu's drop-in only; custom runtimes listed but not enabled.
    "dropin-only": case(custom_data={"dropin-qemu.toml": "[runtime]\nenable_debug = true\n"}),
    # manifests/ = chart defaults without the Helm-only pre-delete hook.
    "manifests": case(hook=False),
    # test-helm.sh --set: a test node without systemd (restart by a command), no host check,
    # containerd only.
    "no-systemd": case(restart="command:/opt/kata-test/restart containerd", host_check="false",
                       runtime_dirs={"/etc/containerd"}, selinux={"type": "spc_t"}),
    # test-helm.sh --set: CRI-O, restart none; the liveness probe disabled (upstream's key).
    "crio-none": case(restart="none", runtime_dirs={"/etc/crio"}, probes=("readinessProbe", "startupProbe")),
    # upstream 4.1.0's own values.yaml, verbatim, plus only the image override: every shim
    # enabled (enabled: ~, disableAll false), upstream's defaultShim and image pull policy.
    "upstream-4.1.0": case(image="registry.example/kata-deploy-c:4.1.0-test", shims=UPSTREAM_41_SHIMS,
                           snap=UPSTREAM_41_SNAPSHOTTERS, pull=UPSTREAM_41_PULL,
                           default={a: "qemu-runtime-rs" for a in ARCHS}),
}

failures = 0


def check(cond, what):
    global failures
    if cond:
        print(f"ok - {what}")
    else:
        failures += 1
        print(f"not ok - {what}")
    return cond


def eq(got, want, what):
    return check(got == want, f"{what}: {got!r}" if got == want else f"{what}: got {got!r}, want {want!r}")


def hook_of(o):
    return (o["metadata"].get("annotations") or {}).get("helm.sh/hook")


def rules_of(o):
    out = {}
    for r in o.get("rules", []):
        for g in r["apiGroups"]:
            for res in r["resources"]:
                out.setdefault((g, res), set()).update(r["verbs"])
    return out


def main():
    name = sys.argv[1]
    c = CASES[name]
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    sfx = f"-{c['sfx']}" if c["sfx"] else ""
    instance = c["sfx"] or "default"
    ns = c["ns"]
    main_objs = [d for d in docs if not hook_of(d)]
    hooks = [d for d in docs if hook_of(d)]
    # --- the release's state ConfigMap (upstream's <release>-kata-deploy-state, issue 15 item 7);
    # manifests/ has none (not a release).
    state = [d for d in main_objs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-kata-deploy-state")]
    main_objs = [d for d in main_objs if d not in state]
    if name == "manifests":
        eq(state, [], "manifests/: no release state ConfigMap")
    elif check(len(state) == 1, "one <release>-kata-deploy-state ConfigMap"):
        st = state[0]
        eq(st["metadata"].get("namespace"), ns, "state ConfigMap in the release namespace")
        eq(st["metadata"]["labels"].get("kata-deploy/instance"), instance, "state ConfigMap instance label")
        d = st.get("data") or {}
        eq((d.get("multiInstallSuffix"), d.get("deploymentMode"), d.get("daemonSet"), d.get("kataVersion"),
            d.get("image"), d.get("nodeAnnotation")),
           (c["sfx"], "daemonset", f"kata-deploy{sfx}", KATA_VERSION, c["image"],
            f"install.kata-deploy.katacontainers.io/{instance}"),
           "state ConfigMap: suffix, mode, DaemonSet, Kata version, image, node annotation")
    by = {}
    for d in main_objs:
        by.setdefault(d["kind"], []).append(d)

    # --- object set and names (suffix everywhere)
    has_cm = c["custom_data"] is not None
    eq(sorted((k, len(v)) for k, v in by.items() if k != "RuntimeClass"),
       sorted([("ClusterRole", 1), ("ClusterRoleBinding", 1), ("DaemonSet", 1), ("Role", 1), ("RoleBinding", 1),
               ("ServiceAccount", 1)] + ([("ConfigMap", 1)] if has_cm else [])), "object kinds")
    names = {k: v[0]["metadata"]["name"] for k, v in by.items() if k != "RuntimeClass"}
    want_names = {"ServiceAccount": f"kata-deploy-sa{sfx}", "ClusterRole": f"kata-deploy-role{sfx}",
                  "ClusterRoleBinding": f"kata-deploy-rb{sfx}", "Role": f"kata-deploy-role{sfx}",
                  "RoleBinding": f"kata-deploy-rb{sfx}", "DaemonSet": f"kata-deploy{sfx}"}
    if has_cm:
        want_names["ConfigMap"] = f"kata-deploy{sfx}-custom-configs"
    eq(names, want_names, "object names carry the suffix")
    for d in main_objs + hooks:
        md = d["metadata"]
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding", "RuntimeClass"):
            check(md.get("namespace") == ns, f"{d['kind']}/{md['name']} in namespace {ns}")
        check(md.get("labels", {}).get("kata-deploy/instance") == instance,
              f"{d['kind']}/{md['name']} label kata-deploy/instance={instance}")

    # --- RBAC: exactly the agent's calls
    eq(rules_of(by["ClusterRole"][0]), CLUSTER_RULES, "ClusterRole rules are exactly nodes get/patch")
    eq(rules_of(by["Role"][0]), NS_RULES, "Role rules are exactly daemonsets get/list + events create/patch")
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        b = by[kind][0]
        eq((b["roleRef"]["kind"], b["roleRef"]["name"]), (role_kind, f"kata-deploy-role{sfx}"), f"{kind} roleRef")
        eq(b["subjects"], [{"kind": "ServiceAccount", "name": f"kata-deploy-sa{sfx}", "namespace": ns}],
           f"{kind} subject")
    all_rules = [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d.get("rules", [])]
    check(not any("*" in r["verbs"] or "*" in r["resources"] or "*" in r["apiGroups"] for r in all_rules),
          "no wildcard in any rule")
    check(not any("runtimeclasses" in r["resources"] for r in all_rules), "no permission on runtimeclasses")

    # --- DaemonSet
    ds = by["DaemonSet"][0]
    spec = ds["spec"]
    pod = spec["template"]["spec"]
    eq(spec["selector"]["matchLabels"], {"name": f"kata-deploy{sfx}"}, "DaemonSet selector")
    check(set(spec["selector"]["matchLabels"].items()) <= set(spec["template"]["metadata"]["labels"].items()),
          "pod labels match the selector")
    eq(spec["updateStrategy"], {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": c["max_unavailable"]}},
       "updateStrategy")
    eq(pod["serviceAccountName"], f"kata-deploy-sa{sfx}", "serviceAccountName")
    eq(pod["priorityClassName"], "system-node-critical", "priorityClassName")
    eq(pod["terminationGracePeriodSeconds"], c["grace"], "terminationGracePeriodSeconds")
    for k in ("hostPID", "hostNetwork", "hostIPC"):
        check(not pod.get(k), f"no {k}")
    eq(pod.get("nodeSelector", {}), c["extra_selector"], "nodeSelector")
    ann = dict(spec["template"]["metadata"].get("annotations", {}))
    checksum = ann.pop("checksum/custom-configs", None)
    eq(ann, c["pod_annotations"], "pod annotations")
    if has_cm:
        check(isinstance(checksum, str) and len(checksum) == 64 and all(ch in "0123456789abcdef" for ch in checksum),
              "checksum/custom-configs pod annotation (a ConfigMap change rolls the agents)")
    else:
        eq(checksum, None, "no checksum/custom-configs annotation without the ConfigMap")
    eq(len(pod["containers"]), 1, "one container")
    ctr = pod["containers"][0]
    eq(ctr["image"], c["image"], "image")
    eq(ctr["command"], ["/usr/bin/kata-deploy-agent"], "command")
    eq(ctr["args"], ["install"], "args")
    check("lifecycle" not in ctr, "no preStop hook (the agent reverts on SIGTERM)")
    sc = ctr["securityContext"]
    # Least privilege (docs/HELM.md): uid 0 without any capability, not privileged.
    want_sc = {"privileged": False, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
               "runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False, "readOnlyRootFilesystem": True,
               "seccompProfile": {"type": "RuntimeDefault"}}
    if c["selinux"] is not None:
        want_sc["seLinuxOptions"] = c["selinux"]
    eq(sc, want_sc, "securityContext: not privileged, no capability, no privilege escalation, RuntimeDefault seccomp")
    check("hostPID" not in pod and "hostNetwork" not in pod and "hostIPC" not in pod,
          "no hostPID, hostNetwork, hostIPC")

    env = {e["name"]: e for e in ctr["env"]}
    eq(len(env), len(ctr["env"]), "no duplicate env var")
    eq(set(env) - PAYLOAD_ENV, ENV_NAMES, "env var names are exactly the contract's")
    val = {k: e.get("value") for k, e in env.items()}
    eq(env["NODE_NAME"].get("valueFrom"), {"fieldRef": {"fieldPath": "spec.nodeName"}}, "NODE_NAME from spec.nodeName")
    eq(env["POD_NAMESPACE"].get("valueFrom"), {"fieldRef": {"fieldPath": "metadata.namespace"}},
       "POD_NAMESPACE from metadata.namespace")
    eq(val["DAEMONSET_NAME"], ds["metadata"]["name"], "DAEMONSET_NAME is the DaemonSet's name")
    eq(val["MULTI_INSTALL_SUFFIX"], c["sfx"], "MULTI_INSTALL_SUFFIX")
    eq(val["K8S_DISTRIBUTION"], c["distro"], "K8S_DISTRIBUTION")
    eq(val["DEBUG"], c["debug"], "DEBUG")
    eq(val["DEVKIT"], c["devkit"], "DEVKIT")
    eq(val["STARTUP_TAINTS"], c["taints"], "STARTUP_TAINTS")
    eq(val["INSTALLATION_PREFIX"], "" if c["install_dir"] == "/opt" else c["install_dir"], "INSTALLATION_PREFIX")
    eq(val["AGENT_HTTPS_PROXY"], c["https"], "AGENT_HTTPS_PROXY")
    eq(val["AGENT_NO_PROXY"], c["noproxy"], "AGENT_NO_PROXY")
    eq(val.get("CUSTOM_RUNTIMES_ENABLED"), c["custom_enabled"], "CUSTOM_RUNTIMES_ENABLED")
    eq(val.get("CUSTOM_CONFIGS_DIR"), CUSTOM_DIR, "CUSTOM_CONFIGS_DIR")
    enabled = set()
    for a in ARCHS:
        shims = val[f"SHIMS_{a}"].split()
        enabled |= set(shims)
        eq(val[f"DEFAULT_SHIM_{a}"], c["default"][a], f"DEFAULT_SHIM_{a}")
        check(val[f"DEFAULT_SHIM_{a}"] in shims, f"DEFAULT_SHIM_{a} is one of SHIMS_{a}")
        if c["shims"] is None:  # a foreign values file: the shim lists are its own
            check(len(shims) > 1 and shims == sorted(shims), f"SHIMS_{a}: {len(shims)} shims, sorted")
            continue
        eq(shims, c["shims"][a], f"SHIMS_{a}")
        eq(val[f"ALLOWED_HYPERVISOR_ANNOTATIONS_{a}"], c["ann"].get(a, ""), f"ALLOWED_HYPERVISOR_ANNOTATIONS_{a}")
        eq(val[f"SNAPSHOTTER_HANDLER_MAPPING_{a}"], c["snap"].get(a, ""), f"SNAPSHOTTER_HANDLER_MAPPING_{a}")
        eq(val[f"PULL_TYPE_MAPPING_{a}"], c["pull"].get(a, ""), f"PULL_TYPE_MAPPING_{a}")

    eq(val["RUNTIME_RESTART"], c["restart"], "RUNTIME_RESTART")
    eq(val["HOST_CHECK"], c["host_check"], "HOST_CHECK")

    port = int(val["HEALTH_PORT"])
    eq(ctr["ports"], [{"name": "health", "containerPort": port, "protocol": "TCP"}], "health port = HEALTH_PORT")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/readyz")):
        if probe not in c["probes"]:
            check(probe not in ctr, f"no {probe} (enabled: false)")
            continue
        p = ctr.get(probe, {})
        eq(p.get("httpGet"), {"path": path, "port": "health"}, f"{probe} GET {path} on the health port")
        check("enabled" not in p, f"{probe} has no 'enabled' field (a values key, not a probe field)")
    if "startupProbe" in c["probes"]:
        check(ctr["startupProbe"]["periodSeconds"] * ctr["startupProbe"]["failureThreshold"] >= 600,
              "startupProbe allows at least 10 minutes for the install")

    if c["taints"]:
        tol = pod.get("tolerations", [])
        for t in c["taints"].split(","):
            key, _, effect = t.partition(":")
            want = {"key": key, "operator": "Exists"}
            if effect:
                want["effect"] = effect
            check(want in tol, f"tolerates startup taint {t}")

    # --- host mounts: exactly what the agent needs, each at /host/<path>
    vols = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in ctr["volumeMounts"]}
    eq(set(vols), set(mounts), "every volume is mounted and every mount has a volume")
    host = {}
    for n, v in vols.items():
        if "hostPath" in v:
            hp = v["hostPath"]["path"]
            host[hp] = mounts[n]
            eq(mounts[n]["mountPath"], "/host" + hp, f"host {hp} mounted at /host{hp}")
            check(v["hostPath"].get("type") in ("Directory", "DirectoryOrCreate"), f"host {hp} has a directory type")
            if hp in ("/etc", "/etc/crio", "/lib", "/run/systemd", "/etc/systemd/system"):
                eq(v["hostPath"].get("type"), "Directory", f"host {hp} is never created")
        elif "configMap" in v:
            eq((n, v["configMap"].get("name"), mounts[n]["mountPath"], mounts[n].get("readOnly")),
               ("custom-configs", f"kata-deploy{sfx}-custom-configs", CUSTOM_DIR, True),
               f"ConfigMap volume {n} read-only at {CUSTOM_DIR}")
        else:
            check("emptyDir" in v, f"volume {n} is an emptyDir")
    ro_mounts = dict(ALWAYS_MOUNTS)
    if c["restart"] == "systemd":
        ro_mounts["/run/systemd"] = SYSTEMD_MOUNTS["/run/systemd"]
        if "/etc" not in c["runtime_dirs"]:
            ro_mounts["/etc/systemd/system"] = SYSTEMD_MOUNTS["/etc/systemd/system"]
    want = set(c["runtime_dirs"]) | {c["install_dir"], STATE} | set(ro_mounts)
    eq(set(host), want, "host paths")
    check("/" not in host, "the host root is not mounted")
    for hp, ro in ro_mounts.items():
        check(hp in host and bool(host[hp].get("readOnly")) == ro, f"{hp} mounted readOnly={ro}")
    for hp in set(c["runtime_dirs"]) | {c["install_dir"], STATE}:
        check(hp in host and not host[hp].get("readOnly"), f"{hp} mounted writable")
    check(any(m["mountPath"] == "/tmp" for m in ctr["volumeMounts"]), "/tmp is writable (read-only root)")
    vt = [m["name"] for m in ctr["volumeMounts"] if m["mountPath"] == "/var/tmp"]
    check(len(vt) == 1 and vols[vt[0]].get("emptyDir") == {},
          "/var/tmp (URL payload downloads) is a disk emptyDir")
    eq("custom-configs" in vols, has_cm, f"{CUSTOM_DIR} mounted exactly when the ConfigMap exists")

    # --- custom-configs ConfigMap: exactly the expected files
    if has_cm:
        cm = by["ConfigMap"][0]
        eq(cm.get("data"), c["custom_data"], "custom-configs ConfigMap data")
        check(not cm.get("binaryData"), "custom-configs has no binaryData")
        listed = [ln.split(":") for ln in cm["data"].get("custom-runtimes.list", "").splitlines()]
        check(all(len(f) == 4 for f in listed), "custom-runtimes.list lines are handler:baseConfig:snapshotter:pullType")
        eq([f[0] for f in listed], sorted(f[0] for f in listed), "custom-runtimes.list sorted by handler")
        eq(sorted(f[0] for f in listed), sorted(h for h, _, _ in c["custom_rc"].values()),
           "custom runtime handlers = custom RuntimeClass handlers")

    # --- RuntimeClasses
    rcs = {d["metadata"]["name"]: d for d in by.get("RuntimeClass", [])}
    # debug adds kata-<shim>[-sfx]-debug, devkit kata-<shim>[-sfx]-devkit, shaped like kata-<shim>.
    variants = [""] + (["-debug"] if c["debug"] == "true" else []) + (["-devkit"] if c["devkit"] == "true" else [])
    want_rc = {f"kata-{s}{sfx}{v}" for s in enabled for v in variants}
    if c["default_rc"]:
        want_rc.add(c["default_rc"][0])
    want_rc |= set(c["custom_rc"])
    eq(set(rcs), want_rc, "RuntimeClass names")
    for s in sorted(enabled):
        for v in variants:
            n = f"kata-{s}{sfx}{v}"
            rc = rcs.get(n)
            if not check(rc is not None, f"RuntimeClass {n} exists"):
                continue
            eq(rc["handler"], n, f"{n} handler = name")
            mem, cpu = OVERHEAD[s]
            eq(rc.get("overhead"), {"podFixed": {"memory": mem, "cpu": cpu}}, f"{n} overhead")
            sel = rc["scheduling"]["nodeSelector"]
            check(sel.get("katacontainers.io/kata-runtime") == "true", f"{n} selects kata-runtime=true")
            # The owner label the agent sets (upstream's instance label): the suffix, or "default".
            eq({k: v for k, v in sel.items() if k.startswith("kata-deploy.katacontainers.io/")},
               {f"kata-deploy.katacontainers.io/{c['sfx'] or 'default'}": "true"},
               f"{n} selects the per-install (owner) label")
            eq((rc["metadata"].get("annotations") or {}).get("katacontainers.io/kata-version"), KATA_VERSION,
               f"{n} kata-version annotation is Kata's version")
            check(len(rc["handler"]) <= 63, f"handler {rc['handler']} fits a DNS label")
            eq({k: v for k, v in sel.items() if k.startswith("handler.")}, shim_sel(s, sfx),
               f"{n} selects the shim's own label")
    for n, (handler, overhead, selector) in sorted(c["custom_rc"].items()):
        rc = rcs.get(n)
        if not check(rc is not None, f"custom RuntimeClass {n} exists"):
            continue
        eq((rc["apiVersion"], rc["kind"]), ("node.k8s.io/v1", "RuntimeClass"), f"custom RuntimeClass {n} type")
        eq(rc["handler"], handler, f"custom RuntimeClass {n} handler")
        eq(rc.get("overhead"), {"podFixed": {"memory": overhead[0], "cpu": overhead[1]}} if overhead else None,
           f"custom RuntimeClass {n} overhead")
        eq((rc.get("scheduling") or {}).get("nodeSelector") or {}, selector, f"custom RuntimeClass {n} nodeSelector")
        eq((rc["metadata"].get("annotations") or {}).get("katacontainers.io/kata-version"), KATA_VERSION,
           f"custom RuntimeClass {n} kata-version annotation")
    if c["default_rc"]:
        n, handler, shim = c["default_rc"]
        eq(rcs[n]["handler"], handler, f"default RuntimeClass {n} handler")
        eq({k: v for k, v in rcs[n]["scheduling"]["nodeSelector"].items() if k.startswith("handler.")},
           shim_sel(shim), f"default RuntimeClass {n} selects its shim's label")
        mem, cpu = OVERHEAD[shim]
        eq(rcs[n].get("overhead"), {"podFixed": {"memory": mem, "cpu": cpu}}, f"default RuntimeClass {n} overhead")

    # --- pre-delete hook: DaemonSet gone (foreground) before Helm deletes the RBAC
    if c["hook"]:
        hk = {d["kind"]: d for d in hooks}
        eq(sorted(hk), ["Job", "Role", "RoleBinding", "ServiceAccount"], "pre-delete hook objects")
        check(all(hook_of(d) == "pre-delete" for d in hooks), "hooks run pre-delete")
        job = hk["Job"]
        cmd = job["spec"]["template"]["spec"]["containers"][0]["command"]
        eq(job["spec"]["template"]["spec"]["containers"][0]["image"], "quay.io/kata-containers/kubectl:latest",
           "hook image (kubectlImage, a string or upstream's {reference, tag})")
        eq(cmd[:4], ["kubectl", "delete", "daemonset", f"kata-deploy{sfx}"], "hook deletes our DaemonSet")
        for flag in ("--cascade=foreground", "--wait=true", f"--namespace={ns}"):
            check(flag in cmd, f"hook uses {flag}")
        timeout = int([a for a in cmd if a.startswith("--timeout=")][0][len("--timeout="):-1])
        check(timeout > pod["terminationGracePeriodSeconds"],
              f"hook waits {timeout}s > terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']}")
        eq(rules_of(hk["Role"]), {("apps", "daemonsets"): {"get", "delete", "list", "watch"}}, "hook Role rules")
        eq([r.get("resourceNames") for r in hk["Role"]["rules"] if "delete" in r["verbs"]], [[f"kata-deploy{sfx}"]],
           "hook may delete only our DaemonSet")
        check(all("hook-succeeded" in d["metadata"]["annotations"]["helm.sh/hook-delete-policy"] for d in hooks),
              "hook objects are removed after success")
    else:
        eq(hooks, [], "no Helm hooks")

    return failures == 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(CASES)}}} < rendered.yaml")
    sys.exit(0 if main() else 1)
