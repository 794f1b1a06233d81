"""Synthetic container images written as an OCI image layout, without any tool.

A layout directory holds ``oci-layout``, ``index.json`` and ``blobs/sha256/<hex>``.
Every image named in ``index.json`` carries the annotation
``org.opencontainers.image.ref.name``, so skopeo can read it as
``oci:LAYOUT:REFNAME``.

Layers are real gzip-compressed tar archives holding deterministic pseudo-random
bytes (``random.Random(seed).randbytes``), so the same ``(seed, size)`` always
gives the same digest, on any machine.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Mapping

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

#: Fixed creation time so image configs (and therefore digests) are reproducible.
CREATED = "2025-09-09T00:00:00Z"
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Layer:
    """A compressed layer blob stored in a layout.

    ``digest``/``size`` describe the gzip blob, ``diff_id`` the uncompressed tar.
    """

    digest: str
    size: int
    diff_id: str
    path: Path
    media_type: str = OCI_LAYER_GZIP

    @property
    def data(self) -> bytes:
        """The compressed blob bytes (read from the layout on demand)."""
        return self.path.read_bytes()

    def descriptor(self) -> dict:
        """The OCI descriptor of this layer, as used in a manifest."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through it."""

    def __init__(self, sink: BinaryIO):
        super().__init__()
        self._sink = sink
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self._sink.write(data)
        return len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha256.hexdigest()


class _RandomReader(io.RawIOBase):
    """A readable stream of ``size`` deterministic pseudo-random bytes.

    Bytes are drawn from the generator in fixed chunks, so the content does not
    depend on how the consumer sizes its reads.
    """

    def __init__(self, seed: int, size: int):
        super().__init__()
        self._rng = random.Random(seed)
        self._left = size
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._left + len(self._buffer)
        while len(self._buffer) < n and self._left:
            chunk = min(_CHUNK, self._left)
            self._left -= chunk
            self._buffer += self._rng.randbytes(chunk)
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data


def canonical_json(obj) -> bytes:
    """Serialise ``obj`` deterministically (sorted keys, no whitespace)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256_digest(data: bytes) -> str:
    """The ``sha256:<hex>`` digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_platform(platform: str) -> dict:
    """Turn ``os/arch[/variant]`` into an OCI ``platform`` object."""
    parts = platform.split("/")
    if len(parts) not in (2, 3):
        raise ValueError(f"platform must be os/arch[/variant], got {platform!r}")
    result = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        result["variant"] = parts[2]
    return result


def stable_seed(*parts: object) -> int:
    """A seed derived from ``parts`` that is stable across processes (unlike ``hash``)."""
    text = "\0".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big")


class LayoutBuilder:
    """Writes images into an OCI image layout directory.

    The directory is created if needed; an existing layout is extended (its
    ``index.json`` entries are kept, an entry with the same ref name is replaced).
    """

    def __init__(self, path: os.PathLike | str, *, compresslevel: int = 1):
        self.path = Path(path)
        self.compresslevel = compresslevel
        self._blobs = self.path / "blobs" / "sha256"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._layers: dict[tuple[int, int], Layer] = {}
        (self.path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self._index = self._read_index()

    # -- blobs ---------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives in the layout."""
        algo, _, hexpart = digest.partition(":")
        return self.path / "blobs" / algo / hexpart

    def write_blob(self, data: bytes) -> dict:
        """Store ``data`` as a blob; return ``{"digest", "size"}``."""
        digest = sha256_digest(data)
        path = self.blob_path(digest)
        if not path.exists():
            _atomic_write(path, data)
        return {"digest": digest, "size": len(data)}

    def layer(self, seed: int, size: int) -> Layer:
        """A gzip tar layer holding ``size`` pseudo-random bytes from ``seed``.

        Deterministic and cached by ``(seed, size)``.
        """
        key = (seed, size)
        if key not in self._layers:
            self._layers[key] = self._write_layer(seed, size)
        return self._layers[key]

    def _write_layer(self, seed: int, size: int) -> Layer:
        fd, tmp = tempfile.mkstemp(dir=self._blobs, prefix=".layer-")
        try:
            with os.fdopen(fd, "wb") as raw:
                compressed = _HashingWriter(raw)
                with gzip.GzipFile(
                    filename="", mode="wb", fileobj=compressed,
                    compresslevel=self.compresslevel, mtime=0,
                ) as gz:
                    uncompressed = _HashingWriter(gz)
                    _write_tar(uncompressed, seed, size)
            path = self.blob_path(compressed.digest)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Layer(
            digest=compressed.digest, size=compressed.size,
            diff_id=uncompressed.digest, path=path,
        )

    # -- images --------------------------------------------------------------

    def image(
        self,
        ref_name: str,
        layers: list[Layer],
        platform: str = "linux/amd64",
        labels: Mapping[str, str] | None = None,
    ) -> str:
        """Write a single-platform OCI image, name it ``ref_name``; return its digest."""
        descriptor = self._write_image(layers, platform, labels)
        self._set_ref(ref_name, descriptor)
        return descriptor["digest"]

    def multiarch(
        self,
        ref_name: str,
        per_platform: Mapping[str, list[Layer]],
        labels: Mapping[str, str] | None = None,
    ) -> str:
        """Write an OCI image index with one image per platform; return the index digest."""
        manifests = []
        for platform, layers in per_platform.items():
            descriptor = self._write_image(layers, platform, labels)
            descriptor["platform"] = parse_platform(platform)
            manifests.append(descriptor)
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        descriptor = {"mediaType": OCI_INDEX, **self.write_blob(canonical_json(index))}
        self._set_ref(ref_name, descriptor)
        return descriptor["digest"]

    def nested(self, ref_name: str, per_platform: Mapping[str, list[Layer]],
               labels: Mapping[str, str] | None = None) -> str:
        """An index whose only entry is another index with one image per platform (OCI allows
        indexes in indexes); return the outer index's digest."""
        inner = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        for platform, layers in per_platform.items():
            descriptor = self._write_image(layers, platform, labels)
            descriptor["platform"] = parse_platform(platform)
            inner["manifests"].append(descriptor)
        outer = {"schemaVersion": 2, "mediaType": OCI_INDEX,
                 "manifests": [{"mediaType": OCI_INDEX, **self.write_blob(canonical_json(inner))}]}
        descriptor = {"mediaType": OCI_INDEX, **self.write_blob(canonical_json(outer))}
        self._set_ref(ref_name, descriptor)
        return descriptor["digest"]

    def foreign(self, ref_name: str, layers: list[Layer], url_base: str = "https://mcr.microsoft.com/v2/windows/blobs/",
                foreign_size: int = 1234) -> str:
        """A windows/amd64 image whose first layer is foreign (non-distributable): only its URL is given,
        as Windows base layers are; return the manifest digest."""
        foreign_digest = sha256_digest(f"foreign layer {ref_name}".encode())
        foreign = {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                   "digest": foreign_digest, "size": foreign_size, "urls": [url_base + foreign_digest]}
        config = image_config(layers, "windows/amd64")
        config["rootfs"]["diff_ids"].insert(0, foreign_digest)
        config_desc = {"mediaType": OCI_CONFIG, **self.write_blob(canonical_json(config))}
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc,
                    "layers": [foreign] + [layer.descriptor() for layer in layers]}
        descriptor = {"mediaType": OCI_MANIFEST, **self.write_blob(canonical_json(manifest))}
        self._set_ref(ref_name, descriptor)
        return descriptor["digest"]

    def _write_image(self, layers, platform, labels) -> dict:
        config = image_config(layers, platform, labels)
        config_desc = {"mediaType": OCI_CONFIG, **self.write_blob(canonical_json(config))}
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": [layer.descriptor() for layer in layers],
        }
        return {"mediaType": OCI_MANIFEST, **self.write_blob(canonical_json(manifest))}

    # -- index.json ----------------------------------------------------------

    def digest(self, ref_name: str) -> str:
        """The digest that ``ref_name`` points to in this layout."""
        return self.refs()[ref_name]

    def refs(self) -> dict[str, str]:
        """All ref names of this layout, mapped to their digests."""
        return _named_refs(self._index)

    def _read_index(self) -> dict:
        path = self.path / "index.json"
        if path.exists():
            return json.loads(path.read_text())
        return {"schemaVersion": 2, "manifests": []}

    def _set_ref(self, ref_name: str, descriptor: dict) -> None:
        entry = {**descriptor, "annotations": {REF_NAME_ANNOTATION: ref_name}}
        self._index["manifests"] = [
            m for m in self._index["manifests"]
            if m.get("annotations", {}).get(REF_NAME_ANNOTATION) != ref_name
        ] + [entry]
        _atomic_write(self.path / "index.json", json.dumps(self._index, indent=2).encode())


def image_config(
    layers: Iterable[Layer], platform: str, labels: Mapping[str, str] | None = None
) -> dict:
    """An OCI image config for ``layers`` on ``platform``."""
    layers = list(layers)
    return {
        "created": CREATED,
        **parse_platform(platform),
        "config": {
            "Cmd": ["/bin/sh"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Labels": dict(labels or {}),
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": CREATED, "created_by": "arcmirror testbed"} for _ in layers],
    }


def layout_refs(path: os.PathLike | str) -> dict[str, str]:
    """Ref names of the OCI layout at ``path``, mapped to their digests."""
    return _named_refs(json.loads((Path(path) / "index.json").read_text()))


def _named_refs(index: dict) -> dict[str, str]:
    """``{ref name: digest}`` for the annotated entries of an ``index.json``."""
    return {
        m["annotations"][REF_NAME_ANNOTATION]: m["digest"]
        for m in index["manifests"]
        if REF_NAME_ANNOTATION in m.get("annotations", {})
    }


def image_blobs(path: os.PathLike | str, digest: str) -> set[str]:
    """Every blob digest reachable from manifest or index ``digest`` in the layout
    at ``path`` (the manifest itself, child manifests, configs and layers)."""
    layout = Path(path)
    algo, _, hexpart = digest.partition(":")
    manifest = json.loads((layout / "blobs" / algo / hexpart).read_bytes())
    blobs = {digest}
    for child in manifest.get("manifests", []):
        blobs |= image_blobs(layout, child["digest"])
    for descriptor in [manifest.get("config"), *manifest.get("layers", [])]:
        if descriptor:
            blobs.add(descriptor["digest"])
    return blobs


def ref_name(name: str, tag: str) -> str:
    """The layout ref name used for image ``name`` at ``tag`` (``name:tag``)."""
    return f"{name}:{tag}"


def build_release(
    dirpath: os.PathLike | str,
    names: Iterable[str],
    tag: str,
    *,
    unique_size: int = 64 * 1024,
    base_size: int = 256 * 1024,
    shared_size: int = 128 * 1024,
    multiarch: Iterable[str] = (),
    changed: Iterable[str] = (),
    seed: int = 0,
    compresslevel: int = 1,
    unique_sizes: Mapping[str, int] | None = None,
) -> dict[str, str]:
    """Build an Arc-like release into the OCI layout at ``dirpath``.

    Every image gets, in order: a base layer shared by all images, one of two
    "runtime" layers (alternating by position in ``names``, so each runtime
    layer is shared by a subset), and a layer unique to the image. Names in
    ``multiarch`` become linux/amd64 + linux/arm64 indexes whose platforms
    share the base and runtime layers but have their own unique layer.

    Unique layers depend on ``tag`` only for names in ``changed``: building a
    second release with another tag into the same (or another) layout reuses
    every other layer byte for byte, while configs (labelled with the tag) and
    therefore manifests differ.

    ``unique_sizes`` gives some names a unique layer of their own size (the
    others get ``unique_size``).

    Returns ``{name: ref_name}``; ``skopeo`` can read each as ``oci:DIR:REF``.
    """
    unique_sizes = dict(unique_sizes or {})
    builder = LayoutBuilder(dirpath, compresslevel=compresslevel)
    multiarch, changed = set(multiarch), set(changed)
    base = builder.layer(stable_seed(seed, "base"), base_size)
    runtimes = [builder.layer(stable_seed(seed, "runtime", i), shared_size) for i in (0, 1)]
    refs = {}
    for position, name in enumerate(names):
        version = tag if name in changed else "stable"
        platforms = ("linux/amd64", "linux/arm64") if name in multiarch else ("linux/amd64",)
        per_platform = {
            platform: [
                base,
                runtimes[position % 2],
                builder.layer(stable_seed(seed, name, version, platform), unique_sizes.get(name, unique_size)),
            ]
            for platform in platforms
        }
        labels = {"org.opencontainers.image.title": name,
                  "org.opencontainers.image.version": tag}
        refs[name] = ref_name(name, tag)
        if name in multiarch:
            builder.multiarch(refs[name], per_platform, labels=labels)
        else:
            builder.image(refs[name], per_platform["linux/amd64"], labels=labels)
    return refs


def _write_tar(stream: BinaryIO, seed: int, size: int) -> None:
    """Write a tar with one file of ``size`` random bytes (plus a tiny marker file)."""
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        marker = f"seed={seed} size={size}\n".encode()
        tar.addfile(_tar_info(f"testbed/{seed}.txt", len(marker)), io.BytesIO(marker))
        tar.addfile(_tar_info(f"testbed/{seed}.bin", size), _RandomReader(seed, size))


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
