#!/usr/bin/env python3
"""Gateway memory under load on the real test control plane (tests/cluster), one invocation:
F WebSocket followers of one run while one step's log carries B bytes of lines.

The step (`load`, a REST source behind a gate this script holds closed, into SQLite) runs
in a pod of the process kubelet; while it waits, this script reports its log lines to the
gateway as the pod would (POST /internal/v1/telemetry, 500 lines a report as the runner
sends them, with a projected token of the runner's service account bound to that pod), F
followers read the run's watch, and the operator keeps the log on a directory store
(--logs-dir, bounded by --logs-max-bytes, 64Mi by default). Then the gate opens and the
run ends.

  operator peak RSS   VmHWM of the operator's process (the kernel's high-water mark), and
                      VmRSS before the log started, with the followers connected
  followers           bytes each received; how many were still connected at the end (the
                      gateway drops a follower that falls more than its buffer behind)
  stored log          the bytes on the store (gzip, bounded)

  python3 benches/gateway.py [--followers 50] [--log-bytes 1G] [--line-bytes 2000]
                             [--profile release] [--timeout 1800]

It builds the binaries (cargo, --profile), starts its own cluster in
/tmp/synqx-bench-gateway (stopped at the end), runs the operator as a process of its own on
a free port, and prints one table. It fails (exit 1) when the run does not succeed, a report
is refused, or a wait runs out.
"""

import argparse
import base64
import http.client
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN_DIR = Path("/tmp/synqx-bench-gateway")
NAMESPACE = "bench-gw"
RUN = "logs-1"
STEP = "load"
LINES_PER_REPORT = 500  # the runner's MAX_LINES

# sh, Deadline and rss_mib as the operator benchmark has them.
_spec = importlib.util.spec_from_file_location("bench_operator", REPO / "benches/operator_scale.py")
bench_operator = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_operator)
sh, Deadline, rss_mib = bench_operator.sh, bench_operator.Deadline, bench_operator.rss_mib


def size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gate(threading.Thread):
    """The step's REST source: `/records` answers two rows once `opened` is set."""

    def __init__(self):
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.opened = threading.Event()

    def run(self):
        while True:
            conn, _ = self.server.accept()
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn):
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            self.opened.wait()
            body = b'[{"id":1,"name":"a"},{"id":2,"name":"b"}]'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


class Follower(threading.Thread):
    """One WebSocket follower of the run: reads every frame's bytes and drops them."""

    def __init__(self, port, token):
        super().__init__(daemon=True)
        self.port, self.token = port, token
        self.connected = threading.Event()
        self.received = 0
        self.closed_early = False
        self.stop = threading.Event()

    def run(self):
        sock = socket.create_connection(("127.0.0.1", self.port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((
            f"GET /api/v1/namespaces/{NAMESPACE}/pipelineruns/{RUN}/watch HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {self.token}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                sys.exit("a follower's connection closed during the handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            status = head.split(b"\r\n", 1)[0].decode()
            sys.exit(f"a follower was refused: {status}")
        self.received = len(head.split(b"\r\n\r\n", 1)[1])
        self.connected.set()
        sock.settimeout(1)
        while not self.stop.is_set():
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                continue
            if not chunk:
                self.closed_early = not self.stop.is_set()
                break
            self.received += len(chunk)
        sock.close()


def report_lines(port, token, total, line_bytes):
    """Reports `total` bytes of log lines for the step, 500 lines a report; returns seconds."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    filler = "x" * max(0, line_bytes - 40)
    sent, n, started = 0, 0, time.monotonic()
    while sent < total:
        lines = []
        for _ in range(LINES_PER_REPORT):
            text = f"row batch {n:012d} {filler}"
            lines.append({"time": "2026-12-02T10:00:00.000Z", "level": "INFO", "text": text})
            sent += len(text)
            n += 1
        body = json.dumps({"namespace": NAMESPACE, "run": RUN, "step": STEP, "attempt": 1,
                           "counters": {"name": STEP}, "lines": lines})
        conn.request("POST", "/internal/v1/telemetry", body=body,
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        answer = conn.getresponse()
        text = answer.read()
        if answer.status != 204:
            sys.exit(f"the gateway refused a report: {answer.status} {text[:300]!r}")
    return sent, time.monotonic() - started


def pipeline_yaml(gate, data):
    return (
        "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {name: api}\n"
        f"spec: {{rest: {{baseUrl: \"http://127.0.0.1:{gate.port}/\", timeout: 60m}}}}\n---\n"
        "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {name: db}\n"
        f"spec: {{sqlite: {{path: {data}/db.sqlite}}}}\n---\n"
        "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {name: logs}\nspec:\n  steps:\n"
        f"    - {{name: {STEP}, timeout: 2h, sync: {{source: {{connection: api, asset: {{fqn: records}}}}, "
        "destination: {connection: db, asset: {fqn: records}, mode: overwrite}}}\n---\n"
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: viewer}\n---\n"
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: run-viewer}\n"
        "rules: [{apiGroups: [synqx.io], resources: [pipelineruns], verbs: [get]}]\n---\n"
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: viewer}\n"
        "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: run-viewer}\n"
        "subjects: [{kind: ServiceAccount, name: viewer}]\n"
    )


def step_pod(kubectl, deadline):
    """The name and UID of the step's running pod."""
    while True:
        pods = json.loads(sh(kubectl, "get", "pods", "-n", NAMESPACE, "-l", f"synqx.io/run={RUN}", "-o", "json"))
        running = [p for p in pods["items"] if (p.get("status") or {}).get("phase") == "Running"]
        if running:
            return running[0]["metadata"]["name"], running[0]["metadata"]["uid"]
        deadline.check()
        time.sleep(1)


def run_phase(kubectl):
    return sh(kubectl, "get", "sqr", RUN, "-n", NAMESPACE, "-o", "jsonpath={.status.phase}").strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--followers", type=int, default=50)
    parser.add_argument("--log-bytes", default="1G", help="bytes of line text, e.g. 1G, 200M")
    parser.add_argument("--line-bytes", type=int, default=2000)
    parser.add_argument("--profile", default="release")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds each wait may take")
    args = parser.parse_args()
    total = size(args.log_bytes)

    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/synqx/target"))
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    print(f"building synqx, synqx-operator, synqx-kubelet ({args.profile})", file=sys.stderr)
    sh("cargo", "build", "--profile", args.profile, "--bin", "synqx", "--bin", "synqx-operator",
       "--bin", "synqx-kubelet", env=env)
    bin_dir = target / ("debug" if args.profile == "dev" else args.profile)
    cluster_env = dict(env, SYNQX_CLUSTER_DIR=str(RUN_DIR), SYNQX_BIN_DIR=str(bin_dir))
    sh(str(REPO / "tests/cluster/down"), env=cluster_env, check=False)
    sh(str(REPO / "tests/cluster/up"), env=cluster_env)
    kubectl = f"{(RUN_DIR / 'bin-path').read_text().strip()}/kubectl"
    kubeconfig = str(RUN_DIR / "kubeconfig")
    os.environ["KUBECONFIG"] = kubeconfig
    data = tempfile.mkdtemp(prefix="synqx-bench-gateway-")
    port = free_port()
    operator = None
    try:
        sh(kubectl, "create", "namespace", NAMESPACE)
        runner = (REPO / "manifests/runner.yaml").read_text().replace("NAMESPACE", NAMESPACE)
        sh(kubectl, "apply", "-f", "-", stdin=runner)
        with open(f"{data}/operator.log", "w") as log:
            operator = subprocess.Popen(
                [str(bin_dir / "synqx-operator"), "run", "--all-namespaces", "--metrics-addr", "127.0.0.1:0",
                 "--gateway-addr", f"127.0.0.1:{port}", "--gateway-url", f"http://127.0.0.1:{port}",
                 "--logs-dir", f"{data}/logs"],
                env=dict(os.environ, KUBECONFIG=kubeconfig), stdout=subprocess.DEVNULL, stderr=log)
        deadline = Deadline(120, "the operator's gateway")
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            deadline.check()
            time.sleep(0.5)

        gate = Gate()
        gate.start()
        sh(kubectl, "apply", "-n", NAMESPACE, "-f", "-", stdin=pipeline_yaml(gate, data))
        sh(kubectl, "create", "-n", NAMESPACE, "-f", "-",
           stdin=f"apiVersion: synqx.io/v1alpha1\nkind: PipelineRun\nmetadata: {{name: {RUN}}}\n"
                 "spec: {pipelineRef: {name: logs}}\n")
        pod, uid = step_pod(kubectl, Deadline(args.timeout, "the step's pod to run"))
        viewer = sh(kubectl, "create", "token", "viewer", "-n", NAMESPACE, "--duration", "2h").strip()
        pod_token = sh(kubectl, "create", "token", "synqx-runner", "-n", NAMESPACE, "--audience", "synqx",
                       "--bound-object-kind", "Pod", "--bound-object-name", pod,
                       "--bound-object-uid", uid, "--duration", "2h").strip()

        followers = [Follower(port, viewer) for _ in range(args.followers)]
        for f in followers:
            f.start()
        for f in followers:
            if not f.connected.wait(120):
                sys.exit("a follower did not connect within 120 s")
        time.sleep(2)
        rss_before = rss_mib(operator.pid, "VmRSS")

        sent, seconds = report_lines(port, pod_token, total, args.line_bytes)
        gate.opened.set()
        deadline = Deadline(args.timeout, "the run to end")
        while run_phase(kubectl) not in ("Succeeded", "Failed", "Cancelled"):
            deadline.check()
            time.sleep(1)
        phase = run_phase(kubectl)
        time.sleep(3)
        peak = rss_mib(operator.pid, "VmHWM")
        rss_after = rss_mib(operator.pid, "VmRSS")
        for f in followers:
            f.stop.set()
        for f in followers:
            f.join(5)
        received = sorted(f.received for f in followers)
        dropped = sum(f.closed_early for f in followers)
        stored = sum(p.stat().st_size for p in Path(f"{data}/logs").rglob("*") if p.is_file())

        print(f"\n{args.followers} followers, {sent / (1 << 20):.0f} MiB of log lines ({args.line_bytes}-byte "
              f"lines, {LINES_PER_REPORT} a report), profile {args.profile}, {os.cpu_count()} cores; "
              f"command: python3 benches/gateway.py {' '.join(sys.argv[1:])}\n")
        print("| measure | value |\n|---|---|")
        print(f"| operator RSS with the followers connected, before the log | {rss_before:.1f} MiB |")
        print(f"| operator peak RSS (VmHWM) | {peak:.1f} MiB |")
        print(f"| operator RSS after the run | {rss_after:.1f} MiB |")
        print(f"| log reported in | {seconds:.0f} s ({sent / (1 << 20) / seconds:.1f} MiB/s) |")
        print(f"| bytes a follower received (min / max) | {received[0] / (1 << 20):.0f} / "
              f"{received[-1] / (1 << 20):.0f} MiB |")
        print(f"| followers dropped before the end (too slow) | {dropped} of {args.followers} |")
        print(f"| stored log (gzip, bounded by --logs-max-bytes) | {stored / (1 << 20):.1f} MiB |")
        if phase != "Succeeded":
            sys.exit(f"FAILED: the run ended {phase}")
    finally:
        if operator:
            operator.kill()
            operator.wait()
        sh(str(REPO / "tests/cluster/down"), env=cluster_env, check=False)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
