"""A fault-injecting HTTP/1.1 reverse proxy for tests, and a stand-in blob storage.

:class:`FaultProxy` listens on ``127.0.0.1`` and forwards every request to a
plain-HTTP upstream (a test registry), streaming bodies both ways in chunks.
Nothing is rewritten: the client's ``Host`` header goes upstream unchanged,
because distribution builds absolute ``Location`` URLs (upload sessions) from
the request's ``Host`` (or ``X-Forwarded-Host``), so Locations keep pointing at
the proxy. ``WWW-Authenticate`` realms and other headers pass through as well.

Faults are rules, tried in the order they were added. A rule matches an HTTP
method (``"*"`` for any) and a regular expression searched in the request path
(``r"/blobs/sha256:"``), and acts on its first ``times`` matching requests
(``None``: on all of them); exhausted rules are skipped. To hit "the Nth
request", put a :meth:`~FaultProxy.passthrough` rule first::

    proxy.passthrough("GET", r"/blobs/", times=2)     # 1st and 2nd blob GETs pass
    proxy.reset_after("GET", r"/blobs/", 1000)       # the 3rd is cut after 1000 bytes

:attr:`FaultProxy.requests` logs what crossed (:class:`Seen`). An entry is added
when a request arrives and updated while it is relayed, always *before* the
corresponding bytes are sent, so the counts are final once a client has read
the response.

:class:`StorageServer` plays the object storage (S3, Azure Blob) a registry
redirects blob downloads to (:meth:`FaultProxy.redirect_blobs_to`): it answers
on ``localhost`` (another hostname than the proxy's ``127.0.0.1``, so HTTP
clients drop ``Authorization`` on the redirect) and records the
``Authorization`` header each request carried.

Limits: plain HTTP only; ``Expect: 100-continue`` is not handled specially (an
interim response is relayed once the request body has been forwarded); one
upstream connection per request.
"""

from __future__ import annotations

import fcntl
import http
import logging
import re
import socket
import struct
import termios
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterator, Mapping
from urllib.parse import urlsplit

from testbed.loopback import LoopbackRelay

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
IO_TIMEOUT = 120.0
TRICKLE_TICK = 0.1
DRAIN_TIMEOUT = 2.0
MAX_LINE = 64 * 1024
MAX_HEADERS = 256
BLOB_PATH = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[a-z0-9+._-]+:[a-fA-F0-9]+)$")
_LINGER_RESET = struct.pack("ii", 1, 0)


# -- request log ---------------------------------------------------------------

@dataclass
class Seen:
    """One request that reached the proxy, and what happened to it.

    ``authorization`` is the scheme of the request's ``Authorization`` header
    only (``"Basic"``, ``"Bearer"``), ``range`` its ``Range`` header.
    ``status`` is the status sent to the client (None when none was sent),
    ``bytes_in``/``bytes_out`` count request/response *body* bytes passed on,
    ``fault`` names the fault applied (None when forwarded untouched) and
    ``connection`` numbers the client connection (to tell reuse from reconnects).
    """

    method: str
    path: str
    query: str
    authorization: str | None
    range: str | None
    connection: int
    status: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    fault: str | None = None


# -- HTTP messages ---------------------------------------------------------------

class _ProtocolError(ValueError):
    """A peer sent something that is not HTTP/1.1, or closed mid-message."""


class _SendFailed(ConnectionError):
    """Writing to a peer failed; ``role`` is ``"client"`` or ``"upstream"``."""

    def __init__(self, role: str):
        super().__init__(f"sending to the {role} failed")
        self.role = role


class _Abort(Exception):
    """End the exchange and close the client connection (with an RST if ``reset``)."""

    def __init__(self, reset: bool = False):
        super().__init__("reset" if reset else "close")
        self.reset = reset


@dataclass
class _Head:
    """The start line and header fields of a request or a response."""

    start: str
    headers: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def has_token(self, name: str, token: str) -> bool:
        """Whether the comma-separated header ``name`` lists ``token``."""
        values = (v for k, v in self.headers if k.lower() == name.lower())
        return any(token.lower() == t.strip().lower() for v in values for t in v.split(","))

    def without(self, name: str) -> "_Head":
        """A copy without header ``name``."""
        return _Head(self.start, [(k, v) for k, v in self.headers if k.lower() != name.lower()])

    def encode(self) -> bytes:
        lines = [self.start, *(f"{k}: {v}" for k, v in self.headers), "", ""]
        return "\r\n".join(lines).encode("latin-1")

    # request lines: METHOD TARGET VERSION
    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0].upper()

    @property
    def target(self) -> str:
        return self.start.split(" ")[1]

    @property
    def path(self) -> str:
        return _split_target(self.target)[0]

    @property
    def query(self) -> str:
        return _split_target(self.target)[1]

    # both: the HTTP version is first in a status line, last in a request line
    @property
    def version(self) -> str:
        first, *_, last = self.start.split(" ")
        return first if first.startswith("HTTP/") else last

    # status lines: VERSION CODE REASON
    @property
    def status(self) -> int:
        return int(self.start.split(" ")[1])


def _split_target(target: str) -> tuple[str, str]:
    """``(path, query)`` of an origin-form (``/a?b``) or absolute-form request target."""
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        return parts.path or "/", parts.query
    path, _, query = target.partition("?")
    return path, query


def _readline(reader) -> bytes:
    """One CRLF-terminated line (terminator included); EOF or an endless line is an error."""
    line = reader.readline(MAX_LINE + 1)
    if not line.endswith(b"\n"):
        raise _ProtocolError("line too long" if len(line) > MAX_LINE else "unexpected EOF")
    return line


def _read_head(reader) -> _Head | None:
    """The next message head from ``reader``; None on a clean EOF before it."""
    line = reader.readline(MAX_LINE + 1)
    while line in (b"\r\n", b"\n"):          # tolerated before a request line
        line = reader.readline(MAX_LINE + 1)
    if not line:
        return None
    if not line.endswith(b"\n") or len(line.split()) < 2:
        raise _ProtocolError(f"bad start line {line[:80]!r}")
    headers = []
    while (field_line := _readline(reader)) not in (b"\r\n", b"\n"):
        name, sep, value = field_line.decode("latin-1").partition(":")
        if not sep or len(headers) >= MAX_HEADERS:
            raise _ProtocolError(f"bad header line {field_line[:80]!r}")
        headers.append((name.strip(), value.strip()))
    return _Head(line.decode("latin-1").rstrip("\r\n"), headers)


# -- message bodies ----------------------------------------------------------------

@dataclass(frozen=True)
class _Framing:
    """How a body is delimited: ``none``, ``length`` (``length`` bytes), ``chunked``, ``close``."""

    kind: str
    length: int = 0


NO_BODY = _Framing("none")


def _request_framing(head: _Head) -> _Framing:
    if head.has_token("Transfer-Encoding", "chunked"):
        return _Framing("chunked")
    length = head.get("Content-Length")
    return _Framing("length", int(length)) if length else NO_BODY


def _response_framing(method: str, head: _Head) -> _Framing:
    status = head.status
    if method == "HEAD" or status < 200 or status in (204, 304):
        return NO_BODY
    if head.has_token("Transfer-Encoding", "chunked"):
        return _Framing("chunked")
    length = head.get("Content-Length")
    return _Framing("length", int(length)) if length is not None else _Framing("close")


def _read_body(reader, framing: _Framing) -> Iterator[tuple[bool, bytes]]:
    """The pieces of a body as ``(is_payload, data)``; chunk framing comes as non-payload."""
    if framing.kind == "length":
        yield from _read_fixed(reader, framing.length)
    elif framing.kind == "chunked":
        yield from _read_chunked(reader)
    elif framing.kind == "close":
        while data := reader.read1(CHUNK):
            yield True, data


def _read_fixed(reader, length: int) -> Iterator[tuple[bool, bytes]]:
    while length > 0:
        data = reader.read1(min(CHUNK, length))
        if not data:
            raise _ProtocolError("body ended early")
        length -= len(data)
        yield True, data


def _read_chunked(reader) -> Iterator[tuple[bool, bytes]]:
    """Chunk-size lines, chunk data and trailers of a chunked body, exactly as received."""
    while True:
        size_line = _readline(reader)
        yield False, size_line
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _ProtocolError(f"bad chunk size {size_line[:40]!r}") from None
        if size == 0:
            break
        yield from _read_fixed(reader, size)
        yield False, _readline(reader)
    while (trailer := _readline(reader)) not in (b"\r\n", b"\n"):
        yield False, trailer
    yield False, trailer


def request_heads(reader) -> Iterator[_Head]:
    """The request heads of an HTTP/1.1 request stream, reading past their bodies.

    For a passive tap (:mod:`testbed.relay` counts requests with it): each head is
    yielded once parsed, then its body (``Content-Length`` or chunked) is read and
    dropped. Ends at a clean EOF between requests; raises :class:`ValueError`
    (or :class:`IndexError`) when the stream is not HTTP/1.1 or ends mid-request.
    """
    while (head := _read_head(reader)) is not None:
        yield head
        for _ in _read_body(reader, _request_framing(head)):
            pass


def _keep_alive(request: _Head, response: _Head, framing: _Framing) -> bool:
    """Whether the client connection may carry another request after this exchange."""
    if framing.kind == "close":
        return False
    if request.has_token("Connection", "close") or response.has_token("Connection", "close"):
        return False
    return request.version != "HTTP/1.0" or request.has_token("Connection", "keep-alive")


def _response_head(code: int, headers: Mapping[str, str], body_length: int) -> _Head:
    """The head of a response made up by the proxy."""
    try:
        reason = http.HTTPStatus(code).phrase
    except ValueError:
        reason = "Fault"
    fields = list(headers.items())
    if not any(k.lower() == "content-length" for k, _ in fields):
        fields.append(("Content-Length", str(body_length)))
    return _Head(f"HTTP/1.1 {code} {reason}", fields)


# -- sockets -----------------------------------------------------------------------

class _Peer:
    """One side of an exchange: a socket and a buffered reader on it."""

    def __init__(self, sock: socket.socket, role: str):
        sock.settimeout(IO_TIMEOUT)
        self.sock = sock
        self.role = role
        self.reader = sock.makefile("rb")

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as error:
            raise _SendFailed(self.role) from error

    def shutdown(self) -> None:
        """Wake up a thread blocked on this socket (safe from any thread)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self, reset: bool = False) -> None:
        """Close; with ``reset``, wait until sent data left, then abort with an RST."""
        if reset:
            self._wait_sent()
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass
        self.reader.close()
        self.sock.close()

    def _wait_sent(self) -> None:
        """Wait (briefly) until the kernel's send queue is empty, so an RST loses nothing."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while time.monotonic() < deadline:
            try:
                queued = struct.unpack("i", fcntl.ioctl(self.sock, termios.TIOCOUTQ, b"\0" * 4))[0]
            except OSError:
                return
            if queued == 0:
                return
            time.sleep(0.005)


class _Connection:
    """A client connection and the upstream connection of its current request."""

    def __init__(self, client: _Peer, number: int):
        self.client = client
        self.number = number
        self.upstream: _Peer | None = None

    def open_upstream(self, address: tuple[str, int]) -> _Peer:
        self.upstream = _Peer(socket.create_connection(address, timeout=IO_TIMEOUT), "upstream")
        return self.upstream

    def close_upstream(self) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.close()

    def abort(self) -> None:
        """Unblock the connection's thread (called by :meth:`FaultProxy.stop`)."""
        for peer in (self.client, self.upstream):
            if peer is not None:
                peer.shutdown()


class _Sink:
    """Where one body goes: a peer, a byte counter in the log, the proxy's stop event."""

    def __init__(self, peer: _Peer | None, count: Callable[[int], None],
                 stopping: threading.Event):
        self.peer = peer
        self.count = count
        self.stopping = stopping

    def frame(self, data: bytes) -> None:
        """Pass on framing bytes (chunk sizes, trailers): not counted."""
        if self.peer is not None:
            self.peer.send(data)

    def payload(self, data: bytes) -> None:
        """Pass on body bytes, counting them first."""
        self.count(len(data))
        if self.peer is not None:
            self.peer.send(data)

    def wait(self, seconds: float) -> None:
        """Sleep; abort the exchange at once if the proxy stops meanwhile."""
        if seconds > 0 and self.stopping.wait(seconds):
            raise _Abort()


# -- shapers: how the payload of one body is passed on ----------------------------------

class _Shaper:
    """Passes payload on as it comes."""

    def begin(self, sink: _Sink) -> None:
        """Called once the head went out, before any payload."""

    def payload(self, sink: _Sink, data: bytes) -> None:
        sink.payload(data)


class _AfterBytes(_Shaper):
    """Passes ``left`` bytes of payload, then calls :meth:`cut` (which must raise)."""

    def __init__(self, left: int):
        self.left = left

    def cut(self, sink: _Sink) -> None:
        raise NotImplementedError

    def begin(self, sink: _Sink) -> None:
        if self.left <= 0:
            self.cut(sink)

    def payload(self, sink: _Sink, data: bytes) -> None:
        if len(data) < self.left:
            self.left -= len(data)
            sink.payload(data)
            return
        sink.payload(data[:self.left])
        self.cut(sink)


class _ResetAfter(_AfterBytes):
    """Passes ``nbytes`` of payload, then aborts the exchange with an RST."""

    def cut(self, sink: _Sink) -> None:
        raise _Abort(reset=True)


class _Stall(_AfterBytes):
    """Passes ``after_bytes`` of payload, goes silent for ``seconds``, then closes."""

    def __init__(self, seconds: float, after_bytes: int):
        super().__init__(after_bytes)
        self.seconds = seconds

    def cut(self, sink: _Sink) -> None:
        sink.wait(self.seconds)
        raise _Abort()


class _Trickle(_Shaper):
    """Passes payload at ``bytes_per_second``, in slices every :data:`TRICKLE_TICK` seconds."""

    def __init__(self, bytes_per_second: float):
        if bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        self.rate = bytes_per_second
        self.step = max(1, int(bytes_per_second * TRICKLE_TICK))
        self.started = 0.0
        self.sent = 0

    def begin(self, sink: _Sink) -> None:
        self.started = time.monotonic()

    def payload(self, sink: _Sink, data: bytes) -> None:
        for start in range(0, len(data), self.step):
            piece = data[start:start + self.step]
            due = self.started + (self.sent + len(piece)) / self.rate
            sink.wait(due - time.monotonic())
            self.sent += len(piece)
            sink.payload(piece)


def _relay(pieces: Iterator[tuple[bool, bytes]], sink: _Sink, shaper: _Shaper) -> None:
    """Pass a body's pieces to ``sink``, payload through ``shaper``."""
    shaper.begin(sink)
    for is_payload, data in pieces:
        if is_payload:
            shaper.payload(sink, data)
        else:
            sink.frame(data)


# -- actions: what the proxy does with one request --------------------------------------

@dataclass
class _Exchange:
    """One request on a client connection, as seen by an action."""

    connection: _Connection
    head: _Head
    seen: Seen
    proxy: "FaultProxy"

    @property
    def client(self) -> _Peer:
        return self.connection.client

    def request_sink(self, peer: _Peer | None) -> _Sink:
        return _Sink(peer, self._count_in, self.proxy._stopping)

    def response_sink(self) -> _Sink:
        return _Sink(self.client, self._count_out, self.proxy._stopping)

    def _count_in(self, n: int) -> None:
        self.seen.bytes_in += n

    def _count_out(self, n: int) -> None:
        self.seen.bytes_out += n

    def request_body(self) -> Iterator[tuple[bool, bytes]]:
        return _read_body(self.client.reader, _request_framing(self.head))

    def drain_request(self) -> None:
        """Read and discard the request body (counted in ``bytes_in``)."""
        _relay(self.request_body(), self.request_sink(None), _Shaper())


class _Action:
    """Handles one request; ``run`` returns whether the client connection stays open."""

    fault: str | None = None

    def run(self, exchange: _Exchange) -> bool:
        raise NotImplementedError


class _Forward(_Action):
    """Forward to the upstream, shaping the request and response bodies."""

    def __init__(self, fault: str | None = None,
                 request: Callable[[], _Shaper] = _Shaper,
                 response: Callable[[], _Shaper] = _Shaper):
        self.fault = fault
        self.request_shaper = request
        self.response_shaper = response

    def run(self, exchange: _Exchange) -> bool:
        try:
            upstream = exchange.connection.open_upstream(exchange.proxy.upstream_address)
        except OSError:
            return _Answer(502, body=b"upstream unreachable\n").run(exchange)
        upstream.send(exchange.proxy._upstream_head(exchange.head).encode())
        body_complete = self._forward_request(exchange, upstream)
        response = self._response_head(exchange, upstream)
        exchange.seen.status = response.status
        exchange.client.send(response.encode())
        framing = _response_framing(exchange.head.method, response)
        _relay(_read_body(upstream.reader, framing), exchange.response_sink(),
               self.response_shaper())
        return body_complete and _keep_alive(exchange.head, response, framing)

    def _forward_request(self, exchange: _Exchange, upstream: _Peer) -> bool:
        """Stream the request body upstream; False if the upstream stopped reading it."""
        try:
            _relay(exchange.request_body(), exchange.request_sink(upstream),
                   self.request_shaper())
        except _SendFailed as error:
            if error.role != "upstream":
                raise
            return False        # it may have answered early (e.g. 401): relay that
        return True

    @staticmethod
    def _response_head(exchange: _Exchange, upstream: _Peer) -> _Head:
        """The final response head; interim (1xx) responses are relayed on the way."""
        while True:
            head = _read_head(upstream.reader)
            if head is None:
                raise _ProtocolError("upstream closed without a response")
            if head.status >= 200 or head.status == 101:
                return head
            exchange.client.send(head.encode())


class _Answer(_Action):
    """Answer ``code`` without contacting the upstream (after draining the request body)."""

    def __init__(self, code: int, headers: Mapping[str, str] | None = None, body: bytes = b"",
                 fault: str | None = None):
        self.code = code
        self.headers = dict(headers or {})
        self.body = body
        self.fault = fault

    def run(self, exchange: _Exchange) -> bool:
        exchange.drain_request()
        return self.respond(exchange, self.headers)

    def respond(self, exchange: _Exchange, headers: Mapping[str, str]) -> bool:
        exchange.seen.status = self.code
        exchange.client.send(_response_head(self.code, headers, len(self.body)).encode())
        if exchange.head.method != "HEAD" and self.body:
            exchange.response_sink().payload(self.body)
        return not exchange.head.has_token("Connection", "close")


class _Redirect(_Answer):
    """``307`` to the same path (and query) under another base URL, optionally under ``path_prefix`` and
    with a ``signed_query`` appended (what object storage's signed links look like)."""

    def __init__(self, base_url: str, fault: str = "redirect", path_prefix: str = "", signed_query: str = ""):
        super().__init__(307, fault=fault)
        self.base_url = base_url.rstrip("/")
        self.path_prefix = path_prefix.rstrip("/")
        self.signed_query = signed_query

    def run(self, exchange: _Exchange) -> bool:
        exchange.drain_request()
        location = self.base_url + self.path_prefix + exchange.head.path
        query = "&".join(q for q in (exchange.head.query, self.signed_query) if q)
        if query:
            location += "?" + query
        return self.respond(exchange, {"Location": location})


class _Drop(_Action):
    """Close the connection without answering."""

    fault = "drop"

    def run(self, exchange: _Exchange) -> bool:
        raise _Abort()


# -- rules ---------------------------------------------------------------------------

@dataclass
class Rule:
    """A fault for requests matching ``method`` (``"*"``: any) and ``path`` (searched).

    Acts on the first ``times`` matching requests (None: all); ``fired`` counts them.
    """

    method: str
    path: re.Pattern
    action: _Action = field(repr=False)
    times: int | None = 1
    fired: int = 0

    @property
    def fault(self) -> str | None:
        return self.action.fault

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def matches(self, head: _Head) -> bool:
        return (not self.exhausted
                and self.method in ("*", head.method)
                and self.path.search(head.path) is not None)


# -- the proxy -------------------------------------------------------------------------

class FaultProxy(LoopbackRelay):
    """A threaded reverse proxy to ``upstream`` (``"127.0.0.1:PORT"`` of a plain-HTTP registry).

    Listens on ``127.0.0.1:port`` (a free port by default; bound at construction,
    so :attr:`host`/:attr:`url` are known before :meth:`start`). One daemon
    thread accepts, one daemon thread serves each client connection;
    :meth:`stop` joins them all.
    """

    def __init__(self, upstream: str, *, port: int | None = None):
        super().__init__(_strip_scheme(upstream), port=port)
        self._paused = threading.Event()
        self._rules: list[Rule] = []
        self._seen: list[Seen] = []

    def pause(self) -> None:
        """Act dead: close new connections at once, and existing ones at their next request."""
        self._paused.set()

    def resume(self) -> None:
        """Serve again after :meth:`pause`."""
        self._paused.clear()

    # -- rules ---------------------------------------------------------------------

    def _add(self, method: str, path_re: str, action: _Action, times: int | None) -> Rule:
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for always")
        rule = Rule(method.upper(), re.compile(path_re), action, times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def passthrough(self, method: str, path_re: str, times: int | None = 1) -> Rule:
        """Forward matching requests untouched: lets a later rule hit the Nth one."""
        return self._add(method, path_re, _Forward(), times)

    def reset_after(self, method: str, path_re: str, nbytes: int, times: int | None = 1,
                    direction: str = "response") -> Rule:
        """Forward, but cut the client connection with an RST after ``nbytes`` body bytes.

        ``direction="response"`` counts response bytes sent to the client;
        ``"request"`` counts request (upload) bytes received from it, then closes
        both sides.
        """
        shaper = partial(_ResetAfter, nbytes)
        if direction == "response":
            action = _Forward("reset", response=shaper)
        elif direction == "request":
            action = _Forward("reset", request=shaper)
        else:
            raise ValueError(f"direction must be 'response' or 'request', not {direction!r}")
        return self._add(method, path_re, action, times)

    def status(self, method: str, path_re: str, code: int, times: int | None = 1,
               headers: Mapping[str, str] | None = None, body: bytes = b"") -> Rule:
        """Answer ``code`` (with ``headers``, ``body``) without contacting the upstream."""
        return self._add(method, path_re, _Answer(code, headers, body, fault="status"), times)

    def stall(self, method: str, path_re: str, seconds: float, after_bytes: int = 0,
              times: int | None = 1) -> Rule:
        """Send the response head and ``after_bytes`` body bytes, go silent ``seconds``, close."""
        return self._add(method, path_re,
                         _Forward("stall", response=partial(_Stall, seconds, after_bytes)), times)

    def trickle(self, method: str, path_re: str, bytes_per_second: float,
                times: int | None = 1) -> Rule:
        """Send the response body slowly but steadily (a slice every 0.1 s)."""
        return self._add(method, path_re,
                         _Forward("trickle", response=partial(_Trickle, bytes_per_second)), times)

    def redirect_blobs_to(self, other_url: str, times: int | None = None, *, path_prefix: str = "",
                          signed_query: str = "") -> Rule:
        """Answer blob GETs with ``307 Location: other_url[path_prefix]/v2/<name>/blobs/<digest>[?signed_query]``
        (a :class:`StorageServer` with the same ``path_prefix`` serves that)."""
        return self._add("GET", BLOB_PATH.pattern, _Redirect(other_url, path_prefix=path_prefix,
                                                             signed_query=signed_query), times)

    def drop_connection(self, method: str, path_re: str, times: int | None = 1) -> Rule:
        """Close the client connection without answering."""
        return self._add(method, path_re, _Drop(), times)

    def clear(self) -> None:
        """Remove all rules."""
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[Rule]:
        with self._lock:
            return list(self._rules)

    # -- request log -------------------------------------------------------------

    @property
    def requests(self) -> list[Seen]:
        """A snapshot of the request log, oldest first."""
        with self._lock:
            return list(self._seen)

    def clear_requests(self) -> None:
        """Empty the request log."""
        with self._lock:
            self._seen.clear()

    def _record(self, head: _Head, connection: _Connection) -> Seen:
        authorization = head.get("Authorization")
        seen = Seen(method=head.method, path=head.path, query=head.query,
                    authorization=authorization.split(" ", 1)[0] if authorization else None,
                    range=head.get("Range"), connection=connection.number)
        with self._lock:
            self._seen.append(seen)
        return seen

    # -- serving -----------------------------------------------------------------

    def _accepted(self, sock: socket.socket) -> None:
        if self._paused.is_set():
            sock.close()
            return
        connection = _Connection(_Peer(sock, "client"), next(self._numbers))
        with self._lock:
            self._connections.add(connection)
        self._start_thread(self._serve, f"{self!r} connection {connection.number}", connection)

    def _serve(self, connection: _Connection) -> None:
        """Serve the requests of one client connection until it closes."""
        reset = False
        try:
            while not self._stopping.is_set():
                head = _read_head(connection.client.reader)
                if head is None or not self._exchange(connection, head):
                    break
        except _Abort as abort:
            reset = abort.reset
        except (OSError, ValueError, IndexError, _ProtocolError) as error:
            log.debug("%r: connection %d ended: %s", self, connection.number, error)
        finally:
            connection.close_upstream()
            connection.client.close(reset=reset)
            with self._lock:
                self._connections.discard(connection)

    def _exchange(self, connection: _Connection, head: _Head) -> bool:
        """Handle one request; return whether the connection stays open."""
        seen = self._record(head, connection)
        if self._paused.is_set():
            seen.fault = "paused"
            return False
        action = self._action_for(head)
        seen.fault = action.fault
        try:
            return action.run(_Exchange(connection, head, seen, self))
        finally:
            connection.close_upstream()

    def _action_for(self, head: _Head) -> _Action:
        """The first live matching rule's action (counted as fired), else :meth:`_default_action`."""
        with self._lock:
            rule = next((r for r in self._rules if r.matches(head)), None)
            if rule is not None:
                rule.fired += 1
                return rule.action
        return self._default_action(head)

    def _default_action(self, head: _Head) -> _Action:
        """What a request no rule matches gets: plain forwarding."""
        return _Forward()

    def _upstream_head(self, head: _Head) -> _Head:
        """The request head sent upstream (unchanged: the client's Host included)."""
        return head


def _strip_scheme(upstream: str) -> str:
    """``host:port`` of an upstream given as ``host:port`` or ``http://host:port``."""
    if upstream.startswith("https://"):
        raise ValueError("FaultProxy forwards to plain-HTTP upstreams only")
    return upstream.removeprefix("http://").rstrip("/")


class StorageServer(FaultProxy):
    """Blob storage stand-in at ``http://localhost:PORT``, for :meth:`FaultProxy.redirect_blobs_to`.

    Serves ``GET``/``HEAD /v2/<name>/blobs/<digest>`` by forwarding them to the
    (anonymous) ``upstream`` registry *without* ``Authorization``; anything else
    gets 404. :attr:`seen_authorization` lists the ``Authorization`` header of
    every request received (None when absent). Fault rules work as on a
    :class:`FaultProxy`.
    """

    hostname = "localhost"

    def __init__(self, upstream: str, *, port: int | None = None, path_prefix: str = ""):
        super().__init__(upstream, port=port)
        self._authorizations: list[str | None] = []
        self.path_prefix = path_prefix.rstrip("/")

    @property
    def seen_authorization(self) -> list[str | None]:
        """The ``Authorization`` header of each request, in order (None: absent)."""
        with self._lock:
            return list(self._authorizations)

    def _action_for(self, head: _Head) -> _Action:
        with self._lock:
            self._authorizations.append(head.get("Authorization"))
        if head.method not in ("GET", "HEAD") or not BLOB_PATH.match(head.path):
            return _Answer(404, {"Content-Type": "text/plain"}, b"not a blob\n")
        return super()._action_for(head)

    def _upstream_head(self, head: _Head) -> _Head:
        return head.without("Authorization")

    def _exchange(self, connection: _Connection, head: _Head) -> bool:
        # a signed link's path prefix and query are the storage's business, not the registry's behind it
        path = head.path
        if self.path_prefix and path.startswith(self.path_prefix + "/"):
            path = path[len(self.path_prefix):]
        return super()._exchange(connection, _Head(f"{head.method} {path} {head.version}", head.headers))
