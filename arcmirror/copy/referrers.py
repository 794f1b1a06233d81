"""Finding an image's referrers in a source: the OCI referrers API where the source has it, the
referrers tag schema (``sha256-<hex>`` tags holding an index) and cosign's tags; recursively (a
signature of an SBOM), filtered by artifact type."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from ..endpoints.base import ReferrersAPI, Source
from ..oci.errors import ProtocolError
from ..oci.referrers import (
    MAX_REFERRER_DEPTH,
    MAX_REFERRERS,
    Found,
    Referrer,
    cosign_tags,
    index_entries,
    schema_tag,
    wanted,
)


def has_referrers_api(source: Source) -> bool | None:
    """Does the source list referrers through the OCI referrers API? (None: not asked yet)"""
    return source.has_referrers_api if isinstance(source, ReferrersAPI) else False


def find(source: Source, repository: str, subjects: Iterable[str] | Callable[[], Iterable[str]],
         types: Sequence[str] = (), tags: Sequence[str] | None = None, top: str | None = None) -> Found:
    """Referrers of ``subjects`` and of those referrers (up to 4 levels), through the API and the tag schema.

    ``subjects`` may be a function: it is called only when the repository can have referrers at all
    (a tag of the schema or of cosign exists, or the source has a referrers API), which keeps a no-op
    run from reading manifests it does not need. Whether the source has the API is asked once per run,
    about ``top`` (the image's own digest). When the API answered, the repository's tag list is not
    read: the API lists every referrer, so the tag schema's tags and cosign's are not looked for.
    """
    api = has_referrers_api(source)
    tags = set() if api else set(source.list_tags(repository) if tags is None else tags)
    found = Found()
    if callable(subjects):
        if not any(t.startswith("sha256-") for t in tags) and api is not True:
            if api is None and top is not None:
                source.referrers(repository, top)  # the one probe of the run: does the API exist?
                api = has_referrers_api(source)
            if not api:
                return found
        subjects = subjects()
    seen: set[str] = set()
    level = list(dict.fromkeys(subjects))
    for _ in range(MAX_REFERRER_DEPTH):
        next_level: list[str] = []
        for subject in level:
            entries: dict[str, dict] = {}
            for entry in (source.referrers(repository, subject) if isinstance(source, ReferrersAPI) else None) or []:
                entries.setdefault(entry["digest"], entry)
            if schema_tag(subject) in tags:
                index = source.get_manifest(repository, schema_tag(subject))
                found.source_indexes[subject] = index
                for entry in index_entries(index, f"{repository}:{schema_tag(subject)}"):
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
