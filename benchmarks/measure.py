"""Measurement: what the benchmark times and counts, and the medians it reports.

* :func:`run_measured` runs a command and takes its wall time, exit code, output, CPU seconds and
  peak RSS (``wait4``'s ``ru_maxrss``, and the RSS sum of the process tree polled from /proc);
  :func:`run_pipe` does the same for ``first | second``.
* :func:`process_cpu` reads a running process's CPU seconds (a registry's, the Docker engine's);
  :func:`stored_bytes` counts the bytes a run added to a registry's storage.
* :class:`Measurement` is one tool's run; :class:`Row` a tool's runs in one case, with medians;
  :class:`Requests` the HTTP requests of a run counted at the WAN relays.
* :data:`MB`, :func:`megabytes` (how sizes are written) and :func:`log` (progress on stderr,
  seconds since the start) serve every module of the harness.

This module imports nothing else of ``benchmarks``; the others import it.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from testbed.registry import Registry

MB = 1_000_000
PROCESS_TIMEOUT = 3600

_T0 = time.monotonic()


def log(text: str) -> None:
    print(f"{time.monotonic() - _T0:7.1f}s {text}", file=sys.stderr, flush=True)


def megabytes(n: float | None) -> str:
    """``n`` bytes as "12.3 MB" (as "45.6 KB" below 100 kB); "–" for None."""
    if n is None:
        return "–"
    return f"{n / MB:.1f} MB" if n >= 100_000 else f"{n / 1000:.1f} KB"


# ---------------------------------------------------------------------------------------------
# Processes


@dataclass
class ProcResult:
    returncode: int
    seconds: float
    peak_rss: int  # bytes: the largest of ru_maxrss and the polled sum over the process tree
    stdout: str
    stderr: str
    cpu: float = 0.0  # user + system seconds of the process and the children it waited for


def _process_table() -> dict[int, tuple[int, int]]:
    """``{pid: (ppid, rss_bytes)}`` for every process (from /proc)."""
    page = os.sysconf("SC_PAGE_SIZE")
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            table[int(entry)] = (int(fields[1]), int(fields[21]) * page)
        except (OSError, IndexError, ValueError):
            continue
    return table


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants right now."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += table.get(current, (0, 0))[1]
        stack.extend(children.get(current, ()))
    return total


def run_measured(command: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                 poll_tree: bool = False, timeout: float = PROCESS_TIMEOUT) -> ProcResult:
    """Run ``command``; wall time, exit code, output and peak RSS (``wait4``'s, and the polled tree's)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        peak = 0
        stop = threading.Event()
        started = time.perf_counter()
        process = subprocess.Popen(list(command), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=err)

        def poll() -> None:
            nonlocal peak
            while not stop.wait(0.05):
                peak = max(peak, tree_rss(process.pid))

        poller = threading.Thread(target=poll, daemon=True) if poll_tree else None
        if poller:
            poller.start()
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        if poller:
            poller.join()
        out.seek(0)
        err.seek(0)
        return ProcResult(process.returncode, seconds, max(peak, usage.ru_maxrss * 1024),
                          out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                          usage.ru_utime + usage.ru_stime)


def run_pipe(first: Sequence[str], second: Sequence[str]) -> tuple[int, int, float, str]:
    """``first | second``: (first's exit code, second's, CPU seconds of both, their stderr)."""
    with tempfile.TemporaryFile() as err:
        producer = subprocess.Popen(list(first), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        consumer = subprocess.Popen(list(second), stdin=producer.stdout, stdout=subprocess.DEVNULL, stderr=err)
        producer.stdout.close()
        cpu = 0.0
        codes = []
        for process in (producer, consumer):
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            codes.append(process.returncode)
            cpu += usage.ru_utime + usage.ru_stime
        err.seek(0)
        return codes[0], codes[1], cpu, err.read().decode(errors="replace")


def process_cpu(pid: int | None) -> float:
    """User + system seconds used so far by ``pid`` and its reaped children (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def registry_pid(registry: Registry) -> int | None:
    process = getattr(registry, "_process", None)
    return process.pid if process is not None else None


# ---------------------------------------------------------------------------------------------
# Registry storage


def blob_file(registry: Registry, digest: str) -> Path:
    """Where the registry's storage keeps the bytes of blob ``digest`` (``sha256:…``)."""
    return registry.blobs_dir / "sha256" / digest[7:9] / digest[7:] / "data"


def stored_bytes(target: Registry, before: set[str]) -> int:
    """Bytes of the blobs in ``target``'s storage that are not in ``before`` (digests)."""
    return sum(blob_file(target, digest).stat().st_size for digest in target.blob_digests() - before)


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class Requests:
    """HTTP requests counted at the WAN relays (:mod:`benchmarks.wan`) during one timed run."""

    source: int
    target: int
    source_by_method: dict[str, int] = field(default_factory=dict)
    target_by_method: dict[str, int] = field(default_factory=dict)
    connections: int = 0  # client connections accepted by both relays

    @property
    def total(self) -> int:
        return self.source + self.target

    def methods(self) -> str:
        """``"GET 17, HEAD 34; HEAD 17"``: the source's requests by method, then the target's."""
        def one(counts: dict[str, int]) -> str:
            return ", ".join(f"{method} {n}" for method, n in sorted(counts.items())) or "none"
        return f"{one(self.source_by_method)}; {one(self.target_by_method)}"


@dataclass
class Measurement:
    scenario: str
    case: str
    tool: str
    run: int
    seconds: float | None
    ok: bool
    error: str | None = None
    peak_rss: int | None = None
    bytes_sent: int | None = None
    stored_bytes: int | None = None  # bytes of blobs new in the target's storage after the run
    inner_seconds: float | None = None
    cpu: float | None = None  # the tool's CPU seconds (docker: the engine's)
    cpu_source: float | None = None  # the source registry's CPU seconds during the run
    cpu_target: float | None = None  # the target registry's
    requests: Requests | None = None  # WAN cases: counted at the relays
    extra: dict = field(default_factory=dict)


@dataclass
class Row:
    scenario: str
    case: str
    tool: str
    measurements: list[Measurement]
    skipped: str | None = None

    @property
    def good(self) -> list[Measurement]:
        return [m for m in self.measurements if m.ok]

    @property
    def failed(self) -> list[Measurement]:
        return [m for m in self.measurements if not m.ok]

    def median(self, attr: str = "seconds") -> float | None:
        values = [getattr(m, attr) for m in self.good if getattr(m, attr) is not None]
        return statistics.median(values) if values else None

    def median_extra(self, key: str) -> float | None:
        values = [m.extra[key] for m in self.good if key in m.extra]
        return statistics.median(values) if values else None

    def median_requests(self) -> Requests | None:
        """The counts of the run whose total is the median (the lower middle of an even number)."""
        counted = sorted((m.requests for m in self.good if m.requests is not None), key=lambda r: r.total)
        return counted[(len(counted) - 1) // 2] if counted else None

    def peak(self) -> int | None:
        values = [m.peak_rss for m in self.good if m.peak_rss]
        return max(values) if values else None
