"""Tests proving the fault-injecting proxy itself, with plain ``requests`` (no arcmirror code)."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest
import requests

from testbed.faultproxy import FaultProxy, StorageServer
from testbed.registry import MANIFEST_ACCEPT, Registry, free_port

BLOB_REPO = "faultproxy/blobs"
BLOB_SIZE = 1024 * 1024
BLOB_PATH = r"/blobs/sha256:"
CLIENT_ERRORS = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)


@dataclass(frozen=True)
class Blob:
    repo: str
    digest: str
    data: bytes

    def path(self) -> str:
        return f"/v2/{self.repo}/blobs/{self.digest}"


def random_blob(seed: int, size: int = BLOB_SIZE, repo: str = BLOB_REPO) -> Blob:
    data = random.Random(seed).randbytes(size)
    return Blob(repo, "sha256:" + hashlib.sha256(data).hexdigest(), data)


def session() -> requests.Session:
    """A session that ignores proxy settings from the environment."""
    s = requests.Session()
    s.trust_env = False
    return s


def upload(client: requests.Session, base_url: str, blob: Blob, *, chunked: bool = False,
           **kwargs) -> requests.Response:
    """A monolithic upload: POST an upload session, then PUT its Location with the data."""
    started = client.post(f"{base_url}/v2/{blob.repo}/blobs/uploads/", timeout=10)
    assert started.status_code == 202, started.text
    body = iter([blob.data[i:i + 100_000] for i in range(0, len(blob.data), 100_000)]) \
        if chunked else blob.data
    return client.put(started.headers["Location"], params={"digest": blob.digest}, data=body,
                      headers={"Content-Type": "application/octet-stream"}, timeout=10, **kwargs)


def read_until_error(response: requests.Response,
                     step: int) -> tuple[int, BaseException | None]:
    """Bytes of a streamed body read before it failed, and the error (None if it completed).

    urllib3 fills each ``step``-byte read completely and drops a partial one when
    the connection fails, so ``step`` must divide the expected count.
    """
    received = 0
    try:
        for piece in response.iter_content(step):
            received += len(piece)
    except CLIENT_ERRORS as error:
        return received, error
    return received, None


# -- fixtures --------------------------------------------------------------------

@pytest.fixture(scope="module")
def upstream(testbed_tools, tmp_path_factory) -> Iterator[Registry]:
    """An anonymous registry of this module's own (tests upload into it)."""
    with Registry(tmp_path_factory.mktemp("faultproxy-upstream")) as registry:
        yield registry


@pytest.fixture(scope="module")
def blob(upstream: Registry) -> Blob:
    """A 1 MiB random blob pushed straight (not through a proxy) into :func:`upstream`."""
    blob = random_blob(1)
    with session() as client:
        assert upload(client, upstream.url, blob).status_code == 201
    return blob


@pytest.fixture
def client() -> Iterator[requests.Session]:
    with session() as s:
        yield s


@pytest.fixture
def proxy(fault_proxy, upstream: Registry) -> FaultProxy:
    return fault_proxy(upstream)


CHUNKS = [bytes([i]) * 100 for i in range(1, 6)]


class ChunkedHandler(BaseHTTPRequestHandler):
    """Answers every GET with :data:`CHUNKS` as a chunked body (distribution never does)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in CHUNKS:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def chunked_upstream() -> Iterator[str]:
    """``host:port`` of a tiny HTTP/1.1 server sending chunked responses."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChunkedHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


# -- transparent forwarding ------------------------------------------------------

def test_forwards_base_endpoint(proxy, client):
    response = client.get(f"{proxy.url}/v2/", timeout=10)
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    [seen] = proxy.requests
    assert (seen.method, seen.path, seen.status, seen.fault) == ("GET", "/v2/", 200, None)


def test_forwards_manifest_head_and_get(fault_proxy, source_registry, release, client):
    proxy = fault_proxy(source_registry)
    name = release.names[0]
    url = f"{proxy.url}/v2/{release.repository(name)}/manifests/{release.tag}"
    headers = {"Accept": MANIFEST_ACCEPT}

    head = client.head(url, headers=headers, timeout=10)
    got = client.get(url, headers=headers, timeout=10)

    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["Docker-Content-Digest"] == release.digests[name]
    assert got.content == source_registry.get_manifest(release.repository(name), release.tag)[0]
    assert "sha256:" + hashlib.sha256(got.content).hexdigest() == release.digests[name]
    assert [(s.method, s.status, s.bytes_out) for s in proxy.requests] == [
        ("HEAD", 200, 0), ("GET", 200, len(got.content))]


def test_forwards_blob_get_range_and_logs_auth_scheme(proxy, blob, client):
    url = proxy.url + blob.path()
    whole = client.get(url, auth=("someone", "secret"), timeout=10)
    part = client.get(url, headers={"Range": "bytes=0-99"}, timeout=10)

    assert whole.status_code == 200 and whole.content == blob.data
    assert part.status_code == 206 and part.content == blob.data[:100]
    first, second = proxy.requests
    assert (first.authorization, first.range, first.bytes_out) == ("Basic", None, BLOB_SIZE)
    assert (second.authorization, second.range, second.bytes_out) == (None, "bytes=0-99", 100)


def test_keeps_client_connections_alive(proxy, client):
    for _ in range(3):
        assert client.get(f"{proxy.url}/v2/", timeout=10).status_code == 200
    assert len({seen.connection for seen in proxy.requests}) == 1


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_monolithic_upload_lands_in_registry(proxy, upstream, client, chunked):
    blob = random_blob(10 + chunked, size=300_000)
    started = client.post(f"{proxy.url}/v2/{blob.repo}/blobs/uploads/", timeout=10)
    # distribution builds Location from the request's Host, which the proxy passes on
    assert started.headers["Location"].startswith(f"{proxy.url}/v2/{blob.repo}/blobs/uploads/")

    response = upload(client, proxy.url, blob, chunked=chunked)

    assert response.status_code == 201, response.text
    assert response.headers["Location"].startswith(proxy.url)
    assert upstream.has_blob(blob.repo, blob.digest)
    put = proxy.requests[-1]
    assert (put.method, put.status, put.bytes_in) == ("PUT", 201, len(blob.data))
    assert "digest=sha256%3A" in put.query


def test_relays_chunked_responses(fault_proxy, chunked_upstream, client):
    proxy = fault_proxy(chunked_upstream)
    response = client.get(f"{proxy.url}/anything", timeout=10)
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert response.content == b"".join(CHUNKS)
    assert proxy.requests[0].bytes_out == 500


def test_unreachable_upstream_gives_502(fault_proxy, client):
    proxy = fault_proxy(f"127.0.0.1:{free_port()}")
    assert client.get(f"{proxy.url}/v2/", timeout=10).status_code == 502


# -- faults --------------------------------------------------------------------

def test_reset_after_response_bytes(proxy, blob, client):
    rule = proxy.reset_after("GET", BLOB_PATH, 100_000)
    url = proxy.url + blob.path()

    with client.get(url, stream=True, timeout=10) as response:
        assert response.status_code == 200
        received, error = read_until_error(response, 1000)
    assert received == 100_000 and error is not None

    assert client.get(url, timeout=10).content == blob.data       # times=1: next one passes
    assert rule.fired == 1
    assert [(s.fault, s.bytes_out) for s in proxy.requests] == [
        ("reset", 100_000), (None, BLOB_SIZE)]


def test_reset_counts_payload_of_chunked_responses(fault_proxy, chunked_upstream, client):
    proxy = fault_proxy(chunked_upstream)
    proxy.reset_after("GET", "/", 150)
    with client.get(f"{proxy.url}/x", stream=True, timeout=10) as response:
        received, error = read_until_error(response, 50)
    assert received == 150 and error is not None


def test_reset_after_request_bytes(proxy, upstream, client):
    blob = random_blob(20)
    proxy.reset_after("PUT", r"/blobs/uploads/", 200_000, direction="request")

    with pytest.raises(requests.exceptions.ConnectionError):
        upload(client, proxy.url, blob)

    put = proxy.requests[-1]
    assert (put.method, put.fault, put.bytes_in, put.status) == ("PUT", "reset", 200_000, None)
    assert not upstream.has_blob(blob.repo, blob.digest)


def test_status_answers_without_upstream(proxy, blob, client):
    proxy.status("GET", BLOB_PATH, 429, headers={"Retry-After": "2"}, body=b"slow down")
    url = proxy.url + blob.path()

    limited = client.get(url, timeout=10)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2" and limited.content == b"slow down"
    assert client.get(url, timeout=10).status_code == 200


def test_status_drains_upload_and_keeps_connection(proxy, upstream, client):
    blob = random_blob(30)
    proxy.status("PUT", r"/blobs/uploads/", 503)

    assert upload(client, proxy.url, blob).status_code == 503
    assert not upstream.has_blob(blob.repo, blob.digest)
    assert upload(client, proxy.url, blob).status_code == 201
    puts = [s for s in proxy.requests if s.method == "PUT"]
    assert [(s.status, s.bytes_in) for s in puts] == [(503, BLOB_SIZE), (201, BLOB_SIZE)]
    assert len({s.connection for s in proxy.requests}) == 1


def test_stall_makes_client_read_time_out(proxy, blob, client):
    proxy.stall("GET", BLOB_PATH, seconds=10, after_bytes=1000)

    began = time.monotonic()
    with client.get(proxy.url + blob.path(), stream=True, timeout=1) as response:
        assert response.status_code == 200
        received, error = read_until_error(response, 500)
    elapsed = time.monotonic() - began

    assert received == 1000
    assert isinstance(error, requests.exceptions.ConnectionError)
    assert "timed out" in str(error)
    assert 0.9 < elapsed < 3


def test_trickle_delivers_whole_body_at_rate(proxy, blob, client):
    proxy.trickle("GET", BLOB_PATH, bytes_per_second=400_000)
    size = 200_000                                     # 0.5 s at 400 kB/s

    began = time.monotonic()
    halfway = None
    body = bytearray()
    with client.get(proxy.url + blob.path(), headers={"Range": f"bytes=0-{size - 1}"},
                    stream=True, timeout=10) as response:
        for piece in response.iter_content(4096):
            body += piece
            if halfway is None and len(body) >= size // 2:
                halfway = time.monotonic() - began
    elapsed = time.monotonic() - began

    assert bytes(body) == blob.data[:size]
    assert 0.45 < elapsed < 1.0
    assert 0.15 < halfway < 0.8 * elapsed              # steady, not a burst at the end (relative: CI may be slow)


def test_redirect_to_storage_drops_authorization(proxy, upstream, blob, client):
    with StorageServer(upstream.host) as storage:
        proxy.redirect_blobs_to(storage.url)
        assert storage.url.startswith("http://localhost:")

        response = client.get(proxy.url + blob.path(), auth=("mirror", "secret"), timeout=10)

        assert response.status_code == 200 and response.content == blob.data
        [redirect] = response.history
        assert redirect.status_code == 307
        assert redirect.headers["Location"] == storage.url + blob.path()
        assert storage.seen_authorization == [None]
        assert proxy.requests[0].authorization == "Basic"
        assert client.get(f"{storage.url}/v2/", timeout=10).status_code == 404


def test_drop_connection(proxy, client):
    proxy.drop_connection("GET", r"^/v2/$")
    with pytest.raises(requests.exceptions.ConnectionError):
        client.get(f"{proxy.url}/v2/", timeout=10)
    assert client.get(f"{proxy.url}/v2/", timeout=10).status_code == 200
    assert [s.fault for s in proxy.requests] == ["drop", None]


def test_pause_refuses_then_resume_serves(proxy, client):
    assert client.get(f"{proxy.url}/v2/", timeout=10).status_code == 200
    proxy.pause()
    with pytest.raises(requests.exceptions.ConnectionError):       # the kept-alive connection
        client.get(f"{proxy.url}/v2/", timeout=10)
    with pytest.raises(requests.exceptions.ConnectionError), session() as fresh:
        fresh.get(f"{proxy.url}/v2/", timeout=10)                   # a new connection
    proxy.resume()
    assert client.get(f"{proxy.url}/v2/", timeout=10).status_code == 200


def test_passthrough_lets_a_rule_hit_the_nth_request(proxy, client):
    skip = proxy.passthrough("GET", r"^/v2/$", times=2)
    fail = proxy.status("GET", r"^/v2/$", 503)
    statuses = [client.get(f"{proxy.url}/v2/", timeout=10).status_code for _ in range(4)]
    assert statuses == [200, 200, 503, 200]
    assert (skip.fired, fail.fired) == (2, 1)


def test_rules_match_method_and_times_none_always_fires(proxy, client):
    proxy.status("HEAD", r"^/v2/$", 500, times=None)
    assert [client.head(f"{proxy.url}/v2/", timeout=10).status_code for _ in range(3)] == [500] * 3
    assert client.get(f"{proxy.url}/v2/", timeout=10).status_code == 200
    proxy.clear()
    assert proxy.rules == []
    assert client.head(f"{proxy.url}/v2/", timeout=10).status_code == 200


def test_stop_cuts_connections_and_joins_threads(upstream, blob, client):
    proxy = FaultProxy(upstream.host).start()
    proxy.stall("GET", BLOB_PATH, seconds=30)
    idle = session()
    assert idle.get(f"{proxy.url}/v2/", timeout=10).status_code == 200     # an idle keep-alive
    stalled = client.get(proxy.url + blob.path(), stream=True, timeout=10)  # a stalled body

    began = time.monotonic()
    proxy.stop()
    assert time.monotonic() - began < 1
    stalled.close()
    idle.close()
    assert not [t for t in threading.enumerate() if t.name.startswith(repr(proxy))]
    with pytest.raises(requests.exceptions.ConnectionError), session() as fresh:
        fresh.get(f"{proxy.url}/v2/", timeout=10)
