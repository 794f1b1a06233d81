"""Referrers: signatures, SBOMs and attestations attached to an image, found and written again.

A referrer is a manifest whose ``subject`` names another manifest. Registries list them through
the OCI referrers API (``/v2/<name>/referrers/<digest>``) or, where that API is missing (as in
distribution 2.8), through the referrers tag schema: a tag ``sha256-<hex>`` holding an index of
the subject's referrers. cosign keeps its own tags beside the subject: ``sha256-<hex>.sig``,
``.att`` and ``.sbom``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

from .registry.client import Manifest, sha256_digest
from .registry.errors import ProtocolError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
MAX_REFERRER_DEPTH = 4
MAX_REFERRERS = 256


class ReferrerSource(Protocol):
    def list_tags(self, repository: str) -> list[str]: ...

    def referrers(self, repository: str, digest: str) -> list[dict] | None: ...

    def resolve(self, repository: str, reference: str) -> str | None: ...

    def get_manifest(self, repository: str, reference: str) -> Manifest: ...


def schema_tag(digest: str) -> str:
    """The referrers tag schema's tag for a subject: ``sha256:abc`` -> ``sha256-abc``."""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}-{hexpart}"


def cosign_tags(digest: str) -> list[str]:
    return [schema_tag(digest) + suffix for suffix in COSIGN_SUFFIXES]


@dataclass
class Referrer:
    digest: str
    subject: str
    descriptor: dict  # the entry for a referrers index: mediaType, digest, size, artifactType, annotations
    artifact_type: str | None = None


@dataclass
class Found:
    """Every referrer under some subjects (recursively), and the cosign tags beside them."""

    referrers: list[Referrer] = field(default_factory=list)
    cosign: dict[str, str] = field(default_factory=dict)  # tag -> digest
    source_indexes: dict[str, Manifest] = field(default_factory=dict)  # subject -> the source's tag-schema index

    def by_subject(self) -> dict[str, list[Referrer]]:
        grouped: dict[str, list[Referrer]] = {}
        for referrer in self.referrers:
            grouped.setdefault(referrer.subject, []).append(referrer)
        return grouped


def wanted(artifact_type: str | None, types: Sequence[str]) -> bool:
    """Does MIRROR_REFERRER_TYPES let this artifact type through? (empty: everything)"""
    return not types or (artifact_type or "") in types


def _entries(index: Manifest, where: str) -> list[dict]:
    entries = index.json().get("manifests")
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("digest"), str)
                                                for e in entries):
        raise ProtocolError(f"{where} is not a valid referrers index")
    return entries


def find(source: ReferrerSource, repository: str, subjects: Iterable[str] | Callable[[], Iterable[str]],
         types: Sequence[str] = (), tags: Sequence[str] | None = None) -> Found:
    """Referrers of ``subjects`` and of those referrers (up to 4 levels), through the API and the tag schema.

    ``subjects`` may be a function: it is called only when the repository can have referrers at all
    (a tag of the schema or of cosign exists, or the source has a referrers API), which keeps a no-op
    run from reading manifests it does not need.
    """
    tags = set(source.list_tags(repository) if tags is None else tags)
    found = Found()
    if callable(subjects):
        if not any(t.startswith("sha256-") for t in tags) and getattr(source, "has_referrers_api", True) is False:
            return found
        subjects = subjects()
    seen: set[str] = set()
    level = list(dict.fromkeys(subjects))
    for _ in range(MAX_REFERRER_DEPTH):
        next_level: list[str] = []
        for subject in level:
            entries: dict[str, dict] = {}
            for entry in source.referrers(repository, subject) or []:
                entries.setdefault(entry["digest"], entry)
            if schema_tag(subject) in tags:
                index = source.get_manifest(repository, schema_tag(subject))
                found.source_indexes[subject] = index
                for entry in _entries(index, f"{repository}:{schema_tag(subject)}"):
                    entries.setdefault(entry["digest"], entry)
            for digest, entry in entries.items():
                if digest in seen or not wanted(entry.get("artifactType"), types):
                    continue
                seen.add(digest)
                found.referrers.append(Referrer(digest, subject, entry, entry.get("artifactType")))
                next_level.append(digest)
            if not types or "cosign" in types:
                for tag in cosign_tags(subject):
                    if tag in tags and (digest := source.resolve(repository, tag)):
                        found.cosign[tag] = digest
            if len(found.referrers) > MAX_REFERRERS:
                raise ProtocolError(f"{repository} has more than {MAX_REFERRERS} referrers: refusing to copy them all")
        level = next_level
        if not level:
            break
    return found


def merged_index(existing: Manifest | None, source_index: Manifest | None, referrers: Sequence[Referrer]) -> Manifest | None:
    """The target's tag-schema index after adding ``referrers``; None when nothing changes.

    Descriptors already listed stay as they are (other tools' referrers too); when the target has no
    index yet and every referrer of the source's index is copied, the source's bytes are kept, so the
    index has the same digest on both sides.
    """
    current = _entries(existing, "the target's referrers index") if existing else []
    listed = {e["digest"] for e in current}
    added = [r.descriptor for r in referrers if r.digest not in listed]
    if not added:
        return None
    if existing is None and source_index is not None:
        source_entries = _entries(source_index, "the source's referrers index")
        if [e["digest"] for e in source_entries] == [r.digest for r in referrers]:
            return source_index
    body = json.loads(existing.data) if existing else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    body["manifests"] = current + added
    data = json.dumps(body, indent=2).encode()
    return Manifest(data, OCI_INDEX, sha256_digest(data))


def descriptor_of(manifest: Manifest) -> dict:
    """The referrers-index entry for a referrer manifest (as the referrers API would list it)."""
    body = manifest.json()
    entry = {"mediaType": manifest.media_type, "digest": manifest.digest, "size": len(manifest.data)}
    artifact_type = body.get("artifactType") or (body.get("config") or {}).get("mediaType")
    if artifact_type:
        entry["artifactType"] = artifact_type
    if body.get("annotations"):
        entry["annotations"] = body["annotations"]
    return entry
