"""Manifests: the bytes and media type of one, its descriptors, children and blobs, and walking a tree."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Callable

from .digest import is_digest, sha256_digest
from .errors import DigestMismatchError, ProtocolError
from .mediatypes import (
    FOREIGN_LAYER_TYPES,
    INDEX_TYPES,
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
)

#: distribution's own limit for a manifest; a larger one is refused.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: How many manifests one image tree may hold (an index, its children, nested indexes).
MAX_TREE = 64


@dataclass(frozen=True)
class Manifest:
    """A manifest byte for byte: ``digest`` is the sha256 of ``data``, which is never re-serialised."""

    data: bytes
    media_type: str
    digest: str

    def json(self) -> dict:
        return json.loads(self.data)

    @classmethod
    def parse(cls, data: bytes, digest: str, where: str, media_type: str = "") -> "Manifest":
        """A manifest read by digest (from a registry, a layout or an archive), checked.

        The content must hash to ``digest`` and be a JSON object of a type arcmirror copies; the type
        is its ``mediaType``, else ``media_type`` (a registry's Content-Type), else, for a stored
        manifest that names none (OCI allows that), an index when it lists ``manifests``.
        """
        if sha256_digest(data) != digest:
            raise DigestMismatchError(f"{where} has content whose digest is {sha256_digest(data)}")
        try:
            body = json.loads(data)
        except ValueError:
            raise ProtocolError(f"{where} is not valid JSON") from None
        if not isinstance(body, dict):
            raise ProtocolError(f"{where} is not a JSON object")
        kind = body.get("mediaType") or media_type or (OCI_INDEX if "manifests" in body else OCI_MANIFEST)
        if kind not in MANIFEST_MEDIA_TYPES:
            raise ProtocolError(f"{where} has media type {kind!r}, which arcmirror does not copy",
                                "supported: Docker schema 2 manifest and list, OCI manifest and index")
        return cls(data, kind, digest)


def descriptor(entry: object, where: str) -> tuple[str, int, str]:
    """``(digest, size, media type)`` of a descriptor, checked."""
    if not isinstance(entry, dict):
        raise ProtocolError(f"{where} has a descriptor that is not an object")
    digest, size = entry.get("digest"), entry.get("size")
    if not isinstance(digest, str) or not is_digest(digest):
        raise ProtocolError(f"{where} has a descriptor with an invalid digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ProtocolError(f"{where} has a descriptor of {digest} with an invalid size {size!r}")
    return digest, size, str(entry.get("mediaType") or "")


def platform_name(platform: object) -> str:
    if not isinstance(platform, dict):
        return "unknown"
    return "/".join(str(p) for p in (platform.get("os"), platform.get("architecture"), platform.get("variant")) if p)


def is_index(manifest: Manifest) -> bool:
    return manifest.media_type in INDEX_TYPES


def entries_of(manifest: Manifest, where: str) -> list:
    """An index's ``manifests`` list."""
    entries = manifest.json().get("manifests")
    if not isinstance(entries, list):
        raise ProtocolError(f"{where} is an index without a 'manifests' list")
    return entries


def children_of(manifest: Manifest, where: str) -> list[str]:
    """The digests of an index's child manifests."""
    return [descriptor(e, where)[0] for e in entries_of(manifest, where)]


def blobs_of(manifest: Manifest, where: str) -> list[tuple[str, int]]:
    """The (digest, size) of an image manifest's config and distributable layers, each once."""
    body = manifest.json()
    config = body.get("config")
    layers = body.get("layers")
    if not isinstance(layers, list) or config is None:
        raise ProtocolError(f"{where} is an image manifest without 'config' and 'layers'")
    blobs: dict[str, int] = {}
    for entry in [config, *layers]:
        digest, size, media_type = descriptor(entry, where)
        if media_type not in FOREIGN_LAYER_TYPES:
            blobs.setdefault(digest, size)
    return list(blobs.items())


def foreign_layer_hosts(manifest: Manifest) -> list[str]:
    """The hosts that the foreign layers of an image manifest point at (their ``urls``)."""
    try:
        layers = manifest.json().get("layers") or []
    except (ValueError, AttributeError):
        return []
    urls = [url for layer in layers if isinstance(layer, dict) for url in layer.get("urls") or [] if isinstance(url, str)]
    return sorted({urllib.parse.urlsplit(url).netloc or url for url in urls})


def platforms_of(manifest: Manifest) -> list[str]:
    if not is_index(manifest):
        return []
    return [platform_name(e.get("platform")) for e in manifest.json().get("manifests") or [] if isinstance(e, dict)]


def walk(get_manifest: Callable[[str], Manifest], top: str, where: str,
         limit: int = MAX_TREE) -> tuple[list[Manifest], dict[str, int]]:
    """Every manifest under ``top`` (itself first) and every blob they reference (digest -> size)."""
    manifests: list[Manifest] = []
    blobs: dict[str, int] = {}
    pending = [top]
    seen: set[str] = set()
    while pending:
        digest = pending.pop(0)
        if digest in seen:
            continue
        seen.add(digest)
        if len(seen) > limit:
            raise ProtocolError(f"{where} has more than {limit} nested manifests")
        manifest = get_manifest(digest)
        manifests.append(manifest)
        if is_index(manifest):
            pending += children_of(manifest, f"{where}@{digest}")
        else:
            blobs.update(blobs_of(manifest, f"{where}@{digest}"))
    return manifests, blobs
