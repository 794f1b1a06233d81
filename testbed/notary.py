"""The test bed's own Notary Project signer: payloads, COSE and JWS envelopes, signature manifests, their
upload next to an image, and notation's trust policy / trust store folder.

Written from the specification (notaryproject/specifications ``specs/signature-specification.md``,
``signature-envelope-cose.md``, ``signature-envelope-jws.md``, ``trust-store-trust-policy.md``), with
``cbor2`` and ``cryptography`` only, so tests grade a verifier against the spec and not against itself:

* :func:`payload`: ``{"targetArtifact": {mediaType, digest, size}}`` (``application/vnd.cncf.notary.payload.v1+json``);
* :func:`sign_cose`: ``COSE_Sign1_Tagged`` (tag 18) over ``["Signature1", protected, h'', payload]``;
* :func:`sign_jws`: flattened JWS JSON over ``ASCII(protected "." payload)``;
* :func:`signature_manifest` / :func:`attach_notary`: the OCI image manifest (artifactType
  ``application/vnd.cncf.notary.signature``, empty config, the envelope as its one layer, ``subject``), listed
  for its subject by the referrers tag schema (``sha256-<hex>``) or, on a registry with the referrers API,
  by the registry itself;
* :func:`trust_folder`: ``trustpolicy.oci.json`` + ``truststore/x509/{ca,signingAuthority,tsa}/<name>/``.

Every failure a verifier must catch is one keyword argument of the signers (see :func:`sign_cose`).
Algorithms: the spec's table (RSA 2048/3072/4096 -> PS256/384/512 with PSS salt = hash length; EC
P-256/384/521 -> ES256/384/512 as raw ``r||s``). Never uses arcmirror's code.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, NamedTuple, Union

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from . import pki

PAYLOAD_MEDIA_TYPE = "application/vnd.cncf.notary.payload.v1+json"
ARTIFACT_TYPE = "application/vnd.cncf.notary.signature"
COSE = "application/cose"
JWS = "application/jose+json"
MEDIA_TYPES = {"cose": COSE, "jws": JWS}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
THUMBPRINTS = "io.cncf.notary.x509chain.thumbprint#S256"
CREATED = "org.opencontainers.image.created"

X509 = "notary.x509"
SIGNING_AUTHORITY = "notary.x509.signingAuthority"
H_SCHEME = "io.cncf.notary.signingScheme"
H_TIME = "io.cncf.notary.signingTime"
H_AUTH_TIME = "io.cncf.notary.authenticSigningTime"
H_EXPIRY = "io.cncf.notary.expiry"
H_TIMESTAMP = "io.cncf.notary.timestampSignature"
H_AGENT = "io.cncf.notary.signingAgent"
X5CHAIN = 33  # COSE header label (RFC 9360)
AGENT = "arcmirror-testbed/1.0"


class Algorithm(NamedTuple):
    cose: int
    hash: type | None
    kind: str  # rsa, ec, ed25519


#: JWS name -> COSE label, hash, key kind (signature-specification.md § Algorithm Selection; EdDSA is not
#: allowed by the spec, it is here to sign with an unsupported key)
ALGORITHMS = {
    "PS256": Algorithm(-37, hashes.SHA256, "rsa"), "PS384": Algorithm(-38, hashes.SHA384, "rsa"),
    "PS512": Algorithm(-39, hashes.SHA512, "rsa"), "ES256": Algorithm(-7, hashes.SHA256, "ec"),
    "ES384": Algorithm(-35, hashes.SHA384, "ec"), "ES512": Algorithm(-36, hashes.SHA512, "ec"),
    "EdDSA": Algorithm(-8, None, "ed25519"),
}

Signer = Union[pki.Issued, "tuple[object, list]"]
Stamper = Callable[[bytes, str], bytes]


def algorithm_for(key) -> str:
    """The spec's algorithm for a (private or public) key: RSA 2048/3072/4096 -> PS256/384/512, EC
    P-256/384/521 -> ES256/384/512. Keys the spec does not allow get the nearest (RSA-1024 -> PS256) so a
    test can still sign with them."""
    public = key.public_key() if hasattr(key, "private_bytes") else key
    if isinstance(public, rsa.RSAPublicKey):
        return {3072: "PS384", 4096: "PS512"}.get(public.key_size, "PS256")
    if isinstance(public, ec.EllipticCurvePublicKey):
        return {384: "ES384", 521: "ES512"}.get(public.curve.key_size, "ES256")
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise ValueError(f"unsupported key {type(public).__name__}")


def _kind(key) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ec"
    return "ed25519"


def raw_sign(key, data: bytes, alg: str | None = None, *, salt_length: int | None = None) -> bytes:
    """The primitive signature: RSASSA-PSS (MGF1 with the same hash, salt = hash length unless told) or
    ECDSA as fixed-width ``r||s`` (32/48/66 bytes each), with ``alg``'s hash when ``alg`` fits the key's
    kind, else the key's own algorithm (a header may lie about the algorithm; the key cannot)."""
    name = alg if alg in ALGORITHMS and ALGORITHMS[alg].kind == _kind(key) else algorithm_for(key)
    digest = ALGORITHMS[name].hash
    if isinstance(key, rsa.RSAPrivateKey):
        salt = digest.digest_size if salt_length is None else salt_length
        return key.sign(data, padding.PSS(padding.MGF1(digest()), salt), digest())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest())))
        width = (key.curve.key_size + 7) // 8
        return r.to_bytes(width, "big") + s.to_bytes(width, "big")
    return key.sign(data)


def hash_name(key) -> str:
    """sha256/sha384/sha512: the hash the spec deduces from the key (what a timestamp request uses)."""
    digest = ALGORITHMS[algorithm_for(key)].hash
    return digest.name if digest else "sha256"


# -- payload ------------------------------------------------------------------------------------------

def payload(descriptor: Mapping, *, media_type: str | None = None, digest: str | None = None,
            size: int | None = None, annotations: Mapping[str, str] | None = None, extra: Mapping | None = None,
            ) -> bytes:
    """``{"targetArtifact": {"mediaType", "digest", "size"[, "annotations"]}}`` for ``descriptor`` (the signed
    manifest's descriptor); ``media_type``/``digest``/``size`` replace its values (a payload for another
    artifact), ``annotations`` adds user metadata, ``extra`` more fields of ``targetArtifact``."""
    target = {"mediaType": media_type if media_type is not None else descriptor["mediaType"],
              "digest": digest if digest is not None else descriptor["digest"],
              "size": size if size is not None else descriptor["size"]}
    if annotations is not None or descriptor.get("annotations"):
        target["annotations"] = dict(annotations if annotations is not None else descriptor["annotations"])
    if descriptor.get("artifactType"):
        target["artifactType"] = descriptor["artifactType"]
    target.update(extra or {})
    return json.dumps({"targetArtifact": target}, separators=(",", ":")).encode()


# -- envelopes ----------------------------------------------------------------------------------------

def _signer(signer: Signer, chain) -> tuple[object, list[bytes]]:
    if isinstance(signer, pki.Issued):
        key, carried = signer.key, signer.chain
    else:
        key, carried = signer
    carried = carried if chain is None else chain
    return key, [c if isinstance(c, bytes) else pki.der(c) for c in carried]


def rfc3339(moment: dt.datetime) -> str:
    """``2025-01-02T03:04:05Z`` (fractional seconds only when the time has them)."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=pki.UTC)
    return moment.astimezone(pki.UTC).isoformat().replace("+00:00", "Z")


def _now() -> dt.datetime:
    return dt.datetime.now(pki.UTC).replace(microsecond=0)


def _epoch(moment: dt.datetime) -> int | float:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=pki.UTC)
    value = moment.timestamp()
    return int(value) if value == int(value) else value


def _cose_time(moment: dt.datetime, tag: int | None):
    if tag == 1:
        return cbor2.CBORTag(1, _epoch(moment))
    if tag == 0:
        return cbor2.CBORTag(0, rfc3339(moment))
    return _epoch(moment)


def _headers(scheme: str, signing_time, expiry, crit, unknown_critical, extra: Mapping | None,
             when) -> tuple[dict, list]:
    """The Notary protected headers (time values as ``when`` renders them) and the crit list."""
    headers = {H_SCHEME: scheme}
    headers[H_AUTH_TIME if scheme == SIGNING_AUTHORITY else H_TIME] = when(signing_time or _now())
    if expiry is not None:
        headers[H_EXPIRY] = when(expiry)
    unknown = [unknown_critical] if isinstance(unknown_critical, (str, int)) else list(unknown_critical or ())
    for label in unknown:
        headers[label] = "unknown critical value"
    if crit is None:
        crit = ([H_SCHEME] + ([H_AUTH_TIME] if scheme == SIGNING_AUTHORITY else [])
                + ([H_EXPIRY] if expiry is not None else []) + unknown)
    for label, value in (extra or {}).items():
        if value is None:
            headers.pop(label, None)
        else:
            headers[label] = when(value) if isinstance(value, dt.datetime) else value
    return headers, list(crit)


def _timestamp(timestamp, signature: bytes, over: bytes | None, key) -> bytes | None:
    if timestamp is None or isinstance(timestamp, bytes):
        return timestamp
    return timestamp(signature if over is None else over, hash_name(key))


def sign_cose(payload: bytes, signer: Signer, *, scheme: str = X509, signing_time: dt.datetime | None = None,
              expiry: dt.datetime | None = None, alg: str | int | None = None, cty: str | None = PAYLOAD_MEDIA_TYPE,
              crit: Iterable | None = None, unknown_critical: str | int | Iterable | None = None,
              protected: Mapping | None = None, unprotected: Mapping | None = None,
              timestamp: bytes | Stamper | None = None, timestamp_over: bytes | None = None,
              agent: str | None = AGENT, chain: Iterable | None = None, payload_after: bytes | None = None,
              salt_length: int | None = None, time_tag: int | None = 1, tagged: bool = True) -> bytes:
    """A ``COSE_Sign1_Tagged`` envelope (``application/cose``) of ``payload`` signed by ``signer`` (a
    :class:`~testbed.pki.Issued` leaf, or ``(key, chain)``).

    Protected: alg (1), crit (2), content type (3), ``io.cncf.notary.signingScheme``, the signing time
    (``signingTime``, or ``authenticSigningTime`` under ``notary.x509.signingAuthority``) and the optional
    expiry as CBOR tag-1 epoch integers. Unprotected: x5chain (33, array of DER, leaf first), the signing agent,
    the timestamp token. Knobs (each one failure a verifier must catch):

    * ``scheme``, ``signing_time`` (default now), ``expiry`` (a past one: expired signature);
    * ``alg``: the header's algorithm ("PS256", or a COSE int), e.g. one that does not match the key;
    * ``cty`` (None: absent); ``crit``: the exact crit list (``[]``: no crit header);
    * ``unknown_critical``: header label(s) listed in crit and present;
    * ``protected``/``unprotected``: more headers (a None value removes one; datetimes become times);
    * ``timestamp``: a token (bytes) or a stamper ``(data, hash) -> token`` (a :class:`testbed.tsa.TSA`),
      called over the signature bytes, or over ``timestamp_over`` (the wrong bytes);
    * ``chain``: the certificates carried instead of the signer's chain (wrong order, no root, an impostor root);
    * ``payload_after``: the envelope re-assembled with this payload after signing (old signature);
    * ``salt_length`` (RSA-PSS), ``time_tag`` (1; 0: RFC 3339 text; None: untagged), ``tagged`` (tag 18).
    """
    key, certs = _signer(signer, chain)
    name = alg if alg is not None else algorithm_for(key)
    headers, crit_list = _headers(scheme, signing_time, expiry, crit, unknown_critical, protected,
                                  lambda t: _cose_time(t, time_tag))
    body = {1: name if isinstance(name, int) else ALGORITHMS[name].cose}
    if crit_list:
        body[2] = crit_list
    if cty is not None:
        body[3] = cty
    body.update(headers)
    protected_bytes = cbor2.dumps(body)
    signature = raw_sign(key, cbor2.dumps(["Signature1", protected_bytes, b"", payload]),
                         name if isinstance(name, str) else None, salt_length=salt_length)
    header: dict = {X5CHAIN: certs}
    if agent is not None:
        header[H_AGENT] = agent
    token = _timestamp(timestamp, signature, timestamp_over, key)
    if token is not None:
        header[H_TIMESTAMP] = token
    for label, value in (unprotected or {}).items():
        if value is None:
            header.pop(label, None)
        else:
            header[label] = value
    message = [protected_bytes, header, payload if payload_after is None else payload_after, signature]
    return cbor2.dumps(cbor2.CBORTag(18, message) if tagged else message)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_jws(payload: bytes, signer: Signer, *, scheme: str = X509, signing_time: dt.datetime | None = None,
             expiry: dt.datetime | None = None, alg: str | None = None, cty: str | None = PAYLOAD_MEDIA_TYPE,
             crit: Iterable | None = None, unknown_critical: str | Iterable[str] | None = None,
             protected: Mapping | None = None, header: Mapping | None = None,
             timestamp: bytes | Stamper | None = None, timestamp_over: bytes | None = None,
             agent: str | None = AGENT, chain: Iterable | None = None, payload_after: bytes | None = None,
             salt_length: int | None = None) -> bytes:
    """A flattened JWS JSON envelope (``application/jose+json``): ``protected`` (base64url JSON: alg, cty,
    crit, signingScheme, signingTime/authenticSigningTime and expiry as RFC 3339), ``header`` (x5c: standard
    base64 DER, leaf first; ``io.cncf.notary.timestampSignature``: standard base64 token; signingAgent),
    ``payload`` (base64url) and ``signature`` (base64url, over ``ASCII(protected "." payload)``).

    Knobs as :func:`sign_cose` (``header`` for more unprotected headers; a timestamp covers the decoded
    signature bytes)."""
    key, certs = _signer(signer, chain)
    name = alg or algorithm_for(key)
    headers, crit_list = _headers(scheme, signing_time, expiry, crit, unknown_critical, protected, rfc3339)
    body = {"alg": name}
    if crit_list:
        body["crit"] = crit_list
    if cty is not None:
        body["cty"] = cty
    body.update(headers)
    protected_text = b64url(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    payload_text = b64url(payload)
    signature = raw_sign(key, f"{protected_text}.{payload_text}".encode("ascii"), name, salt_length=salt_length)
    unprotected: dict = {"x5c": [base64.b64encode(c).decode() for c in certs]}
    if agent is not None:
        unprotected[H_AGENT] = agent
    token = _timestamp(timestamp, signature, timestamp_over, key)
    if token is not None:
        unprotected[H_TIMESTAMP] = base64.b64encode(token).decode()
    for label, value in (header or {}).items():
        if value is None:
            unprotected.pop(label, None)
        else:
            unprotected[label] = value
    envelope = {"payload": payload_text if payload_after is None else b64url(payload_after),
                "protected": protected_text, "header": unprotected, "signature": b64url(signature)}
    return json.dumps(envelope, separators=(",", ":")).encode()


def sign(envelope: str, payload: bytes, signer: Signer, **knobs) -> bytes:
    """:func:`sign_cose` or :func:`sign_jws` by ``envelope``: ``cose``/``jws`` or a media type."""
    kind = {COSE: "cose", JWS: "jws"}.get(envelope, envelope)
    if kind == "cose":
        return sign_cose(payload, signer, **knobs)
    if kind == "jws":
        return sign_jws(payload, signer, **knobs)
    raise ValueError(f"unknown envelope {envelope!r}")


@dataclass
class Decoded:
    """An envelope taken apart (nothing verified): what the signer's own tests and
    :func:`signature_manifest` read."""

    media_type: str
    protected: dict  # COSE: labels -> values as cbor2 decodes them; JWS: the JSON object
    unprotected: dict
    payload: bytes
    signature: bytes  # the primitive signature (what a timestamp covers)
    signing_input: bytes  # the bytes the signature is over
    chain: list[bytes]  # DER, as carried
    timestamp: bytes | None

    @property
    def certificates(self) -> list[x509.Certificate]:
        return [x509.load_der_x509_certificate(c) for c in self.chain]

    @property
    def signing_time(self) -> dt.datetime | None:
        for label in (H_TIME, H_AUTH_TIME):
            value = self.protected.get(label)
            if isinstance(value, dt.datetime):
                return value
            if isinstance(value, str):
                return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if isinstance(value, cbor2.CBORTag) and isinstance(value.value, (int, float)):
                return dt.datetime.fromtimestamp(value.value, pki.UTC)
        return None


def decode(envelope: bytes, media_type: str) -> Decoded:
    """Take an envelope apart (COSE or JWS by media type, or ``cose``/``jws``)."""
    kind = {COSE: "cose", JWS: "jws"}.get(media_type, media_type)
    if kind == "cose":
        message = cbor2.loads(envelope)
        protected_bytes, header, body, signature = message.value if isinstance(message, cbor2.CBORTag) else message
        structure = cbor2.dumps(["Signature1", protected_bytes, b"", body])
        chain = header.get(X5CHAIN) or []
        return Decoded(COSE, cbor2.loads(protected_bytes) if protected_bytes else {}, header, body, signature,
                       structure, [chain] if isinstance(chain, bytes) else list(chain), header.get(H_TIMESTAMP))
    if kind == "jws":
        document = json.loads(envelope)
        header = document.get("header") or {}
        token = header.get(H_TIMESTAMP)
        return Decoded(JWS, json.loads(b64url_decode(document["protected"])), header,
                       b64url_decode(document["payload"]), b64url_decode(document["signature"]),
                       f"{document['protected']}.{document['payload']}".encode("ascii"),
                       [base64.b64decode(c) for c in header.get("x5c") or []],
                       base64.b64decode(token) if token else None)
    raise ValueError(f"unknown envelope media type {media_type!r}")


# -- signature manifests ------------------------------------------------------------------------------

def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class SignatureManifest:
    """A signature manifest with its blobs: ``data`` (the JSON bytes pushed), ``blobs`` (digest -> bytes:
    the envelope and the empty config)."""

    manifest: dict
    data: bytes
    blobs: dict[str, bytes]

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self) -> dict:
        """Its descriptor as a referrers listing shows it (artifactType, annotations)."""
        artifact_type = self.manifest.get("artifactType") or self.manifest["config"]["mediaType"]
        descriptor = {"mediaType": self.manifest["mediaType"], "digest": self.digest, "size": self.size,
                      "artifactType": artifact_type}
        if self.manifest.get("annotations"):
            descriptor["annotations"] = self.manifest["annotations"]
        return descriptor


def _subject_descriptor(subject: Mapping) -> dict:
    return {"mediaType": subject["mediaType"], "digest": subject["digest"], "size": subject["size"]}


def signature_manifest(envelope: bytes, media_type: str, subject: Mapping, *, created: str | dt.datetime | None = None,
                       thumbprints: Iterable[str] | None = None, chain: Iterable | None = None,
                       legacy: bool = False, annotations: Mapping[str, str] | None = None,
                       layers: Iterable[dict] | None = None) -> SignatureManifest:
    """The OCI image manifest of a Notary signature (signature-specification.md § OCI Signatures):
    ``artifactType`` ``application/vnd.cncf.notary.signature``, config the empty descriptor
    (``application/vnd.oci.empty.v1+json``, ``{}``), one layer (the envelope, ``media_type``), ``subject``, and
    the annotations ``io.cncf.notary.x509chain.thumbprint#S256`` (JSON array of lower-case hex SHA-256 of each
    certificate of the envelope's chain, leaf first) and ``org.opencontainers.image.created`` (the envelope's
    signing time unless ``created``). Knobs: ``thumbprints``/``chain`` (instead of the envelope's chain),
    ``legacy`` (notation 1.0's layout: no artifactType, config mediaType = the artifact type),
    ``annotations`` (added; None values remove), ``layers`` (the exact layer list)."""
    media_type = MEDIA_TYPES.get(media_type, media_type)
    if thumbprints is None:
        certs = chain if chain is not None else decode(envelope, media_type).chain
        thumbprints = [hashlib.sha256(c if isinstance(c, bytes) else pki.der(c)).hexdigest() for c in certs]
    if created is None:
        try:
            created = decode(envelope, media_type).signing_time
        except Exception:  # an envelope a test broke on purpose
            created = None
    created = created or _now()
    created_text = created if isinstance(created, str) else rfc3339(created)
    config = {"mediaType": ARTIFACT_TYPE if legacy else EMPTY_CONFIG, "digest": sha256_digest(EMPTY_JSON),
              "size": len(EMPTY_JSON)}
    manifest: dict = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if not legacy:
        manifest["artifactType"] = ARTIFACT_TYPE
    manifest["config"] = config
    manifest["layers"] = list(layers) if layers is not None else [
        {"mediaType": media_type, "digest": sha256_digest(envelope), "size": len(envelope)}]
    manifest["subject"] = _subject_descriptor(subject)
    notes = {THUMBPRINTS: json.dumps(list(thumbprints), separators=(",", ":")), CREATED: created_text}
    for key, value in (annotations or {}).items():
        if value is None:
            notes.pop(key, None)
        else:
            notes[key] = value
    manifest["annotations"] = notes
    data = json.dumps(manifest, separators=(",", ":")).encode()
    return SignatureManifest(manifest, data, {sha256_digest(envelope): envelope, sha256_digest(EMPTY_JSON): EMPTY_JSON})


# -- registries ---------------------------------------------------------------------------------------

def _scopes(repo: str) -> list[str]:
    return [f"repository:{repo}:pull,push"]


def subject_descriptor(registry, repo: str, ref: str) -> dict:
    """``{"mediaType", "digest", "size"}`` of the manifest ``repo:ref`` (tag or digest) in ``registry``."""
    data, content_type = registry.get_manifest(repo, ref)
    body = json.loads(data)
    return {"mediaType": body.get("mediaType") or content_type, "digest": sha256_digest(data), "size": len(data)}


def upload_blob(registry, repo: str, data: bytes) -> str:
    """Upload ``data`` to ``repo`` (monolithic POST + PUT) unless it is there; return its digest."""
    digest = sha256_digest(data)
    if registry.has_blob(repo, digest):
        return digest
    started = registry.request("POST", f"/v2/{repo}/blobs/uploads/", scopes=_scopes(repo))
    started.raise_for_status()
    location = started.headers["Location"]
    url = location + ("&" if "?" in location else "?") + f"digest={digest}"
    registry.request("PUT", url, scopes=_scopes(repo), data=data,
                     headers={"Content-Type": "application/octet-stream"}).raise_for_status()
    return digest


def put_manifest(registry, repo: str, reference: str, data: bytes, media_type: str):
    """PUT a manifest (or index) as ``reference``; return the response."""
    response = registry.request("PUT", f"/v2/{repo}/manifests/{reference}", scopes=_scopes(repo), data=data,
                                headers={"Content-Type": media_type})
    response.raise_for_status()
    return response


def referrers_tag(digest: str) -> str:
    """The referrers tag schema's tag for a subject digest: ``sha256-<hex>``."""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}-{hexpart}"


def list_in_tag_index(registry, repo: str, subject_digest: str, descriptor: dict) -> str:
    """Add ``descriptor`` to the referrers tag-schema index of ``subject_digest`` (merging what is there);
    return the index digest."""
    tag = referrers_tag(subject_digest)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    if registry.manifest_digest(repo, tag):
        index = json.loads(registry.get_manifest(repo, tag)[0])
    entries = index.setdefault("manifests", [])
    if all(entry.get("digest") != descriptor["digest"] for entry in entries):
        entries.append(descriptor)
    data = json.dumps(index, separators=(",", ":")).encode()
    return put_manifest(registry, repo, tag, data, OCI_INDEX).headers["Docker-Content-Digest"]


def attach_notary(registry, repo: str, subject: str | Mapping, envelope: bytes, media_type: str, *,
                  referrers_api: bool = False, **manifest_knobs) -> str:
    """Push a Notary signature of ``subject`` (a tag or digest in ``repo``, or a descriptor) into ``registry``
    (a :class:`~testbed.registry.Registry`, or a front's :meth:`~testbed.front.RegistryFront.view`): the envelope
    and the empty config as blobs, the :func:`signature_manifest` by digest, and, unless ``referrers_api`` (the
    registry lists referrers itself: push through a front that keeps the API), its descriptor in the tag-schema
    index ``sha256-<hex>``. ``manifest_knobs`` go to :func:`signature_manifest`. Returns the manifest digest."""
    described = dict(subject) if isinstance(subject, Mapping) else subject_descriptor(registry, repo, subject)
    made = signature_manifest(envelope, media_type, described, **manifest_knobs)
    for data in made.blobs.values():
        upload_blob(registry, repo, data)
    put_manifest(registry, repo, made.digest, made.data, OCI_MANIFEST)
    if not referrers_api:
        list_in_tag_index(registry, repo, described["digest"], made.descriptor())
    return made.digest


@dataclass
class Signed:
    """What :func:`sign_image` pushed."""

    digest: str  # the signature manifest's
    envelope: bytes
    media_type: str
    subject: dict


def sign_image(registry, repo: str, ref: str, signer: Signer, *, envelope: str = "cose",
               referrers_api: bool = False, target: Mapping | None = None, manifest: Mapping | None = None,
               **sign_knobs) -> Signed:
    """Sign ``repo:ref`` and attach the signature: :func:`payload` of its descriptor (``target``: keyword
    arguments of :func:`payload`, e.g. ``{"digest": other}``), :func:`sign` (``sign_knobs``), then
    :func:`attach_notary` (``manifest``: its knobs)."""
    subject = subject_descriptor(registry, repo, ref)
    media_type = MEDIA_TYPES.get(envelope, envelope)
    data = sign(media_type, payload(subject, **(target or {})), signer, **sign_knobs)
    digest = attach_notary(registry, repo, subject, data, media_type, referrers_api=referrers_api, **(manifest or {}))
    return Signed(digest, data, media_type, subject)


# -- notation's configuration folder ------------------------------------------------------------------

def policy(name: str = "testbed", *, scopes: Iterable[str] = ("*",), level: str = "strict",
           trust_stores: Iterable[str] = (), identities: Iterable[str] = ("*",),
           override: Mapping[str, str] | None = None, verify_timestamp: str | None = None) -> dict:
    """One trust policy statement (trust-store-trust-policy.md § OCI Trust Policy, version 1.0)."""
    verification: dict = {"level": level}
    if override:
        verification["override"] = dict(override)
    if verify_timestamp is not None:
        verification["verifyTimestamp"] = verify_timestamp
    statement = {"name": name, "registryScopes": list(scopes), "signatureVerification": verification}
    if level != "skip" or trust_stores:
        statement["trustStores"] = list(trust_stores)
    if level != "skip" or list(identities) != ["*"]:
        statement["trustedIdentities"] = list(identities)
    return statement


def _cert_file(item) -> tuple[bytes, str]:
    if isinstance(item, bytes):
        return item, "file"
    cert = item.cert if isinstance(item, pki.Issued) else item
    common = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    stem = "".join(ch if ch.isalnum() else "-" for ch in (common[0].value if common else "cert")).strip("-").lower()
    return cert.public_bytes(serialization.Encoding.PEM), stem or "cert"


def trust_folder(path: os.PathLike | str, *, policies: Iterable[Mapping] | Mapping,
                 stores: Mapping[str, Iterable | Mapping[str, object]] = (), filename: str = "trustpolicy.oci.json",
                 ) -> Path:
    """Write a notation configuration directory at ``path``:

    * ``trustpolicy.oci.json`` (or ``filename``): ``{"version": "1.0", "trustPolicies": policies}`` (see
      :func:`policy`), or ``policies`` as is when it is a whole document (a dict);
    * ``truststore/x509/<type>/<name>/<file>.pem`` for each ``stores["<type>:<name>"]``: certificates
      (``x509.Certificate``/:class:`~testbed.pki.Issued`, one PEM file each, named after the subject's CN),
      or a mapping ``{filename: certificate or raw bytes}`` for exact file names and contents.

    Returns ``path``."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    document = dict(policies) if isinstance(policies, Mapping) else {"version": "1.0",
                                                                      "trustPolicies": [dict(p) for p in policies]}
    (root / filename).write_text(json.dumps(document, indent=2) + "\n")
    for store, content in dict(stores).items():
        kind, _, name = store.partition(":")
        directory = root / "truststore" / "x509" / kind / name
        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Mapping):
            for file_name, item in content.items():
                data, _ = _cert_file(item)
                (directory / file_name).write_bytes(data)
        else:
            for number, item in enumerate(content):
                data, stem = _cert_file(item)
                (directory / f"{number:02d}-{stem}.pem").write_bytes(data)
    return root
