#!/usr/bin/env python3
"""docs/HELM.md's "Upstream values keys" table against upstream 4.1.0's values.yaml.

    check-key-table.py UPSTREAM_VALUES HELM_MD OUTDIR

1. Every key of upstream's values.yaml (each leaf; shims.<name>.* counted once as shims.<s>.*)
   is covered by a row of the table (a row names keys in its first column: `a.b`, `a.*`,
   `a.{x,y}`, `shims.<s>.x`; a later bare name in the same cell is relative to the first one's
   parents).
2. For each covered key, a values file that sets it to a value other than upstream's default
   (OUTDIR/NNN.yaml, and NNN.base.yaml without it: what else the key needs to show, e.g. its shim
   enabled; the row's verdict in OUTDIR/NNN.verdict and the key in OUTDIR/NNN.key), so that
   test-upstream-keys.sh can render both and hold the row to its word: "supported" must change
   the objects, "warning" must change none and print a warning naming the key ("warning when
   ..." only the former), "not applicable" must change none; a row that says "refused" may
   instead fail with a message naming the key.
Prints one "ok - ..." / "not ok - ..." line per coverage check.
"""
import copy
import os
import re
import sys

import yaml

up_path, md_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
up = yaml.safe_load(open(up_path))
SHIM = "<s>"


def leaves(d, prefix=()):
    if isinstance(d, dict) and d:
        for k, v in d.items():
            if prefix == ("shims",) and k != "disableAll":
                k = SHIM
            yield from leaves(v, prefix + (k,))
    else:
        yield prefix


keys = sorted(set(leaves(up)))
# job.cleanup.nodeAffinity is a Kubernetes object: its inner keys are not chart keys.
keys = sorted({k[:3] if k[:3] == ("job", "cleanup", "nodeAffinity") else k for k in keys})

# --- the table
md = open(md_path).read()
sec = md.split("## Upstream values keys", 1)[1].split("\n## ", 1)[0]
rows = []
for ln in sec.splitlines():
    cells = [c.strip() for c in ln.strip().strip("|").split("|")]
    if len(cells) < 3 or not cells[0].startswith("`"):
        continue
    tokens = re.findall(r"`([^`]+)`", cells[0])
    # `job.*` (dispatcherImage, ...): the parenthesis lists, the star covers
    pats = []
    first = None
    for t in tokens:
        for exp in re.findall(r"^(.*)\{([^}]*)\}(.*)$", t) and [
                re.sub(r"\{[^}]*\}", x.strip(), t, 1) for x in re.search(r"\{([^}]*)\}", t).group(1).split(",")] or [t]:
            parts = tuple(exp.split("."))
            if first is None:
                first = parts
                pats.append(parts)
            elif parts[0] in up:
                pats.append(parts)
            else:  # relative to one of the first token's parents
                for n in range(len(first) - 1, 0, -1):
                    pats.append(first[:n] + parts)
    verdict = cells[1].split()[0].rstrip(":,").lower() if cells[1] else ""
    if cells[1].lower().startswith("not applicable"):
        verdict = "not-applicable"
    # "warning when X": the warning only for that value; "refused": a value may be refused
    if verdict == "warning" and " when " in cells[1]:
        verdict = "warning-when"
    if "refused" in cells[1]:
        verdict += " refused-ok"
    rows.append((pats, verdict, cells[0]))


def matches(pat, key):
    for i, p in enumerate(pat):
        if p == "*":
            return len(key) > i
        if i >= len(key):
            return True  # the row names a key below this one
        if p != key[i] and not (p.startswith("<") and key[i] == SHIM) and not (
                p.startswith("<") and i > 0 and pat[i - 1] == "runtimes"):
            return False
    return True  # a key, or a parent of it


fails = 0
cover = {}
for k in keys:
    hit = [r for r in rows if any(matches(p, k) for p in r[0])]
    name = ".".join(k)
    if hit:
        print(f"ok - HELM.md covers {name}: {hit[0][1]}")
        cover[k] = hit[0]
    else:
        print(f"not ok - HELM.md has no row for upstream key {name}")
        fails += 1

# --- one values file per key, set to something other than upstream's default
ENUMS = {("logLevel",): "warn", ("k8sDistribution",): "k3s", ("imagePullPolicy",): "Never",
         ("deploymentMode",): "job", ("defaultShim", "amd64"): "clh", ("defaultShim", "arm64"): "qemu-runtime-rs",
         ("defaultShim", "s390x"): "qemu-se", ("defaultShim", "ppc64le"): "qemu-runtime-rs",
         ("image", "reference"): "registry.example/other", ("image", "tag"): "9.9.9",
         ("kubectlImage", "reference"): "registry.example/kubectl", ("kubectlImage", "tag"): "1.33",
         ("snapshotter", "setup"): ["erofs"], ("snapshotter", "erofsMergeMode"): "merged",
         ("snapshotter", "erofsSnapshotterMode"): "memory",
         ("shims", SHIM, "containerd", "snapshotter"): "nydus",
         ("shims", SHIM, "allowedHypervisorAnnotations"): ["default_vcpus"],
         ("shims", SHIM, "supportedArches"): ["amd64", "arm64"],
         ("shims", SHIM, "agent", "httpsProxy"): "http://proxy.example:3128",
         ("shims", SHIM, "agent", "noProxy"): "localhost",
         ("shims", SHIM, "runtimeClass", "nodeSelector", "nvidia.com/cc.ready.state"): "true",
         ("updateStrategy", "type"): "OnDelete", ("priorityClassName",): "system-cluster-critical",
         ("env", "installationPrefix"): "/usr/local", ("env", "multiInstallSuffix"): "blue",
         ("env", "hostOS"): "cbl-mariner", ("nodeFeatureRules", "create"): "true",
         ("verification", "pod"): "apiVersion: v1\nkind: Pod\nmetadata: {name: v}\n",
         ("verification", "namespace"): "other", ("verification", "timeout"): 99,
         ("verification", "daemonsetTimeout"): 99, ("monitor", "image", "reference"): "registry.example/m",
         ("monitor", "logLevel"): "debug", ("monitor", "listenAddress"): "0.0.0.0:9999",
         ("monitor", "runtimeEndpoint"): "/run/x.sock", ("containerd", "configDir"): "/etc/other",
         ("containerd", "runtimeSocket"): "/run/other.sock", ("containerd", "configFileName"): "other.toml",
         ("containerd", "userDropIn"): "[plugins]\n", ("runtimeClasses", "defaultName"): "kata-default",
         ("job", "dispatcherImage", "reference"): "registry.example/d",
         ("job", "nodes"): ["n1"], ("job", "cleanup", "nodes"): ["n1"],
         ("job", "cleanup", "nodeSelector"): {"a": "b"},
         ("job", "cleanup", "nodeAffinity"): {"requiredDuringSchedulingIgnoredDuringExecution": {
             "nodeSelectorTerms": [{"matchExpressions": [{"key": "x", "operator": "Exists"}]}]}},
         ("job", "dispatcherNodeSelector"): {"a": "b"},
         ("job", "dispatcherTolerations"): [{"key": "x", "operator": "Exists"}],
         ("nodeSelector",): {"a": "b"}, ("affinity",): {"nodeAffinity": {
             "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                 {"matchExpressions": [{"key": "x", "operator": "Exists"}]}]}}},
         ("tolerations",): [{"key": "x", "operator": "Exists"}], ("startupTaints",): ["x.example/t:NoSchedule"],
         ("podLabels",): {"a": "b"}, ("podAnnotations",): {"a": "b"}, ("imagePullSecrets",): [{"name": "s"}],
         ("customRuntimes", "runtimes"): {"kata-x": {"baseConfig": "qemu-runtime-rs"}},
         ("shims", SHIM, "runtimeClass", "overhead", "memory"): "999Mi",
         ("shims", SHIM, "runtimeClass", "overhead", "cpu"): "999m"}


def shim_for(k):
    """A shim of upstream's values that has key k (qemu-runtime-rs when it does)."""
    names = ["qemu-runtime-rs"] + sorted(x for x in up["shims"] if x != "disableAll")
    for name in names:
        d = up["shims"][name]
        for p in k[2:]:
            d = d.get(p) if isinstance(d, dict) else None
        if d is not None or (k[2:] == ("enabled",)):
            return name
    return "qemu-runtime-rs"


def real_key(k):
    return tuple(shim_for(k) if p == SHIM else p for p in k)


def default_of(k):
    d = up
    for p in real_key(k):
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def other_value(k):
    if k in ENUMS:
        return ENUMS[k]
    v = default_of(k)
    if isinstance(v, bool):
        return not v
    if v is None and k[-1] == "enabled":
        return True  # upstream's ~; ours is false but for qemu
    if isinstance(v, int):
        return v + 1
    if v in ("true", "false"):
        return "false" if v == "true" else "true"
    if k[-1] == "tag":
        return "9.9.9"
    if k[-1] == "cpu":
        return "77m"
    if k[-1] == "memory":
        return "77Mi"
    return None


def put(d, k, v):
    for p in k[:-1]:
        d = d.setdefault(p, {})
    d[k[-1]] = v


os.makedirs(out, exist_ok=True)
n = 0
for k, (pats, verdict, cell) in sorted(cover.items()):
    v = other_value(k)
    name = ".".join(k)
    if v is None:
        print(f"not ok - no test value for upstream key {name} (add it to ENUMS)")
        fails += 1
        continue
    real = real_key(k)
    vals = {}
    # what a key needs to be visible at all
    if real[0] == "shims" and len(real) > 2 and real[2] != "enabled":
        put(vals, ("shims", real[1], "enabled"), True)
    if real[:2] == ("customRuntimes", "runtimes"):
        put(vals, ("customRuntimes", "enabled"), True)
    if real[0] == "defaultShim":
        put(vals, ("shims", v, "enabled"), True)
    if real == ("customRuntimes", "runtimes"):
        put(vals, ("shims", "qemu-runtime-rs", "enabled"), True)
    if real == ("shims", "disableAll"):
        put(vals, ("shims", "clh", "enabled"), True)
        put(vals, ("defaultShim", "amd64"), "clh")
    if real[0] == "monitor" and real != ("monitor", "enabled"):
        put(vals, ("monitor", "enabled"), True)
    if real == ("devkit",):
        put(vals, ("debug",), True)
    if real[0] == "job":
        put(vals, ("deploymentMode",), "job")
    if real[0] == "snapshotter" and real[1] != "setup":
        put(vals, ("snapshotter", "setup"), ["erofs"])
    if real[0] == "runtimeClasses" and real[1] == "defaultName":
        put(vals, ("runtimeClasses", "createDefault"), True)
    # NNN.base.yaml: the same without the key (what the key must change, or not)
    with open(os.path.join(out, f"{n:03d}.base.yaml"), "w") as f:
        yaml.safe_dump(vals, f)
    put(vals, real, copy.deepcopy(v))
    with open(os.path.join(out, f"{n:03d}.yaml"), "w") as f:
        yaml.safe_dump(vals, f)
    with open(os.path.join(out, f"{n:03d}.key"), "w") as f:
        f.write(name + "\n")
    with open(os.path.join(out, f"{n:03d}.verdict"), "w") as f:
        f.write(verdict + "\n")
    n += 1
print(f"# {len(keys)} upstream keys, {n} value files")
sys.exit(1 if fails else 0)
