#!/usr/bin/env python3
"""The sandboxed node's overrides of our manifests / rendered chart (tests/integration/test-node.sh):
reads Kubernetes YAML documents on stdin, writes them on stdout with

  --image REF            the agent container's image (imagePullPolicy Never: no registry here)
  --kubectl-image REF    the uninstall hook's kubectl image (imagePullPolicy Never)
  --env NAME=VALUE       set (or add) an env var of the agent container (repeatable)

Nothing else changes. A filter for the files of manifests/ (the chart has values for all of it)."""
import argparse
import sys

import yaml


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--image")
    p.add_argument("--kubectl-image")
    p.add_argument("--env", action="append", default=[])
    a = p.parse_args()
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d is not None]
    for d in docs:
        kind = d.get("kind")
        if kind not in ("DaemonSet", "Job"):
            continue
        spec = d["spec"]["template"]["spec"]
        for c in spec.get("containers", []):
            cmd = c.get("command") or []
            if kind == "DaemonSet" and cmd and cmd[0].endswith("kata-deploy-agent"):
                if a.image:
                    c["image"] = a.image
                    c["imagePullPolicy"] = "Never"
                env = c.setdefault("env", [])
                for kv in a.env:
                    name, value = kv.split("=", 1)
                    for e in env:
                        if e.get("name") == name:
                            e.pop("valueFrom", None)
                            e["value"] = value
                            break
                    else:
                        env.append({"name": name, "value": value})
            elif kind == "Job" and a.kubectl_image and cmd and cmd[0] == "kubectl":
                c["image"] = a.kubectl_image
                c["imagePullPolicy"] = "Never"
    yaml.safe_dump_all(docs, sys.stdout, default_flow_style=False, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
