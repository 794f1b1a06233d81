"""The small interface every endpoint (registry, OCI layout, archive, engine) offers the copy engine."""

from __future__ import annotations

from typing import Iterable, Iterator, Protocol

from ..registry.client import Manifest


class Source(Protocol):
    """Where images are read from."""

    label: str

    def resolve(self, repository: str, reference: str) -> str | None:
        """The manifest digest ``reference`` points at, or None when it does not exist."""

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest, byte for byte, checked against its digest."""

    def iter_blob(self, repository: str, digest: str, size: int) -> Iterator[bytes]:
        """The blob's bytes in chunks (not yet verified: the copy engine verifies as it forwards)."""


class Target(Protocol):
    """Where images are written to."""

    label: str

    def resolve(self, repository: str, reference: str) -> str | None: ...

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """A manifest the target already holds (to check what it references)."""

    def has_blob(self, repository: str, digest: str) -> bool: ...

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Link a blob the target already holds in another repository; False when it cannot."""

    def put_blob(self, repository: str, digest: str, size: int, body: Iterable[bytes]) -> None:
        """Store a blob streamed from ``body``; an exception from ``body`` aborts it, leaving nothing."""

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None: ...
