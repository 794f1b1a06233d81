"""A registry front: a real registry behind, a product's documented behaviour on the wire in front.

:class:`RegistryFront` is a :class:`~testbed.faultproxy.FaultProxy` (its fault rules, request log and
pause still work, and come first) that hands every other request to a :class:`Personality`. The
personality sees each request as a :class:`Call` (method, repository, what it addresses, its body
when small) and may

* answer it itself (:class:`Reply`, e.g. Harbor's 401 for a project that does not exist),
* close the connection without an answer (:data:`DROP`, e.g. ECR's upload into a missing repository),
* or let it through to the registry behind and rewrite the answer (:meth:`Personality.response`,
  e.g. Nexus's ``null`` in a tag list, Quay's paging, the ``OCI-Subject`` header).

Bodies are buffered except blob data (a blob GET's answer, an upload's PATCH/PUT body), which streams
as through the fault proxy. The personalities themselves (one module per product, each quirk with its
source) are in :mod:`testbed.personalities`. Never uses arcmirror's code.
"""

from __future__ import annotations

import copy
import http.client
import json
import re
import socket
import threading
from dataclasses import dataclass, field

from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

from .faultproxy import (
    IO_TIMEOUT,
    FaultProxy,
    _Abort,
    _Action,
    _Exchange,
    _Forward,
    _Framing,
    _Head,
    _read_body,
    _read_head,
    _request_framing,
    _response_framing,
    _response_head,
)

if TYPE_CHECKING:
    from .registry import Registry

#: The distribution API's paths: (kind, pattern); ``name`` is the repository.
ROUTES = (
    ("ping", re.compile(r"^/v2/?$")),
    ("catalog", re.compile(r"^/v2/_catalog$")),
    ("tags", re.compile(r"^/v2/(?P<name>.+)/tags/list$")),
    ("manifest", re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$")),
    ("referrers", re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<reference>[^/]+)$")),
    ("upload", re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<reference>[^/]*)$")),
    ("blob", re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<reference>[^/]+)$")),
)
#: An Accept that takes every manifest (distribution 2.8 answers 404 for an OCI manifest it may not send)
MANIFEST_ACCEPT = ", ".join((
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json"))
#: The most a buffered body may hold (manifests are at most 4 MiB).
BUFFER_LIMIT = 8 * 1024 * 1024


@dataclass
class Call:
    """One request, as a personality sees it."""

    method: str
    path: str
    query: dict[str, list[str]]
    head: _Head
    kind: str = "other"  # ping, catalog, tags, manifest, referrers, upload, blob, other
    name: str | None = None  # the repository
    reference: str | None = None  # tag or digest (manifest), digest (blob, referrers), upload id
    body: bytes | None = None  # the request body, unless it is blob data

    @classmethod
    def of(cls, head: _Head) -> "Call":
        call = cls(head.method, head.path, parse_qs(head.query, keep_blank_values=True), head)
        for kind, pattern in ROUTES:
            match = pattern.match(head.path)
            if match:
                call.kind = kind
                call.name = match.groupdict().get("name")
                call.reference = match.groupdict().get("reference")
                break
        return call

    def header(self, name: str) -> str | None:
        return self.head.get(name)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    @property
    def blob_data(self) -> bool:
        """A request whose body or answer is blob data (streamed, never buffered)."""
        return (self.kind == "upload" and self.method in ("PATCH", "PUT")) or \
            (self.kind == "blob" and self.method == "GET")

    @property
    def by_tag(self) -> bool:
        return self.reference is not None and ":" not in self.reference

    def json(self) -> dict:
        try:
            body = json.loads(self.body or b"")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}


@dataclass
class Reply:
    """An answer: made up by the personality, or the registry's, read whole (and maybe rewritten)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def error(cls, status: int, code: str, message: str, detail=None,
              headers: list[tuple[str, str]] | None = None) -> "Reply":
        """The distribution API's error body: ``{"errors": [{"code", "message", "detail"}]}``."""
        entry: dict = {"code": code, "message": message}
        if detail is not None:
            entry["detail"] = detail
        return cls(status, [("Content-Type", "application/json; charset=utf-8"), *(headers or [])],
                   json.dumps({"errors": [entry]}).encode())

    @classmethod
    def json_body(cls, status: int, body, headers: list[tuple[str, str]] | None = None,
                  content_type: str = "application/json") -> "Reply":
        return cls(status, [("Content-Type", content_type), *(headers or [])], json.dumps(body).encode())

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def set(self, name: str, value: str | None) -> "Reply":
        """Replace header ``name`` (None: remove it)."""
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        if value is not None:
            self.headers.append((name, value))
        return self

    def json(self):
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


#: Close the connection without an answer.
DROP = object()


class Personality:
    """How one product departs from the distribution spec. This one departs from nothing: it is
    distribution itself, the registry behind. Subclasses override what their product does.

    A product that serves its own token endpoint sets :attr:`token_path`: the front then rewrites the
    realm of every bearer challenge of the registry behind to that path on the front, and answers
    token requests there with :meth:`token` (by default: the token server behind, asked only for the
    scopes :meth:`grant` keeps, as products do that issue a token without the rights they refuse).
    """

    name = "distribution"
    #: where the product serves its token endpoint (None: the registry behind's realm is shown as is)
    token_path: str | None = None
    #: the ``service`` its challenges name (None: the registry behind's); token requests get the real one back
    service: str | None = None

    def __init__(self) -> None:
        self.front: RegistryFront | None = None
        self.lock = threading.Lock()
        self.upstream_realm: str | None = None
        self.upstream_service: str | None = None

    def route(self, head: _Head) -> _Head:
        """The request as the registry behind must see it (a product's own paths mapped to the API's)."""
        return head

    def request(self, call: Call) -> Reply | object | None:
        """Answer ``call`` (a :class:`Reply`, or :data:`DROP`), or None to let it through."""
        return None

    def response(self, call: Call, reply: Reply) -> Reply | object:
        """Rewrite the registry's answer to ``call`` (never called for blob data; call this first)."""
        challenge = reply.get("WWW-Authenticate")
        if challenge is not None:
            reply.set("WWW-Authenticate", self.challenge(call, challenge))
        return reply

    def challenge(self, call: Call, value: str) -> str:
        """The ``WWW-Authenticate`` the product sends where the registry behind sent ``value``."""
        if self.token_path is None or not value.lower().startswith("bearer "):
            return value
        match = re.search(r'realm="([^"]*)"', value)
        if match:
            self.upstream_realm = match[1]
            value = value.replace(match[0], f'realm="{self.front.url}{self.token_path}"')
        match = re.search(r'service="([^"]*)"', value)
        if match and self.service is not None:
            self.upstream_service = match[1]
            value = value.replace(match[0], f'service="{self.service}"')
        return value

    def grant(self, call: Call, scope: str) -> str | None:
        """The scope the product's token service asks the token server for (None: none of it)."""
        return scope

    def token(self, call: Call) -> Reply:
        """Answer a token request at :attr:`token_path`."""
        if self.upstream_realm is None:  # a client that asks before any challenge: learn the realm
            self.response(call, self.front.upstream_call("GET", "/v2/"))
        scopes = [kept for scope in call.query.get("scope", []) for part in scope.split()
                  if (kept := self.grant(call, part)) is not None]
        service = self.upstream_service if self.service is not None else call.param("service")
        query = urlencode([("service", service or ""), *(("scope", s) for s in scopes)])
        return self.front.http_call("GET", f"{self.upstream_realm}?{query}", like=call)


class RegistryFront(FaultProxy):
    """A :class:`Personality` in front of a plain-HTTP registry (``upstream``: ``"127.0.0.1:PORT"``).

    Fault rules added with the proxy's methods are tried first; then the personality decides.
    :meth:`upstream_call` lets a personality ask the registry behind something (with the client's
    credentials, so it sees what that client may see).
    """

    def __init__(self, upstream: str, personality: Personality, *, port: int | None = None):
        super().__init__(upstream, port=port)
        self.personality = personality
        personality.front = self

    def __repr__(self) -> str:
        return f"<RegistryFront {self.personality.name} {self.url} -> {self.upstream}>"

    def _default_action(self, head: _Head) -> _Action:
        return _Personal(self.personality)

    def view(self, upstream: "Registry") -> "Registry":
        """``upstream`` as seen through the front: the test bed's loaders and helpers (skopeo, signing,
        :class:`~testbed.registry.Registry`'s admin requests) then go through the personality."""
        seen = copy.copy(upstream)
        seen.port, seen.host, seen.url = self.port, self.host, self.url
        return seen

    def has_manifest(self, call: Call, reference: str) -> bool:
        """Whether the registry behind holds ``reference`` (tag or digest) in ``call``'s repository."""
        return self.upstream_call("HEAD", f"/v2/{call.name}/manifests/{reference}", like=call,
                                  headers=[("Accept", MANIFEST_ACCEPT)]).status == 200

    def upstream_call(self, method: str, path: str, *, headers: list[tuple[str, str]] = (),
                      body: bytes = b"", like: Call | None = None) -> Reply:
        """One request to the registry behind, read whole; ``like``: send that call's credentials."""
        fields = [("Content-Length", str(len(body))), ("Connection", "close"), *headers]
        if not any(k.lower() == "host" for k, _ in headers):
            fields.insert(0, ("Host", self.host))  # distribution builds its Locations from Host: the front's
        if like is not None and like.header("Authorization"):
            fields.append(("Authorization", like.header("Authorization")))
        with socket.create_connection(self.upstream_address, timeout=IO_TIMEOUT) as sock:
            sock.sendall(_Head(f"{method} {path} HTTP/1.1", fields).encode() + body)
            reader = sock.makefile("rb")
            head = _read_head(reader)
            if head is None:
                raise ConnectionError("the registry behind the front closed without an answer")
            data = b"".join(piece for is_payload, piece in _read_body(reader, _response_framing(method, head))
                            if is_payload)
        return Reply(head.status, [(k, v) for k, v in head.headers
                                   if k.lower() not in ("content-length", "transfer-encoding", "connection")], data)

    def http_call(self, method: str, url: str, *, like: Call | None = None) -> Reply:
        """One request to another plain-HTTP server on loopback (a token server), read whole."""
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=IO_TIMEOUT)
        headers = {}
        if like is not None and like.header("Authorization"):
            headers["Authorization"] = like.header("Authorization")
        try:
            connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)
            response = connection.getresponse()
            return Reply(response.status, [(k, v) for k, v in response.getheaders()
                                           if k.lower() not in ("content-length", "transfer-encoding", "connection")],
                         response.read())
        finally:
            connection.close()


class _Personal(_Action):
    """The personality's decision for one request."""

    def __init__(self, personality: Personality):
        self.personality = personality

    def run(self, exchange: _Exchange) -> bool:
        exchange.head = self.personality.route(exchange.head)
        call = Call.of(exchange.head)
        if not call.blob_data:
            call.body = self._read_request(exchange)
        if self.personality.token_path is not None and call.path == self.personality.token_path:
            exchange.seen.fault = "personality: token"
            return _send(exchange, self.personality.token(call))
        decided = self.personality.request(call)
        if decided is DROP:
            exchange.seen.fault = "personality: drop"
            raise _Abort()
        if isinstance(decided, Reply):
            exchange.seen.fault = f"personality: {decided.status}"
            if call.body is None:
                exchange.drain_request()
            return _send(exchange, decided)
        if call.blob_data:
            return _StreamForward(self.personality, call).run(exchange)
        return self._forward_buffered(exchange, call)

    @staticmethod
    def _read_request(exchange: _Exchange) -> bytes:
        data = bytearray()
        for is_payload, piece in exchange.request_body():
            if is_payload:
                exchange.seen.bytes_in += len(piece)
                data += piece
                if len(data) > BUFFER_LIMIT:
                    raise _Abort()
        return bytes(data)

    def _forward_buffered(self, exchange: _Exchange, call: Call) -> bool:
        connection = exchange.connection
        try:
            upstream = connection.open_upstream(exchange.proxy.upstream_address)
        except OSError:
            return _send(exchange, Reply(502, body=b"upstream unreachable\n"))
        body = call.body or b""
        head = _Head(exchange.head.start, [(k, v) for k, v in exchange.head.headers
                                           if k.lower() not in ("content-length", "transfer-encoding")])
        if body or _request_framing(exchange.head) != _Framing("none"):
            head.headers.append(("Content-Length", str(len(body))))
        upstream.send(head.encode() + body)
        response = _Forward._response_head(exchange, upstream)
        data = b"".join(piece for is_payload, piece in
                        _read_body(upstream.reader, _response_framing(call.method, response)) if is_payload)
        reply = Reply(response.status, [(k, v) for k, v in response.headers
                                         if k.lower() not in ("content-length", "transfer-encoding")], data)
        decided = self.personality.response(call, reply)
        if decided is DROP:
            exchange.seen.fault = "personality: drop"
            raise _Abort()
        if decided is not reply or reply.status != response.status:
            exchange.seen.fault = f"personality: {decided.status}"
        return _send(exchange, decided, head_only=call.method == "HEAD",
                     length=response.get("Content-Length") if call.method == "HEAD" else None)


class _StreamForward(_Forward):
    """Blob data streamed as through the fault proxy; only the answer's head is the personality's."""

    def __init__(self, personality: Personality, call: Call):
        super().__init__()
        self.personality = personality
        self.call = call

    def _response_head(self, exchange: _Exchange, upstream) -> _Head:  # type: ignore[override]
        head = _Forward._response_head(exchange, upstream)
        value = head.get("WWW-Authenticate")
        if value is not None:
            head = head.without("WWW-Authenticate")
            head.headers.append(("WWW-Authenticate", self.personality.challenge(self.call, value)))
        return head


def _send(exchange: _Exchange, reply: Reply, *, head_only: bool | None = None, length: str | None = None) -> bool:
    """Send ``reply`` to the client (a HEAD gets the head only, with the length the body would have)."""
    head_only = exchange.head.method == "HEAD" if head_only is None else head_only
    exchange.seen.status = reply.status
    headers = dict(reply.headers)
    headers["Content-Length"] = length if head_only and length is not None else str(len(reply.body))
    exchange.client.send(_response_head(reply.status, headers, len(reply.body)).encode())
    if not head_only and reply.body:
        exchange.response_sink().payload(reply.body)
    return not exchange.head.has_token("Connection", "close")


