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
`--records` hashes; the plain clients read them the way SynqX does, SCAN by pattern plus one
pipelined HGETALL per batch of keys: `benches/redis-scan` (Go, go-redis; built here with `go
build` and cached under ~/.cache/synqx/testbin, keyed by its source) is the server-side limit,
and redis-py shows what a Python client reaches. SynqX writes Parquet in both.

Outputs are checked by content: every Parquet output is read back with pyarrow, sorted by
`id`, and a SHA-256 over the id, name, price, active and category columns must equal the one
computed from the generator. redis-scan prints the number of hashes it read and a checksum
of every field of each (see its source); both must equal those of the generator's hashes. Peak RSS is the kernel's high-water mark of every process of
the run, summed (see measure.py). `--repeat N` runs every tool N times and keeps its fastest
correct run (a failed or wrong run is reported at once). Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
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


def redis_fields(i: int) -> dict[str, str]:
    """Record `i` as the benchmark stores it in a Redis hash."""
    rec = record(i)
    rec["active"] = "true" if rec["active"] else "false"
    return {k: str(v) for k, v in rec.items()}


def redis_scan_expected(n: int) -> str:
    """What redis-scan prints after reading the benchmark's `n` hashes: their number and
    the sum (mod 2^64) of the first 8 bytes of each hash's SHA-256 over its fields sorted by
    name, each name and value NUL-terminated (the order SCAN returns keys in does not
    matter)."""
    total = 0
    for i in range(n):
        fields = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in sorted(redis_fields(i).items()))
        total += int.from_bytes(hashlib.sha256(fields).digest()[:8], "big")
    return f"{n} {total % 2**64:016x}"


def build_redis_scan() -> str:
    """The redis-scan binary, built from benches/redis-scan into a cache folder keyed by a
    hash of its source, go.mod and go.sum; a warm call finds it and returns at once."""
    source = REPO / "benches" / "redis-scan"
    key = hashlib.sha256(b"".join((source / f).read_bytes() for f in ("go.mod", "go.sum", "main.go"))).hexdigest()[:16]
    cache = Path(os.environ.get("SYNQX_TESTBIN_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "synqx" / "testbin")
    out = cache / f"redis-scan-{key}"
    binary = out / "redis-scan"
    if (out / ".complete").exists():
        return str(binary)
    if not shutil.which("go"):
        raise RuntimeError("the 'go' command is not on PATH; the Redis reference (benches/redis-scan) is built with it; install Go 1.26 or newer")
    log(f"building benches/redis-scan into {out}")
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(binary), "."], cwd=source, check=True)
    (out / ".complete").touch()
    return str(binary)


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


def run_case(name: str, tool: str, argv: list[str], out: Path, work: Path, n: int, digest: str | None, timeout: float, repeat: int,
             printed: str | None = None, reference: bool = False) -> dict:
    """Best of `repeat` runs: the fastest correct one; a failed or wrong run is returned at
    once, since a faster wrong answer proves nothing. `digest` checks a Parquet output,
    `printed` what the tool prints; `reference` marks the run the others are compared with."""
    best: dict | None = None
    logs = work / f"{name}-{tool}".replace(" ", "_")
    for i in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        log(f"{name:<20} {tool:<28} run {i + 1}/{repeat}: {' '.join(argv)[:160]}")
        run: Run = execute([argv], {}, out, logs, out, 64 * 2**30, timeout)
        check = "–"
        if not run.error and digest is not None:
            try:
                rows, got = parquet_digest(out)
                check = "ok" if (rows, got) == (n, digest) else f"WRONG: {rows:,} rows, digest {got[:12]}"
            except Exception as e:  # noqa: BLE001
                check = f"WRONG: {e}"
        elif not run.error and printed is not None:
            said = Path(f"{logs}.out").read_text().strip()
            check = "ok" if said == printed else f"WRONG: printed {said[:60]!r}, expected {printed!r}"
        log(f"    -> {describe(run)}; check {check}")
        result = {"case": name, "tool": tool, "run": run, "rows": n, "check": check, "reference": reference}
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
        rows.append(run_case("REST → Parquet", "dlt", [sys.executable, str(script), url, str(work / "rest-dlt"), str(work / "dlt-pipelines")], work / "rest-dlt", work, n, digest, args.timeout, args.repeat, reference=True))
        server.shutdown()
    if cases & {"mongodb", "redis"} and not (os.environ.get("SYNQX_TEST_MONGODB") and os.environ.get("SYNQX_TEST_REDIS")):
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
        rows.append(run_case("MongoDB → Parquet", "pymongo find loop (reference)", [sys.executable, "-c", PYMONGO_LOOP, uri, "synqx_bench", "items"], work / "mongo-ref", work, mongo_n, None, args.timeout, args.repeat, printed=str(mongo_n), reference=True))
        yaml = work / "mongo.yaml"
        yaml.write_text(synqx_yaml(f"{{mongodb: {{uri: {{value: '{uri}'}}, database: synqx_bench}}}}", "items", work / "mongo-synqx"))
        rows.append(run_case("MongoDB → Parquet", "SynqX", [synqx, "run", str(yaml), "--state", str(work / "state-mongo")], work / "mongo-synqx", work, mongo_n, digest, args.timeout, args.repeat))
    if "redis" in cases:
        import redis
        url = os.environ["SYNQX_TEST_REDIS"]
        r = redis.Redis.from_url(url)
        if r.get("bench:loaded") != str(n).encode():
            log(f"loading {n:,} hashes into Redis (not timed)")
            r.delete("bench:loaded")
            for start in range(0, n, 10_000):
                p = r.pipeline(transaction=False)
                for i in range(start, min(n, start + 10_000)):
                    p.hset(f"bench:item:{i}", mapping=redis_fields(i))
                p.execute()
            # Hashes left by an earlier, larger load would be read too.
            stale = [k for k in r.scan_iter("bench:item:*", count=10_000) if int(k.rsplit(b":", 1)[1]) >= n]
            for start in range(0, len(stale), 10_000):
                r.delete(*stale[start:start + 10_000])
            r.set("bench:loaded", str(n))
        digest = expected_digest(n)
        rows.append(run_case("Redis → Parquet", "go-redis SCAN + pipelined HGETALL (reference)", [build_redis_scan(), url, "bench:item:*"], work / "redis-go", work, n, None, args.timeout, args.repeat,
                             printed=redis_scan_expected(n), reference=True))
        rows.append(run_case("Redis → Parquet", "redis-py SCAN + pipelined HGETALL", [sys.executable, "-c", REDIS_LOOP, url, "bench:item:*"], work / "redis-py", work, n, None, args.timeout, args.repeat, printed=str(n)))
        host = urlparse(url)
        yaml = work / "redis.yaml"
        yaml.write_text(synqx_yaml(f"{{redis: {{host: {host.hostname}, port: {host.port}, password: {{value: '{host.password}'}}}}}}", "bench:item:*", work / "redis-synqx"))
        rows.append(run_case("Redis → Parquet", "SynqX", [synqx, "run", str(yaml), "--state", str(work / "state-redis")], work / "redis-synqx", work, n, digest, args.timeout, args.repeat))
    print(f"\n{machine()}; {time.strftime('%Y-%m-%d')}\n")
    print("| case | records | tool | seconds | records/s | vs reference | peak RSS MiB | check |")
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
            # A ratio above 1 is faster than the reference.
            reference = [e["run"].seconds for e in entries if e["reference"] and e["run"].seconds]
            ratio = f"{reference[0] / run.seconds:.2f}×" if reference else "–"
            print(f"| {case} | {row['rows']:,} | {row['tool']} | {run.seconds:.2f} | {row['rows'] / run.seconds:,.0f} | {ratio} | {run.peak_rss / 2**20:.0f} | {row['check']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
