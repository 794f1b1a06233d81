"""Progress lines: one line per finished image, and a heartbeat while large transfers run."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from .copy import ImageJob, ImageResult, Progress
from .reports import human_bytes


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

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def image_finished(self, result: ImageResult) -> None:
        with self._lock:
            self._done += 1
            mark = {"copied": "copied", "up-to-date": "up to date"}.get(result.status, "FAILED")
            if result.status == "up-to-date":
                detail = f"target already at {(result.digest or '')[:19]}"
            elif result.ok:
                detail = (f"{result.blobs_copied} blobs sent ({human_bytes(result.bytes_sent)}), "
                          f"{result.blobs_mounted} mounted, {result.blobs_skipped} already there")
            else:
                detail = result.error or ""
            self._print(f"[{self._done}/{self.total}] {result.job.name}: {mark} in {result.duration:.1f}s - {detail}")

    def bytes_sent(self, job: ImageJob, count: int) -> None:
        with self._lock:
            self._sent += count
            now = time.monotonic()
            if now - self._last_beat >= self.heartbeat:
                self._last_beat = now
                rate = self._sent / max(now - self._started, 1e-6)
                self._print(f"... {human_bytes(self._sent)} sent so far ({human_bytes(rate)}/s), "
                            f"{self._done}/{self.total} images done")
