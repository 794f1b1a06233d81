"""cosign key-pair signatures, made here (no cosign binary), as ``cosign sign --key`` stores them:

* a "simple signing" payload (containers/image's format, cosign ``pkg/cosign/payload``)::

    {"critical":{"identity":{"docker-reference":"<repo>"},"image":{"docker-manifest-digest":"sha256:..."},
     "type":"cosign container image signature"},"optional":null}

* an image manifest under the tag ``sha256-<hex>.sig`` whose layers are such payloads
  (``application/vnd.dev.cosign.simplesigning.v1+json``), each annotated with
  ``dev.cosignproject.cosign/signature`` = base64 of the DER ECDSA-P256/SHA-256 signature over the payload
  bytes; its config an OCI image config naming the layers' digests as diff_ids. A second signature is added
  as another layer of the same manifest, as cosign does.

The public key is a PEM SubjectPublicKeyInfo (``cosign.pub``). Knobs: ``sign_with`` (another key: a
signature that does not verify with the published key), ``payload_digest`` (a payload for another image).
Never uses arcmirror's code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import pki
from .notary import put_manifest, subject_descriptor, upload_blob

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
PAYLOAD_TYPE = "cosign container image signature"


@dataclass
class CosignKey:
    """An ECDSA P-256 key pair (what ``cosign generate-key-pair`` makes)."""

    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> "CosignKey":
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_pem(self) -> bytes:
        return pki.public_key_pem(self.private_key)

    def write_public(self, path: os.PathLike | str) -> Path:
        """Write ``cosign.pub`` (PEM SubjectPublicKeyInfo); return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.public_pem)
        return path

    def sign(self, data: bytes) -> str:
        """Base64 of the DER ECDSA-P256/SHA-256 signature over ``data``."""
        return base64.b64encode(self.private_key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


def generate_key() -> CosignKey:
    return CosignKey.generate()


def verify(public_pem: bytes, payload: bytes, signature: str) -> bool:
    """Whether ``signature`` (base64 DER ECDSA) over ``payload`` verifies with the PEM public key."""
    key = serialization.load_pem_public_key(public_pem)
    try:
        key.verify(base64.b64decode(signature), payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def simple_signing(docker_reference: str, digest: str, optional: Mapping | None = None) -> bytes:
    """The simple-signing payload for the manifest ``digest`` of ``docker_reference`` (a repository)."""
    document = {"critical": {"identity": {"docker-reference": docker_reference},
                             "image": {"docker-manifest-digest": digest}, "type": PAYLOAD_TYPE},
                "optional": dict(optional) if optional is not None else None}
    return json.dumps(document, separators=(",", ":")).encode()


def signature_tag(digest: str) -> str:
    """``sha256-<hex>.sig``: where cosign keeps the signatures of manifest ``digest``."""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}-{hexpart}.sig"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def signature_manifest(layers: list[tuple[bytes, str]]) -> tuple[bytes, dict[str, bytes]]:
    """The ``.sig`` manifest for ``(payload, base64 signature)`` pairs, and its blobs (digest -> bytes)."""
    blobs = {_digest(p): p for p, _ in layers}
    config = {"architecture": "", "config": {}, "created": "0001-01-01T00:00:00Z",
              "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
              "rootfs": {"type": "layers", "diff_ids": [_digest(p) for p, _ in layers]}}
    config_data = json.dumps(config, separators=(",", ":")).encode()
    blobs[_digest(config_data)] = config_data
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "size": len(config_data), "digest": _digest(config_data)},
                "layers": [{"mediaType": SIMPLE_SIGNING, "size": len(p), "digest": _digest(p),
                            "annotations": {SIGNATURE_ANNOTATION: s}} for p, s in layers]}
    return json.dumps(manifest, separators=(",", ":")).encode(), blobs


def _existing_layers(registry, repo: str, tag: str) -> list[tuple[bytes, str]]:
    if not registry.manifest_digest(repo, tag):
        return []
    manifest = json.loads(registry.get_manifest(repo, tag)[0])
    found = []
    for layer in manifest.get("layers", []):
        response = registry.request("GET", f"/v2/{repo}/blobs/{layer['digest']}", scopes=[f"repository:{repo}:pull"])
        response.raise_for_status()
        found.append((response.content, layer.get("annotations", {}).get(SIGNATURE_ANNOTATION, "")))
    return found


def attach_cosign(registry, repo: str, subject: str, key: CosignKey, *, docker_reference: str | None = None,
                  payload_digest: str | None = None, sign_with: CosignKey | None = None, payload: bytes | None = None,
                  append: bool = True) -> str:
    """Sign the manifest ``subject`` (tag or digest) of ``repo`` with ``key`` and push the signature under
    ``sha256-<hex>.sig`` (added to the signatures already there unless ``append`` is False). Knobs:
    ``sign_with`` (sign with that key instead: the signature fails with ``key``'s public key),
    ``payload_digest`` (the payload names another manifest), ``payload`` (exact payload bytes),
    ``docker_reference`` (default ``<registry host>/<repo>``). Returns the ``.sig`` manifest's digest."""
    digest = subject_descriptor(registry, repo, subject)["digest"]
    data = payload if payload is not None else simple_signing(docker_reference or f"{registry.host}/{repo}",
                                                              payload_digest or digest)
    signature = (sign_with or key).sign(data)
    tag = signature_tag(digest)
    layers = _existing_layers(registry, repo, tag) if append else []
    if all(existing != (data, signature) for existing in layers):
        layers.append((data, signature))
    manifest, blobs = signature_manifest(layers)
    for blob in blobs.values():
        upload_blob(registry, repo, blob)
    put_manifest(registry, repo, tag, manifest, OCI_MANIFEST)
    return _digest(manifest)
