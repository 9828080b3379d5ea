#!/usr/bin/env python3
"""Operator scale benchmark on the real test control plane (tests/cluster).

N Pipelines of M trivial steps (SQLite `SELECT 1`, in four layers: one root, a fan-out, a
second fan-out, one fan-in) are started together, one PipelineRun each. Measured from a
watch on Jobs, with this process's clock:

  step-ready -> Job-created   for every Job: when its Job appeared, minus when the last of
                              its upstream Jobs completed (for root steps: when the runs
                              were created); p50, p99, max
  runs per minute             runs finished / (last run end - runs created)
  operator peak RSS           VmHWM of the operator pod's process
  API requests per run        growth of kube-apiserver's apiserver_request_total, all
                              clients (operator, step pods, kubelet, controller manager)

  python3 benches/operator.py [--pipelines 200] [--steps 10] [--profile release]

It builds the binaries (cargo, --profile), starts its own cluster in /tmp/synqx-bench-cluster
(stopped at the end), installs SynqX from manifests/install.yaml and prints one table.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN_DIR = Path("/tmp/synqx-bench-cluster")
NAMESPACE = "bench"


def sh(*args, stdin=None, check=True, env=None):
    result = subprocess.run(args, input=stdin, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def upstream_of(step, steps):
    """Four layers: s0; s1..s(k) depend on s0; the next group on pairs; the last on all."""
    if step == 0:
        return []
    first = max(1, (steps - 2) // 2)
    if step <= first:
        return [0]
    if step < steps - 1:
        return [1 + (step - first - 1) % first]
    return list(range(first + 1, steps - 1)) or list(range(1, first + 1))


def pipelines_yaml(count, steps, data):
    docs = []
    for p in range(count):
        docs.append(
            f"apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: db-{p}}}\n"
            f"spec: {{sqlite: {{path: {data}/p{p}.db}}}}\n"
        )
        lines = [f"apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: p{p}}}\nspec:\n  steps:"]
        for s in range(steps):
            ups = ", ".join(f"s{u}" for u in upstream_of(s, steps))
            lines.append(
                f"    - {{name: s{s}, dependsOn: [{ups}], sql: {{connection: db-{p}, statements: [\"SELECT 1\"]}}}}"
            )
        docs.append("\n".join(lines) + "\n")
    return "---\n".join(docs)


def runs_yaml(count):
    return "---\n".join(
        f"apiVersion: synqx.io/v1alpha1\nkind: PipelineRun\nmetadata: {{name: p{p}-run}}\n"
        f"spec: {{pipelineRef: {{name: p{p}}}}}\n"
        for p in range(count)
    )


def api_requests(kubectl):
    total = 0.0
    for line in sh(kubectl, "get", "--raw", "/metrics").splitlines():
        if line.startswith("apiserver_request_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


class JobWatch(threading.Thread):
    """Records when each Job appeared and when it completed, by this process's clock."""

    def __init__(self, kubectl):
        super().__init__(daemon=True)
        self.kubectl = kubectl
        self.added = {}
        self.completed = {}
        self.labels = {}

    def run(self):
        proc = subprocess.Popen(
            [self.kubectl, "get", "jobs", "-n", NAMESPACE, "-l", "synqx.io/run", "--watch",
             "--output-watch-events", "-o", "json"],
            stdout=subprocess.PIPE, text=True,
        )
        decoder = json.JSONDecoder()
        buffer = ""
        for chunk in iter(lambda: proc.stdout.readline(), ""):
            buffer += chunk
            while buffer.strip():
                try:
                    event, end = decoder.raw_decode(buffer.lstrip())
                except json.JSONDecodeError:
                    break
                buffer = buffer.lstrip()[end:]
                now = time.monotonic()
                job = event.get("object", {})
                name = job.get("metadata", {}).get("name")
                self.added.setdefault(name, now)
                self.labels[name] = job.get("metadata", {}).get("labels", {})
                conditions = (job.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Complete" and c["status"] == "True" for c in conditions):
                    self.completed.setdefault(name, now)


def operator_peak_rss_mib():
    pids = RUN_DIR / "kubelet" / "pids"
    for entry in pids.iterdir() if pids.exists() else []:
        try:
            exe = os.readlink(f"/proc/{entry.name}/exe")
        except OSError:
            continue
        if Path(exe.replace(" (deleted)", "")).name == "synqx-operator":
            for line in Path(f"/proc/{entry.name}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--profile", default="release")
    args = parser.parse_args()

    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/synqx/target"))
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    print(f"building synqx, synqx-operator, synqx-kubelet ({args.profile})", file=sys.stderr)
    sh("cargo", "build", "--profile", args.profile, "--bin", "synqx", "--bin", "synqx-operator",
       "--bin", "synqx-kubelet", env=env)
    profile_dir = "debug" if args.profile == "dev" else args.profile
    cluster_env = dict(env, SYNQX_CLUSTER_DIR=str(RUN_DIR), SYNQX_BIN_DIR=str(target / profile_dir))
    sh(str(REPO / "tests/cluster/down"), env=cluster_env, check=False)
    up = sh(str(REPO / "tests/cluster/up"), env=cluster_env)
    testbin = (RUN_DIR / "bin-path").read_text().strip()
    kubectl = f"{testbin}/kubectl"
    os.environ["KUBECONFIG"] = str(RUN_DIR / "kubeconfig")
    try:
        # One operator replica: process pods share the host's network (port 8080).
        install = (REPO / "manifests/install.yaml").read_text().replace(
            "\nspec:\n  replicas: 2\n", "\nspec:\n  replicas: 1\n", 1)
        sh(kubectl, "apply", "--server-side", "-f", "-", stdin=install)
        sh(kubectl, "rollout", "status", "--timeout=120s", "-n", "synqx-system", "deployment/synqx-operator")
        sh(kubectl, "create", "namespace", NAMESPACE)
        runner = (REPO / "manifests/runner.yaml").read_text().replace("NAMESPACE", NAMESPACE)
        sh(kubectl, "apply", "-f", "-", stdin=runner)
        data = tempfile.mkdtemp(prefix="synqx-bench-")
        sh(kubectl, "apply", "-n", NAMESPACE, "-f", "-", stdin=pipelines_yaml(args.pipelines, args.steps, data))
        while True:
            items = json.loads(sh(kubectl, "get", "sqp", "-n", NAMESPACE, "-o", "json"))["items"]
            ready = sum(
                any(c["type"] == "Ready" and c["status"] == "True" for c in (i.get("status") or {}).get("conditions", []))
                for i in items
            )
            if ready == args.pipelines:
                break
            time.sleep(1)

        watch = JobWatch(kubectl)
        watch.start()
        time.sleep(2)
        requests_before = api_requests(kubectl)
        created = time.monotonic()
        sh(kubectl, "create", "-n", NAMESPACE, "-f", "-", stdin=runs_yaml(args.pipelines))
        finished_at = {}
        while len(finished_at) < args.pipelines:
            runs = json.loads(sh(kubectl, "get", "sqr", "-n", NAMESPACE, "-o", "json"))["items"]
            now = time.monotonic()
            for run in runs:
                phase = (run.get("status") or {}).get("phase")
                if phase in ("Succeeded", "Failed", "Cancelled"):
                    finished_at.setdefault(run["metadata"]["name"], (now, phase))
            time.sleep(1)
        requests_after = api_requests(kubectl)
        rss = operator_peak_rss_mib()

        latencies = []
        by_run_step = {(l.get("synqx.io/run"), l.get("synqx.io/step")): n for n, l in watch.labels.items()}
        for (run, step), name in by_run_step.items():
            ups = upstream_of(int(step[1:]), args.steps)
            ready = created if not ups else max(
                watch.completed.get(by_run_step.get((run, f"s{u}")), created) for u in ups
            )
            latencies.append(watch.added[name] - ready)
        elapsed = max(t for t, _ in finished_at.values()) - created
        failed = sum(1 for _, phase in finished_at.values() if phase != "Succeeded")
        print(f"\n{args.pipelines} pipelines x {args.steps} steps, {len(latencies)} Jobs, profile {args.profile}, "
              f"{os.cpu_count()} cores")
        print(f"{'step-ready -> Job-created':28} p50 {statistics.median(latencies) * 1000:7.0f} ms   "
              f"p99 {percentile(latencies, 0.99) * 1000:7.0f} ms   max {max(latencies) * 1000:7.0f} ms")
        print(f"{'runs per minute':28} {args.pipelines / elapsed * 60:7.1f}   ({elapsed:.0f} s for all, {failed} not Succeeded)")
        print(f"{'operator peak RSS':28} {rss:7.1f} MiB")
        print(f"{'API requests per run':28} {(requests_after - requests_before) / args.pipelines:7.1f}   (all clients)")
    finally:
        sh(str(REPO / "tests/cluster/down"), env=cluster_env, check=False)


if __name__ == "__main__":
    main()
