"""cosign key signatures (sigstore/cosign ``specs/SIGNATURE_SPEC.md``), verified against ``MIRROR_COSIGN_KEYS``.

The signatures of an image of digest ``sha256:H`` are the layers of the manifest tagged ``sha256-H.sig``: each layer
(``application/vnd.dev.cosign.simplesigning.v1+json``) is a "simple signing" payload whose
``critical.image.docker-manifest-digest`` names the image's digest, and carries the base64 signature over the
payload's bytes in the annotation ``dev.cosignproject.cosign/signature``. A key pair signature is ECDSA (P-256,
SHA-256 by default; the key's curve decides), checked by cryptography with the site's public keys. Keyless
(Fulcio/Rekor) signatures are not verified offline here: they are reported as not verified by a key.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ..oci.mediatypes import COSIGN_SIMPLE_SIGNING

SIMPLE_SIGNING = COSIGN_SIMPLE_SIGNING
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
_HASH = {256: hashes.SHA256, 384: hashes.SHA384, 521: hashes.SHA512}


@dataclass(frozen=True)
class CosignResult:
    ok: bool
    message: str
    key: int | None = None  # the index of the key in MIRROR_COSIGN_KEYS that verified it


def verify_layer(payload: bytes, annotations: dict, digest: str, keys: list) -> CosignResult:
    """One simple-signing layer: its signature verifies with one of ``keys``, and its payload names ``digest``."""
    text = annotations.get(SIGNATURE_ANNOTATION)
    if not isinstance(text, str) or not text:
        return CosignResult(False, f"the layer has no {SIGNATURE_ANNOTATION} annotation")
    try:
        signature = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return CosignResult(False, "the cosign signature annotation is not base64")
    verified = next((index for index, key in enumerate(keys) if _verifies(key, signature, payload)), None)
    if verified is None:
        return CosignResult(False, "the cosign signature does not verify with any key of MIRROR_COSIGN_KEYS "
                                   f"({len(keys)} key{'s' if len(keys) != 1 else ''})")
    try:  # the payload is read only once its signature verified
        claimed = json.loads(payload)["critical"]["image"]["docker-manifest-digest"]
    except (ValueError, KeyError, TypeError):
        return CosignResult(False, "the cosign payload is not a simple signing payload")
    if claimed != digest:
        return CosignResult(False, f"the cosign signature is for {claimed}, not for this image {digest}")
    return CosignResult(True, f"signed with key {verified + 1} of MIRROR_COSIGN_KEYS", verified)


def _verifies(key, signature: bytes, payload: bytes) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, payload, ec.ECDSA(_HASH.get(key.curve.key_size, hashes.SHA256)()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except InvalidSignature:
        return False
    return True
