"""What files.py and databases.py share: running a tool (one process or a pipeline of them)
with its time and peak memory taken from the kernel, and checking its output by content.

Peak RSS is the kernel's high-water mark of each process (`ru_maxrss`, as `wait4` returns
it when the process is reaped), summed over every process of the run: the processes we
start, and any descendant that outlives its parent (we are a child subreaper, so those are
re-parented to us and reaped here). A descendant reaped by its own parent is folded into
that parent's figure by the kernel as a maximum, not a sum; none of the tools measured here
starts helper processes. Nothing is polled.

The processes we start are started by GNU time (`/usr/bin/time -f %M`), which reports its
child's `ru_maxrss`: the kernel carries a process's high-water mark across `exec`, so a tool
forked straight from this interpreter would report at least the interpreter's own RSS at
the fork (hundreds of MiB once a content check has read an output), whatever it used itself.

Content check: DuckDB reads the input and every output, casts each column to the input's
type (as DuckDB infers it from the input) and sums a 64-bit hash of every value per column
(order-independent, 128-bit sum). Equal sums for every column and equal row counts mean the
same values in every column; types are compared separately. With `whole_rows`, a last sum
hashes each row's values together, so values moved between rows are caught too.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
DISK_EVERY = 0.25  # seconds between two looks at the output size (runaway writers)


@dataclass
class Run:
    """One execution of one tool on one case."""

    seconds: float | None = None  # wall time; None when the run failed
    inner_seconds: float | None = None  # the tool's own timing of its work, when it reports one
    peak_rss: int = 0  # bytes: sum of ru_maxrss over the run's processes
    processes: int = 0  # processes reaped
    error: str | None = None  # why it failed (exit code, timeout, runaway output, ...)
    runaway: bool = False  # killed because its output grew far past the expected size
    wrong: str | None = None  # set when it succeeded but the output differs from the input
    note: str | None = None  # e.g. column types that differ from the input's
    output_bytes: int | None = None
    rows_per_group: str | None = None  # Parquet outputs: rows per row group
    extra: dict = field(default_factory=dict)


TIME = "/usr/bin/time"


def launched_rss(report: Path) -> int:
    """Bytes: the child's peak RSS as GNU time wrote it (its last line, in KiB); 0 when the
    launcher was killed before it wrote one."""
    try:
        lines = report.read_text().split()
    except OSError:
        return 0
    return int(lines[-1]) * 1024 if lines and lines[-1].isdigit() else 0


def become_subreaper() -> None:
    """Descendants whose parent exits are re-parented to us instead of init, so they are
    reaped (and measured) here (PR_SET_CHILD_SUBREAPER; Linux only)."""
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)


def first_error_line(text: str) -> str:
    """The line that best says why a tool failed: the first one that mentions an error,
    else the first non-empty one."""
    lines = [ANSI.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    for line in lines:
        if re.search(r"error|fatal|fail|panic|not found|invalid|unknown", line, re.IGNORECASE):
            return line
    return lines[0] if lines else "(no output)"


def tree_bytes(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def execute(
    argvs: list[list[str]],
    env: dict[str, str],
    cwd: Path,
    logs: Path,
    out_dir: Path | None,
    disk_limit: int,
    timeout: float,
    discard_stdout: bool = False,
) -> Run:
    """Runs one command, or several as a pipeline (each one's stdout into the next one's
    stdin), in a new process group; stdout of the last and every stderr go to log files.

    Wall time is from the first start to the last exit. Peak RSS is the sum of `ru_maxrss`
    of every process reaped (see the module doc)."""
    out_log, err_log = logs.with_suffix(".out"), logs.with_suffix(".err")
    if not os.access(TIME, os.X_OK):
        return Run(error=f"{TIME} is missing: peak RSS is taken with GNU time (Debian package 'time')")
    reports = [logs.with_suffix(f".rss{i}") for i in range(len(argvs))]
    for report in reports:
        report.unlink(missing_ok=True)
    procs: list[subprocess.Popen] = []
    with open(out_log, "wb") as out, open(err_log, "wb") as err:
        start = time.perf_counter()
        try:
            stdin = subprocess.DEVNULL
            for i, argv in enumerate(argvs):
                last = i == len(argvs) - 1
                proc = subprocess.Popen(
                    [TIME, "-f", "%M", "-o", str(reports[i]), *argv], stdin=stdin, stderr=err,
                    stdout=(subprocess.DEVNULL if discard_stdout else out) if last else subprocess.PIPE,
                    env={**os.environ, **env}, cwd=cwd,
                    process_group=procs[0].pid if procs else 0,
                )  # fmt: skip
                if procs and procs[-1].stdout:
                    procs[-1].stdout.close()  # the reader owns it now
                stdin = proc.stdout if not last else None
                procs.append(proc)
        except OSError as e:
            for p in procs:
                kill_group(p.pid)
            return Run(error=f"cannot start: {e}")
        pgid = procs[0].pid
        launched = {p.pid for p in procs}
        pending = set(launched)
        codes: dict[int, int] = {}
        peak, reaped, runaway, timed_out = 0, 0, None, False
        next_disk = 0.0
        deadline = start + timeout
        # Reap every child as it exits (wait4 with WNOHANG, every 5 ms): its exit status
        # and its ru_maxrss; the loop also watches the output size and the deadline.
        while pending:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                reaped += 1
                if pid in pending:  # a launcher: its child's figure is in its report
                    pending.discard(pid)
                    codes[pid] = os.waitstatus_to_exitcode(status)
                else:  # an orphan of the tool, forked from it: its own figure
                    peak += usage.ru_maxrss * 1024
                continue
            now = time.perf_counter()
            if now > deadline:
                timed_out = True
                kill_group(pgid)
                deadline = float("inf")
            if out_dir is not None and now >= next_disk:
                next_disk = now + DISK_EVERY
                size = tree_bytes(out_dir)
                if size > disk_limit and runaway is None:
                    runaway = size
                    kill_group(pgid)
            time.sleep(0.005)
        seconds = time.perf_counter() - start
        kill_group(pgid)  # whatever the tool left behind in its group
        while True:  # orphans re-parented to us
            try:
                pid, _, usage = os.wait4(-1, os.WNOHANG if not pending else 0)
            except ChildProcessError:
                break
            if pid == 0:
                break
            reaped += 1
            if pid not in launched:
                peak += usage.ru_maxrss * 1024
        peak += sum(launched_rss(r) for r in reports)
        for p in procs:
            p.returncode = codes.get(p.pid, -9)  # reaped here, not by Popen

    run = Run(seconds=seconds, peak_rss=peak, processes=reaped, runaway=runaway is not None)
    failed = [codes.get(p.pid, -9) for p in procs if codes.get(p.pid, -9) != 0]
    if timed_out:
        run.error = f"timeout after {timeout:.0f} s"
    elif runaway is not None:
        run.error = (
            f"killed after {seconds:.0f} s: output reached {runaway / 2**20:.0f} MiB, "
            "over twice the input CSV (runaway writer)"
        )
    elif failed:
        run.error = f"exit {failed[0]}: {first_error_line(err_log.read_text(errors='replace'))}"
    if run.error:
        run.seconds = None
    return run


# --------------------------------------------------------------------------------------
# Content checks with DuckDB


def sql_string(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def duckdb_sql(duckdb: str, sql: str, timeout: float | None = 900) -> list[list[str]]:
    """Runs SQL with the DuckDB CLI (2 threads) and returns its rows as lists of strings."""
    done = subprocess.run(
        [duckdb, "-batch", "-noheader", "-list", "-separator", "\t", "-c", f"SET threads=2; {sql}"],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"duckdb: {first_error_line(done.stderr or done.stdout)}")
    return [line.split("\t") for line in done.stdout.strip().splitlines() if line]


def output_files(out_dir: Path) -> list[Path]:
    """Every file a tool wrote, skipping hidden files and `_markers`: the files a reader of
    the folder would take."""
    return sorted(
        p
        for p in out_dir.rglob("*")
        if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(out_dir).parts)
    )


def relation(fmt: str, files: list[Path]) -> str:
    listed = "[" + ", ".join(sql_string(f) for f in files) + "]"
    return f"read_parquet({listed})" if fmt == "parquet" else f"read_csv({listed}, header = true)"


@dataclass
class Fingerprint:
    """Row count, column types and per-column checksums of a data set, as DuckDB sees it."""

    rows: int
    types: dict[str, str]
    sums: dict[str, str]


WHOLE_ROWS = "(whole rows)"  # the key of the whole-row checksum among a fingerprint's sums


def fingerprint(
    duckdb: str, source: str, reference: dict[str, str] | None = None, whole_rows: bool = False
) -> Fingerprint:
    """`source` is a DuckDB relation (read_csv(...), read_parquet(...), a table function).
    With `reference` (column -> type), each column is cast to the reference's type first, so
    an output is compared value by value with the input whatever types it was written with;
    a column the output lacks is reported missing. `whole_rows` adds the sum of a hash of
    each row's values (the cast ones, in the reference's column order) under WHOLE_ROWS."""
    described = duckdb_sql(duckdb, f"DESCRIBE SELECT * FROM {source}")
    types = {row[0]: row[1] for row in described}
    columns = list(reference or types)
    parts, casts = ["count(*)::VARCHAR"], []
    for name in columns:
        quoted = '"' + name.replace('"', '""') + '"'
        if name not in types:
            parts.append("'missing'")
            continue
        cast = f"TRY_CAST({quoted} AS {reference[name]})" if reference else quoted
        casts.append(cast)
        parts.append(f"sum(hash({cast})::HUGEINT)::VARCHAR")
    if whole_rows:
        complete = casts and len(casts) == len(columns)
        parts.append(f"sum(hash({', '.join(casts)})::HUGEINT)::VARCHAR" if complete else "'missing'")
    row = duckdb_sql(duckdb, f"SELECT {', '.join(parts)} FROM {source}")[0]
    sums = dict(zip(columns, row[1:]))
    if whole_rows:
        sums[WHOLE_ROWS] = row[-1]
    return Fingerprint(int(row[0]), types, sums)


def compare(expected: Fingerprint, found: Fingerprint) -> tuple[str | None, str | None]:
    """(what is wrong, or None; which types differ, or None)."""
    if found.rows != expected.rows:
        return f"{found.rows:,} rows, expected {expected.rows:,}", None
    differ = [c for c in expected.sums if found.sums.get(c) != expected.sums[c]]
    wrong = f"values differ in {', '.join(differ)}" if differ else None
    types = [
        f"{c} {found.types.get(c, 'missing')}"
        for c, t in expected.types.items()
        if found.types.get(c) != t
    ]
    return wrong, ("types " + ", ".join(types)) if types else None


def parquet_layout(duckdb: str, files: list[Path]) -> str:
    """Rows per row group of Parquet files: one figure when all but the last are equal."""
    listed = "[" + ", ".join(sql_string(f) for f in files) + "]"
    rows = duckdb_sql(
        duckdb,
        f"SELECT DISTINCT file_name, row_group_id, row_group_num_rows FROM parquet_metadata({listed}) "
        "ORDER BY file_name, row_group_id",
    )
    sizes = [int(r[2]) for r in rows]
    if not sizes:
        return "–"
    if len(set(sizes[:-1])) <= 1:
        return f"{sizes[0]:,}" + (f" ({len(sizes)} groups)" if len(sizes) > 1 else "")
    return f"{min(sizes):,}–{max(sizes):,} ({len(sizes)} groups)"


def check_output(run: Run, duckdb: str, fmt: str, out_dir: Path, expected: Fingerprint) -> None:
    """Fills in the output's size, layout and content verdict."""
    files = output_files(out_dir)
    if not files:
        run.wrong = "no output file"
        return
    run.output_bytes = sum(f.stat().st_size for f in files)
    try:
        if fmt == "parquet":
            run.rows_per_group = parquet_layout(duckdb, files)
        found = fingerprint(duckdb, relation(fmt, files), expected.types, WHOLE_ROWS in expected.sums)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        run.wrong = f"cannot read the output: {e}"
        return
    run.wrong, run.note = compare(expected, found)

