#!/usr/bin/env python3
"""Every shim upstream kata-deploy 4.1.0 offers is known everywhere here, the same way.

  check-shims.py UPSTREAM_VALUES UPSTREAM_SHIM_COMPONENTS CHART SHIMS_YAML KNOWN_TXT

UPSTREAM_VALUES is upstream's helm-chart/kata-deploy/values.yaml, UPSTREAM_SHIM_COMPONENTS its
tools/packaging/kata-deploy/shim-components.json (shim -> architecture -> components), CHART our
chart directory, SHIMS_YAML artifacts/shims.yaml, KNOWN_TXT what `kata-deploy check --shims X`
says for an unknown X (the agent and the host checks share that list, deployer/hostcheck.c).
Checks: the same shim set in upstream's map, upstream's values, our values, our schema's enums,
shims.yaml (shims + upstream_only) and the host checks' list; supportedArches per shim exactly
as upstream's values; shims.yaml's upstream_only entries exactly upstream's map; no firecracker.
Prints TAP lines; exits 1 on any failure.
"""
import json
import re
import sys

import yaml

ARCH = {"amd64": "x86_64", "arm64": "aarch64", "s390x": "s390x", "ppc64le": "ppc64le"}
fails = 0


def check(cond, what):
    global fails
    print(("ok - " if cond else "not ok - ") + what)
    if not cond:
        fails += 1
    return cond


def eq(got, want, what):
    if got == want:
        return check(True, what)
    extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
    return check(False, f"{what}: extra {extra}, missing {missing}" if extra or missing
                 else f"{what}: got {got!r}, want {want!r}")


up_values, up_map_path, chart, shims_yaml, known_txt = sys.argv[1:6]
up_vals = yaml.safe_load(open(up_values))
up_map = json.load(open(up_map_path))["shims"]
ours = yaml.safe_load(open(f"{chart}/values.yaml"))
schema = json.load(open(f"{chart}/values.schema.json"))
art = yaml.safe_load(open(shims_yaml))
m = re.search(r"\(known: ([^)]*)\)", open(known_txt).read())
known = set(m.group(1).split(", ")) if m else set()

upstream = set(up_map)
eq(set(up_vals["shims"]) - {"disableAll"}, upstream, "upstream's values.yaml and shim-components.json list the same shims")
check(len(upstream) == 26, f"upstream 4.1.0 offers {len(upstream)} shims")
eq(set(ours["shims"]) - {"disableAll"}, upstream, "our values.yaml: upstream's shims")
eq(set(schema["properties"]["shims"]["properties"]) - {"disableAll"}, upstream, "our schema: shims.*")
for a in ARCH:
    eq(set(schema["properties"]["defaultShim"]["properties"][a]["enum"]), upstream, f"our schema: defaultShim.{a}")
eq(set(schema["definitions"]["customRuntime"]["properties"]["baseConfig"]["enum"]), upstream,
   "our schema: customRuntimes.*.baseConfig")
built, upstream_only = set(art["shims"]), set(art.get("upstream_only") or {})
check(not built & upstream_only, f"shims.yaml: built here ({sorted(built)}) and upstream_only are apart")
eq(built | upstream_only, upstream, "shims.yaml: shims + upstream_only = upstream's shims")
for s in sorted(upstream_only):
    eq(art["upstream_only"][s], up_map[s], f"shims.yaml upstream_only.{s} = upstream's shim-components.json")
check(m is not None, "kata-deploy check names the known shims for an unknown one")
eq(known & upstream, upstream, "host checks / agent: every upstream shim is known")
check("firecracker" not in known | set(ours["shims"]) | built | upstream_only,
      "firecracker (removed upstream) is nowhere")
for s in sorted(upstream):
    eq(ours["shims"][s]["supportedArches"], up_vals["shims"][s]["supportedArches"], f"shims.{s}.supportedArches = upstream's")
    # What upstream's map can install on each architecture the chart offers the shim for.
    for a in up_vals["shims"][s]["supportedArches"]:
        if s != "remote" and ARCH[a] not in up_map[s]:
            print(f"# note: upstream offers {s} on {a} but its shim-components.json has no {ARCH[a]} entry")
print(f"1..{fails}" if fails else "# all consistent")
sys.exit(1 if fails else 0)
