"""Referrers: signatures, SBOMs and attestations attached to an image (the data; finding them is
``arcmirror.copy.referrers``).

A referrer is a manifest whose ``subject`` names another manifest. Registries list them through
the OCI referrers API (``/v2/<name>/referrers/<digest>``) or, where that API is missing (as in
distribution 2.8), through the referrers tag schema: a tag ``sha256-<hex>`` holding an index of
the subject's referrers. cosign keeps its own tags beside the subject: ``sha256-<hex>.sig``,
``.att`` and ``.sbom``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

from .digest import sha256_digest
from .errors import ProtocolError
from .manifest import Manifest
from .mediatypes import OCI_INDEX

COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
MAX_REFERRER_DEPTH = 4
MAX_REFERRERS = 256


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


def index_entries(index: Manifest, where: str) -> list[dict]:
    entries = index.json().get("manifests")
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("digest"), str)
                                                for e in entries):
        raise ProtocolError(f"{where} is not a valid referrers index")
    return entries


def merged_index(existing: Manifest | None, source_index: Manifest | None, referrers: Sequence[Referrer]) -> Manifest | None:
    """The target's tag-schema index after adding ``referrers``; None when nothing changes.

    Descriptors already listed stay as they are (other tools' referrers too); when the target has no
    index yet and every referrer of the source's index is copied, the source's bytes are kept, so the
    index has the same digest on both sides.
    """
    current = index_entries(existing, "the target's referrers index") if existing else []
    listed = {e["digest"] for e in current}
    added = [r.descriptor for r in referrers if r.digest not in listed]
    if not added:
        return None
    if existing is None and source_index is not None:
        source_entries = index_entries(source_index, "the source's referrers index")
        if [e["digest"] for e in source_entries] == [r.digest for r in referrers]:
            return source_index
    body = json.loads(existing.data) if existing else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    body["manifests"] = current + added
    data = json.dumps(body, indent=2).encode()
    return Manifest(data, OCI_INDEX, sha256_digest(data))
