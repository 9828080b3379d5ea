#!/usr/bin/env python3
"""File-format benchmark: SynqX against the DuckDB CLI and Sling, side by side.

TPC-H `lineitem` (generated with `tpchgen-cli`) is converted CSV -> Parquet and
Parquet -> CSV by every tool, one after the other, and the result is printed as one
Markdown table (wall time, rows/s, input MB/s, ratio to DuckDB with 2 threads, peak RSS of
the whole process tree, and whether the output holds the expected number of rows).

    python3 benches/files.py [--sizes 1M,6M] [--work DIR] [--synqx PATH] [--repeat N]

Without --synqx the script first builds SynqX (`cargo build --release --bin synqx`) so the
numbers are those of the checked-out code; with --synqx it uses that binary as it is.
Python 3.11 standard library only; needs `tpchgen-cli`, `duckdb` and Sling
(`pip install tpchgen-cli duckdb-cli sling-linux-amd64`). See benches/README.md.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.util import find_spec
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SYNQX = REPO / "target" / "release" / "synqx"
SF1_LINEITEM_ROWS = 6_001_215  # lineitem rows at TPC-H scale factor 1
RSS_EVERY = 0.02  # seconds between two RSS samples of the process tree
DISK_EVERY = 0.25  # seconds between two looks at the output size
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# --------------------------------------------------------------------------------------
# What is measured


@dataclass(frozen=True)
class Case:
    title: str  # as printed in the table
    key: str  # in file names
    src: str  # input format: csv | parquet
    dst: str  # output format: csv | parquet


CASES = (
    Case("CSV → Parquet", "csv-to-parquet", "csv", "parquet"),
    Case("Parquet → CSV", "parquet-to-csv", "parquet", "csv"),
)


@dataclass
class Dataset:
    """One size of lineitem: the same rows as a CSV file (with header) and a Parquet file."""

    label: str  # as given on the command line, e.g. 1M
    root: Path  # work/<label>
    rows: int

    @property
    def input_dir(self) -> Path:
        return self.root / "in"

    def input(self, fmt: str) -> Path:
        return self.input_dir / f"lineitem.{fmt}"

    def input_bytes(self, fmt: str) -> int:
        return self.input(fmt).stat().st_size


@dataclass
class Run:
    """One execution of one tool on one case."""

    seconds: float | None = None  # None when the run failed
    peak_rss: int = 0  # bytes, max over samples of the sum over the process tree
    error: str | None = None  # why it failed (exit code, timeout, runaway output, ...)
    runaway: bool = False  # killed because its output grew far past the expected size
    wrong: str | None = None  # set when it succeeded but the output row count is off


@dataclass
class Row:
    case: Case
    data: Dataset
    tool: str
    run: Run  # the fastest correct run, else the last one


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


def version(argv: list[str] | None) -> str:
    if not argv or not argv[0]:
        return "not found"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    # Only the number: the tools print "v1.5.6 (Variegata) …", "Version: 1.4.11", "synqx 0.1.0".
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


def duckdb_sql(duckdb: str, sql: str, timeout: float | None = None) -> str:
    """Runs SQL with the DuckDB CLI and returns its CSV output without header."""
    done = subprocess.run(
        [duckdb, "-batch", "-noheader", "-csv", "-c", sql], capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"duckdb: {first_error_line(done.stderr or done.stdout)}")
    return done.stdout.strip()


def sql_string(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def count_lines(path: Path) -> int:
    """Newlines in a file, plus one for a last line without its newline."""
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def single_csv(generated: Path, target: Path) -> None:
    """Moves what tpchgen-cli wrote to one CSV file with one header row.

    tpchgen-cli writes `lineitem.csv`, or `lineitem/lineitem.<part>.csv` when it splits the
    table into parts; parts are concatenated, keeping only the first header.
    """
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
                if part.stat().st_size and not ends_with_newline(part):
                    out.write(b"\n")  # else its last row and the next part's first would merge
    else:
        raise RuntimeError(f"tpchgen-cli wrote no lineitem CSV into {generated}")
    with open(target, "rb") as f:
        if not f.readline().startswith(b"l_orderkey,"):
            raise RuntimeError(f"{target} has no header row (tpchgen-cli too old?)")


def prepare(label: str, rows_wanted: int, work: Path, tpchgen: str, duckdb: str) -> Dataset:
    """Generates the inputs of one size once; later invocations reuse them.

    meta.json is written last, so an interrupted generation is redone from scratch.
    """
    root = work / label
    meta = root / "meta.json"
    if meta.is_file():
        data = Dataset(label, root, json.loads(meta.read_text())["rows"])
        if data.input("csv").is_file() and data.input("parquet").is_file():
            return data
    shutil.rmtree(root, ignore_errors=True)
    generated = root / "tpchgen"
    generated.mkdir(parents=True)
    data = Dataset(label, root, 0)
    data.input_dir.mkdir()

    scale = rows_wanted / SF1_LINEITEM_ROWS
    log(f"[{label}] generating lineitem at scale factor {scale:.6g} with tpchgen-cli")
    subprocess.run(
        [tpchgen, "csv", "--scale-factor", f"{scale:.6g}", "--tables", "lineitem", "--output-dir", str(generated), "--quiet"],
        check=True,
    )
    single_csv(generated, data.input("csv"))
    shutil.rmtree(generated)

    log(f"[{label}] writing the Parquet input with DuckDB (zstd)")
    duckdb_sql(
        duckdb,
        f"COPY (SELECT * FROM read_csv({sql_string(data.input('csv'))})) "
        f"TO {sql_string(data.input('parquet'))} (FORMAT parquet, COMPRESSION zstd)",
    )
    data.rows = count_lines(data.input("csv")) - 1
    in_parquet = int(duckdb_sql(duckdb, f"SELECT count(*) FROM read_parquet({sql_string(data.input('parquet'))})"))
    if in_parquet != data.rows:
        raise RuntimeError(f"[{label}] the Parquet input has {in_parquet} rows, the CSV {data.rows}")
    meta.write_text(json.dumps({"rows": data.rows, "scale_factor": scale}))
    return data


# --------------------------------------------------------------------------------------
# The tools' command lines


def synqx_yaml(case: Case, data: Dataset, out_dir: Path) -> str:
    """Two filesystem Connections and one Pipeline with one sync step.

    Paths are absolute (JSON strings are valid YAML scalars), so the file works from any
    directory. Parquet is written with zstd, like DuckDB and Sling here.
    """
    compression = ", compression: zstd" if case.dst == "parquet" else ""
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
        destination: {{connection: out, asset: {{fqn: lineitem/}}, format: {case.dst}{compression}, mode: overwrite}}
"""


def duckdb_command(duckdb: str, threads: int, case: Case, data: Dataset, out_dir: Path) -> list[str]:
    source = data.input(case.src)
    read = f"read_csv({sql_string(source)})" if case.src == "csv" else f"read_parquet({sql_string(source)})"
    options = "FORMAT parquet, COMPRESSION zstd" if case.dst == "parquet" else "FORMAT csv, HEADER"
    target = out_dir / f"lineitem.{case.dst}"
    return [duckdb, "-batch", "-c", f"SET threads={threads}; COPY (SELECT * FROM {read}) TO {sql_string(target)} ({options})"]


def sling_command(sling: str, case: Case, data: Dataset, out_dir: Path) -> list[str]:
    # file_max_rows/file_max_bytes 0: one output file, like the other tools (Sling's
    # default splits every 500,000 rows into a folder of parts).
    options = {"format": case.dst, "file_max_rows": 0, "file_max_bytes": 0}
    options["compression"] = "zstd" if case.dst == "parquet" else "none"
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
            return [self.binary, "run", str(yaml), "--state", str(state), "--full-refresh"]
        if self.key.startswith("duckdb"):
            return duckdb_command(self.binary, int(self.key[-1]), case, data, out_dir)
        return sling_command(self.binary, case, data, out_dir)


# --------------------------------------------------------------------------------------
# Running one command and watching its process tree


def become_subreaper() -> None:
    """Descendants whose parent exits are re-parented to us instead of init, so they stay
    in the tree we measure and kill (PR_SET_CHILD_SUBREAPER; Linux only, best effort)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def descendants_rss(root: int) -> int:
    """Sum of the RSS of every descendant of `root`, in bytes.

    One pass over /proc/<pid>/stat gives both the parent and the RSS of every process
    (/proc/<pid>/task/*/children is not available on every kernel).
    """
    parent, rss = {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # exited meanwhile
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (comm) ", comm may hold spaces
        pid = int(entry.name)
        parent[pid], rss[pid] = int(fields[1]), int(fields[21])
    children = defaultdict(list)
    for pid, ppid in parent.items():
        children[ppid].append(pid)
    total, stack = 0, list(children[root])
    while stack:
        pid = stack.pop()
        total += rss[pid]
        stack.extend(children[pid])
    return total * PAGE_SIZE


def tree_bytes(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def kill_group(proc: subprocess.Popen) -> None:
    # The tool runs in its own session, so its process group id is its pid.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def reap_orphans() -> None:
    """Collects descendants re-parented to us (as subreaper) so none stays a zombie."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Watcher(threading.Thread):
    """Samples the RSS of our descendants (i.e. the tool's process tree) every RSS_EVERY
    seconds, and kills the tool when its output grows past `disk_limit` bytes: a writer
    that never stops would otherwise fill the disk until the timeout."""

    def __init__(self, proc: subprocess.Popen, out_dir: Path, disk_limit: int):
        super().__init__(daemon=True)
        self.proc, self.out_dir, self.disk_limit = proc, out_dir, disk_limit
        self.peak_rss = 0
        self.runaway: int | None = None  # output size when killed for it
        self._done = threading.Event()

    def run(self) -> None:
        me, next_disk_check = os.getpid(), 0.0
        while True:
            self.peak_rss = max(self.peak_rss, descendants_rss(me))
            now = time.monotonic()
            if now >= next_disk_check:
                next_disk_check = now + DISK_EVERY
                size = tree_bytes(self.out_dir)
                if size > self.disk_limit:
                    self.runaway = size
                    kill_group(self.proc)
                    return
            if self._done.wait(RSS_EVERY):
                return

    def stop(self) -> None:
        self._done.set()
        self.join()


def first_error_line(text: str) -> str:
    """The line that best says why a tool failed: the first one that mentions an error,
    else the first non-empty one (Sling, for one, starts its stderr with a banner)."""
    lines = [ANSI.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    for line in lines:
        if re.search(r"error|fatal|fail|panic|not found|invalid|unknown", line, re.IGNORECASE):
            return line
    return lines[0] if lines else "(no output)"


def execute(argv: list[str], env: dict[str, str], out_dir: Path, logs: Path, disk_limit: int, timeout: float) -> Run:
    """Runs one command with its stdout/stderr in log files; measures wall time and peak RSS."""
    with open(logs.with_suffix(".out"), "wb") as out, open(logs.with_suffix(".err"), "wb") as err:
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                env={**os.environ, **env}, cwd=out_dir.parent, start_new_session=True,
            )  # fmt: skip
        except OSError as e:
            return Run(error=f"cannot start: {e}")
        watcher = Watcher(proc, out_dir, disk_limit)
        watcher.start()
        try:
            code = proc.wait(timeout)
            seconds = time.perf_counter() - start
        except subprocess.TimeoutExpired:
            kill_group(proc)
            code, seconds = proc.wait(), None
        watcher.stop()
        kill_group(proc)  # whatever the tool left behind in its group
        reap_orphans()

    run = Run(seconds=seconds, peak_rss=watcher.peak_rss, runaway=watcher.runaway is not None)
    if seconds is None:
        run.error = f"timeout after {timeout:.0f} s"
    elif watcher.runaway is not None:
        run.error = (
            f"killed after {seconds:.0f} s: output reached {watcher.runaway / 2**20:.0f} MiB, "
            "over twice the input CSV (runaway writer)"
        )
    elif code != 0:
        run.error = f"exit {code}: {first_error_line(logs.with_suffix('.err').read_text(errors='replace'))}"
    if run.error:
        run.seconds = None
    return run


# --------------------------------------------------------------------------------------
# Checking outputs


def output_files(out_dir: Path) -> list[Path]:
    """Every file the tool wrote, skipping hidden files and `_markers`: the same files a
    reader of the folder (SynqX's, DuckDB's glob) would take."""
    return sorted(
        p
        for p in out_dir.rglob("*")
        if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(out_dir).parts)
    )


def count_output_rows(out_dir: Path, fmt: str, duckdb: str) -> int:
    files = output_files(out_dir)
    if not files:
        raise RuntimeError("no output file")
    if fmt == "parquet":
        listed = ", ".join(sql_string(f) for f in files)
        return int(duckdb_sql(duckdb, f"SELECT count(*) FROM read_parquet([{listed}])", timeout=600))
    # Each CSV file starts with its header; TPC-H text holds no quoted newlines.
    return sum(count_lines(f) - 1 for f in files)


def check(run: Run, case: Case, data: Dataset, out_dir: Path, duckdb: str) -> None:
    if run.runaway:  # how many rows it had written says what went wrong
        try:
            run.error += f"; {count_output_rows(out_dir, case.dst, duckdb):,} rows written, {data.rows:,} expected"
        except (RuntimeError, ValueError, subprocess.TimeoutExpired):
            pass
    if run.error:
        return
    try:
        rows = count_output_rows(out_dir, case.dst, duckdb)
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
        run.wrong = f"cannot count output rows: {e}"
        return
    if rows != data.rows:
        run.wrong = f"{rows:,} rows, expected {data.rows:,}"


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
    # The largest sane output is about the size of the CSV input; past twice that plus
    # slack, the writer is not going to stop (Sling 1.4.11 reading Parquet without DuckDB
    # repeats empty rows forever) and would fill the disk until the timeout.
    disk_limit = 2 * data.input_bytes("csv") + 64 * 2**20
    best: Run | None = None
    for i in range(args.repeat):
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        argv = tool.command(case, data, out_dir, scratch)
        log(f"[{data.label}] {case.title:<14} {tool.name:<19} run {i + 1}/{args.repeat}: {shlex.join(argv)}")
        run = execute(argv, tool.env, out_dir, scratch / f"{case.key}-{tool.key}", disk_limit, args.timeout)
        check(run, case, data, out_dir, duckdb)
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
    return f"{text}, WRONG: {run.wrong}" if run.wrong else text


def make_tools(args, duckdb: str | None, sling: str | None, work: Path) -> list[Tool]:
    synqx, synqx_missing = absolute(args.synqx), ""
    if synqx is None:  # the default: build the checked-out code, then use it
        if "synqx" in args.tools:
            synqx_missing = build_synqx() or ""
        synqx = str(DEFAULT_SYNQX)
    if not synqx_missing and not (os.path.isfile(synqx) and os.access(synqx, os.X_OK)):
        synqx_missing = f"no binary at {synqx} (cargo build --release --bin synqx)"
    no_duckdb = "duckdb not found (pip install duckdb-cli)"
    tools = [
        Tool("synqx", "SynqX", None if synqx_missing else synqx, synqx_missing, {}),
        Tool("duckdb1", "DuckDB (1 thread)", duckdb, no_duckdb, {}),
        Tool("duckdb2", "DuckDB (2 threads)", duckdb, no_duckdb, {}),
        Tool("sling", "Sling", sling, "sling not found (pip install sling-linux-amd64)", sling_env(work)),
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
    return f"{len(os.sched_getaffinity(0))} CPUs (nproc), {cpu}{memory}, {platform.system()} {platform.release()}"


def table(rows: list[Row]) -> list[str]:
    reference = {
        (r.case.key, r.data.label): r.run.seconds for r in rows if r.tool == "DuckDB (2 threads)" and r.run.seconds
    }
    lines = [
        "| case | size | tool | seconds | rows/s | MB/s | vs DuckDB 2 threads | peak RSS MiB | check |",
        "|---|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for r in rows:
        head = f"| {r.case.title} | {r.data.label} | {r.tool} |"
        if r.run.error:
            lines.append(f"{head} – | – | – | – | – | FAILED: {cell(r.run.error)} |")
            continue
        s = r.run.seconds
        ref = reference.get((r.case.key, r.data.label))
        ratio = f"{s / ref:.2f}×" if ref else "–"
        mb_s = r.data.input_bytes(r.case.src) / 1e6 / s
        verdict = f"WRONG: {cell(r.run.wrong)}" if r.run.wrong else "ok"
        lines.append(
            f"{head} {s:.2f} | {r.data.rows / s:,.0f} | {mb_s:.1f} | {ratio} | {r.run.peak_rss / 2**20:.0f} | {verdict} |"
        )
    return lines


def report(rows: list[Row], datasets: list[Dataset], tools: list[Tool], args) -> str:
    versions = {
        "SynqX": next((version([t.binary, "--version"]) for t in tools if t.key == "synqx" and t.binary), "not run"),
        "DuckDB": version([find_duckdb(args.duckdb), "--version"]),
        "Sling": version([find_sling(args.sling), "--version"]),
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
            f"Parquet (zstd) {d.input_bytes('parquet') / 1e6:.1f} MB"
            for d in datasets
        ),
        "",
        *table(rows),
        "",
        "MB/s is input file size / wall time. Peak RSS is the sum over the tool's whole process tree, "
        f"sampled every {RSS_EVERY * 1000:.0f} ms. Check: output row count (Parquet counted with DuckDB, "
        f"CSV lines minus header). Logs of every run: {args.work}/<size>/scratch/.",
    ]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1M,6M", help="lineitem row counts, e.g. 100k,1M,6M (default 1M,6M)")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "synqx" / "bench-files",
                        help="inputs and scratch outputs (default ~/.cache/synqx/bench-files)")  # fmt: skip
    parser.add_argument("--synqx", help="SynqX binary to use as is (default: build target/release/synqx first)")
    parser.add_argument("--duckdb", help="DuckDB CLI binary (default: the one of pip's duckdb-cli, else PATH)")
    parser.add_argument("--sling", help="Sling binary (default: the one of pip's sling-linux-amd64, else PATH)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool and case; the best is kept (default 1)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run (default 600)")
    parser.add_argument("--tools", default="synqx,duckdb1,duckdb2,sling",
                        help="subset of synqx,duckdb1,duckdb2,sling (default: all)")  # fmt: skip
    args = parser.parse_args()
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(args.tools) - {"synqx", "duckdb1", "duckdb2", "sling"}
    if unknown:
        parser.error(f"unknown tools: {', '.join(sorted(unknown))}")
    args.work = args.work.expanduser().resolve()
    sizes = [(label.strip(), parse_size(label)) for label in args.sizes.split(",") if label.strip()]

    duckdb, sling, tpchgen = find_duckdb(args.duckdb), find_sling(args.sling), shutil.which("tpchgen-cli")
    if not duckdb or not tpchgen:
        log("needs the DuckDB CLI and tpchgen-cli: pip install tpchgen-cli duckdb-cli sling-linux-amd64")
        return 2
    become_subreaper()
    args.work.mkdir(parents=True, exist_ok=True)
    tools = make_tools(args, duckdb, sling, args.work)
    datasets = [prepare(label, n, args.work, tpchgen, duckdb) for label, n in sizes]

    rows = [
        Row(case, data, tool.name, bench_one(tool, case, data, args, duckdb))
        for case in CASES
        for data in datasets
        for tool in tools
    ]
    print(report(rows, datasets, tools, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
