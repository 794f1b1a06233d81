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

A :class:`Link` caps bandwidth: a token bucket in bytes per second that several
relays may share (the source relay and the target relay of one run, like the
runner's one network link). Seen from the runner, a link has two directions:
:data:`DOWN`, the bytes the client (the tool under test) receives (every
relay's upstream -> client direction: the source's blobs, the target's
answers), and :data:`UP`, the bytes it sends (client -> upstream: requests and
uploads). ``Link(rate)`` or ``Link(rate, duplex="half")`` is *half duplex*: one
budget for both directions, so a download and an upload at once share ``rate``
(the compatible default). ``Link(rate, duplex="full")`` is *full duplex*, as one
Ethernet interface is: ``rate`` each way, a bucket per direction, each shared by
every relay on the link.

A :class:`Timeline` counts the bytes the relays given it delivered, per
direction and per slice of time (50 ms by default): a counter array, one lock
and an addition per write, no log of chunks. :meth:`Timeline.reset` starts it
(and forgets earlier bytes), :meth:`Timeline.stop` ends it, :meth:`Timeline.snapshot`
reads it. With a capped link it shows when each direction of the link idled.

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
reordering; slow start; what a real half-duplex medium also loses (collisions,
turnarounds: a half-duplex :class:`Link` only shares the budget); on a full-duplex
link, the TCP acknowledgements of one direction take nothing from the other. A
connection reset, or a
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
#: The two directions of a link, seen from the client (the tool under test): what it receives
#: (upstream -> client, on every relay) and what it sends (client -> upstream).
DOWN, UP = "down", "up"
DIRECTIONS = (DOWN, UP)
#: ``Link(duplex=...)``: one budget for both directions, or one budget each way.
HALF, FULL = "half", "full"
DUPLEX = (HALF, FULL)
#: A :class:`Timeline`'s slice of time, seconds.
TIMELINE_SLICE = 0.05


class _Bucket:
    """One token bucket: a budget of ``bytes_per_second`` with a :data:`BURST_SECONDS` burst."""

    def __init__(self, bytes_per_second: float):
        self.bytes_per_second = bytes_per_second
        self.lock = threading.Lock()
        self.free_at = 0.0         # monotonic time when the booked bytes have crossed

    def book(self, nbytes: int) -> float:
        with self.lock:
            now = time.monotonic()
            start = max(self.free_at, now - BURST_SECONDS)
            self.free_at = start + nbytes / self.bytes_per_second
            return self.free_at - now


class Link:
    """A bandwidth cap of ``bytes_per_second``, shared by every relay given it.

    ``duplex="half"`` (the default): one token bucket for both directions, so
    writes book their bytes in turn, whichever relay and direction they come
    from, and uploads and downloads add up. ``duplex="full"``: one bucket per
    direction (:data:`DOWN`, :data:`UP`), each ``bytes_per_second``, each shared
    by the relays on the link: downloads do not slow uploads. A bucket holds
    :data:`BURST_SECONDS` worth of bytes. :attr:`carried` counts the bytes
    booked, :attr:`carried_by_direction` the same per direction.
    """

    def __init__(self, bytes_per_second: float, duplex: str = HALF):
        if bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        if duplex not in DUPLEX:
            raise ValueError(f"duplex must be one of {', '.join(DUPLEX)}, not {duplex!r}")
        self.bytes_per_second = float(bytes_per_second)
        self.duplex = duplex
        self.slice = max(1024, min(CHUNK, int(bytes_per_second * SLICE_SECONDS)))
        shared = _Bucket(self.bytes_per_second)
        self._buckets = ({DOWN: shared, UP: shared} if duplex == HALF
                         else {d: _Bucket(self.bytes_per_second) for d in DIRECTIONS})
        self._counts = {d: 0 for d in DIRECTIONS}
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Link {self.bytes_per_second:.0f} B/s {self.duplex} duplex>"

    @property
    def carried(self) -> int:
        """Bytes booked, both directions."""
        with self._count_lock:
            return sum(self._counts.values())

    @property
    def carried_by_direction(self) -> dict[str, int]:
        """Bytes booked per direction: ``{"down": ..., "up": ...}``."""
        with self._count_lock:
            return dict(self._counts)

    def book(self, nbytes: int, direction: str = DOWN) -> float:
        """Book ``nbytes`` in ``direction``; the seconds to wait before they have crossed the link."""
        with self._count_lock:
            self._counts[direction] += nbytes
        return self._buckets[direction].book(nbytes)


class Timeline:
    """Bytes delivered per direction per slice of ``slice_seconds``, from :meth:`reset` to :meth:`stop`.

    The relays given it call :meth:`add` after each write (a piece of at most
    :data:`CHUNK` bytes). Cheap: a list of counters per direction, grown as
    time goes on. Bytes written before the first :meth:`reset` count from the
    timeline's creation; bytes after :meth:`stop` are not counted.
    """

    def __init__(self, slice_seconds: float = TIMELINE_SLICE):
        if slice_seconds <= 0:
            raise ValueError("slice_seconds must be positive")
        self.slice_seconds = slice_seconds
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Start now, with no bytes counted."""
        with self._lock:
            self._started = time.monotonic()
            self._stopped: float | None = None
            self._bytes: dict[str, list[int]] = {d: [] for d in DIRECTIONS}

    def stop(self) -> None:
        """Stop counting (the run ended); :attr:`seconds` is now fixed."""
        with self._lock:
            if self._stopped is None:
                self._stopped = time.monotonic()

    def add(self, direction: str, nbytes: int) -> None:
        """Count ``nbytes`` delivered in ``direction`` now."""
        now = time.monotonic()
        with self._lock:
            if self._stopped is not None:
                return
            counts = self._bytes[direction]
            index = int((now - self._started) / self.slice_seconds)
            if index >= len(counts):
                counts.extend([0] * (index + 1 - len(counts)))
            counts[index] += nbytes

    @property
    def seconds(self) -> float:
        """Seconds from :meth:`reset` to :meth:`stop` (or to now)."""
        with self._lock:
            return (self._stopped or time.monotonic()) - self._started

    def snapshot(self) -> dict:
        """``{"slice_seconds", "seconds", "down": [bytes per slice], "up": [...]}``; both lists
        cover :attr:`seconds` (zeros where nothing was delivered)."""
        seconds = self.seconds
        with self._lock:
            slices = max([int(seconds / self.slice_seconds) + 1] + [len(c) for c in self._bytes.values()])
            return {"slice_seconds": self.slice_seconds, "seconds": seconds,
                    **{d: c + [0] * (slices - len(c)) for d, c in self._bytes.items()}}


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
        self._spawn(lambda: self._deliver(to_upstream, self.upstream, UP), "from line to upstream")
        self._spawn(lambda: self._deliver(to_client, self.client, DOWN), "from line to client")
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

    def _deliver(self, line: _DelayLine, sock: socket.socket, direction: str) -> None:
        """Write the chunks of ``line`` to ``sock`` when due, through the link if any, counting
        them on the timeline if any; ``direction`` is :data:`DOWN` (to the client) or :data:`UP`."""
        link, timeline = self.relay.link, self.relay.timeline
        while (item := line.get()) is not None:
            due, data = item
            if self.aborted.wait(max(0.0, due - time.monotonic())):
                return
            if not data:
                sock.shutdown(socket.SHUT_WR)
                return
            if link is None:
                sock.sendall(data)
                if timeline is not None:
                    timeline.add(direction, len(data))
            else:
                for start in range(0, len(data), link.slice):
                    piece = data[start:start + link.slice]
                    if self.aborted.wait(max(0.0, link.book(len(piece), direction))):
                        return
                    sock.sendall(piece)
                    if timeline is not None:
                        timeline.add(direction, len(piece))
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
    bandwidth, shared with the other relays on the same :class:`Link`; ``timeline``
    counts the bytes delivered each way (:class:`Timeline`, may be shared too). Listens
    on ``127.0.0.1:port`` (a free port by default; bound at construction, so
    :attr:`host`/:attr:`url` are known before :meth:`start`). Per connection,
    four daemon threads; :meth:`stop` cuts every connection and joins them.
    """

    def __init__(self, upstream: str, delay_ms: float, *, link: Link | None = None,
                 timeline: Timeline | None = None, port: int | None = None):
        if delay_ms < 0:
            raise ValueError("delay_ms must not be negative")
        scheme, _, address = upstream.rstrip("/").rpartition("://")
        super().__init__(address, port=port)
        if scheme == "https":           # TLS passes through (uncounted): the relay's URL is https too
            self.url = f"https://{self.host}"
        self.delay_ms = delay_ms
        self.delay = delay_ms / 1000
        self.link = link
        self.timeline = timeline
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
