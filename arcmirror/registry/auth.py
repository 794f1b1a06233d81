"""Registry authentication: ``WWW-Authenticate`` challenges, Basic credentials, bearer tokens by scope."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from dataclasses import dataclass
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
    #: what the token grants, as its JWT ``access`` claim says ("repository:NAME" -> actions); None: unknown
    granted: Mapping[str, frozenset[str]] | None = None

    def fresh(self) -> bool:
        return time.monotonic() < self.expires_at - self.margin

    def grants(self, resource: str) -> frozenset[str] | None:
        """The actions granted on ``resource`` ("repository:NAME"); None when the token does not say."""
        if self.granted is None:
            return None
        return self.granted.get(resource, frozenset())


def granted_access(token: str) -> dict[str, frozenset[str]] | None:
    """The ``access`` claim of a registry token that is a JWT (distribution's token auth, which Harbor, Quay,
    GitLab, ACR and Docker Hub follow): ``{"repository:NAME": actions}``; None when it is not one.

    Read to explain a refusal only ("the token gave no push rights"): never trusted for anything, so its
    signature is not checked.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        access = payload.get("access")
        if not isinstance(access, list):
            return None
        granted: dict[str, frozenset[str]] = {}
        for entry in access:
            resource = f"{entry['type']}:{entry['name']}"
            granted[resource] = granted.get(resource, frozenset()) | frozenset(str(a) for a in entry.get("actions") or ())
        return granted
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


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


def repository_scope(repository: str, *actions: str) -> str:
    return f"repository:{repository}:{','.join(actions)}"
