"""The air-gap archive format: an OCI image layout in a tar file, with a manifest of contents and checksums.

:func:`write_archive` writes planned images from the store, leaving out the blobs an earlier
archive already carried (``since``). :class:`ArchiveReader` refuses an archive with an unsafe entry
(absolute path, ``..``, link, device) or any entry whose size or sha256 differs from the contents
manifest, before anything is read from it; then it is a :class:`~.base.Source` that serves
manifests and blobs straight out of the tar (no extraction). The runs are ``arcmirror.runs.airgap``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator, Protocol, Sequence

from .. import cancel
from ..oci.digest import CHUNK, digest_of, is_digest
from ..oci.errors import HintedError, NotFoundError
from ..oci.manifest import Manifest
from ..oci.mediatypes import OCI_INDEX
from .layout import REF_NAME, LayoutEndpoint, LayoutStore

CONTENTS = "arcmirror-archive.json"
ARCHIVE_VERSION = 1
_BLOB_NAME = re.compile(r"^blobs/sha256/[a-f0-9]{64}$")
_FIXED_NAMES = {"oci-layout", "index.json", CONTENTS, "blobs", "blobs/sha256"}


class ArchiveError(HintedError):
    """The archive is unsafe, damaged or incomplete."""


class ArchivedImage(Protocol):
    """What the archive needs of an image: a planned image of ``arcmirror.runs.plan`` has it."""

    name: str
    source: str
    source_repository: str
    target_digest: str | None
    manifests: list[str]
    blobs: dict[str, int]
    referrer_manifests: list[str]
    referrer_blobs: dict[str, int]


@dataclass
class ExportResult:
    path: Path
    images: int
    blobs: int
    omitted: int
    bytes: int


def write_archive(images: Sequence[ArchivedImage], tag: str, source_registry: str, plan_record: dict,
                  store: LayoutStore, archive: Path, since: set[str] | None = None) -> ExportResult:
    """Write ``images`` from ``store`` into ``archive`` (a tar of an OCI layout), with ``plan_record``
    (the plan as JSON) inside for the import; blobs in ``since`` are left out (an earlier archive had them)."""
    since = since or set()
    files: dict[str, tuple[Path | bytes, int]] = {}
    index_entries = []
    omitted: dict[str, int] = {}
    for image in images:
        manifest_media = None
        for digest in image.manifests:
            path = store.blob_path(digest)
            if not path.is_file():
                raise NotFoundError(f"manifest {digest} of {image.name} is not in the store {store.path}",
                                    "run 'invoke pull' first")
            files[f"blobs/sha256/{digest[7:]}"] = (path, path.stat().st_size)
            if digest == image.target_digest:
                manifest_media = store.manifest(digest).media_type
        for digest, size in image.blobs.items():
            if digest in since:
                omitted[digest] = size
                continue
            path = store.blob_path(digest)
            if not path.is_file():
                raise NotFoundError(f"blob {digest} of {image.name} is not in the store {store.path}",
                                    "run 'invoke pull' first")
            files[f"blobs/sha256/{digest[7:]}"] = (path, size)
        index_entries.append({
            "mediaType": manifest_media, "digest": image.target_digest,
            "size": files[f"blobs/sha256/{image.target_digest[7:]}"][1],
            "annotations": {REF_NAME: f"{image.name}:{tag}", "org.arcmirror.source": image.source},
        })
        index_entries += _referrer_files(store, source_registry, image, files, since, omitted)
    small = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_entries},
                                 indent=2).encode(),
    }
    listing = [{"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in small.items()]
    listing += [{"path": name, "size": size, "sha256": name.rsplit("/", 1)[1]} for name, (_, size) in sorted(files.items())]
    contents = {
        "version": ARCHIVE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tag": tag,
        "plan": plan_record,
        "files": listing,
        "omitted_blobs": [{"digest": d, "size": s} for d, s in sorted(omitted.items())],
    }
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f".{archive.name}.partial")
    total = 0
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, CONTENTS, json.dumps(contents, indent=2).encode())
            for name, data in small.items():
                _add_bytes(tar, name, data)
            for name, (path, size) in sorted(files.items()):
                cancel.check("the archive")
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = size, 0o644, 0
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
                total += size
        os.replace(partial, archive)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return ExportResult(archive, len(index_entries), len(files), len(omitted), total)


def _referrer_files(store: LayoutStore, namespace: str, image: ArchivedImage, files: dict, since: set[str],
                    omitted: dict[str, int]) -> list[dict]:
    """Add an image's referrers to ``files``; return index.json entries for its referrer tags."""
    def add(digest: str, size: int | None = None) -> None:
        path = store.blob_path(digest)
        if not path.is_file():
            raise NotFoundError(f"referrer blob {digest} of {image.name} is not in the store {store.path}",
                                "run 'invoke pull' first")
        files[f"blobs/sha256/{digest[7:]}"] = (path, path.stat().st_size if size is None else size)

    for digest in image.referrer_manifests:
        add(digest)
    for digest, size in image.referrer_blobs.items():
        if digest in since:
            omitted[digest] = size
        else:
            add(digest, size)
    entries = []
    view = LayoutEndpoint(store, namespace)
    for tag in view.list_tags(image.source_repository):
        if tag.startswith("sha256-"):  # the tag-schema index and cosign's tags
            digest = view.resolve(image.source_repository, tag)
            manifest = store.manifest(digest)
            add(digest)
            entries.append({"mediaType": manifest.media_type, "digest": digest, "size": len(manifest.data),
                            "annotations": {REF_NAME: f"{image.name}:{tag}"}})
    return entries


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


# -- reading ---------------------------------------------------------------------------------

def _safe_name(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` is unsafe or unexpected, or None when it is fine."""
    name = member.name
    if member.issym() or member.islnk():
        return f"{name!r} is a link"
    if not (member.isfile() or member.isdir()):
        return f"{name!r} is not a regular file"
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        return f"{name!r} is an absolute path"
    if ".." in PurePosixPath(name).parts:
        return f"{name!r} leaves the archive's folder ('..')"
    clean = name.rstrip("/").removeprefix("./")
    if clean not in _FIXED_NAMES and not _BLOB_NAME.match(clean):
        return f"{name!r} is not part of an arcmirror archive"
    return None


class ArchiveReader:
    """Reads an archive made by :func:`export_archive` without extracting it.

    :meth:`check` must pass before anything else is used: it refuses unsafe entries and checks
    every entry's size and sha256 against the contents manifest.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.label = f"archive {self.path}"
        self._members: dict[str, tarfile.TarInfo] = {}
        self.contents: dict = {}

    def check(self) -> None:
        try:
            with tarfile.open(self.path, "r:") as tar:
                members = tar.getmembers()
        except FileNotFoundError:
            raise ArchiveError(f"the archive {self.path} does not exist") from None
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ArchiveError(f"the archive {self.path} is damaged or truncated: {exc}",
                               "copy the archive again; nothing was pushed from it") from None
        for member in members:
            if problem := _safe_name(member):
                raise ArchiveError(f"the archive {self.path} is refused: {problem}",
                                   "use an archive written by 'invoke export'; nothing was pushed from it")
            if member.isfile():
                self._members[member.name.removeprefix("./")] = member
        if CONTENTS not in self._members:
            raise ArchiveError(f"the archive {self.path} has no {CONTENTS}", "use an archive written by 'invoke export'")
        try:
            self.contents = json.loads(self._read_member(CONTENTS))
            listing = {f["path"]: (int(f["size"]), f["sha256"]) for f in self.contents["files"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise ArchiveError(f"the contents manifest of {self.path} is unreadable: {exc}") from None
        for name, (size, checksum) in listing.items():
            member = self._members.get(name)
            if member is None:
                raise ArchiveError(f"the archive {self.path} is incomplete: entry {name} is missing",
                                   "copy the archive again; nothing was pushed from it")
            if member.size != size:
                raise ArchiveError(f"entry {name} of {self.path} is {member.size} bytes, the contents manifest says {size}",
                                   "copy the archive again; nothing was pushed from it")
            if self._hash_member(member) != checksum:
                raise ArchiveError(f"entry {name} of {self.path} is corrupt: its sha256 differs from the contents manifest",
                                   "copy the archive again; nothing was pushed from it")
        extra = set(self._members) - set(listing) - {CONTENTS}
        if extra:
            raise ArchiveError(f"the archive {self.path} has entries its contents manifest does not list: "
                               f"{', '.join(sorted(extra)[:3])}", "use an archive written by 'invoke export'")

    def _read_member(self, name: str) -> bytes:
        return b"".join(self._iter_member(self._members[name]))

    def _iter_member(self, member: tarfile.TarInfo) -> Iterator[bytes]:
        with self.path.open("rb") as handle:  # a handle of its own: safe from many threads
            handle.seek(member.offset_data)
            left = member.size
            while left > 0:
                cancel.check("reading the archive")
                chunk = handle.read(min(CHUNK, left))
                if not chunk:
                    raise ArchiveError(f"the archive {self.path} ends inside entry {member.name}")
                left -= len(chunk)
                yield chunk

    def _hash_member(self, member: tarfile.TarInfo) -> str:
        return digest_of(self._iter_member(member)).removeprefix("sha256:")

    @property
    def plan_record(self) -> object:
        """The plan the archive was written from, as JSON (``arcmirror.runs.plan.Plan.from_dict`` reads it)."""
        return self.contents.get("plan")

    @property
    def omitted(self) -> set[str]:
        return {b["digest"] for b in self.contents.get("omitted_blobs", [])}

    # -- the Source interface: repository = image name, reference = the archive's tag or a digest --

    def resolve(self, repository: str, reference: str) -> str | None:
        if is_digest(reference):
            return reference if f"blobs/sha256/{reference[7:]}" in self._members else None
        index = json.loads(self._read_member("index.json"))
        for entry in index.get("manifests", []):
            if (entry.get("annotations") or {}).get(REF_NAME) == f"{repository}:{reference}":
                return entry.get("digest")
        return None

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        digest = self.resolve(repository, reference)
        if digest is None:
            raise NotFoundError(f"{repository}:{reference} is not in the {self.label}")
        return Manifest.parse(self._read_member(f"blobs/sha256/{digest[7:]}"), digest,
                              f"manifest {digest} in the {self.label}")

    def list_tags(self, repository: str) -> list[str]:
        index = json.loads(self._read_member("index.json"))
        names = [(e.get("annotations") or {}).get(REF_NAME, "") for e in index.get("manifests", [])]
        return [n[len(repository) + 1:] for n in names if n.startswith(f"{repository}:")]

    def iter_blob(self, repository: str, digest: str, size: int) -> Iterator[bytes]:
        member = self._members.get(f"blobs/sha256/{digest[7:]}")
        if member is None:
            why = ("it was left out because an earlier archive carried it, and the target does not have it"
                   if digest in self.omitted else "it is not in the archive")
            raise NotFoundError(f"blob {digest} of {repository} cannot be pushed: {why}",
                                "import the earlier (full) archive first, then this one")
        return self._iter_member(member)
