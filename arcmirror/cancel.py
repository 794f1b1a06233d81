"""Cancellation: what a run does when its pipeline job is cancelled or times out.

A cancelled job gets SIGINT, then SIGTERM (a person at a terminal presses Ctrl-C). On the first
signal :func:`install`'s handler marks the run cancelled and shuts down every HTTP connection
that is open (``track`` registers them), so a transfer blocked in a read or a write wakes up at
once instead of after ``MIRROR_TIMEOUT``. From then on :func:`check` raises
:class:`~arcmirror.registry.errors.Cancelled`: no new image starts, a blob being streamed is
abandoned before its upload completes, and no tag is written for an image that did not finish. The
run then writes its reports as usual (unfinished images are failed test cases saying they were
cancelled) and the task exits with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
The same signal a second time ends the process at once; SIGTERM after SIGINT (what pipelines send)
lets the stopping finish.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable, Iterable, TypeVar

from .oci.errors import Cancelled

T = TypeVar("T")
R = TypeVar("R")

#: After a cancellation, how long a run waits for work in flight to wind down before giving up on it.
GRACE = 3.0

_event = threading.Event()
_state: dict[str, float | int | None] = {"signum": None, "at": None}
_connections: "weakref.WeakSet" = weakref.WeakSet()
_lock = threading.Lock()
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def requested() -> bool:
    return _event.is_set()


def signal_name() -> str:
    signum = _state["signum"]
    return signal.Signals(signum).name if signum else "a request"


def exit_code() -> int:
    """128 + the signal's number, as a shell reports a process ended by that signal."""
    signum = _state["signum"]
    return 128 + int(signum) if signum else 1


def error(what: str = "this work") -> Cancelled:
    return Cancelled(f"cancelled by {signal_name()} before {what} finished",
                     "run again: what was already copied is not sent again")


def check(what: str = "this image") -> None:
    """Raise :class:`Cancelled` when the run is being cancelled."""
    if _event.is_set():
        raise error(what)


def sleep(seconds: float) -> None:
    """``time.sleep`` that a cancellation cuts short (with :class:`Cancelled`)."""
    if _event.wait(seconds):
        raise error()


def track(connection: object) -> None:
    """Remember an open HTTP connection (anything with a ``sock``) so a cancellation can shut it down."""
    with _lock:
        _connections.add(connection)


def request(signum: int = signal.SIGTERM) -> None:
    """Cancel the run (what the signal handler does; tests call it directly)."""
    if not _event.is_set():
        _state.update(signum=signum, at=time.monotonic())
        _event.set()
    with _lock:
        connections = list(_connections)
    for connection in connections:
        sock = getattr(connection, "sock", None)
        if sock is not None:
            try:  # the plain socket's shutdown: for TLS too, without touching the SSL object in use
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except (OSError, TypeError):
                pass


def _handler(signum: int, frame: object) -> None:
    if _event.is_set():
        if signum == _state["signum"]:
            os.write(2, f"\narcmirror: {signal.Signals(signum).name} again: stopping now\n".encode())
            os._exit(128 + signum)
        return  # SIGTERM after SIGINT: the stopping under way finishes
    os.write(2, (f"\narcmirror: {signal.Signals(signum).name} received: stopping. No new image starts; "
                 "transfers in flight are abandoned, nothing unfinished is tagged; the reports follow "
                 "(the same signal again stops at once)\n").encode())
    request(signum)


def reset() -> None:
    """Forget a cancellation (a new run in the same process)."""
    _event.clear()
    _state.update(signum=None, at=None)


def install() -> None:
    """Handle SIGINT and SIGTERM in this process (call from the main thread, before a run)."""
    reset()
    for signum in _SIGNALS:
        signal.signal(signum, _handler)


def elapsed() -> float:
    """Seconds since the cancellation was requested (0 when it was not)."""
    at = _state["at"]
    return time.monotonic() - at if at else 0.0


def run_all(fn: Callable[[T], R], items: Iterable[T], workers: int, abandoned: Callable[[T], R],
            name: str = "work") -> list[R]:
    """``fn`` over ``items`` on ``workers`` threads, in order; on a cancellation, wait at most
    :data:`GRACE` seconds for the work in flight and give ``abandoned(item)`` for what did not end."""
    items = list(items)
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix=name)
    futures = [pool.submit(fn, item) for item in items]
    try:
        while True:
            _, pending = wait(futures, timeout=0.25)
            if not pending or (_event.is_set() and elapsed() >= GRACE):
                break
        return [future.result() if future.done() else abandoned(item) for future, item in zip(futures, items)]
    finally:
        pool.shutdown(wait=not _event.is_set(), cancel_futures=True)
