"""Registry authentication: challenges, bearer tokens and Docker config credentials."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..secret import Secret

_PARAM_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header."""

    scheme: str  # "basic" or "bearer" (lower case)
    params: Mapping[str, str]

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scopes(self) -> tuple[str, ...]:
        scope = self.params.get("scope")
        return tuple(scope.split(" ")) if scope else ()


def parse_challenge(header: str | None) -> Challenge | None:
    """Parse ``Bearer realm="...",service="...",scope="..."`` (or ``Basic realm=...``)."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)) for m in _PARAM_RE.finditer(rest)}
    return Challenge(scheme.lower(), params)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: Secret
    origin: str  # where they came from, for messages: "TARGET_DOCKER_USERNAME", "docker config"

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password.reveal()}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass
class Token:
    value: Secret
    expires_at: float
    margin: float = 10.0  # renew this many seconds before expiry

    def fresh(self) -> bool:
        return time.monotonic() < self.expires_at - self.margin


class TokenCache:
    """Bearer tokens by scope set; thread-safe; a token is reused until shortly before expiry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[frozenset[str], Token] = {}

    def get(self, scopes: frozenset[str]) -> Token | None:
        with self._lock:
            token = self._tokens.get(scopes)
            if token and token.fresh():
                return token
            # a token granted for a wider scope set serves a narrower request too
            for granted, tok in self._tokens.items():
                if scopes <= granted and tok.fresh():
                    return tok
            return None

    def put(self, scopes: frozenset[str], token: Token) -> None:
        with self._lock:
            self._tokens[scopes] = token

    def drop(self, token: Token) -> None:
        with self._lock:
            for key in [k for k, v in self._tokens.items() if v is token]:
                del self._tokens[key]


def repository_scope(repository: str, *actions: str) -> str:
    return f"repository:{repository}:{','.join(actions)}"


# --- Docker client configuration ---------------------------------------------------------

def docker_config_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path(environ.get("HOME", str(Path.home()))) / ".docker" / "config.json"


def _config_keys(registry: str) -> list[str]:
    keys = [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/", f"https://{registry}/v2/"]
    if registry in ("registry-1.docker.io", "docker.io", "index.docker.io"):
        keys.insert(0, "https://index.docker.io/v1/")
    return keys


def docker_config_credentials(registry: str, environ: Mapping[str, str] | None = None) -> Credentials | None:
    """Credentials for ``registry`` from the Docker client config, as ``docker login`` left them.

    Reads ``auths`` (``auth`` = base64 user:password), ``credHelpers`` and ``credsStore``
    (runs ``docker-credential-NAME get`` with the server name on stdin, never in its arguments).
    A broken config or helper is treated as "no credentials": the registry then says whether
    it needs some, which is the clearer message.
    """
    environ = os.environ if environ is None else environ
    path = docker_config_path(environ)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    keys = _config_keys(registry)
    helpers = config.get("credHelpers") or {}
    helper = next((helpers[k] for k in keys if k in helpers), None) or config.get("credsStore")
    if helper:
        found = _from_helper(str(helper), registry, keys)
        if found:
            return found
    auths = config.get("auths") or {}
    for key in keys:
        entry = auths.get(key)
        if isinstance(entry, dict) and entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            if user and password:
                return Credentials(user, Secret(password), f"docker config {path}")
    return None


def _from_helper(helper: str, registry: str, keys: list[str]) -> Credentials | None:
    for key in keys[:2]:
        try:
            done = subprocess.run(
                [f"docker-credential-{helper}", "get"], input=key.encode(), capture_output=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode == 0:
            try:
                data = json.loads(done.stdout)
            except ValueError:
                return None
            user, secret = data.get("Username"), data.get("Secret")
            if user and secret:
                return Credentials(user, Secret(secret), f"docker credential helper {helper}")
    return None
