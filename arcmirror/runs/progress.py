"""Progress: bars on a terminal (rich), plain lines in pipes and CI logs."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from ..copy.copier import ImageJob, ImageResult, Progress
from .report import human_bytes


class LineProgress(Progress):
    """Plain lines, safe for CI logs and terminals alike (no control characters)."""

    def __init__(self, total: int, stream: TextIO | None = None, heartbeat: float = 10.0) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.heartbeat = heartbeat
        self._lock = threading.Lock()
        self._done = 0
        self._sent = 0
        self._last_beat = time.monotonic()
        self._started = time.monotonic()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def image_finished(self, result: ImageResult) -> None:
        with self._lock:
            self._done += 1
            mark = {"copied": "copied", "up-to-date": "up to date", "would-copy": "would copy",
                    "cancelled": "CANCELLED"}.get(result.status, "FAILED")
            if result.status == "up-to-date":
                detail = f"target already at {(result.digest or '')[:19]}"
            elif result.ok:
                detail = (f"{result.blobs_copied} blobs sent ({human_bytes(result.bytes_sent)}), "
                          f"{result.blobs_mounted} mounted, {result.blobs_skipped} already there")
            else:
                detail = result.error or ""
            self._print(f"[{self._done}/{self.total or '?'}] {result.job.name}: {mark} in {result.duration:.1f}s - {detail}")

    def bytes_sent(self, job: ImageJob, count: int) -> None:
        with self._lock:
            self._sent += count
            now = time.monotonic()
            if now - self._last_beat >= self.heartbeat:
                self._last_beat = now
                rate = self._sent / max(now - self._started, 1e-6)
                self._print(f"... {human_bytes(self._sent)} sent so far ({human_bytes(rate)}/s), "
                            f"{self._done}/{self.total or '?'} images done")


class RichProgress(Progress):
    """On a terminal: one line per image in flight and an overall bar with bytes, rate and ETA (rich)."""

    def __init__(self, total: int, total_bytes: int | None = None, stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as Bars

        self.total = total
        self._bars = Bars(
            TextColumn("{task.description}", justify="left"), BarColumn(bar_width=30), TaskProgressColumn(),
            DownloadColumn(binary_units=False), TransferSpeedColumn(), TimeRemainingColumn(),
            console=Console(file=stream or sys.stderr), transient=True,
        )
        self._overall = self._bars.add_task(f"0/{total or '?'} images", total=total_bytes)
        self._tasks: dict[str, int] = {}
        self._done = 0
        self._lock = threading.Lock()

    def __enter__(self) -> "RichProgress":
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    def image_started(self, job: ImageJob) -> None:
        with self._lock:
            self._tasks[job.name] = self._bars.add_task(f"  {job.name}", total=None)

    def bytes_sent(self, job: ImageJob, count: int) -> None:
        self._bars.advance(self._overall, count)
        task = self._tasks.get(job.name)
        if task is not None:
            self._bars.advance(task, count)

    def image_finished(self, result: ImageResult) -> None:
        with self._lock:
            self._done += 1
            task = self._tasks.pop(result.job.name, None)
            if task is not None:
                self._bars.remove_task(task)
            self._bars.update(self._overall, description=f"{self._done}/{self.total or '?'} images")
        mark = {"copied": "[green]copied[/]", "up-to-date": "[green]up to date[/]",
                "cancelled": "[yellow]CANCELLED[/]"}.get(result.status, "[red]FAILED[/]")
        detail = (f"{human_bytes(result.bytes_sent)} sent" if result.ok else (result.error or ""))
        self._bars.console.print(f"{mark} {result.job.name} ({result.duration:.1f}s) {detail}", highlight=False)


def make_progress(total: int, *, total_bytes: int | None = None, stream: TextIO | None = None,
                  ci: bool = False) -> Progress:
    """Bars on a terminal; plain lines (no control characters) in a pipe, a file or CI."""
    stream = stream or sys.stderr
    if not ci and hasattr(stream, "isatty") and stream.isatty():
        return RichProgress(total, total_bytes, stream)
    return LineProgress(total, stream, heartbeat=30.0 if ci else 10.0)
