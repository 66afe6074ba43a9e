#!/usr/bin/env python3
"""A hand-written stand-in for the Job controller + kubelet, for tests that run a real
kube-apiserver without nodes (tests/integration/test-jobmode.sh). The real ones run in
tests/integration/test-node.sh's sandboxed node; here there is no kubelet to run a pod.

For every Job the dispatcher creates (label kata-deploy.katacontainers.io/dispatcher) it does
what the two would do for a pod bound with spec.nodeName:
  - runs the Job's container command + args locally with the container's env (plain values;
    fieldRef spec.nodeName and metadata.namespace resolved), plus --override VAR=VALUE and,
    per node, --node-override NODE:VAR=VALUE (the host root of that node, ...), and
    --result FILE (the container's terminationMessagePath);
  - creates the Job's Pod (label batch.kubernetes.io/controller-uid) and sets its status: phase
    Succeeded / Failed and the container's terminated state with the result file's text as
    message (the kubelet's terminationMessagePolicy, FallbackToLogsOnError: the log's tail
    when the file is empty and the container failed);
  - sets the Job's status conditions (SuccessCriteriaMet + Complete, or FailureTarget + Failed).
It checks what the Job must be (no token: automountServiceAccountToken false, nodeName set,
no serviceAccountName) and records in STATE_DIR: one line per Job run in jobs.log
("node job-name exit-status"), and max-running, the highest number of unfinished Jobs seen in
one listing. Runs until STATE_DIR/stop exists.

  fake-job-runner.py --kubectl KUBECTL --kubeconfig FILE --namespace NS --state DIR
      [--delay SECONDS] [--override VAR=VALUE]... [--node-override NODE:VAR=VALUE]...
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--kubectl", required=True)
ap.add_argument("--kubeconfig", required=True)
ap.add_argument("--namespace", required=True)
ap.add_argument("--state", required=True)
ap.add_argument("--delay", type=float, default=1.0)
ap.add_argument("--override", action="append", default=[])
ap.add_argument("--node-override", action="append", default=[])
a = ap.parse_args()

lock = threading.Lock()
handled = set()
max_running = 0
problems = []


def kubectl(*args, stdin=None):
    p = subprocess.run([a.kubectl, "--kubeconfig", a.kubeconfig, *args], input=stdin,
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def log(msg):
    with lock:
        with open(os.path.join(a.state, "runner.log"), "a") as f:
            f.write(f"{now()} {msg}\n")


def problem(msg):
    with lock:
        problems.append(msg)
        with open(os.path.join(a.state, "problems"), "a") as f:
            f.write(msg + "\n")


def run_job(job):
    meta, spec = job["metadata"], job["spec"]
    name, uid = meta["name"], meta["uid"]
    ps = spec["template"]["spec"]
    node = ps.get("nodeName")
    if not node:
        problem(f"{name}: no spec.template.spec.nodeName")
        return
    if ps.get("automountServiceAccountToken") is not False:
        problem(f"{name}: automountServiceAccountToken is not false")
    if ps.get("serviceAccountName"):
        problem(f"{name}: has serviceAccountName {ps['serviceAccountName']}")
    if "nodeSelector" in ps or "affinity" in ps:
        problem(f"{name}: still has nodeSelector/affinity")
    c = ps["containers"][0]
    env = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "valueFrom" in e:
            path = e["valueFrom"].get("fieldRef", {}).get("fieldPath")
            env[e["name"]] = {"spec.nodeName": node, "metadata.namespace": a.namespace}.get(path, "")
    for o in a.override:
        k, v = o.split("=", 1)
        env[k] = v
    for o in a.node_override:
        n, kv = o.split(":", 1)
        if n == node:
            k, v = kv.split("=", 1)
            env[k] = v
    time.sleep(a.delay)
    result = os.path.join(a.state, f"{name}.result")
    open(result, "w").close()
    argv = list(c.get("command", [])) + list(c.get("args", [])) + ["--result", result]
    # The image's binary is the test's build.
    argv[0] = os.environ["KD_AGENT"]
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "TMPDIR", "LANG")}
    base.update(env)
    with open(os.path.join(a.state, f"{name}.log"), "w") as out:
        rc = subprocess.run(argv, env=base, stdout=out, stderr=subprocess.STDOUT).returncode
    raw = open(result, "rb").read()
    # The kubelet reads at most 4096 bytes of the termination message file.
    if len(raw) > 4096:
        problem(f"{name}: termination message of {len(raw)} bytes (the kubelet keeps 4096)")
    msg = raw[:4096].decode("utf-8", "replace").strip()
    if not msg and rc != 0 and c.get("terminationMessagePolicy") == "FallbackToLogsOnError":
        msg = "\n".join(open(os.path.join(a.state, f"{name}.log")).read().splitlines()[-80:])[-2048:]
    with lock:
        with open(os.path.join(a.state, "jobs.log"), "a") as f:
            f.write(f"{node} {name} {rc}\n")
    # The Job's pod, as the Job controller would create it, and its status, as the kubelet
    # would report it.
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{name[:50]}-{uid[:8]}", "namespace": a.namespace,
                     "labels": {"batch.kubernetes.io/controller-uid": uid,
                                "batch.kubernetes.io/job-name": name}},
        "spec": {"nodeName": node, "restartPolicy": "Never",
                 "automountServiceAccountToken": False,
                 "containers": [{"name": c["name"], "image": c["image"]}]},
    }
    kubectl("create", "-f", "-", stdin=json.dumps(pod))
    ok = rc == 0
    status = {"status": {
        "phase": "Succeeded" if ok else "Failed",
        "conditions": [],
        "containerStatuses": [{
            "name": c["name"], "image": c["image"], "imageID": "", "ready": False,
            "restartCount": 0, "started": False,
            "state": {"terminated": {"exitCode": rc, "reason": "Completed" if ok else "Error",
                                     "message": msg, "startedAt": now(), "finishedAt": now()}},
        }],
    }}
    kubectl("patch", "pod", "-n", a.namespace, pod["metadata"]["name"], "--subresource=status",
            "--type=merge", "-p", json.dumps(status))
    t = now()
    if ok:
        conds = [
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
             "message": "Reached expected number of succeeded pods",
             "lastProbeTime": t, "lastTransitionTime": t},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached",
             "message": "Reached expected number of succeeded pods",
             "lastProbeTime": t, "lastTransitionTime": t},
        ]
        st = {"status": {"startTime": t, "completionTime": t, "succeeded": 1, "active": 0,
                         "ready": 0, "terminating": 0, "conditions": conds,
                         "uncountedTerminatedPods": {}}}
    else:
        conds = [
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit",
             "lastProbeTime": t, "lastTransitionTime": t},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit",
             "lastProbeTime": t, "lastTransitionTime": t},
        ]
        st = {"status": {"startTime": t, "failed": 1, "active": 0, "ready": 0,
                         "terminating": 0, "conditions": conds,
                         "uncountedTerminatedPods": {}}}
    try:
        kubectl("patch", "job", "-n", a.namespace, name, "--subresource=status", "--type=merge",
                "-p", json.dumps(st))
    except RuntimeError as e:
        problem(f"{name}: job status: {e}")
    log(f"{name} on {node}: exit {rc}")


def guarded(job):
    try:
        run_job(job)
    except Exception as e:  # noqa: BLE001 - reported, the test fails on it
        problem(f"{job['metadata']['name']}: {e}")


def finished(job):
    for c in job.get("status", {}).get("conditions", []) or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return True
    return False


threads = []
while not os.path.exists(os.path.join(a.state, "stop")):
    try:
        jobs = json.loads(kubectl("get", "jobs", "-n", a.namespace, "-l",
                                  "kata-deploy.katacontainers.io/dispatcher", "-o", "json"))["items"]
    except (RuntimeError, ValueError) as e:
        log(f"list: {e}")
        time.sleep(0.3)
        continue
    running = [j for j in jobs if not finished(j)]
    if len(running) > max_running:
        max_running = len(running)
        with open(os.path.join(a.state, "max-running"), "w") as f:
            f.write(f"{max_running}\n")
    for j in running:
        uid = j["metadata"]["uid"]
        if uid in handled:
            continue
        handled.add(uid)
        t = threading.Thread(target=guarded, args=(j,))
        t.start()
        threads.append(t)
    time.sleep(0.2)
for t in threads:
    t.join()
sys.exit(1 if problems else 0)
