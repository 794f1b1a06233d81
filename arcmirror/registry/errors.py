"""Registry failures: each says what went wrong, naming the registry, and what to do about it.

The kinds every part of arcmirror raises (not found, protocol, digest mismatch, cancelled) are the
leaf types' (``arcmirror.oci.errors``); here are the ones only a registry conversation has, and the
reading of the distribution API's error body (``errors[].code/message/detail``).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Sequence

import requests

from ..oci.errors import HintedError


class RegistryError(HintedError):
    """A registry could not be used as asked (its host does not resolve, ...)."""


class TransientError(RegistryError):
    """Worth retrying: a dropped connection, a timeout, 5xx, 429 (``retry_after``: the server's wish, seconds)."""

    def __init__(self, message: str, hint: str | None = None, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, hint, status=status)
        self.retry_after = retry_after


class ConnectError(TransientError):
    """The registry could not be reached."""


class AuthError(RegistryError):
    """Credentials were refused or are needed."""


class SetupError(RegistryError):
    """The registry needs something its administrators set up (a project, a repository, a setting, a path it
    allows): retrying or another password will not help; the hint says what, in that product's terms."""


class RepositoryMissing(SetupError):
    """The repository must be created before anything is pushed into it. ``certain``: the registry said so in
    its own words (ECR's "does not exist in the registry with id"), not only with a NAME_UNKNOWN code, so even
    a question that was not a write (why an upload was dropped) settles it."""

    def __init__(self, message: str, hint: str | None = None, *, status: int | None = None,
                 certain: bool = False) -> None:
        super().__init__(message, hint, status=status)
        self.certain = certain


class TLSError(RegistryError):
    """The TLS handshake failed (unknown CA, wrong host name, plain HTTP server)."""


class RefusedError(RegistryError):
    """The registry refused a request with an error code that says a retry would get the same answer.

    ``codes`` are the distribution API error codes of the answer (``MANIFEST_BLOB_UNKNOWN``, ...).
    """

    def __init__(self, message: str, hint: str | None = None, *, status: int | None = None,
                 codes: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint, status=status)
        self.codes = codes


#: Error codes of the distribution API whose answer will not change on a retry, whatever the HTTP status
#: (distribution answers 500 with MANIFEST_BLOB_UNKNOWN for foreign layers whose URLs it does not allow).
#: UNKNOWN, UNAVAILABLE, TOOMANYREQUESTS and BLOB_UPLOAD_UNKNOWN (an upload to start again) may change.
PERMANENT_CODES = frozenset({
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN", "MANIFEST_UNVERIFIED", "NAME_INVALID", "NAME_UNKNOWN", "SIZE_INVALID", "TAG_INVALID",
    "UNAUTHORIZED", "DENIED", "UNSUPPORTED",
    # the codes some products use instead (Harbor: src/lib/errors/const.go; Quay 3.17: TAG_IMMUTABLE; distribution 3)
    "BAD_REQUEST", "NOT_FOUND", "PRECONDITION", "FORBIDDEN", "CONFLICT", "TAG_IMMUTABLE", "PAGINATION_NUMBER_INVALID",
})

#: What to do about a refusal, by error code; ``{prefix}`` names the variables of that registry.
CODE_HINTS = {
    "MANIFEST_BLOB_UNKNOWN": "the registry does not find a blob the manifest refers to: run again (only what is "
                             "missing is sent); if it persists, the registry refuses that blob",
    "MANIFEST_INVALID": "the registry refuses this manifest as it is (its media type or its content): "
                        "use a registry that accepts OCI and Docker schema 2 manifests",
    "MANIFEST_UNVERIFIED": "the registry refuses this manifest as it is: use a registry that accepts it",
    "NAME_INVALID": "the registry refuses the repository name: check {prefix}_REPOSITORY",
    "NAME_UNKNOWN": "the repository does not exist there: check {prefix}_REPOSITORY and the image names",
    "TAG_INVALID": "the registry refuses the tag: check {prefix}_TAG",
    "DENIED": "check {prefix}_USERNAME and {prefix}_PASSWORD and that this user has the rights it needs there",
    "UNAUTHORIZED": "check {prefix}_USERNAME and {prefix}_PASSWORD",
    "UNSUPPORTED": "the registry does not support this operation",
    "DIGEST_INVALID": "the registry computed another digest for what was sent: run again; if it persists, "
                      "something between here and the registry changes the data",
    "SIZE_INVALID": "the registry received another size than was sent: run again; if it persists, "
                    "something between here and the registry changes the data",
}


ERROR_BODY_LIMIT = 64 * 1024


def error_entries(response: requests.Response) -> list[tuple[str, str, str]]:
    """The ``errors`` of the distribution API's error body: (code, message, detail), read once.

    An odd, missing or oversized body gives none; ``detail`` (any JSON) is flattened to short text. As
    products write it too: ``status`` where the spec says ``code`` (Artifactory: containers/skopeo#765), a
    top-level ``details`` string (Docker Hub's token service: go-containerregistry#1741).
    """
    cached = getattr(response, "_arcmirror_errors", None)
    if cached is not None:
        return cached
    entries: list[tuple[str, str, str]] = []
    try:
        buf = b""
        for chunk in response.iter_content(16 * 1024):
            buf += chunk
            if len(buf) > ERROR_BODY_LIMIT:
                raise ValueError("too long for an error body")
        body = json.loads(buf) if buf.lstrip()[:1] == b"{" else {}
        errors = body.get("errors")
        if not isinstance(errors, list) and isinstance(body.get("details"), str):
            errors = [{"message": body["details"]}]
        for error in (errors or [])[:10]:
            if isinstance(error, dict):
                detail = error.get("detail")
                detail = detail if isinstance(detail, str) else json.dumps(detail) if detail not in (None, {}, []) else ""
                code = error.get("code") or (f"HTTP {error['status']}" if error.get("status") else "")
                entries.append((str(code)[:60], str(error.get("message") or "")[:200], detail[:200]))
    except Exception:  # noqa: BLE001 - an odd body just means no detail
        entries = []
    response._arcmirror_errors = entries  # type: ignore[attr-defined]
    return entries


def describe_errors(entries: Sequence[tuple[str, str, str]]) -> str:
    """``": CODE message (detail); ..."`` for a message; a bare UNKNOWN is left out when more is said."""
    shown = [e for e in entries if e[0] != "UNKNOWN" or e[2]] if any(e[0] != "UNKNOWN" for e in entries) else entries
    parts = [" ".join(p for p in (code, message) if p) + (f" ({detail})" if detail else "")
             for code, message, detail in dict.fromkeys(shown)]
    return (": " + "; ".join(parts)) if parts else ""


def short_reason(exc: BaseException, url: str | None = None) -> str:
    """A one-line reason from a requests/urllib3 exception chain, without the noise.

    No path or query of any URL survives (a redirect's URL may be a signed link): only its origin;
    ``url``, the URL the exception is about, is also taken out in any form it may take (bare path or
    query, quoted or not).
    """
    text = _without(str(exc), url) if url else str(exc)
    for marker in ("Caused by ", "Failed to establish a new connection: ", "(Caused by"):
        if marker in text:
            text = text.split(marker, 1)[1]
    text = text.strip("()'\" ")
    if "Connection refused" in text:
        return "connection refused"
    verify = re.search(r"certificate verify failed: ([^(')]+)", text)
    if verify:
        return f"certificate verify failed: {verify[1].strip()}"
    text = re.sub(r"^\w*Pool\(host='[^']*', port=\d+\): ", "", text)  # the pool's name says nothing
    text = re.sub(r"\burl: \S+", "url: …", text)
    text = re.sub(r"(https?://[^/\s'\"?#]+)[^\s'\"]*", r"\1", text)
    return text[:300]


def _without(text: str, url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    for secret in sorted({url, parts.path, parts.query, urllib.parse.quote(parts.path),
                          urllib.parse.unquote(parts.query)} - {"", "/"}, key=len, reverse=True):
        text = text.replace(secret, "…")
    return text


def unresolvable(reason: str) -> bool:
    """Whether a connection failure's reason says the host name does not resolve."""
    return any(m in reason for m in ("Name or service not known", "Temporary failure in name resolution",
                                     "nodename nor servname"))
