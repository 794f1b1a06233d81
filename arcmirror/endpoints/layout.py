"""A local OCI image layout as a copy endpoint (the store of ``pull``/``tag``/``push``).

The layout is content-addressed (``blobs/sha256/<hex>``): a blob shared by many images is stored
once, written to a temporary file and renamed into place only after its size and sha256 were
checked, so a blob in the store is always whole and correct and a rerun never fetches it again.
Images are named in ``index.json`` by the standard ``org.opencontainers.image.ref.name``
annotation, holding a full reference (``registry/repository:tag``), so one layout holds the
source names (``pull``) and the target names (``tag``) side by side.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from .. import cancel
from ..oci.digest import CHUNK, is_digest, sha256_digest
from ..oci.errors import DigestMismatchError, NotFoundError, ProtocolError
from ..oci.manifest import Manifest
from ..oci.mediatypes import OCI_INDEX

REF_NAME = "org.opencontainers.image.ref.name"


class LayoutStore:
    """An OCI image layout directory, created on first use."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.blobs = self.path / "blobs" / "sha256"

    # -- files ---------------------------------------------------------------------------------

    def init(self) -> None:
        self.blobs.mkdir(parents=True, exist_ok=True)
        layout = self.path / "oci-layout"
        if not layout.exists():
            layout.write_text('{"imageLayoutVersion":"1.0.0"}')
        if not (self.path / "index.json").exists():
            self._write_index({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})

    def blob_path(self, digest: str) -> Path:
        if not is_digest(digest):
            raise ProtocolError(f"{digest!r} is not a sha256 digest")
        return self.blobs / digest[len("sha256:"):]

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def read_blob(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} is not in the store {self.path}",
                                "run 'invoke pull' first") from None

    def iter_blob(self, digest: str) -> Iterator[bytes]:
        try:
            handle = self.blob_path(digest).open("rb")
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} is not in the store {self.path}", "run 'invoke pull' first") from None
        with handle:
            while chunk := handle.read(CHUNK):
                cancel.check()
                yield chunk

    def write_blob(self, digest: str, body: Iterable[bytes]) -> None:
        """Store ``body`` under ``digest`` atomically; an exception from ``body`` leaves nothing behind."""
        self.init()
        final = self.blob_path(digest)
        if final.exists():
            for _ in body:  # drain so the caller's verification still runs
                pass
            return
        fd, tmp = tempfile.mkstemp(dir=self.blobs, prefix=".partial-")
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in body:
                    handle.write(chunk)
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def write_bytes(self, data: bytes) -> str:
        digest = sha256_digest(data)
        self.write_blob(digest, [data])
        return digest

    # -- index.json ----------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.init()
        with open(self.path / ".index.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def index(self) -> dict:
        try:
            data = json.loads((self.path / "index.json").read_text())
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        except ValueError:
            raise ProtocolError(f"{self.path / 'index.json'} is not valid JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("manifests"), list):
            raise ProtocolError(f"{self.path / 'index.json'} is not an OCI image index")
        return data

    def _write_index(self, data: dict) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".index-")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
        os.replace(tmp, self.path / "index.json")

    def refs(self) -> dict[str, dict]:
        """``ref.name`` -> its index entry."""
        return {e["annotations"][REF_NAME]: e for e in self.index()["manifests"]
                if isinstance(e, dict) and REF_NAME in (e.get("annotations") or {})}

    def resolve(self, ref_name: str) -> str | None:
        entry = self.refs().get(ref_name)
        return entry["digest"] if entry else None

    def set_ref(self, ref_name: str, manifest: Manifest) -> None:
        """Point ``ref_name`` at ``manifest`` (stored as a blob first)."""
        self.write_blob(manifest.digest, [manifest.data])
        entry = {"mediaType": manifest.media_type, "digest": manifest.digest, "size": len(manifest.data),
                 "annotations": {REF_NAME: ref_name}}
        with self._locked():
            data = self.index()
            data["manifests"] = [e for e in data["manifests"]
                                 if (e.get("annotations") or {}).get(REF_NAME) != ref_name] + [entry]
            self._write_index(data)

    def manifest(self, digest: str) -> Manifest:
        try:
            return Manifest.parse(self.read_blob(digest), digest, f"manifest {digest} in the store {self.path}")
        except DigestMismatchError as exc:
            raise DigestMismatchError(exc.message, f"delete {self.blob_path(digest)} and pull again") from None


class LayoutEndpoint:
    """A view of a :class:`LayoutStore` in which repositories live under ``namespace`` (a registry host).

    ``resolve("arcdata/x", "v1")`` looks up ref name ``namespace/arcdata/x:v1``.
    """

    def __init__(self, store: LayoutStore, namespace: str) -> None:
        self.store = store
        self.namespace = namespace
        self.label = f"store {store.path}"

    def ref_name(self, repository: str, tag: str) -> str:
        return f"{self.namespace}/{repository}:{tag}"

    def resolve(self, repository: str, reference: str) -> str | None:
        if is_digest(reference):
            return reference if self.store.has_blob(reference) else None
        return self.store.resolve(self.ref_name(repository, reference))

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        digest = self.resolve(repository, reference)
        if digest is None:
            raise NotFoundError(f"{self.ref_name(repository, reference)} is not in the {self.label}",
                                "run 'invoke pull' (and 'invoke tag') first")
        return self.store.manifest(digest)

    def iter_blob(self, repository: str, digest: str, size: int) -> Iterator[bytes]:
        return self.store.iter_blob(digest)

    def list_tags(self, repository: str) -> list[str]:
        prefix = f"{self.namespace}/{repository}:"
        return [name[len(prefix):] for name in self.store.refs() if name.startswith(prefix)]

    def has_blob(self, repository: str, digest: str) -> bool:
        return self.store.has_blob(digest)  # content-addressed: a blob held is held for every repository

    def put_blob(self, repository: str, digest: str, size: int, body: Iterable[bytes]) -> None:
        self.store.write_blob(digest, body)

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        if is_digest(reference):
            self.store.write_blob(manifest.digest, [manifest.data])
        else:
            self.store.set_ref(self.ref_name(repository, reference), manifest)
