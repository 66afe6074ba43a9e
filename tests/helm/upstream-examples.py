#!/usr/bin/env python3
"""The values examples of upstream kata-deploy 4.1.0's chart, as cases for `helm template`.

    upstream-examples.py SRC OUTDIR

SRC is the extracted kata-containers-4.1.0 tree. Writes one case per example into OUTDIR:
NAME.values (a values file, possibly empty) and NAME.args (extra helm arguments, one per line),
and NAME.keys (the dotted keys the example sets, one per line: a refusal must name one of them).
Examples:
  - helm-chart/kata-deploy/try-kata-*.values.yaml (the chart's example values files)
  - every ```yaml block of docs/helm-configuration.md (the chart's documentation) that is a
    values file: a mapping whose top-level keys are keys of upstream's values.yaml, or shims
    (a fragment shown under shims:, taken as such) (other blocks,
    e.g. a RuntimeClass or a Pod, are listed on stderr as not values, with their kind)
  - every `helm install` / `helm upgrade` command of that page with --set / --set-string / -f
    of a try-kata file (`-f values.yaml` refers to a block above, already a case)
tools/packaging/kata-deploy/examples/ holds workloads (Deployments with a runtimeClassName), not
values; test-upstream-keys.sh checks those against the RuntimeClasses instead.
Needs PyYAML.
"""
import os
import re
import shlex
import sys

import yaml

src, out = sys.argv[1], sys.argv[2]
chart = os.path.join(src, "tools/packaging/kata-deploy/helm-chart/kata-deploy")
upstream_values = yaml.safe_load(open(os.path.join(chart, "values.yaml")))
upstream_top = set(upstream_values)
upstream_shims = set(upstream_values["shims"]) - {"disableAll"}
os.makedirs(out, exist_ok=True)


def leaf_keys(d, prefix=""):
    if isinstance(d, dict) and d:
        for k, v in d.items():
            yield from leaf_keys(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1]


def write(name, values_text, args, keys):
    with open(os.path.join(out, name + ".values"), "w") as f:
        f.write(values_text)
    with open(os.path.join(out, name + ".args"), "w") as f:
        f.write("".join(a + "\n" for a in args))
    with open(os.path.join(out, name + ".keys"), "w") as f:
        f.write("".join(k + "\n" for k in sorted(set(keys))))


n = 0
for fn in sorted(os.listdir(chart)):
    if fn.startswith("try-kata-") and fn.endswith(".values.yaml"):
        text = open(os.path.join(chart, fn)).read()
        write(fn[: -len(".values.yaml")], text, [], leaf_keys(yaml.safe_load(text) or {}))
        n += 1

doc = open(os.path.join(src, "docs/helm-configuration.md")).read()
lines = doc.splitlines()
i = 0
while i < len(lines):
    m = re.match(r"^(\s*)```(\w+)", lines[i])
    if not m:
        i += 1
        continue
    indent, lang, start = len(m.group(1)), m.group(2), i + 1
    j = start
    while j < len(lines) and not lines[j].strip().startswith("```"):
        j += 1
    body = "\n".join(ln[indent:] for ln in lines[start:j]) + "\n"
    where = f"helm-configuration.md:{start}"
    if lang == "yaml":
        try:
            data = yaml.safe_load(body)
        except yaml.YAMLError as e:
            print(f"{where}: yaml block does not parse ({e.__class__.__name__}): not a case", file=sys.stderr)
            data = None
        if isinstance(data, dict) and data and set(data) <= upstream_shims:
            # a fragment of shims: (indented under it on the page)
            data = {"shims": data}
            body = yaml.safe_dump(data, sort_keys=False)
        if isinstance(data, dict) and set(data) <= upstream_top:
            write(f"doc-{start}", body, [], leaf_keys(data))
            n += 1
        elif data is not None:
            what = data.get("kind") if isinstance(data, dict) else type(data).__name__
            print(f"{where}: yaml block is not values (kind/top: {what or sorted(data)[:3]})", file=sys.stderr)
    elif lang == "sh":
        cmd = re.sub(r"\\\n", " ", body)
        for ln in cmd.splitlines():
            ln = ln.strip().lstrip("$ ").strip()
            if not re.match(r"helm (install|upgrade)\b", ln):
                continue
            words = shlex.split(ln)
            args, keys, ok = [], [], True
            k = 0
            while k < len(words):
                w = words[k]
                if w in ("--set", "--set-string") and k + 1 < len(words):
                    args += [w, words[k + 1]]
                    keys.append(re.split(r"(?<!\\)=", words[k + 1], 1)[0].replace("\\.", "."))
                    k += 2
                    continue
                if w in ("-f", "--values") and k + 1 < len(words):
                    f = words[k + 1]
                    if f.startswith("try-kata-"):
                        args += ["-f", os.path.join(chart, f)]
                        keys += list(leaf_keys(yaml.safe_load(open(os.path.join(chart, f))) or {}))
                    else:
                        ok = False  # values.yaml of a block above
                    k += 2
                    continue
                k += 1
            if ok and args:
                write(f"doc-{start}-cmd", "", args, keys)
                n += 1
            elif ok:
                print(f"{where}: `{ln[:60]}` sets nothing: not a case", file=sys.stderr)
    i = j + 1
print(n)
