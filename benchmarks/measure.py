"""Measurement: what the benchmark times and counts, and the medians it reports.

* :func:`run_measured` runs a command and takes its wall time, exit code, output, CPU seconds and
  peak RSS (the command's own ``ru_maxrss``, through GNU ``time``, and the RSS sum of the process
  tree polled from /proc);
  :func:`run_pipe` does the same for ``first | second``.
* :func:`process_cpu` reads a running process's CPU seconds (a registry's, the Docker engine's);
  :func:`stored_bytes` counts the bytes a run added to a registry's storage.
* :class:`Measurement` is one tool's run; :class:`Row` a tool's runs in one case, with medians;
  :class:`Requests` the HTTP requests of a run counted at the WAN relays; :class:`LinkTimeline`
  the bytes they delivered each way per slice of the run (where a capped link idled).
* :data:`MB`, :func:`megabytes` (how sizes are written) and :func:`log` (progress on stderr,
  seconds since the start) serve every module of the harness.

This module imports nothing else of ``benchmarks``; the others import it.
"""

from __future__ import annotations

import os
import shutil
import signal
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
    peak_rss: int  # bytes: the largest of the command's ru_maxrss and the polled sum over the process tree
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


_GNU_TIME: list[str | None] = []


def gnu_time() -> str | None:
    """GNU ``time`` (Debian package ``time``), or None."""
    if not _GNU_TIME:
        path = shutil.which("time")
        try:
            ok = path and "GNU" in subprocess.run([path, "--version"], capture_output=True, text=True,
                                                  timeout=10, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            ok = False
        _GNU_TIME.append(path if ok else None)
    return _GNU_TIME[0]


def _max_rss(path: str) -> int | None:
    """The kilobytes GNU ``time -f %M`` wrote (its last line), in bytes; None when unreadable."""
    try:
        return int(Path(path).read_text().split()[-1]) * 1024
    except (OSError, ValueError, IndexError):
        return None


def run_measured(command: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                 poll_tree: bool = False, timeout: float = PROCESS_TIMEOUT) -> ProcResult:
    """Run ``command``; wall time, exit code, output and peak RSS (the command's, and the polled tree's).

    The command runs under GNU ``time -f %M``, which reports the command's own ``ru_maxrss``:
    ``wait4``'s figure for a child of this process would be at least this process's RSS when it
    forked (Linux carries the parent's high-water mark across fork and exec), and the harness holds
    the relays' buffers. Without GNU time that figure is used, and may be too high. The command
    gets a session of its own, killed whole on ``timeout``.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(prefix="maxrss-") as rss_file:
        peak = 0
        stop = threading.Event()
        wrapper = [gnu_time(), "-q", "-f", "%M", "-o", rss_file.name] if gnu_time() else []
        started = time.perf_counter()
        process = subprocess.Popen(wrapper + list(command), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=err, start_new_session=True)

        def poll() -> None:
            nonlocal peak
            while not stop.wait(0.05):
                peak = max(peak, tree_rss(process.pid))

        poller = threading.Thread(target=poll, daemon=True) if poll_tree else None
        if poller:
            poller.start()
        def kill() -> None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                pass

        timer = threading.Timer(timeout, kill)
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
        own = _max_rss(rss_file.name) if wrapper else None
        return ProcResult(process.returncode, seconds, max(peak, own if own is not None else usage.ru_maxrss * 1024),
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


#: A slice of a capped link's direction is *idle* below this share of the cap, *under half* below 0.5.
IDLE_SHARE = 0.05
HALF_SHARE = 0.5
#: The blocks of a sparkline, from nothing to the cap (or to the busiest column, uncapped).
SPARKS = " ▁▂▃▄▅▆▇█"


@dataclass
class LinkTimeline:
    """Bytes the WAN relays delivered per direction per slice of one timed run.

    ``down``: to the tool (the source's blobs, every answer); ``up``: from the tool (requests, the
    uploads to the target); ``down[i]`` bytes in ``[i * slice_seconds, (i + 1) * slice_seconds)``
    from the start of the run, which lasted ``seconds``. ``cap``: bytes per second of each budget
    (None uncapped), ``duplex``: ``"full"`` (a budget each way) or ``"half"`` (one for both).
    """

    slice_seconds: float
    seconds: float
    down: list[int]
    up: list[int]
    cap: float | None = None
    duplex: str | None = None

    def counts(self, direction: str) -> list[int]:
        """Bytes per slice of ``"down"``, ``"up"`` or ``"both"`` (the two added: what a half-duplex
        link's one budget carried)."""
        if direction == "both":
            return [a + b for a, b in zip(self.down, self.up)]
        return getattr(self, direction)

    def bytes(self, direction: str) -> int:
        return sum(self.counts(direction))

    def _spans(self) -> list[float]:
        """Seconds of the run each slice covers (the last one partly; none past the end)."""
        return [max(0.0, min(self.slice_seconds, self.seconds - i * self.slice_seconds))
                for i in range(len(self.down))]

    def share_below(self, direction: str, fraction: float) -> float | None:
        """Share of the run's time ``direction`` carried less than ``fraction`` of the cap (None uncapped).

        ``direction`` ``"down"``, ``"up"`` or ``"both"`` (on a half-duplex link the budget is busy
        when either direction uses it: its idle time is that of ``"both"``).
        """
        if not self.cap or self.seconds <= 0:
            return None
        below = sum(span for n, span in zip(self.counts(direction), self._spans())
                    if span > 0 and n < fraction * self.cap * span)
        return below / self.seconds

    def idle_share(self, direction: str) -> float | None:
        return self.share_below(direction, IDLE_SHARE)

    def under_half_share(self, direction: str) -> float | None:
        return self.share_below(direction, HALF_SHARE)

    def utilisation(self, direction: str) -> float | None:
        """Bytes carried over what the cap allows in the run's time (None uncapped)."""
        if not self.cap or self.seconds <= 0:
            return None
        return self.bytes(direction) / (self.cap * self.seconds)

    def busy_span(self, direction: str) -> tuple[float, float] | None:
        """Start of the first and end of the last slice at half the cap or more (uncapped: with any byte)."""
        threshold = HALF_SHARE * self.cap * self.slice_seconds if self.cap else 1
        busy = [i for i, n in enumerate(self.counts(direction)) if n >= threshold]
        if not busy:
            return None
        return busy[0] * self.slice_seconds, min(self.seconds, (busy[-1] + 1) * self.slice_seconds)

    def column_slices(self, columns: int = 100) -> int:
        """Slices to merge into one column for at most ``columns`` columns."""
        return max(1, -(-len(self.down) // columns))

    def sparkline(self, direction: str, width: int = 1) -> str:
        """One character per ``width`` slices of time: the share of the cap used (of the busiest
        column when uncapped), from ' ' (nothing) to '█' (the cap)."""
        counts, spans = self.counts(direction), self._spans()
        merged = [(sum(counts[i:i + width]), sum(spans[i:i + width]) or self.slice_seconds)
                  for i in range(0, len(counts), width)]
        rates = [n / span for n, span in merged]
        top = self.cap or max(rates, default=0) or 1
        levels = len(SPARKS) - 1
        return "".join(SPARKS[0 if n == 0 else max(1, min(levels, round(rate / top * levels)))]
                       for (n, _), rate in zip(merged, rates))

    def as_dict(self) -> dict:
        return {"slice_seconds": self.slice_seconds, "seconds": round(self.seconds, 4), "cap": self.cap,
                "duplex": self.duplex, "down": self.down, "up": self.up}


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
    timeline: LinkTimeline | None = None  # WAN cases: bytes per direction per slice at the relays
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

    def median_run(self) -> Measurement | None:
        """The good run whose time is the median (the lower middle of an even number)."""
        good = sorted(self.good, key=lambda m: m.seconds)
        return good[(len(good) - 1) // 2] if good else None

    def peak(self) -> int | None:
        values = [m.peak_rss for m in self.good if m.peak_rss]
        return max(values) if values else None
