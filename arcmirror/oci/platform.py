"""Platforms: ``os/architecture[/variant]`` normalised as containerd does, and filtering an index by them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from .digest import sha256_digest
from .errors import NotFoundError, ProtocolError
from .manifest import Manifest, descriptor, is_index, platform_name
from .mediatypes import INDEX_TYPES

#: How deep indexes may nest in an index (OCI allows it; real images use one level, seldom two).
MAX_NESTING = 4


def normalize_platform(os_name: str, architecture: str, variant: str | None) -> tuple[str, str, str]:
    """``(os, architecture, variant)`` in containerd's normal form (``platforms.Normalize``).

    Lower case; ``macos`` is ``darwin``; ``x86_64``/``x86-64`` are ``amd64`` and its ``v1`` is no
    variant; ``aarch64`` is ``arm64`` and its ``v8`` is no variant (``9`` is ``v9``); ``i386`` is ``386``;
    ``armhf`` is ``arm/v7``, ``armel`` ``arm/v6``, and ``arm`` without a variant ``arm/v7``.
    """
    os_name, arch, variant = os_name.lower(), architecture.lower(), (variant or "").lower()
    os_name = {"macos": "darwin"}.get(os_name, os_name)
    if arch == "i386":
        arch, variant = "386", ""
    elif arch in ("x86_64", "x86-64", "amd64"):
        arch, variant = "amd64", "" if variant == "v1" else variant
    elif arch in ("aarch64", "arm64"):
        arch = "arm64"
        variant = {"8": "", "v8": "", "v8.0": "", "9": "v9", "9.0": "v9", "v9.0": "v9"}.get(variant, variant)
    elif arch == "armhf":
        arch, variant = "arm", "v7"
    elif arch == "armel":
        arch, variant = "arm", "v6"
    elif arch == "arm":
        variant = {"": "v7", "7": "v7", "5": "v5", "6": "v6", "8": "v8"}.get(variant, variant)
    return os_name, arch, variant


@dataclass(frozen=True)
class Platform:
    """A platform of MIRROR_PLATFORMS, normalised as containerd does.

    ``variant`` None (none given) matches every variant; ``""`` is the base variant a given one
    normalises to (``arm64/v8``, ``amd64/v1``): it matches an entry with that variant or with none.
    """

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Platform":
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(p and p.replace("_", "").replace("-", "").replace(".", "").isalnum()
                                                for p in parts):
            raise ValueError(f"{text!r} is not os/architecture[/variant], e.g. linux/amd64")
        os_name, arch, variant = normalize_platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None)
        return cls(os_name, arch, variant if len(parts) == 3 else None)

    def matches(self, platform: Mapping[str, object] | None) -> bool:
        """Does an index entry's ``platform`` object match this one (both sides normalised)?"""
        if not isinstance(platform, Mapping):
            return False
        os_name, arch, variant = normalize_platform(str(platform.get("os") or ""), str(platform.get("architecture") or ""),
                                                    str(platform.get("variant") or ""))
        if os_name != self.os or arch != self.architecture:
            return False
        return self.variant is None or variant == self.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


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
