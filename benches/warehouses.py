#!/usr/bin/env python3
"""Warehouse benchmark: PostgreSQL → Snowflake and PostgreSQL → BigQuery, against the
emulators the connectors are tested with (fakesnow, bigquery-emulator), at TPC-H `lineitem`
sizes (default 1M rows).

The figures are bound by the emulators (fakesnow runs DuckDB behind a Python server,
bigquery-emulator SQLite behind ZetaSQL), not by the real services. So the reference is each
emulator's own ingest with its native client and no source at all: snowflake-connector-python
PUTs the Parquet file and runs `COPY INTO`; google-cloud-bigquery runs a load job from the
same rows as newline-delimited JSON. "Speed vs reference" says how close SynqX, which also
reads PostgreSQL and converts every value, comes to what the emulator can take. Sling runs
where it can reach an emulator, and the table says why where it cannot.

Every output, the references' included, is checked by content: after the timed run the native
client reads the table back whole into a Parquet file, and DuckDB computes the same
checksums of it and of the input CSV (measure.py: per column, and over each whole row, sums
of a 64-bit hash of the values cast to the input's types, so row order does not matter).

    python3 benches/warehouses.py [--sizes 1M] [--synqx PATH] [--tools reference,synqx,sling]

Servers come from `scripts/services up` and `scripts/emulators up`; the native clients live
in a virtual environment of their own (~/.cache/synqx/venv/bench-warehouses), created on first
use. Needs tpchgen-cli and duckdb-cli (and sling-linux-amd64 for Sling) from PyPI, and psql.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from databases import load_tables, psql, start_servers, table_name
from files import (
    DEFAULT_SYNQX, Dataset, Run, absolute, become_subreaper, build_synqx, cell, describe, duckdb_sql,
    execute, find_duckdb, find_sling, log, machine, parse_size, prepare, sling_env, sql_string, version,
)  # fmt: skip
from measure import ANSI, Fingerprint, check_output, fingerprint, relation

REPO = Path(__file__).resolve().parent.parent
# Run with `python -P`: the clients need nothing from the folder of the scripts on sys.path.
CLIENTS = Path(__file__).resolve().parent / "warehouse_clients.py"
VENV = Path.home() / ".cache" / "synqx" / "venv" / "bench-warehouses"
# pandas: snowflake-connector-python reads results as Arrow only with its pandas extra.
REQUIREMENTS = ("snowflake-connector-python[pandas]<5", "google-cloud-bigquery", "pyarrow")
REFERENCE = "reference"


@dataclass(frozen=True)
class Case:
    title: str
    key: str  # snowflake | bigquery


CASES = (Case("PostgreSQL → Snowflake (fakesnow)", "snowflake"), Case("PostgreSQL → BigQuery (bigquery-emulator)", "bigquery"))


@dataclass
class Emulators:
    fakesnow: str
    bigquery: str
    project: str


def start_emulators() -> Emulators:
    line = subprocess.run([str(REPO / "scripts" / "emulators"), "up"], check=True, capture_output=True, text=True)
    found = dict(word.split("=", 1) for word in line.stdout.split() if "=" in word)
    return Emulators(found["SYNQX_TEST_FAKESNOW"], found["SYNQX_TEST_BIGQUERY"], found["SYNQX_TEST_BIGQUERY_PROJECT"])


def clients_python() -> str:
    """The benchmark's own environment with the emulators' native clients; the packages are
    installed again when REQUIREMENTS changed (a stamp file in the environment says what it holds)."""
    python, stamp, wanted = VENV / "bin" / "python", VENV / "synqx-requirements.txt", "\n".join(REQUIREMENTS)
    if not python.exists():
        log(f"creating {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if not stamp.is_file() or stamp.read_text() != wanted:
        log(f"installing {', '.join(REQUIREMENTS)} into {VENV}")
        subprocess.run([str(VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", *REQUIREMENTS],
                       check=True)  # fmt: skip
        stamp.write_text(wanted)
    return str(python)


def client(python: str, *args: str, timeout: float = 600) -> str:
    done = subprocess.run([python, "-P", str(CLIENTS), *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    return done.stdout.strip()


def dataset_for(data: Dataset) -> str:
    return f"bench_{data.label.lower()}"


def create_dataset(emu: Emulators, dataset: str) -> None:
    import urllib.error
    import urllib.request

    datasets = f"{emu.bigquery}/bigquery/v2/projects/{emu.project}/datasets"
    # Looked up first: bigquery-emulator v0.6.6 answers 500, not 409, for one already there.
    try:
        urllib.request.urlopen(f"{datasets}/{dataset}", timeout=30).read()
        return
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
    body = json.dumps({"datasetReference": {"projectId": emu.project, "datasetId": dataset}}).encode()
    request = urllib.request.Request(datasets, body, {"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()


def ndjson_input(data: Dataset, duckdb: str) -> Path:
    path = data.input_dir / "lineitem.ndjson"
    if not path.exists():
        log(f"[{data.label}] writing the NDJSON input of the BigQuery reference with DuckDB")
        duckdb_sql(duckdb, f"COPY (SELECT * FROM read_parquet({sql_string(data.input('parquet'))})) "
                           f"TO {sql_string(path)} (FORMAT json)")  # fmt: skip
    return path


def synqx_yaml(case: Case, data: Dataset, servers, emu: Emulators, target: str) -> str:
    pg = {k: servers.pg_part(k) for k in ("host", "port", "user", "password", "db")}
    warehouse = {
        "snowflake": f"""snowflake: {{account: bench, host: "{emu.fakesnow}", user: {{value: bench}},
      password: {{value: bench}}, warehouse: WH, database: BENCH, schema: PUBLIC}}""",
        # NDJSON loads: bigquery-emulator v0.6.6 misreads Parquet DECIMAL and DATE columns.
        "bigquery": f"""bigquery: {{project: {emu.project}, dataset: {dataset_for(data)}, endpoint: "{emu.bigquery}",
      loadFormat: json}}""",
    }[case.key]
    return f"""\
apiVersion: v1
kind: Secret
metadata: {{name: bench}}
stringData: {{pg: {json.dumps(pg['password'])}}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: src}}
spec:
  postgres: {{host: {pg['host']}, port: {pg['port']}, database: {pg['db']}, sslMode: disable,
    user: {{value: {pg['user']}}}, password: {{secretKeyRef: {{name: bench, key: pg}}}}}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: dst}}
spec:
  {warehouse}
---
apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: bench-{case.key}}}
spec:
  steps:
    - name: move
      sync:
        source: {{connection: src, asset: {{fqn: {table_name(data, 'src')}}}}}
        destination: {{connection: dst, asset: {{fqn: {target}}}, mode: overwrite}}
"""


@dataclass
class Tool:
    key: str
    name: str
    binary: str | None
    missing: str


def target_table(tool: Tool, data: Dataset) -> str:
    return f"lineitem_{data.label.lower()}_{tool.key}"


def command(tool: Tool, case: Case, data: Dataset, servers, emu: Emulators, python: str, duckdb: str, scratch: Path):
    target = target_table(tool, data)
    if tool.key == REFERENCE:
        if case.key == "snowflake":
            return [python, "-P", str(CLIENTS), "snowflake-load", emu.fakesnow, target, str(data.input("parquet"))], {}
        return [python, "-P", str(CLIENTS), "bigquery-load", emu.bigquery, emu.project, dataset_for(data), target,
                str(ndjson_input(data, duckdb))], {}  # fmt: skip
    if tool.key == "synqx":
        yaml = scratch / f"{case.key}.yaml"
        yaml.write_text(synqx_yaml(case, data, servers, emu, target))
        state = scratch / f"state-{case.key}"
        shutil.rmtree(state, ignore_errors=True)
        return [tool.binary, "run", str(yaml), "--state", str(state), "--full-refresh"], {}
    # Sling: only Snowflake has a way to be pointed at another host (gosnowflake's host, port
    # and protocol); its BigQuery target loads through a Google Cloud Storage bucket. Sling
    # 1.4.11 takes `host` for the account's name: it looks up 127.0.0.1.snowflakecomputing.com
    # and never connects to the emulator, so it runs under --sling-timeout.
    host, port = emu.fakesnow.split("://", 1)[1].split(":")
    connection = {"type": "snowflake", "account": "bench", "user": "bench", "password": "bench", "database": "BENCH",
                  "schema": "PUBLIC", "warehouse": "WH", "host": host, "port": int(port), "protocol": "http"}  # fmt: skip
    env = {"BENCH_PG": servers.pg.replace("postgres://", "postgresql://") + "?sslmode=disable",
           "BENCH_SF": json.dumps(connection)}  # fmt: skip
    argv = [tool.binary, "run", "--src-conn", "BENCH_PG", "--src-stream", f"public.{table_name(data, 'src')}",
            "--tgt-conn", "BENCH_SF", "--tgt-object", f"PUBLIC.{target.upper()}", "--mode", "full-refresh"]  # fmt: skip
    return argv, env


def expected_content(data: Dataset, duckdb: str) -> Fingerprint:
    """The input's checksums, with the whole-row one that the file benchmarks do not keep."""
    return fingerprint(duckdb, relation("csv", [data.input("csv")]), whole_rows=True)


def verify(run: Run, case: Case, tool: Tool, data: Dataset, emu: Emulators, python: str, duckdb: str,
           expected: Fingerprint, out_dir: Path, timeout: float) -> None:  # fmt: skip
    """Reads the written table back whole with the native client into out_dir/read-back/ and
    compares its checksums with the input's (the verdict goes into `run`)."""
    folder = out_dir / "read-back"
    folder.mkdir()
    dump, target = folder / "table.parquet", target_table(tool, data)
    try:
        if case.key == "snowflake":
            client(python, "snowflake-dump", emu.fakesnow, target, str(dump), timeout=timeout)
        else:
            client(python, "bigquery-dump", emu.bigquery, emu.project, dataset_for(data), target, str(dump),
                   timeout=timeout)  # fmt: skip
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        run.wrong = f"cannot read the table back: {e}"
        return
    check_output(run, duckdb, "parquet", folder, expected)


def bench_one(tool: Tool, case: Case, data: Dataset, servers, emu, python, duckdb, expected, args) -> Run:
    if not tool.binary:
        return Run(error=tool.missing)
    if tool.key == "sling" and case.key == "bigquery":
        return Run(error="not run: Sling loads BigQuery through a Google Cloud Storage bucket (gc_bucket) and has no "
                         "endpoint override, so it cannot reach bigquery-emulator")  # fmt: skip
    scratch = data.root / "scratch-warehouses"
    out_dir = scratch / f"{case.key}-{tool.key}"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    argv, env = command(tool, case, data, servers, emu, python, duckdb, scratch)
    if tool.key == "sling":
        env = {**sling_env(args.work), **env}
    log(f"[{data.label}] {case.title:<40} {tool.name:<40}: {shlex.join(argv)}")
    timeout = args.sling_timeout if tool.key == "sling" else args.timeout
    logs = scratch / f"{case.key}-{tool.key}"
    run = execute([argv], env, out_dir, logs, out_dir, 4 * data.input_bytes("csv"), timeout)
    if run.error and tool.key == "sling":
        last = [line for line in logs.with_suffix(".err").read_text(errors="replace").splitlines() if line.strip()]
        run.error += f"; its last line: {ANSI.sub('', last[-1]).strip()}" if last else ""
    if not run.error:
        verify(run, case, tool, data, emu, python, duckdb, expected, out_dir, args.timeout)
    log(f"    -> {describe(run)}")
    return run


def report(rows, datasets, tools, emu, python, args) -> str:
    ref = {(c.key, d.label): r.seconds for c, d, t, r in rows if t.key == REFERENCE and r.seconds}
    lines = ["| case | size | tool | seconds | rows/s | speed vs reference | peak RSS MiB | check |",
             "|---|---|---|--:|--:|--:|--:|---|"]  # fmt: skip
    for case, data, tool, run in rows:
        name = f"{tool.name} (reference)" if tool.key == REFERENCE else tool.name
        head = f"| {case.title} | {data.label} | {cell(name)} |"
        if run.error:
            lines.append(f"{head} – | – | – | – | {cell(run.error)} |")
            continue
        base = ref.get((case.key, data.label))
        ratio = f"{base / run.seconds:.2f}×" if base else "–"
        check = f"WRONG: {cell(run.wrong)}" if run.wrong else "ok"
        lines.append(f"{head} {run.seconds:.2f} | {data.rows / run.seconds:,.0f} | {ratio} | "
                     f"{run.peak_rss / 2**20:.0f} | {check} |")  # fmt: skip
    versions = subprocess.run([python, "-c", "import snowflake.connector, google.cloud.bigquery as b; "
                               "print(snowflake.connector.__version__, b.__version__)"],
                              capture_output=True, text=True).stdout.split()  # fmt: skip
    synqx = next((version([t.binary, "--version"]) for t in tools if t.key == "synqx" and t.binary), "not run")
    return "\n".join([
        f"Command: `{shlex.join(['python3', *sys.argv])}`",
        f"Machine: {machine()} (PostgreSQL, the emulators and the tools share it)",
        f"Versions: SynqX {synqx}, fakesnow 0.12.1, bigquery-emulator v0.6.6, "
        f"snowflake-connector-python {versions[0] if versions else '?'}, google-cloud-bigquery "
        f"{versions[1] if len(versions) > 1 else '?'}, Sling {version([find_sling(args.sling), '--version'])}",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; one run each; timeout {args.timeout:.0f} s (Sling {args.sling_timeout:.0f} s)",
        "Check: each table read back whole; row count, per-column and whole-row checksums equal the input CSV's",
        "Data (TPC-H lineitem): " + "; ".join(f"{d.label} = {d.rows:,} rows" for d in datasets),
        "",
        *lines,
    ])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1M")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "synqx" / "bench-files")
    parser.add_argument("--synqx", help="SynqX binary to use as is (default: build target/release/synqx first)")
    parser.add_argument("--duckdb")
    parser.add_argument("--sling")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--sling-timeout", type=float, default=120, help="Sling never reaches fakesnow (see command())")
    parser.add_argument("--cases", default="snowflake,bigquery")
    parser.add_argument("--tools", default="reference,synqx,sling")
    args = parser.parse_args()
    args.work = args.work.expanduser().resolve()
    duckdb, tpchgen = find_duckdb(args.duckdb), shutil.which("tpchgen-cli")
    if not duckdb or not tpchgen or not shutil.which("psql"):
        log("needs tpchgen-cli, duckdb-cli and psql: pip install tpchgen-cli duckdb-cli sling-linux-amd64")
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    servers, emu, python = start_servers(), start_emulators(), clients_python()
    # After the servers start: they daemonise, and a subreaper would adopt them into the
    # process tree whose RSS is measured.
    become_subreaper()
    synqx = absolute(args.synqx)
    missing = ""
    if synqx is None and "synqx" in args.tools:
        missing = build_synqx() or ""
        synqx = str(DEFAULT_SYNQX)
    sling = find_sling(args.sling)
    all_tools = [
        Tool(REFERENCE, "native client load", python, ""),
        Tool("synqx", "SynqX", None if missing else synqx, missing),
        Tool("sling", "Sling", sling, "sling not found (pip install sling-linux-amd64)"),
    ]
    tools = [t for t in all_tools if t.key in args.tools.split(",")]
    datasets = [prepare(label.strip(), parse_size(label), args.work, tpchgen, duckdb) for label in args.sizes.split(",")]
    rows = []
    for data in datasets:
        load_tables(servers, data)
        expected = expected_content(data, duckdb)
        create_dataset(emu, dataset_for(data))
        client(python, "snowflake-setup", emu.fakesnow)
        psql(servers, "CHECKPOINT")
        for case in CASES:
            if case.key not in args.cases.split(","):
                continue
            for tool in tools:
                rows.append((case, data, tool, bench_one(tool, case, data, servers, emu, python, duckdb, expected, args)))
    print(report(rows, datasets, tools, emu, python, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
