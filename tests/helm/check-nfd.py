#!/usr/bin/env python3
"""Checks a chart render (stdin) for the NFD / TEE parts (docs/HELM.md, "Node Feature Discovery
and TEE shims"), used by tests/integration/test-nfd.sh.

  check-nfd.py RULES SELECTORS SFX [CUSTOM=BASE ...] < render.yaml

RULES (0/1): the NodeFeatureRule kata-tee-keys<SFX> is rendered and every snp / tdx RuntimeClass
requests one key (sev-snp.amd.com/esids / tdx.intel.com/keys) in overhead.podFixed, next to its
memory and cpu. SELECTORS (0/1): the snp / tdx / se RuntimeClasses (not nvidia-gpu) select NFD's
label for their TEE; the nvidia-gpu snp / tdx ones always select theirs (values.yaml, as
upstream's). CUSTOM=BASE: a generated custom runtime RuntimeClass and its base shim.
The TEE names are written out here on purpose, not read from the chart. Also: every key a
RuntimeClass requests is one the rule advertises, and every NFD rule label a RuntimeClass selects
is one the rule sets. Prints ok / not ok lines; exits 1 on any failure.
"""
import sys

import yaml

SNP_KEY, TDX_KEY = "sev-snp.amd.com/esids", "tdx.intel.com/keys"
SNP_LABEL, TDX_LABEL = "amd.feature.node.kubernetes.io/snp", "intel.feature.node.kubernetes.io/tdx"
SE_LABEL = "feature.node.kubernetes.io/cpu-security.se.enabled"
RULE_LABELS = {SNP_LABEL, TDX_LABEL}

rules_on, sel_on, sfx = sys.argv[1] == "1", sys.argv[2] == "1", sys.argv[3]
custom = dict(a.split("=", 1) for a in sys.argv[4:])
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
fails = 0


def check(cond, what):
    global fails
    print(("ok - " if cond else "not ok - ") + what)
    if not cond:
        fails += 1
    return cond


def shim_of(handler):
    if handler in custom:
        return custom[handler]
    name = handler[len("kata-"):]
    for v in ("-debug", "-devkit"):
        if name.endswith(v):
            name = name[: -len(v)]
    if sfx and name.endswith(sfx):
        name = name[: -len(sfx)]
    return name


def tee_key(shim):
    return SNP_KEY if "snp" in shim else TDX_KEY if "tdx" in shim else None


def tee_label(shim):
    if "nvidia-gpu" in shim:
        return None
    if "snp" in shim:
        return SNP_LABEL
    if "tdx" in shim:
        return TDX_LABEL
    if shim.endswith("-se") or shim.endswith("-se-runtime-rs"):
        return SE_LABEL
    return None


rcs = [d for d in docs if d.get("kind") == "RuntimeClass"]
nfrs = [d for d in docs if d.get("kind") == "NodeFeatureRule"]
check(rcs, f"{len(rcs)} RuntimeClasses rendered")
keys_used, labels_used = set(), set()
tee_rcs = 0
for rc in rcs:
    n, shim = rc["metadata"]["name"], shim_of(rc["handler"])
    fixed = (rc.get("overhead") or {}).get("podFixed") or {}
    sel = (rc.get("scheduling") or {}).get("nodeSelector") or {}
    key = tee_key(shim)
    want = {key: "1"} if (key and rules_on) else {}
    got = {k: v for k, v in fixed.items() if k not in ("memory", "cpu")}
    check(got == want, f"{n} ({shim}): TEE keys in podFixed {got} == {want}")
    check("memory" in fixed and "cpu" in fixed, f"{n}: memory and cpu overhead kept")
    keys_used |= set(got)
    label = tee_label(shim)
    tee_sel = {k: v for k, v in sel.items() if k in RULE_LABELS or k == SE_LABEL}
    if "nvidia-gpu" in shim and key:
        exp = {SNP_LABEL if key == SNP_KEY else TDX_LABEL: "true"}
        check(sel.get("nvidia.com/cc.ready.state") == "true", f"{n}: selects nvidia.com/cc.ready.state=true")
    else:
        exp = {label: "true"} if (label and sel_on) else {}
    check(tee_sel == exp, f"{n}: TEE node selector {tee_sel} == {exp}")
    check(sel.get("katacontainers.io/kata-runtime") == "true", f"{n}: still selects kata-runtime=true")
    labels_used |= {k for k in tee_sel if k in RULE_LABELS}
    tee_rcs += bool(key or label)
check(tee_rcs > 0, f"{tee_rcs} RuntimeClasses of TEE shims")

check(len(nfrs) == (1 if rules_on else 0), f"{len(nfrs)} NodeFeatureRule(s), want {1 if rules_on else 0}")
if nfrs:
    r = nfrs[0]
    check(r["apiVersion"] == "nfd.k8s-sigs.io/v1alpha1", "NodeFeatureRule apiVersion nfd.k8s-sigs.io/v1alpha1")
    check(r["metadata"]["name"] == f"kata-tee-keys{sfx}", f"NodeFeatureRule name kata-tee-keys{sfx}")
    check("namespace" not in r["metadata"], "NodeFeatureRule is cluster-scoped (no namespace)")
    check(r["metadata"]["labels"].get("kata-deploy/instance") == (sfx[1:] or "default"),
          "NodeFeatureRule carries kata-deploy/instance")
    rules = r["spec"]["rules"]
    adv = {k: v for x in rules for k, v in (x.get("extendedResources") or {}).items()}
    sets = {k: v for x in rules for k, v in (x.get("labels") or {}).items()}
    check(adv == {SNP_KEY: "@cpu.security.sev.encrypted_state_ids", TDX_KEY: "@cpu.security.tdx.total_keys"},
          f"rule advertises the key counts of NFD's cpu.security feature: {adv}")
    check(sets == {SNP_LABEL: "true", TDX_LABEL: "true"}, f"rule sets the TEE labels: {sets}")
    for x in rules:
        mf = x.get("matchFeatures") or []
        exprs = {k: v for m in mf if m.get("feature") == "cpu.security" for k, v in m["matchExpressions"].items()}
        k = "sev.snp.enabled" if SNP_KEY in (x.get("extendedResources") or {}) else "tdx.enabled"
        check(exprs == {k: {"op": "Exists"}}, f"rule {x['name']} matches cpu.security {k} Exists")
    check(keys_used <= set(adv), f"every key a RuntimeClass requests is advertised: {sorted(keys_used)}")
    check(labels_used <= set(sets), f"every rule label a RuntimeClass selects is set: {sorted(labels_used)}")
print(f"check-nfd: {fails} failure(s)")
sys.exit(1 if fails else 0)
