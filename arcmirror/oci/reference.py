"""Image references: registry hosts, repository paths, tags and digests.

The grammar follows the distribution reference grammar (the one Docker, skopeo and every
registry use); every check returns a sentence that says what is wrong, not just "invalid".
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable

from .digest import is_digest

# distribution/reference: path-component = [a-z0-9]+ (separator [a-z0-9]+)*
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_COMPONENT_RE = re.compile(rf"^{_COMPONENT}$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)

#: Docker Hub's name is not its API endpoint.
DOCKER_HUB_ALIASES = {"docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io"}


def registry_problem(value: str) -> str | None:
    """Why ``value`` is not a registry ``host[:port]``, or None when it is one."""
    if not value:
        return "is empty"
    if "://" in value:
        return "must be a host[:port] without a scheme (drop 'http://' or 'https://'; use *_INSECURE for plain HTTP)"
    if "/" in value:
        return "must be a host[:port] without a path (put the path in *_REPOSITORY)"
    if any(ch.isspace() for ch in value):
        return "must not contain spaces"
    host, port = split_host_port(value)
    if port is not None and not (re.fullmatch(r"[0-9]{1,5}", port) and 0 < int(port) < 65536):
        return f"has an invalid port {port!r}"
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"has an invalid IPv6 address {host!r}"
        return None
    if not _HOSTNAME_RE.match(host):
        return f"has an invalid host name {host!r}"
    return None


def split_host_port(value: str) -> tuple[str, str | None]:
    """``'h:5000'`` -> ``('h', '5000')``; ``'[::1]:5000'`` -> ``('[::1]', '5000')``."""
    if value.startswith("["):
        end = value.find("]")
        host, rest = value[: end + 1], value[end + 1 :]
        return host, (rest[1:] if rest.startswith(":") else None)
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, port
    return value, None


def repository_problem(value: str, *, allow_empty: bool = True) -> str | None:
    """Why ``value`` is not a repository path (``a/b/c``), or None."""
    if not value:
        return None if allow_empty else "is empty"
    if any(ch.isspace() for ch in value):
        return "must not contain spaces"
    if value != value.lower():
        return "must be lower case (registries reject upper-case repository names)"
    for part in value.split("/"):
        if not _COMPONENT_RE.match(part):
            return (
                f"has an invalid path component {part!r}: use lower-case letters, digits and "
                "single '.', '_', '__' or '-' separators between them"
            )
    if len(value) > 255:
        return "is longer than 255 characters"
    return None


def tag_problem(value: str) -> str | None:
    """Why ``value`` is not a tag, or None."""
    if not value:
        return "is empty"
    if "/" in value or ":" in value or "@" in value:
        return "must not contain '/', ':' or '@' (a tag is one word such as v1.41.0_2025-09-09)"
    if not _TAG_RE.match(value):
        return "must be at most 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
    return None


def is_tag(value: object) -> bool:
    """Whether a listed value is a tag: a string of the tag grammar (not JSON null, not a digest)."""
    return isinstance(value, str) and bool(_TAG_RE.match(value))


def nearest_tags(wanted: str, tags: Iterable[str], count: int = 3) -> list[str]:
    """The ``count`` tags most like ``wanted`` (for "did you mean" messages), most alike first."""
    return difflib.get_close_matches(wanted, list(dict.fromkeys(tags)), n=count, cutoff=0.0)


#: The distribution spec: the registry host (and port), '/' and the repository path, at most this long.
NAME_TOTAL_MAX = 255


def join_repository(*parts: str) -> str:
    """Join path parts, skipping empty ones: ``('', 'arc-sqlmi')`` -> ``'arc-sqlmi'``."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


@dataclass(frozen=True)
class ImageRef:
    """``registry/repository:tag`` or ``registry/repository@digest``."""

    registry: str
    repository: str
    reference: str  # a tag or a digest

    def __str__(self) -> str:
        sep = "@" if is_digest(self.reference) else ":"
        return f"{self.registry}/{self.repository}{sep}{self.reference}"
