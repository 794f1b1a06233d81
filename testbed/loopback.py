"""The listening half of the test bed's relays (:mod:`.faultproxy`, :mod:`.relay`).

:class:`LoopbackRelay` listens on ``127.0.0.1`` and hands each accepted socket
to its subclass, which relays it to ``upstream``; it owns the lifecycle they
share: bound at construction, :meth:`~LoopbackRelay.start`/:meth:`~LoopbackRelay.stop`
(restartable on the same port), context manager, and joining every thread.
"""

from __future__ import annotations

import itertools
import socket
import threading
from typing import Callable, Protocol, Self

LISTEN_ADDRESS = "127.0.0.1"
ACCEPT_POLL = 0.1
JOIN_TIMEOUT = 5.0


class Abortable(Protocol):
    def abort(self) -> None:
        """Unblock the connection's threads at once (safe from any thread)."""


class LoopbackRelay:
    """Listens on ``127.0.0.1:port`` for a relay to ``upstream`` (``"host:port"``).

    The port is a free one by default, bound at construction, so :attr:`host`
    and :attr:`url` are known before :meth:`start`. One daemon thread accepts
    and calls :meth:`_accepted` with each socket. Subclasses start their threads
    with :meth:`_start_thread` and keep their open connections in
    :attr:`_connections` (under :attr:`_lock`), so that :meth:`stop` aborts and
    joins them all.
    """

    #: The hostname clients should use in URLs (the socket listens on 127.0.0.1).
    hostname = "127.0.0.1"

    def __init__(self, upstream: str, *, port: int | None = None):
        self.upstream = upstream
        host, _, upstream_port = upstream.rpartition(":")
        self.upstream_address = (host, int(upstream_port))
        self._listener: socket.socket | None = None
        self.port = self._bind(port or 0)
        self.host = f"{self.hostname}:{self.port}"
        self.url = f"http://{self.host}"
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[Abortable] = set()
        self._threads: list[threading.Thread] = []
        self._numbers = itertools.count(1)
        self._acceptor: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} -> {self.upstream}>"

    def _bind(self, port: int) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LISTEN_ADDRESS, port))
        listener.settimeout(ACCEPT_POLL)
        self._listener = listener
        return listener.getsockname()[1]

    def start(self) -> Self:
        """Start accepting connections (again, after :meth:`stop`, on the same port)."""
        if self.running:
            return self
        if self._listener is None:
            self._bind(self.port)
        self._stopping.clear()
        self._listener.listen(128)
        self._acceptor = threading.Thread(target=self._accept_loop, args=(self._listener,),
                                          name=f"{self!r} accept", daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut every open connection and join all threads."""
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(JOIN_TIMEOUT)
            self._acceptor = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.abort()
        with self._lock:
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(JOIN_TIMEOUT)

    @property
    def running(self) -> bool:
        return self._acceptor is not None and self._acceptor.is_alive()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._accepted(sock)

    def _accepted(self, sock: socket.socket) -> None:
        """Take over a new client connection (called in the accepting thread)."""
        raise NotImplementedError

    def _start_thread(self, target: Callable[..., None], name: str, *args) -> threading.Thread:
        """Start a daemon thread that :meth:`stop` joins."""
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return thread
