"""Manifests: media types, descriptors, the blobs and children of a manifest, platform filtering."""

from __future__ import annotations

import json
from typing import Callable, Sequence

from .config import Platform
from .reference import is_digest
from .registry.client import Manifest, sha256_digest
from .registry.errors import NotFoundError, ProtocolError

INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
#: Layers a registry never holds (Windows base layers): the manifest points at them elsewhere.
FOREIGN_LAYER_TYPES = {
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
}
#: How deep indexes may nest in an index (OCI allows it; real images use one level, seldom two).
MAX_NESTING = 4


def descriptor(entry: object, where: str) -> tuple[str, int, str]:
    if not isinstance(entry, dict):
        raise ProtocolError(f"{where} has a descriptor that is not an object")
    digest, size = entry.get("digest"), entry.get("size")
    if not isinstance(digest, str) or not is_digest(digest):
        raise ProtocolError(f"{where} has a descriptor with an invalid digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ProtocolError(f"{where} has a descriptor of {digest} with an invalid size {size!r}")
    return digest, size, str(entry.get("mediaType") or "")


def platform_name(platform: dict | None) -> str:
    if not isinstance(platform, dict):
        return "unknown"
    return "/".join(str(p) for p in (platform.get("os"), platform.get("architecture"), platform.get("variant")) if p)


def filter_index(manifest: Manifest, platforms: Sequence[Platform], where: str,
                 fetch: Callable[[str], Manifest] | None = None) -> tuple[Manifest, dict[str, Manifest]]:
    """Keep only the entries of an index for ``platforms`` (and attestations of kept entries).

    An entry that is itself an index is looked into (``fetch`` reads it by digest) and filtered the
    same way, kept when something of it is left. Returns the top (the same bytes, same digest, when
    nothing is left out) and the nested indexes rewritten on the way, by their new digests: they
    exist nowhere yet, so the caller copies them from there instead of from the source.
    """
    rewritten: dict[str, Manifest] = {}
    have: set[str] = set()
    top = _filter(manifest, platforms, where, fetch, rewritten, have, 0)
    if top is None:
        wanted = ", ".join(str(p) for p in platforms)
        raise NotFoundError(
            f"{where} has none of the platforms {wanted} (it has: {', '.join(sorted(have)) or 'none'})",
            "change MIRROR_PLATFORMS, or leave it empty to copy every platform",
        )
    return top, rewritten


def _filter(manifest: Manifest, platforms: Sequence[Platform], where: str, fetch: Callable[[str], Manifest] | None,
            rewritten: dict[str, Manifest], have: set[str], depth: int) -> Manifest | None:
    body = manifest.json()
    entries = body.get("manifests")
    if not isinstance(entries, list):
        raise ProtocolError(f"{where} is an index without a 'manifests' list")
    if depth > MAX_NESTING:
        raise ProtocolError(f"{where} nests indexes deeper than {MAX_NESTING} levels")
    kept: dict[int, dict] = {}  # position in the index -> the entry to keep
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        if entry.get("mediaType") in INDEX_TYPES and fetch is not None:
            digest = descriptor(entry, where)[0]
            child = fetch(digest)
            if not is_index(child):
                raise ProtocolError(f"{where} lists {digest} as an index, but it is not one")
            filtered = _filter(child, platforms, f"{where} > {digest}", fetch, rewritten, have, depth + 1)
            if filtered is not None and filtered.digest != child.digest:
                rewritten[filtered.digest] = filtered
                entry = {**entry, "digest": filtered.digest, "size": len(filtered.data)}
            if filtered is not None:
                kept[position] = entry
            continue
        if not _is_attestation(entry):
            have.add(platform_name(entry.get("platform")))
        if any(p.matches(entry.get("platform")) for p in platforms):
            kept[position] = entry
    kept_digests = {e.get("digest") for e in kept.values()}
    for position, entry in enumerate(entries):
        if isinstance(entry, dict) and _is_attestation(entry) and \
                (entry.get("annotations") or {}).get("vnd.docker.reference.digest") in kept_digests:
            kept[position] = entry
    if not kept:
        return None
    if len(kept) == len(entries) and all(kept[n] is entries[n] for n in kept):
        return manifest
    body["manifests"] = [kept[n] for n in sorted(kept)]
    data = json.dumps(body, indent=3).encode()
    return Manifest(data, manifest.media_type, sha256_digest(data))


def _is_attestation(entry: dict) -> bool:
    return (entry.get("annotations") or {}).get("vnd.docker.reference.type") == "attestation-manifest"


def is_index(manifest: Manifest) -> bool:
    return manifest.media_type in INDEX_TYPES


def children_of(manifest: Manifest, where: str) -> list[str]:
    """The digests of an index's child manifests."""
    entries = manifest.json().get("manifests")
    if not isinstance(entries, list):
        raise ProtocolError(f"{where} is an index without a 'manifests' list")
    return [descriptor(e, where)[0] for e in entries]


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


def platforms_of(manifest: Manifest) -> list[str]:
    if not is_index(manifest):
        return []
    return [platform_name(e.get("platform")) for e in manifest.json().get("manifests") or [] if isinstance(e, dict)]


def walk(get_manifest: Callable[[str], Manifest], top: str, where: str,
         limit: int = 64) -> tuple[list[Manifest], dict[str, int]]:
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
