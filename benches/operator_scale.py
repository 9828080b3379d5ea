#!/usr/bin/env python3
"""Operator scale benchmark on the real test control plane (tests/cluster), one invocation:

1. SynqX: N Pipelines of M trivial steps (SQLite `SELECT 1`, four layers: one root, a
   fan-out, a second fan-out, one fan-in), one PipelineRun each, all created at once when
   the operator is idle: the Connections checked and 12 s more to refill its request budget
   (--runs-while-checking: as soon as the Pipelines are Ready, while the checks go on).
2. Reference: the same DAGs as plain Jobs, created by this script itself in dependency order
   as soon as their upstream Jobs complete (the same pod template as SynqX's step Jobs,
   running `synqx --version`): what the control plane manages on this machine without SynqX.
3. Idle scale: I Pipelines with schedules that do not fire and H finished runs in history,
   nothing running: the operator's RSS, CPU and requests in a minute, once it has settled
   (its reconciliations below 1 % of the objects in 15 s and its Event queue drained).

Measured with this process's clock from watches on Jobs and runs:

  step-ready -> Job-created   per Job: when it appeared, minus when the last of its upstream
                              Jobs completed (a root step: when the API server stored its
                              run, from the audit log; also printed from the moment the
                              script began to create the runs, which one kubectl call sends
                              one after another)
  run makespan                per run: last Job completed - runs created
  runs per minute             succeeded runs / (last run end - runs created)
  operator peak RSS, CPU      VmHWM and utime+stime of the operator's process (kernel)
  API requests per run        from the API server's audit log, by client
  reconciliations             per run and, idle, per minute, by controller (the operator's
                              synqx_reconcile_total)
  requests around creation    the operator's requests in each second from 15 s before the
                              runs were created to 10 s after (audit log)

It fails (exit 1) when a run does not succeed, when the Job count is not pipelines × steps,
or when a wait runs out (--timeout).

  python3 benches/operator_scale.py [--pipelines 200] [--steps 10] [--idle-pipelines 2000]
                              [--idle-runs 10000] [--idle-connections 200] [--runs-while-checking]
                              [--profile release] [--timeout 1800]

It builds the binaries (cargo, --profile), starts its own cluster in /tmp/synqx-bench-cluster
(stopped at the end), installs SynqX from manifests/install.yaml and prints one table. The
operator pod listens on host port 8080: run it where that port is free (`unshare --net`
gives a network namespace of its own; `ip link set lo up` inside it).
"""

import argparse
import datetime
import json
import math
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN_DIR = Path("/tmp/synqx-bench-cluster")
NAMESPACE = "bench"
REFERENCE = "bench-ref"
IDLE = "bench-idle"
CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def pipelines_yaml(count, steps, data, schedule=None, history=None, connections=None):
    """`count` Pipelines of `steps` steps; Pipeline p uses Connection db-(p mod connections),
    one Connection each by default."""
    connections = connections or count
    docs = []
    for p in range(count):
        c = p % connections
        if p < connections:
            docs.append(
                f"apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: db-{c}}}\n"
                f"spec: {{sqlite: {{path: {data}/p{c}.db}}}}\n"
            )
        lines = [f"apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: p{p}}}\nspec:"]
        if schedule:
            lines.append(f"  schedule: {{cron: \"{schedule}\"}}")
        if history:
            lines.append(f"  successfulRunsHistoryLimit: {history}")
        lines.append("  steps:")
        for s in range(steps):
            ups = ", ".join(f"s{u}" for u in upstream_of(s, steps))
            lines.append(
                f"    - {{name: s{s}, dependsOn: [{ups}], sql: {{connection: db-{c}, statements: [\"SELECT 1\"]}}}}"
            )
        docs.append("\n".join(lines) + "\n")
    return "---\n".join(docs)


def runs_yaml(count):
    return "---\n".join(
        f"apiVersion: synqx.io/v1alpha1\nkind: PipelineRun\nmetadata: {{name: p{p}-run}}\n"
        f"spec: {{pipelineRef: {{name: p{p}}}}}\n"
        for p in range(count)
    )


class Deadline:
    def __init__(self, seconds, what):
        self.end = time.monotonic() + seconds
        self.what = what

    def check(self, detail=""):
        if time.monotonic() > self.end:
            sys.exit(f"timed out waiting for {self.what} {detail}")


class JobWatch(threading.Thread):
    """Records when each Job of a namespace appeared and when it completed or failed."""

    def __init__(self, kubectl, namespace, selector):
        super().__init__(daemon=True)
        self.args = [kubectl, "get", "jobs", "-n", namespace, "-l", selector, "--watch",
                     "--output-watch-events", "-o", "json"]
        self.added, self.completed, self.failed, self.labels = {}, {}, {}, {}
        self.objects = {}

    def run(self):
        proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, text=True)
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
                self.objects[name] = job
                for c in (job.get("status") or {}).get("conditions") or []:
                    if c["status"] == "True" and c["type"] == "Complete":
                        self.completed.setdefault(name, now)
                    if c["status"] == "True" and c["type"] == "Failed":
                        self.failed.setdefault(name, now)


def operator_process():
    pids = RUN_DIR / "kubelet" / "pids"
    for entry in pids.iterdir() if pids.exists() else []:
        try:
            exe = os.readlink(f"/proc/{entry.name}/exe")
        except OSError:
            continue
        if Path(exe.replace(" (deleted)", "")).name == "synqx-operator":
            return int(entry.name)
    sys.exit("the operator's process was not found among the kubelet's pods")


def rss_mib(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Audit:
    """The API server's audit log (tests/cluster/up writes it): requests by client."""

    def __init__(self):
        self.path = RUN_DIR / "audit.log"

    def end(self):
        return self.path.stat().st_size

    def events(self, start, stop, needle=""):
        """The audit events written between byte offsets `start` and `stop`, those whose line
        holds `needle`."""
        with self.path.open() as log:
            log.seek(start)
            text = log.read(stop - start)
        for line in text.splitlines():
            if line.strip() and needle in line:
                yield json.loads(line)

    def clients(self, start, stop):
        """Requests by client, and the operator's by verb and resource (what to cut)."""
        counts, operator = {}, {}
        for event in self.events(start, stop):
            user = event.get("user", {}).get("username", "")
            agent = event.get("userAgent", "")
            if user.endswith(":synqx-operator"):
                client = "operator"
                ref = event.get("objectRef", {})
                what = ref.get("resource", "?") + ("/" + ref["subresource"] if ref.get("subresource") else "")
                key = f"{event.get('verb', '?')} {what}"
                operator[key] = operator.get(key, 0) + 1
            elif user.endswith(":synqx-runner"):
                client = "steps"
            elif user.startswith("system:kube-controller-manager") or user.startswith("system:serviceaccount:kube-system:"):
                client = "controllers"
            elif agent.startswith("kubectl"):
                client = "bench script"
            else:
                client = "kubelet and others"
            counts[client] = counts.get(client, 0) + 1
        return counts, operator

    def operator_seconds(self, start, stop, zero, before, after):
        """The operator's requests in each second from `before` to `after` seconds around the
        wall time `zero`, as (status writes, other): whether its request budget (a burst,
        then --api-qps) was spent when the runs arrived."""
        seconds = {s: [0, 0] for s in range(-before, after)}
        for event in self.events(start, stop, ":synqx-operator"):
            if not event.get("user", {}).get("username", "").endswith(":synqx-operator"):
                continue
            stamp = event.get("requestReceivedTimestamp", "")
            try:
                at = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
            second = math.floor(at - zero)
            if second in seconds:
                seconds[second][0 if event.get("objectRef", {}).get("subresource") == "status" else 1] += 1
        return seconds

    def stored(self, start, stop, namespace, resource):
        """When the API server stored each object of `resource` created in `namespace`, as
        wall time: a run's roots are ready from that moment, not before."""
        stamps = {}
        for event in self.events(start, stop, f'"resource":"{resource}"'):
            ref = event.get("objectRef", {})
            if (event.get("verb") != "create" or ref.get("namespace") != namespace
                    or event.get("stage") != "ResponseComplete"
                    or event.get("responseStatus", {}).get("code", 500) >= 300 or "name" not in ref):
                continue
            stamps[ref["name"]] = datetime.datetime.fromisoformat(
                event["stageTimestamp"].replace("Z", "+00:00")).timestamp()
        return stamps


def operator_counts(metric, label):
    """The operator's counter `metric` so far by the value of `label`, from its /metrics (its
    pod listens on host port 8080)."""
    with urllib.request.urlopen("http://127.0.0.1:8080/metrics", timeout=10) as answer:
        text = answer.read().decode()
    counts = {}
    prefix = f'{metric}{{{label}="'
    for line in text.splitlines():
        if line.startswith(prefix):
            key, _, value = line.rpartition(" ")
            counts[key[len(prefix):].split('"', 1)[0]] = float(value)
    return counts


def operator_reconciles():
    """Reconciliations so far by controller."""
    counts = operator_counts("synqx_reconcile_total", "controller")
    if not counts:
        sys.exit("the operator's /metrics on 127.0.0.1:8080 has no synqx_reconcile_total")
    return counts


def since(before, after, keep_zero=False):
    return {k: after[k] - before.get(k, 0) for k in after if keep_zero or after[k] - before.get(k, 0)}


def percentiles(values):
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return statistics.median(ordered), pick(0.95), pick(0.99), ordered[-1]


def layer_of(step, steps):
    """The step's layer: 0 for the root, one more than its deepest upstream step."""
    ups = upstream_of(step, steps)
    return 1 + max(layer_of(u, steps) for u in ups) if ups else 0


def latencies(watch, steps, created, label_run, label_step, roots_ready=None):
    """step-ready -> Job-created per Job (all, and by layer), and makespan per run. A root is
    ready at `roots_ready[run]` (when its run was stored), else at `created`."""
    by_run_step = {(l.get(label_run), l.get(label_step)): n for n, l in watch.labels.items()}
    ready_to_created, by_layer, ends = [], {}, {}
    for (run, step), name in by_run_step.items():
        ups = upstream_of(int(step[1:]), steps)
        if roots_ready is not None and run not in roots_ready:
            sys.exit(f"no creation of run {run} in the audit log for its root step")
        ready = (created if roots_ready is None else roots_ready[run]) if not ups else max(
            watch.completed.get(by_run_step.get((run, f"s{u}")), created) for u in ups)
        latency = watch.added[name] - ready
        ready_to_created.append(latency)
        by_layer.setdefault(layer_of(int(step[1:]), steps), []).append(latency)
        if name in watch.completed:
            ends[run] = max(ends.get(run, created), watch.completed[name])
    return ready_to_created, by_layer, [end - created for end in ends.values()]


def synqx_case(args, kubectl, data, audit, deadline_s):
    sh(kubectl, "apply", "-n", NAMESPACE, "-f", "-", stdin=pipelines_yaml(args.pipelines, args.steps, data))
    deadline = Deadline(deadline_s, "the Pipelines to be Ready")
    while True:
        items = json.loads(sh(kubectl, "get", "sqp", "-n", NAMESPACE, "-o", "json"))["items"]
        ready = sum(
            any(c["type"] == "Ready" and c["status"] == "True" for c in (i.get("status") or {}).get("conditions", []))
            for i in items)
        if ready == args.pipelines:
            break
        deadline.check(f"({ready} of {args.pipelines})")
        time.sleep(1)
    if not args.runs_while_checking:
        # The runs arrive at an operator with nothing else to do: its Connections checked and
        # its request budget refilled (--api-burst 600 at --api-qps 50 takes 12 s).
        wait_for_checks(kubectl, NAMESPACE, Deadline(deadline_s, "the Connections to be checked"), poll=1)
        time.sleep(12)
    watch = JobWatch(kubectl, NAMESPACE, "synqx.io/run")
    watch.start()
    time.sleep(2)
    pid = operator_process()
    cpu_before, audit_before = cpu_seconds(pid), audit.end()
    # Where the peak comes from: the Pipelines' compiles and the Connections' checks, or the
    # runs.
    rss_before = {field: rss_mib(pid, field) for field in ("VmRSS", "VmHWM")}
    reconciles_before = operator_reconciles()
    created, created_wall = time.monotonic(), time.time()
    sh(kubectl, "create", "-n", NAMESPACE, "-f", "-", stdin=runs_yaml(args.pipelines))
    # How long the runs' creation took: a root's latency from the start of it includes this.
    runs_created = time.monotonic() - created
    finished = {}
    deadline = Deadline(deadline_s, "the runs to finish")
    while len(finished) < args.pipelines:
        for run in json.loads(sh(kubectl, "get", "sqr", "-n", NAMESPACE, "-o", "json"))["items"]:
            phase = (run.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed", "Cancelled"):
                finished.setdefault(run["metadata"]["name"], (time.monotonic(), phase))
        deadline.check(f"({len(finished)} of {args.pipelines} ended)")
        time.sleep(1)
    time.sleep(2)
    requests, operator_requests = audit.clients(audit_before, audit.end())
    around_creation = audit.operator_seconds(0, audit.end(), created_wall, 15, 10)
    result = {
        "cpu": cpu_seconds(pid) - cpu_before,
        "rss": rss_mib(pid, "VmHWM"),
        # What of the memory held after the runs is the heap and what is the binary's pages:
        # the operator links the runner library for the connectors' checks.
        "rss_before": rss_before,
        "rss_after": {field: rss_mib(pid, field) for field in ("VmRSS", "RssAnon", "RssFile")},
        "requests": requests,
        "operator_requests": operator_requests,
        "reconciles": since(reconciles_before, operator_reconciles()),
        "succeeded": sum(1 for _, phase in finished.values() if phase == "Succeeded"),
        "elapsed": max(t for t, _ in finished.values()) - created,
        "jobs": len(watch.added),
        "watch": watch,
        "runs_created": runs_created,
        "around_creation": around_creation,
    }
    # kubectl creates the runs one request after another, so the last run exists seconds
    # after the first: its roots are ready when the API server stored it (the audit log's
    # clock is this machine's).
    stored = audit.stored(audit_before, audit.end(), NAMESPACE, "pipelineruns")
    roots_ready = {run: created + (at - created_wall) for run, at in stored.items()}
    if len(roots_ready) != args.pipelines:
        sys.exit(f"the audit log shows {len(roots_ready)} runs created, not {args.pipelines}")
    result["ready"], result["by_layer"], result["makespan"] = latencies(
        watch, args.steps, created, "synqx.io/run", "synqx.io/step", roots_ready)
    result["roots_from_start"] = latencies(watch, args.steps, created, "synqx.io/run", "synqx.io/step")[1][0]
    result["runs_stored_over"] = max(stored.values()) - created_wall
    return result


def reference_case(args, kubectl, template, deadline_s):
    """Creates the same DAGs as Jobs, each as soon as its upstream Jobs completed."""
    sh(kubectl, "create", "namespace", REFERENCE)
    runner = (REPO / "manifests/runner.yaml").read_text().replace("NAMESPACE", REFERENCE)
    sh(kubectl, "apply", "-f", "-", stdin=runner)
    watch = JobWatch(kubectl, REFERENCE, "bench/run")
    watch.start()
    time.sleep(2)

    def job(p, s):
        spec = json.loads(json.dumps(template))
        # The selector the API server generated for the SynqX Job names that Job's uid: each
        # reference Job gets its own.
        spec.pop("selector", None)
        spec.pop("manualSelector", None)
        spec["template"]["metadata"] = {"labels": {"bench/run": f"p{p}", "bench/step": f"s{s}"}}
        container = spec["template"]["spec"]["containers"][0]
        container["command"], container["args"] = ["synqx"], ["--version"]
        return json.dumps({"apiVersion": "batch/v1", "kind": "Job",
                           "metadata": {"name": f"p{p}-s{s}", "labels": {"bench/run": f"p{p}", "bench/step": f"s{s}"}},
                           "spec": spec})

    pending = {(p, s) for p in range(args.pipelines) for s in range(args.steps)}
    created = time.monotonic()
    deadline = Deadline(deadline_s, "the reference Jobs")
    while pending or len(watch.completed) + len(watch.failed) < args.pipelines * args.steps:
        done = set(watch.completed)
        ready = [(p, s) for p, s in pending
                 if all(f"p{p}-s{u}" in done for u in upstream_of(s, args.steps))]
        if ready:
            sh(kubectl, "create", "-n", REFERENCE, "-f", "-", stdin="\n".join(job(p, s) for p, s in ready))
            pending -= set(ready)
        deadline.check(f"({len(watch.completed)} of {args.pipelines * args.steps} complete)")
        time.sleep(0.05)
    ready_to_created, by_layer, makespan = latencies(watch, args.steps, created, "bench/run", "bench/step")
    return {"elapsed": max(watch.completed.values()) - created, "ready": ready_to_created,
            "by_layer": by_layer, "makespan": makespan, "failed": len(watch.failed)}


def api_client():
    """Requests to the API server as the admin of the bench cluster (for bulk objects)."""
    config = sh(os.environ["KUBECTL"], "config", "view", "--raw", "-o", "json")
    server = json.loads(config)["clusters"][0]["cluster"]["server"]
    context = ssl.create_default_context(cafile=str(RUN_DIR / "certs/ca.crt"))
    context.load_cert_chain(str(RUN_DIR / "certs/admin.crt"), str(RUN_DIR / "certs/admin.key"))

    def call(method, path, body, content_type="application/json"):
        request = urllib.request.Request(server + path, data=json.dumps(body).encode(), method=method,
                                         headers={"Content-Type": content_type})
        with urllib.request.urlopen(request, context=context) as answer:
            return answer.status
    return call


def idle_case(args, kubectl, data, audit):
    sh(kubectl, "create", "namespace", IDLE)
    per_pipeline = max(1, args.idle_runs // max(1, args.idle_pipelines))
    sh(kubectl, "apply", "--server-side", "-n", IDLE, "-f", "-",
       stdin=pipelines_yaml(args.idle_pipelines, 2, data, schedule="0 0 1 1 *", history=per_pipeline,
                            connections=args.idle_connections))
    call = api_client()
    base = f"/apis/synqx.io/v1alpha1/namespaces/{IDLE}/pipelineruns"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # A run is finished when the operator's record (an annotation only it writes) says so;
    # one with a finished status alone would be started. The status says what the record
    # does, so the operator finds nothing to restore.
    record = json.dumps({"phase": "Succeeded", "finishedAt": now,
                         "steps": {s: {"phase": "Succeeded", "attempt": 1} for s in ("s0", "s1")}})
    status = {"phase": "Succeeded", "startTime": now, "completionTime": now,
              "steps": [{"name": s, "phase": "Succeeded", "attempt": 1} for s in ("s0", "s1")]}
    for p in range(args.idle_pipelines):
        for r in range(per_pipeline):
            name = f"p{p}-old-{r}"
            call("POST", base, {"apiVersion": "synqx.io/v1alpha1", "kind": "PipelineRun",
                                "metadata": {"name": name, "annotations": {"synqx.io/record": record}},
                                "spec": {"pipelineRef": {"name": f"p{p}"}}})
            call("PATCH", f"{base}/{name}/status", {"status": status}, "application/merge-patch+json")
        if p % 200 == 199:
            print(f"idle: history of {p + 1} of {args.idle_pipelines} Pipelines created", file=sys.stderr)
    objects = args.idle_pipelines * (1 + per_pipeline) + args.idle_connections
    settle(kubectl, args.timeout, objects)
    pid = operator_process()
    before, reconciles_before, start = cpu_seconds(pid), operator_reconciles(), audit.end()
    time.sleep(60)
    _, requests = audit.clients(start, audit.end())
    return {"cpu_per_minute": cpu_seconds(pid) - before, "rss": rss_mib(pid, "VmRSS"),
            "reconciles": since(reconciles_before, operator_reconciles(), keep_zero=True), "requests": requests,
            "pipelines": args.idle_pipelines, "runs": per_pipeline * args.idle_pipelines,
            "connections": min(args.idle_connections, args.idle_pipelines)}


def wait_for_checks(kubectl, namespace, deadline, poll=5):
    """Waits until every Connection of `namespace` is checked and no Job there runs."""
    while True:
        connections = json.loads(sh(kubectl, "get", "sqc", "-n", namespace, "-o", "json"))["items"]
        checking = sum(
            1 for c in connections
            if not any(k["type"] == "Ready" and k.get("reason") != "Checking"
                       for k in (c.get("status") or {}).get("conditions", [])))
        jobs = json.loads(sh(kubectl, "get", "jobs", "-n", namespace, "-o", "json"))["items"]
        running = sum(
            1 for j in jobs
            if not any(k["status"] == "True" and k["type"] in ("Complete", "Failed")
                       for k in (j.get("status") or {}).get("conditions") or []))
        if not checking and not running:
            return
        deadline.check(f"({checking} Connections being checked, {running} Jobs running)")
        time.sleep(poll)


def settle(kubectl, deadline_s, objects):
    """Waits until the idle namespace asks nothing more of the operator: every Connection
    checked, no check Job running, and a 15 s window with fewer reconciliations than 1 % of
    the `objects` it holds and no Event published (the Event queue, up to 1,024, drains at
    --events-qps after the reconciles that filled it). Not "no more than the window before":
    a backlog drained at the pace of the request budget passes that, and was taken for idle."""
    deadline = Deadline(deadline_s, "the idle namespace to settle")
    wait_for_checks(kubectl, IDLE, deadline)
    activity = lambda: (sum(operator_reconciles().values()),
                        sum(operator_counts("synqx_events_total", "result").values()))
    while True:
        reconciles, events = activity()
        time.sleep(15)
        after = activity()
        reconciles, events = after[0] - reconciles, after[1] - events
        print(f"settling: {reconciles:.0f} reconciliations, {events:.0f} Events in 15 s", file=sys.stderr)
        if reconciles < objects / 100 and not events:
            return
        deadline.check(f"({reconciles:.0f} reconciliations, {events:.0f} Events in the last 15 s)")


def row(name, values, unit="ms", scale=1000):
    p50, p95, p99, top = percentiles(values)
    return (f"| {name} | {p50 * scale:.0f} {unit} | {p95 * scale:.0f} {unit} | {p99 * scale:.0f} {unit} "
            f"| {top * scale:.0f} {unit} |")


def busy_cases(args, kubectl, data, audit):
    """SynqX and the bare-Jobs reference on the same DAGs; prints their tables and returns
    what went wrong."""
    synqx = synqx_case(args, kubectl, data, audit, args.timeout)
    any_job = next(iter(synqx["watch"].objects.values()))
    reference = reference_case(args, kubectl, any_job["spec"], args.timeout)

    expected = args.pipelines * args.steps
    problems = []
    if synqx["succeeded"] != args.pipelines:
        problems.append(f"{args.pipelines - synqx['succeeded']} SynqX runs did not succeed")
    if synqx["jobs"] != expected:
        problems.append(f"SynqX created {synqx['jobs']} Jobs, not {expected}")
    if reference["failed"]:
        problems.append(f"{reference['failed']} reference Jobs failed")

    per_minute = synqx["succeeded"] / synqx["elapsed"] * 60
    reference_per_minute = args.pipelines / reference["elapsed"] * 60
    requests = synqx["requests"]
    # Printed before the idle case starts, so a failure there does not lose these figures.
    print(f"\n{args.pipelines} pipelines × {args.steps} steps ({expected} Jobs), profile {args.profile}, "
          f"{os.cpu_count()} cores; command: python3 benches/operator_scale.py {' '.join(sys.argv[1:])}\n")
    print("| case | p50 | p95 | p99 | max |\n|---|---|---|---|---|")
    print(row("SynqX step-ready → Job-created (a root is ready when its run is stored)", synqx["ready"]))
    print(row("reference step-ready → Job-created", reference["ready"]))
    for layer in sorted(synqx["by_layer"]):
        print(row(f"SynqX step-ready → Job-created, layer {layer} "
                  f"({len(synqx['by_layer'][layer])} Jobs)", synqx["by_layer"][layer]))
        print(row(f"reference step-ready → Job-created, layer {layer}", reference["by_layer"].get(layer, [0])))
    print(row("SynqX step-ready → Job-created, layer 0, from the start of the runs' creation",
              synqx["roots_from_start"]))
    print(row("SynqX run makespan", synqx["makespan"], "s", 1))
    print(row("reference run makespan", reference["makespan"], "s", 1))
    print("\n| measure | value |\n|---|---|")
    print(f"| SynqX runs per minute (succeeded) | {per_minute:.1f} |")
    print(f"| reference runs per minute | {reference_per_minute:.1f} |")
    print(f"| SynqX / reference throughput | {per_minute / reference_per_minute:.2f} |")
    print(f"| operator peak RSS | {synqx['rss']:.1f} MiB |")
    before = synqx["rss_before"]
    print(f"| operator RSS and peak RSS before the runs were created | "
          f"{before['VmRSS']:.1f} and {before['VmHWM']:.1f} MiB |")
    after = synqx["rss_after"]
    print(f"| operator RSS after the runs: heap and stacks + binary and libraries | "
          f"{after['VmRSS']:.1f} MiB = {after['RssAnon']:.1f} + {after['RssFile']:.1f} MiB |")
    print(f"| operator CPU during the runs | {synqx['cpu']:.1f} s |")
    print(f"| the {args.pipelines} runs created (one kubectl call; the last stored after) | "
          f"{synqx['runs_created'] * 1000:.0f} ms ({synqx['runs_stored_over'] * 1000:.0f} ms) |")
    print("| operator requests a second around the runs' creation (second: status writes + others) | "
          + ", ".join(f"{s}: {w}+{o}" for s, (w, o) in sorted(synqx["around_creation"].items())) + " |")
    # The fewest requests a run needs: one create per Job, and the status writes that show
    # what a user can see change (the run starting, then each step's end together with the
    # starts it unblocks; the run's end is its last step's).
    minimum = args.steps + 1 + args.steps
    operator = requests.get("operator", 0) / args.pipelines
    print(f"| operator requests per run against the minimum ({args.steps} creates, "
          f"{args.steps + 1} status writes) | {operator:.1f} = {operator / minimum:.2f}× |")
    for client, count in sorted(requests.items()):
        print(f"| API requests per run: {client} | {count / args.pipelines:.1f} |")
    for what, count in sorted(synqx["operator_requests"].items(), key=lambda kv: -kv[1]):
        print(f"| operator requests per run: {what} | {count / args.pipelines:.1f} |")
    for controller, count in sorted(synqx["reconciles"].items()):
        print(f"| reconciliations per run: {controller} | {count / args.pipelines:.1f} |", flush=True)
    return problems


def with_operator_env(install, env):
    """The install manifest with `env` (the names whose value is set) added to the operator's."""
    lines = "".join(f"            - name: {name}\n              value: '{value}'\n"
                    for name, value in env.items() if value)
    anchor = "          env:\n            - name: POD_NAME\n"
    if anchor not in install:
        sys.exit("the install manifest has no operator env to add to")
    return install.replace(anchor, anchor.replace("            - name: POD_NAME\n", lines + "            - name: POD_NAME\n"), 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--idle-pipelines", type=int, default=2000)
    parser.add_argument("--idle-runs", type=int, default=10000)
    # Each Connection is checked by a Job when it appears; 2,000 of them keep the process
    # kubelet busy for over half an hour before the operator can be idle.
    parser.add_argument("--idle-connections", type=int, default=200,
                        help="Connections the idle Pipelines share (each checked once by a Job)")
    parser.add_argument("--runs-while-checking", action="store_true",
                        help="create the runs as soon as the Pipelines are Ready, while their "
                             "Connections are still being checked")
    parser.add_argument("--preload", help="a shared library the operator runs with (LD_PRELOAD); "
                                          "an allocator preloaded serves only C's malloc, since "
                                          "the operator's Rust allocations go to the jemalloc it links")
    parser.add_argument("--malloc-conf", help="jemalloc's settings for the operator, on top of those "
                        "compiled in: _RJEM_MALLOC_CONF for the jemalloc it links, and MALLOC_CONF "
                        "for one preloaded with --preload")
    parser.add_argument("--profile", default="release")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds each wait may take")
    args = parser.parse_args()

    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/synqx/target"))
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    print(f"building synqx, synqx-operator, synqx-kubelet ({args.profile})", file=sys.stderr)
    sh("cargo", "build", "--profile", args.profile, "--bin", "synqx", "--bin", "synqx-operator",
       "--bin", "synqx-kubelet", env=env)
    profile_dir = "debug" if args.profile == "dev" else args.profile
    cluster_env = dict(env, SYNQX_CLUSTER_DIR=str(RUN_DIR), SYNQX_BIN_DIR=str(target / profile_dir))
    sh(str(REPO / "tests/cluster/down"), env=cluster_env, check=False)
    sh(str(REPO / "tests/cluster/up"), env=cluster_env)
    testbin = (RUN_DIR / "bin-path").read_text().strip()
    kubectl = f"{testbin}/kubectl"
    os.environ["KUBECONFIG"] = str(RUN_DIR / "kubeconfig")
    os.environ["KUBECTL"] = kubectl
    try:
        # One operator replica: process pods share the host's network (port 8080).
        install = (REPO / "manifests/install.yaml").read_text().replace(
            "\nspec:\n  replicas: 2\n", "\nspec:\n  replicas: 1\n", 1)
        install = with_operator_env(install, {"LD_PRELOAD": args.preload, "MALLOC_CONF": args.malloc_conf,
                                                   "_RJEM_MALLOC_CONF": args.malloc_conf})
        sh(kubectl, "apply", "--server-side", "-f", "-", stdin=install)
        sh(kubectl, "rollout", "status", "--timeout=120s", "-n", "synqx-system", "deployment/synqx-operator")
        sh(kubectl, "create", "namespace", NAMESPACE)
        runner = (REPO / "manifests/runner.yaml").read_text().replace("NAMESPACE", NAMESPACE)
        sh(kubectl, "apply", "-f", "-", stdin=runner)
        data = tempfile.mkdtemp(prefix="synqx-bench-")
        audit = Audit()

        problems = busy_cases(args, kubectl, data, audit) if args.pipelines else []
        idle = idle_case(args, kubectl, data, audit) if args.idle_pipelines else None
        if idle:
            if not args.pipelines:
                print(f"\nidle case only, profile {args.profile}, {os.cpu_count()} cores; command: "
                      f"python3 benches/operator_scale.py {' '.join(sys.argv[1:])}\n")
                print("| measure | value |\n|---|---|")
            print(f"| idle: {idle['pipelines']} scheduled Pipelines, {idle['connections']} Connections, "
                  f"{idle['runs']} finished runs: operator RSS "
                  f"| {idle['rss']:.1f} MiB |")
            print(f"| idle: operator CPU | {idle['cpu_per_minute'] / 60 * 100:.2f} % of a core |")
            for controller, count in sorted(idle["reconciles"].items()):
                print(f"| idle: reconciliations a minute: {controller} | {count:.0f} |")
            for request, count in sorted(idle["requests"].items(), key=lambda kv: -kv[1]):
                print(f"| idle: operator requests a minute: {request} | {count} |")
        if problems:
            sys.exit("FAILED: " + "; ".join(problems))
    finally:
        sh(str(REPO / "tests/cluster/down"), env=cluster_env, check=False)


if __name__ == "__main__":
    main()
