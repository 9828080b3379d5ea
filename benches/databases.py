#!/usr/bin/env python3
"""Data-movement benchmark: SynqX against psql, Sling and DuckDB on PostgreSQL and MariaDB.

TPC-H `lineitem` (generated with `tpchgen-cli`) is loaded into PostgreSQL and MariaDB once,
`VACUUM (FREEZE, ANALYZE)`d, and then moved by every tool, one run at a time:

    PostgreSQL → Parquet     PostgreSQL → PostgreSQL     CSV → PostgreSQL     MariaDB → Parquet

The physical references are what the servers can push and take, with no conversion at all:
`psql \\copy … TO /dev/null (FORMAT binary)`, `\\copy … FROM` the CSV file, a binary COPY
piped from one psql into another, and the `mariadb` client reading every row to /dev/null.
Printed as one Markdown table: wall time, rows/s, MB/s (CSV size of the data / time), the
ratio of each tool's speed to the reference's, peak RSS (the kernel's high-water mark summed
over the tool's processes), and a content check of every output: DuckDB reads it (a table
through a CSV export made with psql) and the row count and a checksum of every column, cast
to the input's types, must equal the input CSV's. SynqX runs with `--threads 2`.

    python3 benches/databases.py [--sizes 1M,6M] [--work DIR] [--synqx PATH] [--repeat N]

Without --synqx the script first builds SynqX (`cargo build --release --bin synqx`). The
database servers come from `scripts/services up` (started here when SYNQX_TEST_POSTGRES is
not set). Needs `tpchgen-cli`, `duckdb-cli` and `sling-linux-amd64` from PyPI, `psql` and
`mariadb` clients. DuckDB only counts Parquet rows here: its PostgreSQL and MySQL
extensions are downloads. See benches/README.md.
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
from urllib.parse import urlparse

from files import (
    DEFAULT_SYNQX,
    THREADS,
    Dataset,
    absolute,
    build_synqx,
    cell,
    describe,
    find_duckdb,
    find_sling,
    log,
    machine,
    parse_size,
    prepare,
    sling_env,
    verdict,
    version,
)
from measure import Run, become_subreaper, check_output, execute

REPO = Path(__file__).resolve().parent.parent

# TPC-H's own column types, as psql's `\copy from` and MariaDB's LOAD DATA need a table.
LINEITEM_COLUMNS = [
    ("l_orderkey", "bigint"),
    ("l_partkey", "bigint"),
    ("l_suppkey", "bigint"),
    ("l_linenumber", "integer"),
    ("l_quantity", "numeric(15,2)"),
    ("l_extendedprice", "numeric(15,2)"),
    ("l_discount", "numeric(15,2)"),
    ("l_tax", "numeric(15,2)"),
    ("l_returnflag", "char(1)"),
    ("l_linestatus", "char(1)"),
    ("l_shipdate", "date"),
    ("l_commitdate", "date"),
    ("l_receiptdate", "date"),
    ("l_shipinstruct", "varchar(25)"),
    ("l_shipmode", "varchar(10)"),
    ("l_comment", "varchar(44)"),
]


@dataclass(frozen=True)
class Case:
    title: str
    key: str
    src: str  # postgres | csv | mysql
    dst: str  # parquet | postgres


CASES = (
    Case("PostgreSQL → Parquet", "pg-to-parquet", "postgres", "parquet"),
    Case("PostgreSQL → PostgreSQL", "pg-to-pg", "postgres", "postgres"),
    Case("CSV → PostgreSQL", "csv-to-pg", "csv", "postgres"),
    Case("MariaDB → Parquet", "mysql-to-parquet", "mysql", "parquet"),
)

REFERENCE = "reference"


@dataclass
class Servers:
    pg: str  # postgres://user:password@host:port/db
    my: str  # mysql://…

    def pg_part(self, what: str) -> str:
        u = urlparse(self.pg)
        return {"host": u.hostname, "port": str(u.port or 5432), "user": u.username,
                "password": u.password or "", "db": u.path.lstrip("/")}[what]  # fmt: skip

    def my_part(self, what: str) -> str:
        u = urlparse(self.my)
        return {"host": u.hostname, "port": str(u.port or 3306), "user": u.username,
                "password": u.password or "", "db": u.path.lstrip("/")}[what]  # fmt: skip


def start_servers() -> Servers:
    pg, my = os.environ.get("SYNQX_TEST_POSTGRES"), os.environ.get("SYNQX_TEST_MYSQL")
    if not pg or not my:
        log("starting the database servers: scripts/services up")
        line = subprocess.run([str(REPO / "scripts" / "services"), "up"], check=True, capture_output=True, text=True)
        for word in line.stdout.split():
            if word.startswith("SYNQX_TEST_POSTGRES="):
                pg = word.split("=", 1)[1]
            if word.startswith("SYNQX_TEST_MYSQL="):
                my = word.split("=", 1)[1]
    if not pg or not my:
        raise RuntimeError("scripts/services up printed no server URLs")
    return Servers(pg, my)


def psql(servers: Servers, sql: str, *extra: str) -> str:
    done = subprocess.run(
        ["psql", servers.pg, "-v", "ON_ERROR_STOP=1", "-qtA", *extra, "-c", sql], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"psql: {done.stderr.strip()}")
    return done.stdout.strip()


def mariadb_argv(servers: Servers, *extra: str) -> list[str]:
    return [
        "mariadb", "--no-defaults", f"-h{servers.my_part('host')}", f"-P{servers.my_part('port')}",
        f"-u{servers.my_part('user')}", f"-p{servers.my_part('password')}", *extra, servers.my_part("db"),
    ]  # fmt: skip


def mariadb(servers: Servers, sql: str, *extra: str) -> str:
    done = subprocess.run([*mariadb_argv(servers, "-N", "-B", *extra), "-e", sql], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"mariadb: {done.stderr.strip()}")
    return done.stdout.strip()


def table_name(data: Dataset, role: str) -> str:
    return f"lineitem_{data.label.lower()}_{role}"


def load_tables(servers: Servers, data: Dataset) -> None:
    """Loads the CSV into both servers once (a marker table says it is complete)."""
    source = table_name(data, "src")
    columns = ", ".join(f"{n} {t}" for n, t in LINEITEM_COLUMNS)
    done = psql(servers, f"SELECT count(*) FROM pg_tables WHERE tablename = '{source}'")
    if done != "1" or psql(servers, f"SELECT count(*) FROM {source}") != str(data.rows):
        log(f"[{data.label}] loading {source} into PostgreSQL")
        psql(servers, f"DROP TABLE IF EXISTS {source}")
        psql(servers, f"CREATE TABLE {source} ({columns})")
        psql(servers, f"\\copy {source} FROM '{data.input('csv')}' (FORMAT csv, HEADER)")
    psql(servers, f"VACUUM (FREEZE, ANALYZE) {source}")
    have = mariadb(servers, f"SELECT count(*) FROM information_schema.tables WHERE table_name = '{source}'")
    if have != "1" or mariadb(servers, f"SELECT count(*) FROM {source}") != str(data.rows):
        log(f"[{data.label}] loading {source} into MariaDB")
        mariadb(servers, f"DROP TABLE IF EXISTS {source}")
        my_columns = columns.replace("numeric", "decimal")
        mariadb(servers, f"CREATE TABLE {source} ({my_columns}) ENGINE=InnoDB")
        mariadb(
            servers,
            f"LOAD DATA LOCAL INFILE '{data.input('csv')}' INTO TABLE {source} "
            "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' IGNORE 1 LINES",
            "--local-infile=1",
        )
    mariadb(servers, f"ANALYZE TABLE {source}")


# --------------------------------------------------------------------------------------
# The tools' command lines


def synqx_yaml(case: Case, data: Dataset, servers: Servers, out_dir: Path) -> str:
    pg = {k: servers.pg_part(k) for k in ("host", "port", "user", "password", "db")}
    my = {k: servers.my_part(k) for k in ("host", "port", "user", "password", "db")}
    connections = {
        "postgres": f"""postgres: {{host: {pg['host']}, port: {pg['port']}, database: {pg['db']}, sslMode: disable,
      user: {{value: {pg['user']}}}, password: {{secretKeyRef: {{name: bench, key: pg}}}}}}""",
        "mysql": f"""mysql: {{host: {my['host']}, port: {my['port']}, database: {my['db']}, sslMode: disable,
      user: {{value: {my['user']}}}, password: {{secretKeyRef: {{name: bench, key: my}}}}}}""",
        "csv": f"filesystem: {{path: {json.dumps(str(data.input_dir))}}}",
        "parquet": f"filesystem: {{path: {json.dumps(str(out_dir))}}}",
    }
    source = {
        "postgres": f"{{connection: src, asset: {{fqn: {table_name(data, 'src')}}}}}",
        "mysql": f"{{connection: src, asset: {{fqn: {table_name(data, 'src')}}}}}",
        "csv": "{connection: src, asset: {fqn: lineitem.csv}}",
    }[case.src]
    destination = {
        "parquet": "{connection: dst, asset: {fqn: lineitem/}, format: parquet, compression: zstd, mode: overwrite}",
        "postgres": f"{{connection: dst, asset: {{fqn: {table_name(data, 'dst')}}}, mode: overwrite}}",
    }[case.dst]
    return f"""\
apiVersion: v1
kind: Secret
metadata: {{name: bench}}
stringData: {{pg: {json.dumps(pg['password'])}, my: {json.dumps(my['password'])}}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: src}}
spec:
  {connections[case.src]}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: dst}}
spec:
  {connections[case.dst]}
---
apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: bench-{case.key}}}
spec:
  steps:
    - name: move
      sync:
        source: {source}
        destination: {destination}
"""


def reference_command(case: Case, data: Dataset, servers: Servers) -> tuple[list[list[str]], bool]:
    """The reference as a pipeline of processes (no shell, so each one's peak RSS counts) and
    whether its output is discarded."""
    src, dst = table_name(data, "src"), table_name(data, "dst")
    if case.key == "pg-to-parquet":
        return [["psql", servers.pg, "-qc", f"\\copy {src} TO '/dev/null' (FORMAT binary)"]], True
    if case.key == "pg-to-pg":
        return [["psql", servers.pg, "-qc", f"COPY {src} TO STDOUT (FORMAT binary)"],
                ["psql", servers.pg, "-v", "ON_ERROR_STOP=1", "-qc", f"COPY {dst} FROM STDIN (FORMAT binary)"]], True  # fmt: skip
    if case.key == "csv-to-pg":
        return [["psql", servers.pg, "-v", "ON_ERROR_STOP=1", "-qc",
                 f"\\copy {dst} FROM '{data.input('csv')}' (FORMAT csv, HEADER)"]], True  # fmt: skip
    return [[*mariadb_argv(servers, "-N", "-B", "--quick"), "-e", f"SELECT * FROM {src}"]], True


def reference_name(case: Case) -> str:
    return {
        "pg-to-parquet": "psql \\copy binary → /dev/null",
        "pg-to-pg": "psql COPY binary | psql COPY",
        "csv-to-pg": "psql \\copy from CSV",
        "mysql-to-parquet": "mariadb --quick → /dev/null",
    }[case.key]


def sling_command(sling: str, case: Case, data: Dataset, out_dir: Path) -> list[str]:
    src = table_name(data, "src")
    argv = [sling, "run"]
    if case.src == "csv":
        argv += ["--src-stream", f"file://{data.input('csv')}"]
    else:
        # Sling looks a table up by schema-qualified name only.
        schema = "public" if case.src == "postgres" else "synqx"
        argv += ["--src-conn", "BENCH_PG" if case.src == "postgres" else "BENCH_MY", "--src-stream", f"{schema}.{src}"]
    if case.dst == "parquet":
        options = {"format": "parquet", "compression": "zstd", "file_max_rows": 0, "file_max_bytes": 0}
        argv += ["--tgt-object", f"file://{out_dir / 'lineitem.parquet'}", "--tgt-options", json.dumps(options)]
    else:
        argv += ["--tgt-conn", "BENCH_PG", "--tgt-object", f"public.{table_name(data, 'dst')}", "--mode", "full-refresh"]
    return argv


@dataclass
class Tool:
    key: str
    name: str
    binary: str | None
    missing: str
    env: dict[str, str]


def command(tool: Tool, case: Case, data: Dataset, servers: Servers, out_dir: Path, scratch: Path) -> list[list[str]]:
    if tool.key == REFERENCE:
        return reference_command(case, data, servers)[0]
    if tool.key == "synqx":
        yaml = scratch / f"{case.key}.yaml"
        yaml.write_text(synqx_yaml(case, data, servers, out_dir))
        state = scratch / f"state-{case.key}"
        shutil.rmtree(state, ignore_errors=True)
        return [[tool.binary, "run", str(yaml), "--state", str(state), "--full-refresh", "--threads", str(THREADS)]]
    return [sling_command(tool.binary, case, data, out_dir)]


def reset_destination(tool: Tool, case: Case, data: Dataset, servers: Servers) -> None:
    """Every run starts without the destination table, except psql's, which needs one."""
    if case.dst != "postgres":
        return
    dst = table_name(data, "dst")
    psql(servers, f"DROP TABLE IF EXISTS {dst}")
    if tool.key == REFERENCE:
        psql(servers, f"CREATE TABLE {dst} ({', '.join(f'{n} {t}' for n, t in LINEITEM_COLUMNS)})")
    psql(servers, "CHECKPOINT")


def check(run: Run, case: Case, data: Dataset, servers: Servers, out_dir: Path, duckdb: str) -> None:
    """Checks the output by content with DuckDB: a Parquet folder directly, a table through a
    CSV export made with psql."""
    if case.dst == "postgres":
        export = out_dir / "export" / "table.csv"
        export.parent.mkdir(parents=True, exist_ok=True)
        psql(servers, f"\\copy {table_name(data, 'dst')} TO '{export}' (FORMAT csv, HEADER)")
        check_output(run, duckdb, "csv", export.parent, data.fingerprints["csv"])
        run.output_bytes = None
        return
    check_output(run, duckdb, "parquet", out_dir, data.fingerprints["csv"])


def bench_one(tool: Tool, case: Case, data: Dataset, servers: Servers, args, duckdb: str) -> Run:
    if not tool.binary:
        return Run(error=tool.missing)
    scratch = data.root / "scratch-db"
    out_dir = scratch / f"{case.key}-{tool.key}"
    scratch.mkdir(exist_ok=True)
    disk_limit = 4 * data.input_bytes("csv") + 64 * 2**20
    best: Run | None = None
    for i in range(args.repeat):
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        reset_destination(tool, case, data, servers)
        argvs = command(tool, case, data, servers, out_dir, scratch)
        discard = tool.key == REFERENCE
        log(f"[{data.label}] {case.title:<24} {tool.name:<30} run {i + 1}/{args.repeat}: "
            + " | ".join(shlex.join(a) for a in argvs))  # fmt: skip
        run = execute(argvs, tool.env, scratch, scratch / f"{case.key}-{tool.key}", out_dir, disk_limit,
                      args.timeout, discard_stdout=discard)  # fmt: skip
        if not run.error and not (tool.key == REFERENCE and case.dst != "postgres"):
            check(run, case, data, servers, out_dir, duckdb)
        shutil.rmtree(out_dir, ignore_errors=True)
        log(f"    -> {describe(run)}")
        if run.error or run.wrong:
            return run
        if best is None or run.seconds < best.seconds:
            best = run
    return best


# --------------------------------------------------------------------------------------
# The report


@dataclass
class Row:
    case: Case
    data: Dataset
    tool: str
    reference: bool
    run: Run


def table(rows: list[Row]) -> list[str]:
    ref = {(r.case.key, r.data.label): r.run.seconds for r in rows if r.reference and r.run.seconds}
    lines = [
        "| case | size | tool | seconds | rows/s | MB/s | speed vs reference | peak RSS MiB | check |",
        "|---|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for r in rows:
        head = f"| {r.case.title} | {r.data.label} | {cell(r.tool)} |"
        if r.run.error:
            lines.append(f"{head} – | – | – | – | – | {cell(r.run.error)} |")
            continue
        s = r.run.seconds
        base = ref.get((r.case.key, r.data.label))
        ratio = f"{base / s:.2f}×" if base else "–"
        mb_s = r.data.input_bytes("csv") / 1e6 / s
        checked = "–" if r.reference and r.case.dst != "postgres" else verdict(r.run)
        lines.append(
            f"{head} {s:.2f} | {r.data.rows / s:,.0f} | {mb_s:.1f} | {ratio} | {r.run.peak_rss / 2**20:.0f} | {checked} |"
        )
    return lines


def report(rows: list[Row], datasets: list[Dataset], tools: list[Tool], servers: Servers, args) -> str:
    versions = {
        "SynqX": next((version([t.binary, "--version"]) for t in tools if t.key == "synqx" and t.binary), "not run"),
        "PostgreSQL": psql(servers, "SHOW server_version").split()[0],
        "MariaDB": mariadb(servers, "SELECT version()").split("-")[0],
        "Sling": version([find_sling(args.sling), "--version"]),
        "DuckDB": version([find_duckdb(args.duckdb), "--version"]),
    }
    out = [
        f"Command: `{shlex.join(['python3', *sys.argv])}`",
        f"Machine: {machine()} (servers, clients and tools share it)",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; best of {args.repeat}; timeout {args.timeout:.0f} s per run",
        "",
        "Data (TPC-H lineitem): "
        + "; ".join(f"{d.label} = {d.rows:,} rows, CSV {d.input_bytes('csv') / 1e6:.1f} MB" for d in datasets),
        "",
        *table(rows),
        "",
        "MB/s is the CSV size of the data / wall time. Speed vs reference: the reference's time / the tool's "
        "time (1.00× = as fast as the server pushes or takes the rows with no conversion; above 1 is faster). "
        "Peak RSS: the kernel's high-water mark (ru_maxrss from wait4) summed over the tool's processes "
        "(servers excluded). SynqX runs with --threads 2. Check: DuckDB reads the output (a table through a "
        "CSV export by psql) and the input CSV; row counts and a checksum of every column, cast to the input's "
        "type, are equal: ok; types that differ from the input CSV's (as DuckDB infers them) are listed. DuckDB "
        "is not a peer here: it reaches PostgreSQL and MySQL only through extensions it downloads at first use.",
    ]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1M,6M", help="lineitem row counts (default 1M,6M)")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "synqx" / "bench-files",
                        help="inputs and scratch outputs, shared with files.py (default ~/.cache/synqx/bench-files)")  # fmt: skip
    parser.add_argument("--synqx", help="SynqX binary to use as is (default: build target/release/synqx first)")
    parser.add_argument("--duckdb", help="DuckDB CLI binary")
    parser.add_argument("--sling", help="Sling binary")
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool and case; the best is kept")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run (default 900)")
    parser.add_argument("--cases", default=",".join(c.key for c in CASES), help="subset of the cases, by key")
    parser.add_argument("--tools", default="reference,synqx,sling", help="subset of reference,synqx,sling")
    args = parser.parse_args()
    args.work = args.work.expanduser().resolve()
    wanted_cases = {c.strip() for c in args.cases.split(",")}
    wanted_tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    sizes = [(label.strip(), parse_size(label)) for label in args.sizes.split(",") if label.strip()]

    duckdb, sling, tpchgen = find_duckdb(args.duckdb), find_sling(args.sling), shutil.which("tpchgen-cli")
    if not duckdb or not tpchgen or not shutil.which("psql") or not shutil.which("mariadb"):
        log("needs tpchgen-cli, duckdb-cli, psql and mariadb: pip install tpchgen-cli duckdb-cli sling-linux-amd64")
        return 2
    become_subreaper()
    args.work.mkdir(parents=True, exist_ok=True)
    servers = start_servers()

    synqx = absolute(args.synqx)
    synqx_missing = ""
    if synqx is None and "synqx" in wanted_tools:
        synqx_missing = build_synqx() or ""
        synqx = str(DEFAULT_SYNQX)
    sling_vars = {"BENCH_PG": servers.pg.replace("postgres://", "postgresql://") + "?sslmode=disable",
                  "BENCH_MY": servers.my}  # fmt: skip
    all_tools = [
        Tool(REFERENCE, "", "psql", "", {}),
        Tool("synqx", "SynqX", None if synqx_missing else synqx, synqx_missing, {}),
        Tool("sling", "Sling", sling, "sling not found (pip install sling-linux-amd64)",
             {**sling_env(args.work), **sling_vars}),  # fmt: skip
    ]
    tools = [t for t in all_tools if t.key in wanted_tools]
    datasets = [prepare(label, n, args.work, tpchgen, duckdb) for label, n in sizes]
    for data in datasets:
        load_tables(servers, data)

    rows = []
    for case in CASES:
        if case.key not in wanted_cases:
            continue
        for data in datasets:
            for tool in tools:
                name = f"{reference_name(case)} (reference)" if tool.key == REFERENCE else tool.name
                rows.append(Row(case, data, name, tool.key == REFERENCE,
                                bench_one(tool, case, data, servers, args, duckdb)))  # fmt: skip
    print(report(rows, datasets, tools, servers, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
