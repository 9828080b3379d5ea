#!/usr/bin/env python3
"""REST, MongoDB and Redis → Parquet: SynqX against dlt and the plain clients.

    python3 benches/connectors.py [--records 1M] [--mongo-records 250k] [--cases rest,mongodb,redis]
                                  [--work DIR] [--synqx PATH] [--repeat N]

REST: a local HTTP server (Python, loopback, pages of 1,000 JSON records built in memory
before timing) serves `--records` records under `data` with a `next` URL in each page.
SynqX reads it with no pagination settings (auto-detection); dlt (PyPI `dlt[parquet]`) reads
it with its REST client and `JSONLinkPaginator`; both write Parquet to a local folder.

MongoDB: FerretDB from `scripts/nosql-services up` (started here when SYNQX_TEST_MONGODB is
not set) holds `--mongo-records` documents; the plain client is a pymongo loop that reads every
document and drops it (the server-side limit). Redis: redis-server from the same script holds
`--records` hashes; the plain client is redis-py's SCAN plus pipelined HGETALL, dropping the
values. SynqX writes Parquet in both.

Outputs are checked by content: every Parquet output is read back with pyarrow, sorted by
`id`, and a SHA-256 over the id, name, price, active and category columns must equal the one
computed from the generator. Peak RSS is the kernel's high-water mark of every process of
the run, summed (see measure.py). `--repeat N` runs every tool N times and keeps its fastest
correct run (a failed or wrong run is reported at once). Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from files import Run, become_subreaper, build_synqx, describe, execute, log, machine, parse_size

REPO = Path(__file__).resolve().parent.parent
PAGE = 1000
CHECKED = ("id", "name", "price", "active", "category")


def record(i: int) -> dict:
    return {
        "id": i,
        "name": f"item {i}",
        "price": round(i * 0.37 % 1000, 2),
        "active": i % 3 != 0,
        "category": f"c{i % 17}",
        "updated_at": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
    }


def expected_digest(n: int) -> str:
    h = hashlib.sha256()
    for column in CHECKED:
        for i in range(n):
            h.update(repr(record(i)[column]).encode())
    return h.hexdigest()


def parquet_digest(folder: Path) -> tuple[int, str]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = sorted(p for p in folder.rglob("*.parquet") if not any(part.startswith((".", "_")) for part in p.parts))
    if not files:
        raise RuntimeError(f"no Parquet file under {folder}")
    table = pq.ParquetDataset(files).read(columns=list(CHECKED))
    table = table.take(pc.sort_indices(table, sort_keys=[("id", "ascending")]))
    h = hashlib.sha256()
    for column in CHECKED:
        for v in table.column(column).to_pylist():
            h.update(repr(v).encode())
    return table.num_rows, h.hexdigest()


# ------------------------------------------------------------------------------------------
# The REST server


def start_api(n: int) -> tuple[ThreadingHTTPServer, str]:
    pages = []
    for p in range((n + PAGE - 1) // PAGE):
        body = {"data": [record(i) for i in range(p * PAGE, min(n, (p + 1) * PAGE))]}
        body["next"] = f"/items?page={p + 1}" if (p + 1) * PAGE < n else None
        pages.append(json.dumps(body).encode())

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802
            query = parse_qs(urlparse(self.path).query)
            page = int(query.get("page", ["0"])[0])
            body = pages[page] if 0 <= page < len(pages) else b'{"data": [], "next": null}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# ------------------------------------------------------------------------------------------
# Commands


def synqx_yaml(source: str, fqn: str, out: Path) -> str:
    return f"""apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: src}}
spec: {source}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: lake}}
spec: {{filesystem: {{path: "{out}"}}}}
---
apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: bench}}
spec:
  steps:
    - name: pull
      sync:
        source: {{connection: src, asset: {{fqn: "{fqn}"}}}}
        destination: {{connection: lake, asset: {{fqn: part.parquet}}, format: parquet, mode: overwrite}}
"""


DLT_SCRIPT = """
import sys, dlt
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.paginators import JSONLinkPaginator
url, out, work = sys.argv[1:4]

@dlt.resource(name="items", write_disposition="replace")
def items():
    client = RESTClient(base_url=url, paginator=JSONLinkPaginator(next_url_path="next"), data_selector="data")
    yield from client.paginate("/items")

pipeline = dlt.pipeline(pipeline_name="bench", pipelines_dir=work,
                        destination=dlt.destinations.filesystem(bucket_url="file://" + out),
                        dataset_name="bench")
pipeline.run(items(), loader_file_format="parquet")
"""

PYMONGO_LOOP = """
import sys, pymongo
n = 0
for _ in pymongo.MongoClient(sys.argv[1])[sys.argv[2]][sys.argv[3]].find(batch_size=2000):
    n += 1
print(n)
"""

REDIS_LOOP = """
import sys, redis
r = redis.Redis.from_url(sys.argv[1])
n = 0
cursor = 0
while True:
    cursor, keys = r.scan(cursor, match=sys.argv[2], count=1000)
    p = r.pipeline(transaction=False)
    for k in keys:
        p.hgetall(k)
    n += len(p.execute())
    if cursor == 0:
        break
print(n)
"""


def run_case(name: str, tool: str, argv: list[str], out: Path, work: Path, n: int, digest: str | None, timeout: float, repeat: int) -> dict:
    """Best of `repeat` runs: the fastest correct one; a failed or wrong run is returned at
    once, since a faster wrong answer proves nothing."""
    best: dict | None = None
    for i in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        log(f"{name:<20} {tool:<28} run {i + 1}/{repeat}: {' '.join(argv)[:160]}")
        run: Run = execute([argv], {}, out, work / f"{name}-{tool}".replace(" ", "_"), out, 64 * 2**30, timeout)
        check = "–"
        if not run.error and digest is not None:
            try:
                rows, got = parquet_digest(out)
                check = "ok" if (rows, got) == (n, digest) else f"WRONG: {rows:,} rows, digest {got[:12]}"
            except Exception as e:  # noqa: BLE001
                check = f"WRONG: {e}"
        log(f"    -> {describe(run)}; check {check}")
        result = {"case": name, "tool": tool, "run": run, "rows": n, "check": check}
        if run.error or check.startswith("WRONG"):
            return result
        if best is None or run.seconds < best["run"].seconds:
            best = result
    assert best is not None
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", default="1M")
    ap.add_argument("--mongo-records", default="250k")
    ap.add_argument("--cases", default="rest,mongodb,redis")
    ap.add_argument("--work", default=None)
    ap.add_argument("--synqx", default=None)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool and case; the fastest correct one is kept")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    n = parse_size(args.records)
    mongo_n = parse_size(args.mongo_records)
    cases = set(args.cases.split(","))
    synqx = args.synqx or str(Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release" / "synqx")
    if not args.synqx and (why := build_synqx()):
        print(why, file=sys.stderr)
        return 1
    work = Path(args.work or tempfile.mkdtemp(prefix="synqx-bench-connectors-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    if "rest" in cases:
        log(f"building {n:,} records in pages of {PAGE}")
        server, url = start_api(n)
        digest = expected_digest(n)
        yaml = work / "rest.yaml"
        yaml.write_text(synqx_yaml(f'{{rest: {{baseUrl: "{url}/"}}}}', "items", work / "rest-synqx"))
        rows.append(run_case("REST → Parquet", "SynqX", [synqx, "run", str(yaml), "--state", str(work / "state-rest")], work / "rest-synqx", work, n, digest, args.timeout, args.repeat))
        script = work / "dlt_rest.py"
        script.write_text(DLT_SCRIPT)
        rows.append(run_case("REST → Parquet", "dlt", [sys.executable, str(script), url, str(work / "rest-dlt"), str(work / "dlt-pipelines")], work / "rest-dlt", work, n, digest, args.timeout, args.repeat))
        server.shutdown()
    if cases & {"mongodb", "redis"} and not (os.environ.get("SYNQX_TEST_MONGODB") and os.environ.get("SYNQX_TEST_REDIS")):
        import subprocess
        services = subprocess.run(["bash", "-c", "eval \"$(scripts/services up)\" && scripts/nosql-services up"], cwd=REPO, capture_output=True, text=True, check=True).stdout
        for part in services.replace("export ", "").split():
            k, _, v = part.partition("=")
            os.environ[k] = v.strip("'")
    # After the servers start: they daemonise, and a subreaper would adopt them into the
    # process tree whose RSS is measured.
    become_subreaper()
    if "mongodb" in cases:
        import pymongo
        uri = os.environ["SYNQX_TEST_MONGODB"]
        coll = pymongo.MongoClient(uri)["synqx_bench"]["items"]
        if coll.estimated_document_count() != mongo_n:
            log(f"loading {mongo_n:,} documents into FerretDB (not timed)")
            coll.drop()
            for start in range(0, mongo_n, 10_000):
                coll.insert_many([record(i) for i in range(start, min(mongo_n, start + 10_000))], ordered=False)
        digest = expected_digest(mongo_n)
        rows.append(run_case("MongoDB → Parquet", "pymongo find loop (reference)", [sys.executable, "-c", PYMONGO_LOOP, uri, "synqx_bench", "items"], work / "mongo-ref", work, mongo_n, None, args.timeout, args.repeat))
        yaml = work / "mongo.yaml"
        yaml.write_text(synqx_yaml(f"{{mongodb: {{uri: {{value: '{uri}'}}, database: synqx_bench}}}}", "items", work / "mongo-synqx"))
        rows.append(run_case("MongoDB → Parquet", "SynqX", [synqx, "run", str(yaml), "--state", str(work / "state-mongo")], work / "mongo-synqx", work, mongo_n, digest, args.timeout, args.repeat))
    if "redis" in cases:
        import redis
        url = os.environ["SYNQX_TEST_REDIS"]
        r = redis.Redis.from_url(url)
        if r.get("bench:loaded") != str(n).encode():
            log(f"loading {n:,} hashes into Redis (not timed)")
            for start in range(0, n, 10_000):
                p = r.pipeline(transaction=False)
                for i in range(start, min(n, start + 10_000)):
                    rec = record(i)
                    rec["active"] = "true" if rec["active"] else "false"
                    p.hset(f"bench:item:{i}", mapping={k: str(v) for k, v in rec.items()})
                p.execute()
            r.set("bench:loaded", str(n))
        digest = expected_digest(n)
        rows.append(run_case("Redis → Parquet", "redis-py SCAN + HGETALL (reference)", [sys.executable, "-c", REDIS_LOOP, url, "bench:item:*"], work / "redis-ref", work, n, None, args.timeout, args.repeat))
        host = urlparse(url)
        yaml = work / "redis.yaml"
        yaml.write_text(synqx_yaml(f"{{redis: {{host: {host.hostname}, port: {host.port}, password: {{value: '{host.password}'}}}}}}", "bench:item:*", work / "redis-synqx"))
        rows.append(run_case("Redis → Parquet", "SynqX", [synqx, "run", str(yaml), "--state", str(work / "state-redis")], work / "redis-synqx", work, n, digest, args.timeout, args.repeat))
    print(f"\n{machine()}; {time.strftime('%Y-%m-%d')}\n")
    print("| case | records | tool | seconds | records/s | vs other | peak RSS MiB | check |")
    print("|---|--:|---|--:|--:|--:|--:|---|")
    by_case: dict[str, list[dict]] = {}
    for row in rows:
        by_case.setdefault(row["case"], []).append(row)
    for case, entries in by_case.items():
        for row in entries:
            run: Run = row["run"]
            if run.error:
                print(f"| {case} | {row['rows']:,} | {row['tool']} | – | – | – | – | {run.error} |")
                continue
            others = [e["run"].seconds for e in entries if e is not row and e["run"].seconds]
            ratio = f"{others[0] / run.seconds:.2f}×" if others else "–"
            print(f"| {case} | {row['rows']:,} | {row['tool']} | {run.seconds:.2f} | {row['rows'] / run.seconds:,.0f} | {ratio} | {run.peak_rss / 2**20:.0f} | {row['check']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
