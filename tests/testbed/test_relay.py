"""Tests proving the latency relay itself: delays and throughput are measured, not assumed.

Tiny TCP servers on loopback stand behind the relay (echo, a byte source, a byte
sink answering a digest); request counting runs against a real registry. The
machine may be loaded (2 cores): timing windows are generous.
"""

from __future__ import annotations

import hashlib
import random
import socket
import socketserver
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Callable, Iterator, TypeVar

import pytest
import requests

from testbed.relay import DOWN, UP, LatencyRelay, Link, Timeline

DELAY_MS = 25
MB = 1_000_000
T = TypeVar("T")


# -- tiny upstreams --------------------------------------------------------------

def pattern(size: int) -> bytes:
    return random.Random(size).randbytes(size)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.behaviour(self.request)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, behaviour: Callable[[socket.socket], None]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = behaviour
        self.host = f"127.0.0.1:{self.server_address[1]}"


def echo(sock: socket.socket) -> None:
    """Send back everything, then end the stream when the client does."""
    while data := sock.recv(65536):
        sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


def source(sock: socket.socket) -> None:
    """Read a decimal size and a newline, send that many bytes of :func:`pattern`, close."""
    line = b""
    while not line.endswith(b"\n"):
        line += sock.recv(1)
    sock.sendall(pattern(int(line)))


def sink(sock: socket.socket) -> None:
    """Read to the end of the stream, then answer the SHA-256 (hex) of what came."""
    digest = hashlib.sha256()
    while data := sock.recv(65536):
        digest.update(data)
    sock.sendall(digest.hexdigest().encode())


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """``{"echo": host, "source": host, "sink": host}`` of the tiny upstreams."""
    started = {name: _Server(behaviour) for name, behaviour in
               (("echo", echo), ("source", source), ("sink", sink))}
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
               for s in started.values()]
    for thread in threads:
        thread.start()
    yield {name: server.host for name, server in started.items()}
    for server in started.values():
        server.shutdown()
        server.server_close()


@pytest.fixture
def relay() -> Iterator[Callable[..., LatencyRelay]]:
    """Factory ``relay(upstream, delay_ms, **options)``: a started relay, stopped at teardown."""
    relays: list[LatencyRelay] = []

    def factory(upstream: str, delay_ms: float, **options) -> LatencyRelay:
        relays.append(LatencyRelay(upstream, delay_ms, **options).start())
        return relays[-1]

    yield factory
    for item in relays:
        item.stop()


# -- clients -----------------------------------------------------------------------

def connect(host: str) -> socket.socket:
    address, _, port = host.rpartition(":")
    sock = socket.create_connection((address, int(port)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        piece = sock.recv(size - len(data))
        if not piece:
            raise ConnectionError(f"stream ended after {len(data)} of {size} bytes")
        data += piece
    return data


def read_all(sock: socket.socket) -> bytes:
    pieces = []
    while piece := sock.recv(1 << 20):
        pieces.append(piece)
    return b"".join(pieces)


def round_trips(host: str, count: int = 7) -> list[float]:
    """Seconds of each echo round trip of a small message, on one connection."""
    times = []
    with connect(host) as sock:
        for i in range(count):
            message = b"ping %d\n" % i
            started = time.perf_counter()
            sock.sendall(message)
            assert receive(sock, len(message)) == message
            times.append(time.perf_counter() - started)
    return times


def download(host: str, size: int) -> bytes:
    with connect(host) as sock:
        sock.sendall(b"%d\n" % size)
        return read_all(sock)


def upload(host: str, data: bytes) -> str:
    """Send ``data``, half-close, and return the digest the sink answers."""
    with connect(host) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return read_all(sock).decode()


def at_once(calls: list[Callable[[], T]]) -> tuple[list[T], float]:
    """Run ``calls`` in threads at once: their results (errors raised here), seconds taken."""
    with ThreadPoolExecutor(len(calls)) as pool:
        started = time.perf_counter()
        results = [future.result(timeout=30) for future in [pool.submit(call) for call in calls]]
        return results, time.perf_counter() - started


def session() -> requests.Session:
    """A session that ignores proxy settings from the environment."""
    s = requests.Session()
    s.trust_env = False
    return s


# -- latency -----------------------------------------------------------------------

def test_a_round_trip_costs_twice_the_delay(servers, relay):
    direct = statistics.median(round_trips(servers["echo"]))
    delayed = statistics.median(round_trips(relay(servers["echo"], DELAY_MS).host))

    assert direct < 0.01
    assert 0.045 <= delayed <= 0.090, f"round trip {delayed * 1000:.1f} ms through a 25 ms relay"


def test_no_delay_adds_almost_nothing(servers, relay):
    through = statistics.median(round_trips(relay(servers["echo"], 0).host))
    assert through < 0.01, f"round trip {through * 1000:.1f} ms through a 0 ms relay"


def test_delays_do_not_add_up_in_a_long_stream(servers, relay):
    """16 MB is 250+ chunks: were each delayed in turn, the download would take 6 s and more."""
    host = relay(servers["source"], DELAY_MS).host
    size = 16 * MB

    started = time.perf_counter()
    data = download(host, size)
    elapsed = time.perf_counter() - started

    assert data == pattern(size)
    assert elapsed < 1.5, f"{size / MB:.0f} MB took {elapsed:.2f} s through a 25 ms relay"


def test_half_close_passes_on_the_end_after_the_data(servers, relay):
    """The client ends its stream; the sink sees every byte, then the end, then answers."""
    host = relay(servers["sink"], DELAY_MS).host
    data = pattern(3 * MB)

    started = time.perf_counter()
    answer = upload(host, data)
    elapsed = time.perf_counter() - started

    assert answer == hashlib.sha256(data).hexdigest()
    assert elapsed >= 0.045      # the end crossed one way, the answer the other way


# -- the shared link ------------------------------------------------------------------

def test_relays_on_one_link_share_its_bandwidth(servers, relay):
    """2 MB down through one relay and 2 MB up through another, at once, on one 4 MB/s link."""
    link = Link(4 * MB)
    down = relay(servers["source"], 5, link=link).host
    up = relay(servers["sink"], 5, link=link).host
    data = pattern(2 * MB)

    results, elapsed = at_once([lambda: download(down, 2 * MB), lambda: upload(up, data)])

    assert results == [data, hashlib.sha256(data).hexdigest()]
    assert link.carried >= 4 * MB
    # alone, each would take 0.5 s; sharing 4 MB/s, both together take 1 s
    assert 0.85 <= elapsed <= 2.0, f"4 MB over a shared 4 MB/s link took {elapsed:.2f} s"


def test_a_full_duplex_link_gives_each_direction_its_own_budget(servers, relay):
    """The same 2 MB down and 2 MB up at once at 4 MB/s: full duplex takes 0.5 s, half duplex 1 s."""
    data = pattern(2 * MB)
    took = {}
    for duplex in ("full", "half"):
        link = Link(4 * MB, duplex=duplex)
        down = relay(servers["source"], 5, link=link).host
        up = relay(servers["sink"], 5, link=link).host
        results, took[duplex] = at_once([lambda: download(down, 2 * MB), lambda: upload(up, data)])
        assert results == [data, hashlib.sha256(data).hexdigest()]
        carried = link.carried_by_direction
        assert carried[DOWN] >= 2 * MB and carried[UP] >= 2 * MB, carried
        assert carried[DOWN] < 2.01 * MB and carried[UP] < 2.01 * MB, carried

    # each direction alone at 4 MB/s: 0.5 s; full duplex runs them side by side, half duplex in turn
    assert 0.4 <= took["full"] <= 0.8, f"full duplex: {took['full']:.2f} s"
    assert 0.85 <= took["half"] <= 2.0, f"half duplex: {took['half']:.2f} s"
    assert took["half"] >= 1.5 * took["full"], took


def test_a_full_duplex_direction_is_shared_by_the_relays_on_the_link(servers, relay):
    """Two downloads through two relays on one full-duplex link share its down budget."""
    link = Link(4 * MB, duplex="full")
    first = relay(servers["source"], 5, link=link).host
    second = relay(servers["source"], 5, link=link).host

    results, elapsed = at_once([lambda: download(first, 2 * MB), lambda: download(second, 2 * MB)])

    assert results == [pattern(2 * MB)] * 2
    assert link.carried_by_direction[UP] < 1000     # the two request lines
    assert 0.85 <= elapsed <= 2.0, f"4 MB down a 4 MB/s full-duplex link took {elapsed:.2f} s"


def test_a_link_needs_a_positive_rate_and_a_known_duplex():
    with pytest.raises(ValueError):
        Link(0)
    with pytest.raises(ValueError):
        Link(MB, duplex="simplex")
    assert Link(MB).duplex == "half"


# -- the timeline ------------------------------------------------------------------------

def test_the_timeline_counts_each_direction_per_slice_at_the_cap(servers, relay):
    """2 MB each way at once through a 4 MB/s full-duplex link: both directions busy at the cap
    for half a second, every byte on the timeline, no slice above the cap (plus the burst)."""
    link, timeline = Link(4 * MB, duplex="full"), Timeline(0.05)
    down = relay(servers["source"], 5, link=link, timeline=timeline).host
    up = relay(servers["sink"], 5, link=link, timeline=timeline).host
    data = pattern(2 * MB)
    timeline.reset()

    at_once([lambda: download(down, 2 * MB), lambda: upload(up, data)])
    time.sleep(0.1)
    timeline.stop()
    seen = timeline.snapshot()

    assert seen["slice_seconds"] == 0.05 and len(seen[DOWN]) == len(seen[UP]) >= 10
    assert sum(seen[DOWN]) == link.carried_by_direction[DOWN]
    assert sum(seen[UP]) == link.carried_by_direction[UP]
    per_slice = 4 * MB * 0.05
    for direction in (DOWN, UP):
        assert max(seen[direction]) <= per_slice * 1.5, (direction, seen[direction])
        busy = [n for n in seen[direction] if n >= per_slice / 2]
        assert 7 <= len(busy) <= 14, (direction, seen[direction])     # about 0.5 s of 50 ms slices
    assert seen[DOWN][-1] == seen[UP][-1] == 0                        # the 0.1 s after the end


def test_the_timeline_counts_an_uncapped_relay_and_stops(servers, relay):
    timeline = Timeline()
    host = relay(servers["source"], 0, timeline=timeline).host
    timeline.reset()
    assert download(host, 300_000) == pattern(300_000)
    time.sleep(0.05)        # the last write is counted after the client read it
    timeline.stop()
    assert sum(timeline.snapshot()[DOWN]) == 300_000
    assert sum(timeline.snapshot()[UP]) == len(b"300000\n")
    download(host, 1000)    # after stop: not counted
    assert sum(timeline.snapshot()[DOWN]) == 300_000
    timeline.reset()
    assert timeline.snapshot()[DOWN] in ([0], [0, 0])


# -- many connections ----------------------------------------------------------------------

def test_twenty_clients_at_once(servers, relay):
    proxy = relay(servers["echo"], DELAY_MS)
    clients = 20
    barrier = threading.Barrier(clients)

    def client(number: int) -> int:
        with connect(proxy.host) as sock:
            barrier.wait(10)
            for i in range(3):
                message = b"client %d message %d\n" % (number, i) * (number + 1)
                sock.sendall(message)
                assert receive(sock, len(message)) == message
            sock.shutdown(socket.SHUT_WR)
            assert read_all(sock) == b""
        return number

    results, elapsed = at_once([partial(client, n) for n in range(clients)])

    assert results == list(range(clients))
    assert proxy.connections == clients
    # one client: 3 round trips of 50 ms; twenty in turn would take 3 s
    assert elapsed < 2.0, f"20 clients took {elapsed:.2f} s"


def test_stop_cuts_open_connections_and_start_serves_again(servers, relay):
    proxy = relay(servers["echo"], DELAY_MS)
    idle = connect(proxy.host)
    assert round_trips(proxy.host, 1)

    started = time.perf_counter()
    proxy.stop()
    assert time.perf_counter() - started < 2.0
    with idle:
        assert idle.recv(10) == b""

    proxy.start()
    assert round_trips(proxy.host, 1)


def test_an_unreachable_upstream_closes_the_client():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        address = "127.0.0.1:%d" % unused.getsockname()[1]
        with LatencyRelay(address, 5) as proxy, connect(proxy.host) as sock:
            assert sock.recv(10) == b""


# -- request counting ------------------------------------------------------------------------

def test_counts_registry_requests_on_a_keep_alive_session(new_registry, relay):
    registry = new_registry()
    proxy = relay(registry.host, 5)
    data = pattern(300_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blob_url = f"{proxy.url}/v2/relay/test/blobs/{digest}"

    with session() as client:
        assert client.get(f"{proxy.url}/v2/", timeout=10).status_code == 200
        started = client.post(f"{proxy.url}/v2/relay/test/blobs/uploads/", timeout=10)
        assert started.status_code == 202, started.text
        put = client.put(started.headers["Location"], params={"digest": digest}, data=data,
                         headers={"Content-Type": "application/octet-stream"}, timeout=10)
        assert put.status_code == 201, put.text
        for _ in range(3):
            assert client.head(blob_url, timeout=10).status_code == 200
        got = client.get(blob_url, timeout=10)

    assert got.status_code == 200 and got.content == data
    assert registry.has_blob("relay/test", digest)
    assert proxy.requests_by_method == {"GET": 2, "POST": 1, "PUT": 1, "HEAD": 3}
    assert proxy.requests == 7
    assert proxy.connections == 1

    proxy.reset_counters()
    assert (proxy.requests, proxy.requests_by_method, proxy.connections) == (0, {}, 0)


def test_counts_a_chunked_upload(new_registry, relay):
    registry = new_registry()
    proxy = relay(registry.host, 0)
    data = pattern(200_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    with session() as client:
        started = client.post(f"{proxy.url}/v2/relay/chunked/blobs/uploads/", timeout=10)
        patched = client.patch(started.headers["Location"], timeout=10,
                               data=iter([data[i:i + 30_000] for i in range(0, len(data), 30_000)]))
        assert patched.status_code == 202, patched.text
        done = client.put(patched.headers["Location"], params={"digest": digest}, timeout=10)
        assert done.status_code == 201, done.text

    assert registry.has_blob("relay/chunked", digest)
    assert proxy.requests_by_method == {"POST": 1, "PATCH": 1, "PUT": 1}


def test_counting_skips_bodies_without_changing_a_byte(servers, relay):
    """Request lines inside bodies are not requests; what crosses is what was sent."""
    proxy = relay(servers["echo"], 0)
    fake = b"GET /fake HTTP/1.1\r\nHost: x\r\n\r\n"
    body = fake * 3
    stream = (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
              + b"PUT /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              + b"%x\r\n%s\r\n" % (len(fake), fake)
              + b"%x;ext=1\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(fake), fake)
              + b"\r\nHEAD /c HTTP/1.1\r\nHost: x\r\n\r\n"
              + b"GET /d HTTP/1.1\r\nHost: x\r\n\r\n")

    with connect(proxy.host) as sock:
        sock.sendall(stream)
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == stream

    assert proxy.requests_by_method == {"POST": 1, "PUT": 1, "HEAD": 1, "GET": 1}


def test_counting_stops_on_a_stream_that_is_not_http(servers, relay):
    proxy = relay(servers["echo"], 0)
    not_http = bytes([0x16, 0x03, 0x01, 0x02, 0x00]) + pattern(5000) + b"\r\n\r\n"
    stream = not_http + b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n"

    with connect(proxy.host) as sock:
        sock.sendall(stream)
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == stream
    with connect(proxy.host) as sock:      # other connections are still counted
        sock.sendall(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        read_all(sock)

    assert proxy.requests_by_method == {"GET": 1}


def test_relays_tls_without_counting(new_registry, relay):
    """Bytes are bytes: a TLS registry works through the relay (its certificate names 127.0.0.1)."""
    registry = new_registry(tls=True)
    proxy = relay(registry.url, 5)
    assert proxy.url.startswith("https://")

    with session() as client:
        response = client.get(f"{proxy.url}/v2/", verify=str(registry.ca_bundle), timeout=10)

    assert response.status_code == 200
    assert (proxy.requests, proxy.connections) == (0, 1)
