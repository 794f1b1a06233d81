"""A latency relay: a CI runner far from both registries, on loopback.

:class:`LatencyRelay` listens on ``127.0.0.1`` (a free port by default) and
forwards every TCP connection to an upstream ``host:port`` (a test registry),
holding each chunk of bytes back ``delay_ms`` milliseconds in *each* direction.
Put one in front of the source registry and one in front of the target and the
tool under test runs "tens of milliseconds from both", as a CI runner in another
region does. This kernel has no ``netem`` qdisc, so the latency is added in user
space, by threads.

The delay is a delay line, not a sleep per chunk: a chunk read at time *t* from
one side is written to the other side at *t + D*, in order, so delays do not add
up and a long stream keeps its throughput. A request/response exchange therefore
costs about ``2 * D`` more than direct. An end of stream (half-close) is passed
on after the data before it, and a connection ends when both directions have
ended. At most :data:`WINDOW` bytes wait in one direction of one connection (the
reader stops reading meanwhile, so TCP back-pressure reaches the sender), like a
TCP window: one stream tops out at ``WINDOW / D`` (160 MiB/s at 25 ms).

A :class:`Link` caps bandwidth: one token bucket in bytes per second that
several relays may share (the source relay and the target relay of one run, like
the runner's one network link). Both directions of every relay on a link draw
from the same bucket.

:attr:`LatencyRelay.requests` and :attr:`~LatencyRelay.requests_by_method`
count the HTTP/1.1 requests sent through the relay, parsed passively from the
client's byte stream (request line and headers; bodies skipped by
``Content-Length`` or chunked framing) without changing a byte. A request is
counted when its head has been read by the relay, before it reaches the
upstream, so the counts are final once a client has its response.
:attr:`~LatencyRelay.connections` counts accepted connections (to tell reuse
from reconnects).

Limits (what is not modelled): the TCP handshake (a new connection costs no
extra round trip here, a real one costs one, TLS more); packet loss, jitter and
reordering; slow start; a full-duplex link with its own capacity each way (a
:class:`Link` is one budget for both directions). A connection reset, or a
failed write, closes both sides at once rather than after the delay. Counting
is for plain HTTP only: on a stream that is not HTTP/1.1 (TLS, a protocol
upgrade, garbage) counting stops for that connection while the bytes are still
relayed.
"""

from __future__ import annotations

import io
import logging
import re
import socket
import threading
import time
from collections import Counter, deque
from typing import Callable

from testbed.faultproxy import request_heads
from testbed.loopback import LoopbackRelay

log = logging.getLogger(__name__)

#: Largest read from a socket, and largest write.
CHUNK = 64 * 1024
#: Bytes that may wait in one direction of one connection.
WINDOW = 4 * 1024 * 1024
#: A link's burst: after an idle spell this many seconds' worth of bytes pass at once.
BURST_SECONDS = 0.02
#: Granularity of a capped write: slices of this many seconds' worth of bytes.
SLICE_SECONDS = 0.01
CONNECT_TIMEOUT = 10.0
REQUEST_LINE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+ \S+ HTTP/\d\.\d")


class Link:
    """A bandwidth cap of ``bytes_per_second``, shared by every relay given it.

    A token bucket holding :data:`BURST_SECONDS` worth of bytes: writes book
    their bytes in turn, whichever relay and direction they come from, so the
    relays on one link share its capacity (a half-duplex budget: uploads and
    downloads add up). :attr:`carried` counts the bytes booked.
    """

    def __init__(self, bytes_per_second: float):
        if bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        self.bytes_per_second = float(bytes_per_second)
        self.slice = max(1024, min(CHUNK, int(bytes_per_second * SLICE_SECONDS)))
        self.carried = 0
        self._lock = threading.Lock()
        self._free_at = 0.0        # monotonic time when the booked bytes have crossed

    def __repr__(self) -> str:
        return f"<Link {self.bytes_per_second:.0f} B/s>"

    def book(self, nbytes: int) -> float:
        """Book ``nbytes`` on the link; the seconds to wait before they have crossed it."""
        with self._lock:
            now = time.monotonic()
            start = max(self._free_at, now - BURST_SECONDS)
            self._free_at = start + nbytes / self.bytes_per_second
            self.carried += nbytes
            return self._free_at - now


class _DelayLine:
    """One direction of a connection: chunks stamped with the time they are due.

    ``b""`` stands for the end of the stream. :meth:`close` discards everything
    and wakes every waiter (the connection is being torn down).
    """

    def __init__(self, delay: float):
        self.delay = delay
        self._items: deque[tuple[float, bytes]] = deque()
        self._inside = 0
        self._closed = False
        self._changed = threading.Condition()

    def wait_for_room(self) -> bool:
        """Block while the line holds :data:`WINDOW` bytes; False once closed."""
        with self._changed:
            self._changed.wait_for(lambda: self._closed or self._inside < WINDOW)
            return not self._closed

    def put(self, data: bytes) -> None:
        with self._changed:
            self._items.append((time.monotonic() + self.delay, data))
            self._inside += len(data)
            self._changed.notify_all()

    def get(self) -> tuple[float, bytes] | None:
        """The oldest chunk and when it is due (waiting for one); None once closed."""
        with self._changed:
            self._changed.wait_for(lambda: self._closed or self._items)
            return None if self._closed else self._items.popleft()

    def delivered(self, nbytes: int) -> None:
        """Free the room of a chunk written out."""
        with self._changed:
            self._inside -= nbytes
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._items.clear()
            self._changed.notify_all()


class _Tap(io.RawIOBase):
    """Reads a socket; every byte received goes into a delay line at once.

    Wrapped in a buffered reader it feeds the passive HTTP parser, whose pace
    then no longer matters: the bytes were passed on when they arrived.
    """

    def __init__(self, sock: socket.socket, line: _DelayLine):
        super().__init__()
        self.sock = sock
        self.line = line
        self.eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.eof:
            return 0
        if not self.line.wait_for_room():
            self.eof = True
            return 0
        n = self.sock.recv_into(buffer, min(len(buffer), CHUNK))
        self.line.put(bytes(memoryview(buffer)[:n]))     # b"": end of stream
        self.eof = n == 0
        return n

    def drain(self) -> None:
        """Pass on everything up to the end of the stream."""
        buffer = bytearray(CHUNK)
        while self.readinto(buffer):
            pass


class _Connection:
    """A client connection, its upstream connection and the four threads relaying them.

    Per direction, one thread reads into a delay line and one writes out of it.
    The last thread to finish closes both sockets.
    """

    def __init__(self, relay: "LatencyRelay", client: socket.socket, number: int):
        self.relay = relay
        self.client = client
        self.upstream: socket.socket | None = None
        self.number = number
        self.aborted = threading.Event()
        self.lines = (_DelayLine(relay.delay), _DelayLine(relay.delay))  # to upstream, to client
        self._running = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{self.relay!r} connection {self.number}"

    def start(self) -> None:
        """Start the thread that connects upstream and then relays (it starts the others)."""
        self._spawn(self._run_outbound, "to upstream")

    def _spawn(self, target: Callable[[], None], role: str) -> None:
        with self._lock:
            self._running += 1
        self.relay._start_thread(self._run, f"{self!r} {role}", target)

    def _run(self, target: Callable[[], None]) -> None:
        try:
            target()
        except OSError as error:
            log.debug("%r: %s", self, error)
            self.abort()
        except Exception:
            log.exception("%r failed", self)
            self.abort()
        finally:
            with self._lock:
                self._running -= 1
                last = self._running == 0
            if last:
                self._close()

    def _run_outbound(self) -> None:
        try:
            self.upstream = socket.create_connection(self.relay.upstream_address,
                                                     timeout=CONNECT_TIMEOUT)
        except OSError as error:
            log.debug("%r: upstream unreachable: %s", self, error)
            self.abort()
            return
        for sock in (self.client, self.upstream):
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        to_upstream, to_client = self.lines
        if self.aborted.is_set():       # stopped while connecting
            return
        self._spawn(lambda: self._deliver(to_upstream, self.upstream), "from line to upstream")
        self._spawn(lambda: self._deliver(to_client, self.client), "from line to client")
        self._spawn(lambda: _Tap(self.upstream, to_client).drain(), "from upstream")
        tap = _Tap(self.client, to_upstream)
        self._count_requests(tap)
        tap.drain()

    def _count_requests(self, tap: _Tap) -> None:
        """Count the requests of the client's stream until it ends or stops being HTTP/1.1."""
        try:
            for head in request_heads(io.BufferedReader(tap, CHUNK)):
                if not REQUEST_LINE.fullmatch(head.start):
                    break
                self.relay._count(head.method)
                if head.method == "CONNECT" or head.has_token("Connection", "upgrade"):
                    break           # what follows may be another protocol
        except (ValueError, IndexError) as error:
            log.debug("%r: not counting any more: %s", self, error)

    def _deliver(self, line: _DelayLine, sock: socket.socket) -> None:
        """Write the chunks of ``line`` to ``sock`` when due, through the link if any."""
        link = self.relay.link
        while (item := line.get()) is not None:
            due, data = item
            if self.aborted.wait(max(0.0, due - time.monotonic())):
                return
            if not data:
                sock.shutdown(socket.SHUT_WR)
                return
            if link is None:
                sock.sendall(data)
            else:
                for start in range(0, len(data), link.slice):
                    piece = data[start:start + link.slice]
                    if self.aborted.wait(max(0.0, link.book(len(piece)))):
                        return
                    sock.sendall(piece)
            line.delivered(len(data))

    def abort(self) -> None:
        """Tear down at once: wake every thread of the connection (safe from any thread)."""
        self.aborted.set()
        for line in self.lines:
            line.close()
        for sock in (self.client, self.upstream):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _close(self) -> None:
        for sock in (self.client, self.upstream):
            if sock is not None:
                sock.close()
        self.relay._forget(self)


class LatencyRelay(LoopbackRelay):
    """A TCP relay to ``upstream`` (``host:port``, ``http://host:port``) adding ``delay_ms``.

    Each direction of each connection is delayed ``delay_ms`` milliseconds (see
    the module's docstring for the model and its limits); ``link`` caps the
    bandwidth, shared with the other relays on the same :class:`Link`. Listens
    on ``127.0.0.1:port`` (a free port by default; bound at construction, so
    :attr:`host`/:attr:`url` are known before :meth:`start`). Per connection,
    four daemon threads; :meth:`stop` cuts every connection and joins them.
    """

    def __init__(self, upstream: str, delay_ms: float, *, link: Link | None = None,
                 port: int | None = None):
        if delay_ms < 0:
            raise ValueError("delay_ms must not be negative")
        scheme, _, address = upstream.rstrip("/").rpartition("://")
        super().__init__(address, port=port)
        if scheme == "https":           # TLS passes through (uncounted): the relay's URL is https too
            self.url = f"https://{self.host}"
        self.delay_ms = delay_ms
        self.delay = delay_ms / 1000
        self.link = link
        self._methods: Counter[str] = Counter()
        self._accepted_count = 0

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]} +{self.delay_ms:g} ms>"

    # -- counters --------------------------------------------------------------------

    @property
    def requests(self) -> int:
        """HTTP requests sent through the relay (client to upstream)."""
        with self._lock:
            return sum(self._methods.values())

    @property
    def requests_by_method(self) -> dict[str, int]:
        """:attr:`requests` by method (``{"GET": 2, "HEAD": 3}``)."""
        with self._lock:
            return dict(self._methods)

    @property
    def connections(self) -> int:
        """Client connections accepted."""
        with self._lock:
            return self._accepted_count

    def reset_counters(self) -> None:
        """Forget :attr:`requests`, :attr:`requests_by_method` and :attr:`connections`."""
        with self._lock:
            self._methods.clear()
            self._accepted_count = 0

    def _count(self, method: str) -> None:
        with self._lock:
            self._methods[method] += 1

    # -- connections --------------------------------------------------------------------

    def _accepted(self, sock: socket.socket) -> None:
        connection = _Connection(self, sock, next(self._numbers))
        with self._lock:
            self._accepted_count += 1
            self._connections.add(connection)
        connection.start()

    def _forget(self, connection: _Connection) -> None:
        with self._lock:
            self._connections.discard(connection)
