#!/usr/bin/env python3
"""File-format benchmark: SynqX against DuckDB's CLI, Polars and Sling, side by side.

TPC-H `lineitem` (generated with `tpchgen-cli`) is converted CSV -> Parquet (once per codec)
and Parquet -> CSV by every tool, one run at a time, with equal settings: the same codec and
level, row groups of 122,880 rows (DuckDB's default; Polars and SynqX are set to it), and
2 threads (DuckDB `SET threads=2`, `POLARS_MAX_THREADS=2`, `synqx run --threads 2`).
Every output is checked by content: DuckDB reads it and the input, and the row count and
a checksum of every column (cast to the input's types) must be equal. Printed as one
Markdown table with the command line, machine and versions.

    python3 benches/files.py [--sizes 1M,6M] [--codecs zstd:3,snappy] [--synqx PATH] [--repeat N]

Without --synqx the script first builds SynqX (`cargo build --release --bin synqx`) so the
numbers are those of the checked-out code. Python 3.11 standard library only; needs
`tpchgen-cli`, the DuckDB CLI, Polars and Sling from PyPI
(`pip install tpchgen-cli duckdb-cli polars sling-linux-amd64`). See benches/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.util import find_spec
from pathlib import Path

from measure import (
    ANSI,
    Fingerprint,
    Run,
    become_subreaper,
    check_output,
    duckdb_sql,
    execute,
    fingerprint,
    first_error_line,
    relation,
    sql_string,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SYNQX = REPO / "target" / "release" / "synqx"
SF1_LINEITEM_ROWS = 6_001_215  # lineitem rows at TPC-H scale factor 1
ROW_GROUP_ROWS = 122_880  # DuckDB's default row group; every tool writes these here
THREADS = 2
INPUT_VERSION = 2  # bump when the way inputs are written changes


# --------------------------------------------------------------------------------------
# What is measured


@dataclass(frozen=True)
class Codec:
    name: str  # zstd, snappy, gzip, lz4, brotli, none
    level: int | None

    @property
    def label(self) -> str:
        return f"{self.name} {self.level}" if self.level is not None else self.name

    @property
    def key(self) -> str:
        return f"{self.name}{self.level if self.level is not None else ''}"


@dataclass(frozen=True)
class Case:
    title: str  # as printed in the table
    key: str  # in file names
    src: str  # input format: csv | parquet
    dst: str  # output format: csv | parquet
    codec: Codec | None  # Parquet outputs only


@dataclass
class Dataset:
    """One size of lineitem: the same rows as a CSV file (with header) and a Parquet file."""

    label: str  # as given on the command line, e.g. 1M
    root: Path  # work/<label>
    rows: int
    fingerprints: dict[str, Fingerprint]

    @property
    def input_dir(self) -> Path:
        return self.root / "in"

    def input(self, fmt: str) -> Path:
        return self.input_dir / f"lineitem.{fmt}"

    def input_bytes(self, fmt: str) -> int:
        return self.input(fmt).stat().st_size


@dataclass
class Row:
    case: Case
    data: Dataset
    tool: "Tool"
    run: Run  # the fastest correct run, else the first wrong or failed one


# --------------------------------------------------------------------------------------
# Locating the tools


def packaged_binary(package: str, *relative: str) -> str | None:
    """A binary shipped inside a pip package, without importing the package.

    The `duckdb` command that pip installs is a Python wrapper that starts the real binary
    as a child: timing and RSS would include a Python interpreter, so we call the real
    binary directly. `sling-linux-amd64` installs no command at all.
    """
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *relative)
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def absolute(given: str | None) -> str | None:
    # Tools run in a scratch directory, so a relative --synqx/--duckdb/--sling must not be.
    if not given:
        return None
    return os.path.abspath(given) if os.sep in given else shutil.which(given) or given


def find_duckdb(given: str | None) -> str | None:
    return absolute(given) or packaged_binary("duckdb_cli", "duckdb") or shutil.which("duckdb")


def find_sling(given: str | None) -> str | None:
    return absolute(given) or packaged_binary("sling_linux_amd64", "bin", "sling-linux-amd64") or shutil.which("sling")


def build_synqx() -> str | None:
    """Builds the release binary; returns why it failed, or None."""
    print("building SynqX: cargo build --release --bin synqx", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(
            ["cargo", "build", "--release", "--bin", "synqx"], cwd=REPO, stderr=subprocess.PIPE, text=True
        )
    except OSError as e:
        return f"cargo build: {e}"
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        return f"cargo build failed: {first_error_line(done.stderr)}"
    return None


def version(argv: list[str | None]) -> str:
    if not argv or not argv[0]:
        return "not found"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    found = re.search(r"v?\d+(?:\.\d+)+[\w.+-]*", ANSI.sub("", done.stdout + done.stderr))
    return found.group(0) if found else "unknown"


# --------------------------------------------------------------------------------------
# Input data


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (use e.g. 100k, 1M, 6M)")
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


def parse_codecs(text: str) -> list[Codec]:
    codecs = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        name, _, level = item.partition(":")
        codecs.append(Codec(name, int(level) if level else None))
    return codecs


def single_csv(generated: Path, target: Path) -> None:
    """Moves what tpchgen-cli wrote to one CSV file with one header row (parts, when it
    splits the table, are concatenated keeping the first header)."""
    single = generated / "lineitem.csv"
    parts = sorted((generated / "lineitem").glob("*.csv"), key=lambda p: [int(n) for n in re.findall(r"\d+", p.name)])
    if single.is_file():
        single.rename(target)
    elif parts:
        with open(target, "wb") as out:
            for i, part in enumerate(parts):
                with open(part, "rb") as f:
                    if i > 0:
                        f.readline()
                    shutil.copyfileobj(f, out, 1 << 20)
    else:
        raise RuntimeError(f"tpchgen-cli wrote no lineitem CSV into {generated}")
    with open(target, "rb") as f:
        if not f.readline().startswith(b"l_orderkey,"):
            raise RuntimeError(f"{target} has no header row (tpchgen-cli too old?)")


def prepare(label: str, rows_wanted: int, work: Path, tpchgen: str, duckdb: str) -> Dataset:
    """Generates the inputs of one size once; later invocations reuse them (meta.json is
    written last, so an interrupted generation is redone from scratch). The fingerprints of
    both inputs are what every output is compared with."""
    root = work / label
    meta = root / "meta.json"
    if meta.is_file():
        saved = json.loads(meta.read_text())
        data = Dataset(label, root, saved["rows"], {k: Fingerprint(**v) for k, v in saved["fingerprints"].items()})
        if saved.get("version") == INPUT_VERSION and data.input("csv").is_file() and data.input("parquet").is_file():
            return data
    shutil.rmtree(root, ignore_errors=True)
    generated = root / "tpchgen"
    generated.mkdir(parents=True)
    data = Dataset(label, root, 0, {})
    data.input_dir.mkdir()
    scale = rows_wanted / SF1_LINEITEM_ROWS
    log(f"[{label}] generating lineitem at scale factor {scale:.6g} with tpchgen-cli")
    subprocess.run(
        [tpchgen, "csv", "--scale-factor", f"{scale:.6g}", "--tables", "lineitem", "--output-dir", str(generated), "--quiet"],
        check=True,
    )
    single_csv(generated, data.input("csv"))
    shutil.rmtree(generated)
    log(f"[{label}] writing the Parquet input with DuckDB (zstd 3, {ROW_GROUP_ROWS:,}-row groups)")
    duckdb_sql(
        duckdb,
        f"COPY (SELECT * FROM read_csv({sql_string(data.input('csv'))})) TO {sql_string(data.input('parquet'))} "
        f"(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 3, ROW_GROUP_SIZE {ROW_GROUP_ROWS})",
    )
    log(f"[{label}] checksums of the inputs")
    csv_print = fingerprint(duckdb, relation("csv", [data.input("csv")]))
    parquet_print = fingerprint(duckdb, relation("parquet", [data.input("parquet")]), csv_print.types)
    if parquet_print.sums != csv_print.sums or parquet_print.rows != csv_print.rows:
        raise RuntimeError(f"[{label}] the Parquet input does not hold the CSV's values")
    data.rows = csv_print.rows
    data.fingerprints = {"csv": csv_print, "parquet": parquet_print}
    meta.write_text(json.dumps({
        "version": INPUT_VERSION, "rows": data.rows, "scale_factor": scale,
        "fingerprints": {k: vars(v) for k, v in data.fingerprints.items()},
    }))  # fmt: skip
    return data


# --------------------------------------------------------------------------------------
# The tools' command lines


def synqx_yaml(case: Case, data: Dataset, out_dir: Path) -> str:
    """Two filesystem Connections and one Pipeline with one sync step (absolute paths as
    JSON strings, which are YAML scalars)."""
    codec = ""
    if case.codec:
        codec = f", compression: {case.codec.name}"
        if case.codec.level is not None:
            codec += f", compressionLevel: {case.codec.level}"
    return f"""\
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: in}}
spec:
  filesystem: {{path: {json.dumps(str(data.input_dir))}}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: out}}
spec:
  filesystem: {{path: {json.dumps(str(out_dir))}}}
---
apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: bench-{case.key}}}
spec:
  steps:
    - name: convert
      sync:
        source: {{connection: in, asset: {{fqn: lineitem.{case.src}}}}}
        destination: {{connection: out, asset: {{fqn: lineitem/}}, format: {case.dst}{codec}, mode: overwrite}}
"""


def duckdb_command(duckdb: str, threads: int, case: Case, data: Dataset, out_dir: Path) -> list[str]:
    source = data.input(case.src)
    read = f"read_csv({sql_string(source)})" if case.src == "csv" else f"read_parquet({sql_string(source)})"
    if case.dst == "parquet" and case.codec:
        options = f"FORMAT parquet, COMPRESSION {case.codec.name}, ROW_GROUP_SIZE {ROW_GROUP_ROWS}"
        if case.codec.level is not None:
            options += f", COMPRESSION_LEVEL {case.codec.level}"
    else:
        options = "FORMAT csv, HEADER"
    target = out_dir / f"lineitem.{case.dst}"
    return [duckdb, "-batch", "-c", f"SET threads={threads}; COPY (SELECT * FROM {read}) TO {sql_string(target)} ({options})"]


POLARS_SCRIPT = """\
import sys, time
import polars as pl
src, dst, dst_format, codec, level, group = sys.argv[1:7]
start = time.perf_counter()
if dst_format == "parquet":
    pl.scan_csv(src, try_parse_dates=True).sink_parquet(
        dst, compression=codec, compression_level=int(level) if level else None, row_group_size=int(group))
else:
    pl.scan_parquet(src).sink_csv(dst)
print(f"in-process seconds: {time.perf_counter() - start:.4f}")
"""


def polars_command(case: Case, data: Dataset, out_dir: Path) -> list[str]:
    codec = case.codec or Codec("uncompressed", None)
    level = "" if codec.level is None else str(codec.level)
    target = out_dir / f"lineitem.{case.dst}"
    return [sys.executable, "-c", POLARS_SCRIPT, str(data.input(case.src)), str(target), case.dst, codec.name, level,
            str(ROW_GROUP_ROWS)]  # fmt: skip


def sling_command(sling: str, case: Case, data: Dataset, out_dir: Path) -> list[str]:
    # file_max_rows/file_max_bytes 0: one output file, like the other tools.
    options = {"format": case.dst, "file_max_rows": 0, "file_max_bytes": 0}
    options["compression"] = case.codec.name if case.codec else "none"
    return [
        sling, "run",
        "--src-stream", f"file://{data.input(case.src)}",
        "--tgt-object", f"file://{out_dir / f'lineitem.{case.dst}'}",
        "--tgt-options", json.dumps(options),
    ]  # fmt: skip


def sling_env(work: Path) -> dict[str, str]:
    """Sling offline: its own home and temp dir, no telemetry, and no DuckDB (which it
    would otherwise download at its first run)."""
    home, tmp = work / "sling-home", work / "sling-tmp"
    home.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    return {
        "SLING_HOME_DIR": str(home),
        "SLING_TEMP_DIR": str(tmp),
        "SLING_DUCKDB_COMPUTE": "false",
        "SLING_DISABLE_TELEMETRY": "true",
    }


@dataclass
class Tool:
    key: str  # as given to --tools
    name: str  # as printed
    threads: str  # as printed
    binary: str | None
    missing: str  # why it cannot run when binary is None or unusable
    env: dict[str, str]

    def command(self, case: Case, data: Dataset, out_dir: Path, scratch: Path) -> list[str]:
        assert self.binary
        if self.key == "synqx":
            yaml = scratch / f"{case.key}.yaml"
            yaml.write_text(synqx_yaml(case, data, out_dir))
            state = scratch / f"state-{case.key}"
            shutil.rmtree(state, ignore_errors=True)  # each run starts from empty state
            return [self.binary, "run", str(yaml), "--state", str(state), "--full-refresh", "--threads", str(THREADS)]
        if self.key.startswith("duckdb"):
            return duckdb_command(self.binary, int(self.key[-1]), case, data, out_dir)
        if self.key == "polars":
            return polars_command(case, data, out_dir)
        return sling_command(self.binary, case, data, out_dir)

    def codec_note(self, codec: Codec) -> str:
        """Where a tool cannot be given the codec's level."""
        return " (level: its default)" if self.key == "sling" and codec.level is not None else ""


# --------------------------------------------------------------------------------------
# The benchmark


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_one(tool: Tool, case: Case, data: Dataset, args, duckdb: str) -> Run:
    """Best of --repeat runs: the fastest correct one; a wrong or failed run is reported
    as soon as one occurs, since a faster wrong answer proves nothing."""
    if not tool.binary:
        return Run(error=tool.missing)
    scratch = data.root / "scratch"
    out_dir = scratch / f"{case.key}-{tool.key}"
    scratch.mkdir(exist_ok=True)
    # Past twice the CSV plus slack, a writer is not going to stop (Sling 1.4.11 reading
    # Parquet without DuckDB repeats empty rows forever) and would fill the disk.
    disk_limit = 2 * data.input_bytes("csv") + 64 * 2**20
    best: Run | None = None
    for i in range(args.repeat):
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        argv = tool.command(case, data, out_dir, scratch)
        logs = scratch / f"{case.key}-{tool.key}"
        log(f"[{data.label}] {case.title:<22} {tool.name:<8} run {i + 1}/{args.repeat}: {shlex.join(argv)}")
        run = execute([argv], tool.env, scratch, logs, out_dir, disk_limit, args.timeout)
        if not run.error:
            found = re.search(r"in-process seconds: ([\d.]+)", logs.with_suffix(".out").read_text(errors="replace"))
            run.inner_seconds = float(found.group(1)) if found else None
            check_output(run, duckdb, case.dst, out_dir, data.fingerprints[case.src])
        shutil.rmtree(out_dir, ignore_errors=True)  # outputs of 6M rows are large
        log(f"    -> {describe(run)}")
        if run.error or run.wrong:
            return run
        if best is None or run.seconds < best.seconds:
            best = run
    return best


def describe(run: Run) -> str:
    if run.error:
        return f"FAILED: {run.error}"
    text = f"{run.seconds:.3f} s, peak RSS {run.peak_rss / 2**20:.0f} MiB"
    if run.wrong:
        return f"{text}, WRONG: {run.wrong}"
    return f"{text}, {run.note}" if run.note else f"{text}, content ok"


def make_tools(args, duckdb: str | None, sling: str | None, work: Path) -> list[Tool]:
    synqx, synqx_missing = absolute(args.synqx), ""
    if synqx is None:  # the default: build the checked-out code, then use it
        if "synqx" in args.tools:
            synqx_missing = build_synqx() or ""
        synqx = str(DEFAULT_SYNQX)
    if not synqx_missing and not (os.path.isfile(synqx) and os.access(synqx, os.X_OK)):
        synqx_missing = f"no binary at {synqx} (cargo build --release --bin synqx)"
    no_duckdb = "duckdb not found (pip install duckdb-cli)"
    polars = sys.executable if find_spec("polars") else None
    tools = [
        Tool("synqx", "SynqX", str(THREADS), None if synqx_missing else synqx, synqx_missing, {}),
        Tool("duckdb2", "DuckDB", "2", duckdb, no_duckdb, {}),
        Tool("duckdb1", "DuckDB", "1", duckdb, no_duckdb, {}),
        Tool("polars", "Polars", str(THREADS), polars, "polars not found (pip install polars)",
             {"POLARS_MAX_THREADS": str(THREADS)}),  # fmt: skip
        Tool("sling", "Sling", "not set", sling, "sling not found (pip install sling-linux-amd64)", sling_env(work)),
    ]
    return [t for t in tools if t.key in args.tools]


# --------------------------------------------------------------------------------------
# The report


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        memory = f", {kib / 2**20:.1f} GiB RAM"
    except (OSError, AttributeError):
        memory = ""
    load = os.getloadavg()[0]
    return f"{len(os.sched_getaffinity(0))} CPUs, {cpu}{memory}, {platform.system()} {platform.release()}, load {load:.2f} at the start"


def verdict(run: Run) -> str:
    if run.wrong:
        return f"WRONG: {cell(run.wrong)}"
    return "ok" + (f"; {cell(run.note)}" if run.note else "")


def table(rows: list[Row]) -> list[str]:
    reference = {
        (r.case.key, r.data.label): r.run.seconds for r in rows if r.tool.key == "duckdb2" and r.run.seconds
    }
    lines = [
        "| case | size | tool | threads | seconds | in-process s | rows/s | MB/s | speed vs DuckDB (2 threads) "
        "| peak RSS MiB | output MB | rows per row group | check |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in rows:
        title = r.case.title + (f" ({r.case.codec.label}{r.tool.codec_note(r.case.codec)})" if r.case.codec else "")
        head = f"| {title} | {r.data.label} | {r.tool.name} | {r.tool.threads} |"
        if r.run.error:
            lines.append(f"{head} – | – | – | – | – | – | – | – | FAILED: {cell(r.run.error)} |")
            continue
        s = r.run.seconds
        ref = reference.get((r.case.key, r.data.label))
        ratio = f"{ref / s:.2f}×" if ref else "–"
        inner = f"{r.run.inner_seconds:.2f}" if r.run.inner_seconds is not None else "–"
        mb_s = r.data.input_bytes(r.case.src) / 1e6 / s
        out_mb = f"{r.run.output_bytes / 1e6:.1f}" if r.run.output_bytes is not None else "–"
        lines.append(
            f"{head} {s:.2f} | {inner} | {r.data.rows / s:,.0f} | {mb_s:.1f} | {ratio} | "
            f"{r.run.peak_rss / 2**20:.0f} | {out_mb} | {r.run.rows_per_group or '–'} | {verdict(r.run)} |"
        )
    return lines


def report(rows: list[Row], datasets: list[Dataset], tools: list[Tool], args) -> str:
    versions = {
        "SynqX": next((version([t.binary, "--version"]) for t in tools if t.key == "synqx" and t.binary), "not run"),
        "DuckDB": version([find_duckdb(args.duckdb), "--version"]),
        "Polars": version([sys.executable, "-c", "import polars; print(polars.__version__)"]),
        "Sling": version([find_sling(args.sling), "--version"]) if "sling" in args.tools else "not run",
        "tpchgen-cli": version([shutil.which("tpchgen-cli"), "--version"]),
    }
    out = [
        f"Command: `{shlex.join(['python3', *sys.argv])}`",
        f"Machine: {machine()}",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; best of {args.repeat}; timeout {args.timeout:.0f} s per run",
        "",
        "Inputs (TPC-H lineitem): "
        + "; ".join(
            f"{d.label} = {d.rows:,} rows, CSV {d.input_bytes('csv') / 1e6:.1f} MB, "
            f"Parquet {d.input_bytes('parquet') / 1e6:.1f} MB (DuckDB, zstd 3, {ROW_GROUP_ROWS:,}-row groups)"
            for d in datasets
        ),
        "",
        *table(rows),
        "",
        "Seconds: wall time of the whole process (Polars: a Python interpreter that imports polars; its "
        "in-process time is what its script measured around the conversion). Speed vs DuckDB (2 threads): "
        "DuckDB's seconds / the tool's (above 1 is faster). MB/s: input file size / seconds. Peak RSS: "
        "the kernel's high-water mark (ru_maxrss from wait4) summed over the tool's processes. Row groups: "
        f"{ROW_GROUP_ROWS:,} rows asked of every tool that takes a size. Check: DuckDB reads the output and "
        "the input; row counts and a checksum of every column (cast to the input's type) are equal: ok; "
        "types that differ from the input's are listed. "
        f"Logs of every run: {args.work}/<size>/scratch/.",
    ]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1M,6M", help="lineitem row counts, e.g. 100k,1M,6M (default 1M,6M)")
    parser.add_argument("--codecs", default="zstd:3,snappy",
                        help="Parquet codecs of CSV -> Parquet, with levels, e.g. zstd:3,snappy,gzip:6 (default zstd:3,snappy)")  # fmt: skip
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "synqx" / "bench-files",
                        help="inputs and scratch outputs (default ~/.cache/synqx/bench-files)")  # fmt: skip
    parser.add_argument("--synqx", help="SynqX binary to use as is (default: build target/release/synqx first)")
    parser.add_argument("--duckdb", help="DuckDB CLI binary (default: the one of pip's duckdb-cli, else PATH)")
    parser.add_argument("--sling", help="Sling binary (default: the one of pip's sling-linux-amd64, else PATH)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool and case; the best is kept (default 1)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run (default 600)")
    parser.add_argument("--tools", default="synqx,duckdb2,duckdb1,polars",
                        help="subset of synqx,duckdb2,duckdb1,polars,sling (default: all but sling)")  # fmt: skip
    args = parser.parse_args()
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(args.tools) - {"synqx", "duckdb1", "duckdb2", "polars", "sling"}
    if unknown:
        parser.error(f"unknown tools: {', '.join(sorted(unknown))}")
    args.work = args.work.expanduser().resolve()
    sizes = [(label.strip(), parse_size(label)) for label in args.sizes.split(",") if label.strip()]
    codecs = parse_codecs(args.codecs)

    duckdb, sling, tpchgen = find_duckdb(args.duckdb), find_sling(args.sling), shutil.which("tpchgen-cli")
    if not duckdb or not tpchgen:
        log("needs the DuckDB CLI and tpchgen-cli: pip install tpchgen-cli duckdb-cli polars sling-linux-amd64")
        return 2
    become_subreaper()
    args.work.mkdir(parents=True, exist_ok=True)
    tools = make_tools(args, duckdb, sling, args.work)
    datasets = [prepare(label, n, args.work, tpchgen, duckdb) for label, n in sizes]
    cases = [Case("CSV → Parquet", f"csv-to-parquet-{c.key}", "csv", "parquet", c) for c in codecs]
    cases.append(Case("Parquet → CSV", "parquet-to-csv", "parquet", "csv", None))

    rows = [
        Row(case, data, tool, bench_one(tool, case, data, args, duckdb))
        for case in cases
        for data in datasets
        for tool in tools
    ]
    print(report(rows, datasets, tools, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
