"""A registry in memory: source and target at once, for fast tests of the copy algorithm.

Like oras-go's memory store: no I/O, every write recorded in order in :attr:`MemoryRegistry.log`
(``("blob", repo, digest)``, ``("mount", repo, digest)``, ``("manifest", repo, reference)``), so a
test can check what moved, in what order, and how often. :attr:`MemoryRegistry.fail` injects a
failure into chosen writes. :class:`MemoryRegistryWithReferrers` adds the OCI referrers API (it lists
a manifest with a ``subject`` by itself), which no registry packaged for Debian 12 has.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from ..oci.digest import CHUNK, is_digest, sha256_digest
from ..oci.errors import NotFoundError
from ..oci.manifest import Manifest


@dataclass
class _Repository:
    tags: dict[str, str] = field(default_factory=dict)
    manifests: dict[str, Manifest] = field(default_factory=dict)
    blobs: set[str] = field(default_factory=set)


class MemoryRegistry:
    """A :class:`~.base.Source`, :class:`~.base.Target` and :class:`~.base.CrossRepositoryMount` in memory."""

    def __init__(self, label: str = "memory registry") -> None:
        self.label = label
        self.content: dict[str, bytes] = {}  # digest -> bytes, shared by every repository
        self.repositories: dict[str, _Repository] = {}
        self.log: list[tuple[str, str, str]] = []
        #: called before every write with (kind, repository, digest or reference); may raise to fail it
        self.fail: Callable[[str, str, str], None] = lambda kind, repository, reference: None
        self._lock = threading.Lock()

    def _repo(self, repository: str) -> _Repository:
        with self._lock:
            return self.repositories.setdefault(repository, _Repository())

    def _write(self, kind: str, repository: str, reference: str) -> None:
        self.fail(kind, repository, reference)
        with self._lock:
            self.log.append((kind, repository, reference))

    # -- seeding, for tests ------------------------------------------------------------------------

    def add_blob(self, repository: str, data: bytes) -> str:
        digest = sha256_digest(data)
        self.content[digest] = data
        self._repo(repository).blobs.add(digest)
        return digest

    def add_manifest(self, repository: str, manifest: Manifest, tag: str | None = None) -> None:
        repo = self._repo(repository)
        repo.manifests[manifest.digest] = manifest
        if tag:
            repo.tags[tag] = manifest.digest

    # -- Source ------------------------------------------------------------------------------------

    def resolve(self, repository: str, reference: str) -> str | None:
        repo = self._repo(repository)
        if is_digest(reference):
            return reference if reference in repo.manifests else None
        return repo.tags.get(reference)

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        digest = self.resolve(repository, reference)
        if digest is None:
            raise NotFoundError(f"manifest {repository}:{reference} does not exist in the {self.label}")
        return self._repo(repository).manifests[digest]

    def iter_blob(self, repository: str, digest: str, size: int) -> Iterator[bytes]:
        if not self.has_blob(repository, digest):
            raise NotFoundError(f"blob {digest} does not exist in {repository} of the {self.label}")
        data = self.content[digest]
        for start in range(0, len(data), CHUNK):
            yield data[start:start + CHUNK]

    def list_tags(self, repository: str) -> list[str]:
        return list(self._repo(repository).tags)

    # -- Target ------------------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        return digest in self._repo(repository).blobs

    def put_blob(self, repository: str, digest: str, size: int, body: Iterable[bytes]) -> None:
        self.fail("blob", repository, digest)
        data = b"".join(body)  # an exception from the body (a digest mismatch) leaves nothing
        with self._lock:
            self.log.append(("blob", repository, digest))
        self.content[digest] = data
        self._repo(repository).blobs.add(digest)

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        self._write("manifest", repository, reference)
        self.add_manifest(repository, manifest, None if is_digest(reference) else reference)

    def mount_or_put_blob(self, repository: str, digest: str, size: int, body: Iterable[bytes],
                          from_repository: str) -> bool:
        if not self.has_blob(from_repository, digest):
            self.put_blob(repository, digest, size, body)
            return False
        self._write("mount", repository, digest)
        self._repo(repository).blobs.add(digest)
        return True


class MemoryRegistryWithReferrers(MemoryRegistry):
    """A memory registry that has the OCI referrers API, on both sides: it lists referrers, and as a
    target it indexes a manifest with a ``subject`` itself (:class:`~.base.IndexesSubjects`)."""

    has_referrers_api = True

    def keeps_referrers(self, repository: str, subject: str) -> bool:
        return True

    def referrers(self, repository: str, digest: str) -> list[dict] | None:
        found = []
        for manifest in self._repo(repository).manifests.values():
            body = manifest.json()
            if (body.get("subject") or {}).get("digest") == digest:
                found.append({"mediaType": manifest.media_type, "digest": manifest.digest, "size": len(manifest.data),
                              "artifactType": body.get("artifactType")})
        return found
