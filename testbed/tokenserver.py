"""A Docker/OCI bearer-token server for tests (like the ones in front of MCR, ACR, Harbor).

It signs RS256 JWTs by hand with ``cryptography``; the registry trusts them
because the signing certificate travels in the JWT header (``x5c``) and is also
listed in the registry's ``rootcertbundle`` (:attr:`TokenServer.cert_path`).

Policy: anonymous clients may only ``pull`` repositories (and read the catalog
if ``anonymous_catalog``); a user authenticated with Basic auth gets every
action asked for. Wrong credentials give a 401 JSON error.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

ANONYMOUS_ACTIONS = frozenset({"pull"})


@dataclass(frozen=True)
class Scope:
    """One requested access scope, e.g. ``repository:arcdata/x:pull,push``."""

    type: str
    name: str
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> "Scope":
        """Parse ``type:name:actions``; the name may itself contain colons."""
        type_, _, rest = text.partition(":")
        name, _, actions = rest.rpartition(":")
        if not type_ or not name:
            raise ValueError(f"malformed scope {text!r}")
        return cls(type_, name, tuple(a for a in actions.split(",") if a))

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"

    def claim(self) -> dict:
        """The JWT ``access`` entry for this scope."""
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


@dataclass(frozen=True)
class TokenRequest:
    """What the server saw of one token request (never the password)."""

    method: str
    user: str | None
    scopes: tuple[str, ...]
    granted: tuple[str, ...]
    status: int


def b64url(data: bytes) -> str:
    """Base64url without padding, as JWTs use."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode_jwt_part(part: str) -> dict:
    """Decode a JWT header or claims segment (no signature check)."""
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class _Signer:
    """An RSA key with a self-signed certificate; signs RS256 JWTs."""

    def __init__(self, common_name: str):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(self.key, hashes.SHA256())
        )

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def jwt(self, claims: dict) -> str:
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        signing_input = (
            b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(signature)


class TokenServer:
    """A threaded HTTP token server on ``127.0.0.1``.

    ``users`` maps user names to passwords. ``ttl`` is the token lifetime in
    seconds (``expires_in`` and the JWT ``exp``). Note that distribution accepts
    a token up to 60 s after ``exp`` (clock-skew leeway); pass
    ``registry_leeway=60`` to back-date ``exp`` by that much so that the
    registry really rejects tokens ``ttl`` seconds after issue.

    Counters: :attr:`issued` (tokens handed out over HTTP) and
    :attr:`requests` (one :class:`TokenRequest` per HTTP token request).
    """

    def __init__(
        self,
        workdir: os.PathLike | str,
        *,
        users: dict[str, str] | None = None,
        service: str = "testbed-registry",
        issuer: str = "testbed-token-issuer",
        ttl: int = 300,
        registry_leeway: int = 0,
        anonymous_catalog: bool = True,
        port: int = 0,
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.users = dict(users or {})
        self.service = service
        self.issuer = issuer
        self.ttl = ttl
        self.registry_leeway = registry_leeway
        self.anonymous_catalog = anonymous_catalog
        self.issued = 0
        self.requests: list[TokenRequest] = []
        self._port = port
        self._lock = threading.Lock()
        self._refresh_tokens: dict[str, str] = {}
        self._signer = _Signer(issuer)
        self.cert_path = self.workdir / "token-cert.pem"
        self.cert_path.write_bytes(self._signer.cert_pem())
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> "TokenServer":
        """Start serving in a daemon thread (keeps the port across restarts)."""
        if self._server is not None:
            return self
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), _make_handler(self))
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"token-server-{self._port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> "TokenServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("token server not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def realm(self) -> str:
        """The token endpoint URL, for the registry's ``auth.token.realm``."""
        return f"{self.url}/token"

    def reset_counters(self) -> None:
        """Forget :attr:`issued` and :attr:`requests`."""
        with self._lock:
            self.issued = 0
            self.requests.clear()

    # -- tokens --------------------------------------------------------------

    def mint(self, scopes: list[Scope | str], subject: str = "testbed-admin") -> str:
        """Sign a token granting exactly ``scopes``; not counted in :attr:`issued`.

        The test bed's own helpers use this to act as an administrator.
        """
        scopes = [s if isinstance(s, Scope) else Scope.parse(s) for s in scopes]
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "iat": now,
            "nbf": now - 1,
            "exp": now + self.ttl - self.registry_leeway,
            "jti": secrets.token_hex(16),
            "access": [s.claim() for s in scopes],
        }
        return self._signer.jwt(claims)

    def grant(self, user: str | None, requested: list[Scope]) -> list[Scope]:
        """Apply the access policy: what ``user`` (None = anonymous) may have."""
        if user is not None:
            return list(requested)
        granted = []
        for scope in requested:
            if scope.type == "repository":
                allowed = tuple(a for a in scope.actions if a in ANONYMOUS_ACTIONS)
            elif scope.type == "registry" and scope.name == "catalog" and self.anonymous_catalog:
                allowed = scope.actions
            else:
                allowed = ()
            if allowed:
                granted.append(Scope(scope.type, scope.name, allowed))
        return granted

    def check_password(self, user: str, password: str) -> bool:
        """True when ``user`` exists with ``password`` (constant-time compare)."""
        expected = self.users.get(user)
        return expected is not None and secrets.compare_digest(expected, password)

    def issue(self, method: str, user: str | None,
              requested: list[Scope]) -> tuple[str, list[Scope]]:
        """Issue a counted token for ``user``; return it with the granted scopes."""
        granted = self.grant(user, requested)
        token = self.mint(granted, subject=user or "")
        self.record_request(method, user, requested, granted, 200)
        with self._lock:
            self.issued += 1
        return token, granted

    def new_refresh_token(self, user: str) -> str:
        """An opaque refresh token standing for ``user``."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._refresh_tokens[token] = user
        return token

    def refresh_user(self, token: str) -> str | None:
        """The user a refresh token stands for, or None."""
        with self._lock:
            return self._refresh_tokens.get(token)

    def record_request(self, method: str, user: str | None, requested: list[Scope],
                       granted: list[Scope], status: int) -> None:
        """Append a :class:`TokenRequest` to :attr:`requests`."""
        entry = TokenRequest(
            method=method, user=user,
            scopes=tuple(str(s) for s in requested),
            granted=tuple(str(s) for s in granted),
            status=status,
        )
        with self._lock:
            self.requests.append(entry)

    def token_response(self, token: str) -> dict:
        """The JSON body answering a token request."""
        issued_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        return {"token": token, "access_token": token, "expires_in": self.ttl,
                "issued_at": issued_at.replace("+00:00", "Z")}


class AuthError(Exception):
    """A token request the server refuses (status and message for the JSON body)."""

    def __init__(self, status: int, code: str, message: str, user: str | None = None):
        super().__init__(message)
        self.status, self.code, self.user = status, code, user


def _parse_scopes(values: list[str]) -> list[Scope]:
    """Scopes from repeated ``scope`` parameters, each possibly space-separated."""
    try:
        return [Scope.parse(part) for value in values for part in value.split()]
    except ValueError as exc:
        raise AuthError(400, "invalid_scope", str(exc)) from None


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """Decode an ``Authorization: Basic`` header; None when absent."""
    if not header:
        return None
    kind, _, value = header.partition(" ")
    if kind.lower() != "basic":
        raise AuthError(401, "UNAUTHORIZED", "only Basic authentication is supported")
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthError(401, "UNAUTHORIZED", "malformed Basic credentials") from None
    if not sep:
        raise AuthError(401, "UNAUTHORIZED", "malformed Basic credentials")
    return user, password


def _make_handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``server``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args) -> None:  # noqa: A002 - silence stderr
            pass

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path != "/token":
                return self._send(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
            params = urllib.parse.parse_qs(url.query)
            self._serve("GET", params, self._get_user)

        def do_POST(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            if url.path != "/token":
                return self._send(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
            params = urllib.parse.parse_qs(body)
            self._serve("POST", params, self._post_user)

        def _serve(self, method, params, authenticate) -> None:
            requested: list[Scope] = []
            try:
                requested = _parse_scopes(params.get("scope", []))
                self._check_service(params)
                user = authenticate(params)
            except AuthError as exc:
                server.record_request(method, exc.user, requested, [], exc.status)
                return self._send(exc.status, {"errors": [{"code": exc.code, "message": str(exc)}]})
            token, granted = server.issue(method, user, requested)
            body = server.token_response(token)
            if method == "POST":
                body["scope"] = " ".join(str(s) for s in granted)
                if params.get("access_type", [""])[0] == "offline" and user:
                    body["refresh_token"] = server.new_refresh_token(user)
            self._send(200, body)

        def _check_service(self, params) -> None:
            service = params.get("service", [server.service])[0]
            if service != server.service:
                raise AuthError(400, "invalid_request", f"unknown service {service!r}")

        def _login(self, user: str, password: str) -> str:
            if not server.check_password(user, password):
                raise AuthError(401, "UNAUTHORIZED", "invalid username or password", user)
            return user

        def _get_user(self, params) -> str | None:
            credentials = _basic_credentials(self.headers.get("Authorization"))
            return None if credentials is None else self._login(*credentials)

        def _post_user(self, params) -> str | None:
            grant_type = params.get("grant_type", [""])[0]
            if grant_type == "password":
                return self._login(params.get("username", [""])[0], params.get("password", [""])[0])
            if grant_type == "refresh_token":
                user = server.refresh_user(params.get("refresh_token", [""])[0])
                if user is None:
                    raise AuthError(401, "UNAUTHORIZED", "invalid refresh token")
                return user
            raise AuthError(400, "unsupported_grant_type", f"grant_type {grant_type!r}")

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="testbed-token"')
            self.end_headers()
            self.wfile.write(data)

    return Handler
