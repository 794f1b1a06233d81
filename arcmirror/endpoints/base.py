"""The contract between the copy algorithm and the places images live (registry, layout, archive, memory).

Every source offers :class:`Source`, every target :class:`Target`. What only some can do is a small
protocol of its own, checked with ``isinstance`` (as regclient's ``scheme`` does):
:class:`ReferrersAPI` (a source that may list referrers through the OCI referrers API),
:class:`IndexesSubjects` (a target that lists referrers itself, so no tag-schema index is written),
:class:`MetersManifestReads` (a source whose manifest reads count against a pull limit)
and :class:`CrossRepositoryMount` (a target that links a blob it holds in another repository).
"""

from __future__ import annotations

from typing import Iterable, Iterator, Protocol, runtime_checkable

from ..oci.manifest import Manifest


@runtime_checkable
class Source(Protocol):
    """Where images are read from. ``label`` names it in messages ("source registry HOST")."""

    label: str

    def resolve(self, repository: str, reference: str) -> str | None:
        """The manifest digest ``reference`` (a tag or a digest) points at, or None when it does not exist."""

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest, byte for byte, checked against its digest."""

    def iter_blob(self, repository: str, digest: str, size: int) -> Iterator[bytes]:
        """The blob's bytes in chunks (not yet verified: the copy algorithm verifies as it forwards)."""

    def list_tags(self, repository: str) -> list[str]:
        """The repository's tags; none when it does not exist."""


@runtime_checkable
class Target(Protocol):
    """Where images are written to."""

    label: str

    def resolve(self, repository: str, reference: str) -> str | None: ...

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """A manifest the target already holds (to check what it references)."""

    def has_blob(self, repository: str, digest: str) -> bool: ...

    def put_blob(self, repository: str, digest: str, size: int, body: Iterable[bytes]) -> None:
        """Store a blob streamed from ``body``; an exception from ``body`` aborts it, leaving nothing."""

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None: ...


@runtime_checkable
class ReferrersAPI(Protocol):
    """A source that may answer the OCI referrers API (``has_referrers_api``: None until it was asked)."""

    has_referrers_api: bool | None

    def referrers(self, repository: str, digest: str) -> list[dict] | None:
        """The referrers API's descriptors for ``digest``, or None when the registry has no such API."""


@runtime_checkable
class IndexesSubjects(Protocol):
    """A target that may keep the referrers API itself: a manifest with a ``subject`` is listed on its own."""

    def keeps_referrers(self, repository: str, subject: str) -> bool:
        """Whether the target lists the referrers of ``subject`` (a manifest it holds) through its API, so that
        no tag-schema index is to be written."""


@runtime_checkable
class MetersManifestReads(Protocol):
    """A source that may count a manifest GET against a pull limit, and a HEAD not (Docker Hub)."""

    def meters_manifest_reads(self) -> bool:
        """True when a manifest is to be HEADed first, and read (GET) only when it is to be copied."""


@runtime_checkable
class CrossRepositoryMount(Protocol):
    """A target that can link a blob it already holds in another of its repositories."""

    def mount_or_put_blob(self, repository: str, digest: str, size: int, body: Iterable[bytes],
                          from_repository: str) -> bool:
        """Mount the blob from ``from_repository`` when that repository holds it (True; ``body`` is not read),
        else store it from ``body`` as :meth:`Target.put_blob` does (False), in as few requests as it can."""
