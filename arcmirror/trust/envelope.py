"""A Notary Project signature envelope, read and checked for integrity, whatever its format (COSE or JWS).

signature-specification.md § Signature Envelope, § Payload, § Signed Attributes; the formats are
:mod:`.cose` (signature-envelope-cose.md) and :mod:`.jws` (signature-envelope-jws.md). "Integrity" is what
trust-store-trust-policy.md § Signature Verification details calls it: the envelope's signature verifies with
the key of its own leaf certificate, the chain is shaped as § Certificate Requirements says, the signed
attributes are those the spec defines. It is always enforced. Whether the signer is *trusted* is
:mod:`.notary`'s question, against the site's trust store: nothing here is trusted for what it claims.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ..oci.mediatypes import COSE_ENVELOPE, JWS_ENVELOPE, NOTARY_PAYLOAD, NOTARY_SIGNATURE
from .certs import Algorithm, Certificate, ChainError, algorithm_of, describe, validate_code_signing_chain

#: signature-specification.md § Payload: the only payload content type; the envelope formats; the artifact type
PAYLOAD_TYPE, COSE_TYPE, JWS_TYPE, SIGNATURE_ARTIFACT = NOTARY_PAYLOAD, COSE_ENVELOPE, JWS_ENVELOPE, NOTARY_SIGNATURE
SCHEME_X509 = "notary.x509"
SCHEME_AUTHORITY = "notary.x509.signingAuthority"

#: the headers this verifier understands (signature-specification.md § Signed Attributes); a header the envelope
#: marks critical and that is not one of these fails verification: "unknown critical attributes MUST cause
#: signature verification to fail" (§ Extended attributes) -- stricter than notation-go, which only looks at them
#: when a plugin is involved (decision in README)
SIGNING_SCHEME = "io.cncf.notary.signingScheme"
SIGNING_TIME = "io.cncf.notary.signingTime"
AUTHENTIC_SIGNING_TIME = "io.cncf.notary.authenticSigningTime"
EXPIRY = "io.cncf.notary.expiry"
TIMESTAMP = "io.cncf.notary.timestampSignature"
SIGNING_AGENT = "io.cncf.notary.signingAgent"
PLUGIN_HEADERS = ("io.cncf.notary.verificationPlugin", "io.cncf.notary.verificationPluginMinVersion")

#: signature-specification.md § Signature Envelope: envelopes are small; notation-go caps the blob at 32 MiB
MAX_ENVELOPE_BYTES = 32 * 1024 * 1024


class IntegrityError(ValueError):
    """The envelope fails integrity: malformed, not what the spec allows, or its signature does not verify."""


@dataclass
class Envelope:
    """What an envelope says, once its signature verified against its own leaf (not yet trusted)."""

    format: str  # "COSE" or "JWS"
    algorithm: Algorithm
    scheme: str
    payload: bytes
    chain: list[Certificate]
    signature: bytes  # the primitive signature (a timestamp covers these bytes)
    content_type: str = ""
    signing_time: dt.datetime | None = None  # notary.x509: claimed by the signer, not authentic
    authentic_signing_time: dt.datetime | None = None  # notary.x509.signingAuthority
    expiry: dt.datetime | None = None
    timestamp: bytes | None = None  # an RFC 3161 TimeStampToken over ``signature``
    critical: list = field(default_factory=list)
    extended: dict = field(default_factory=dict)  # protected headers the spec does not define
    signing_agent: str | None = None

    @property
    def leaf(self) -> Certificate:
        return self.chain[0]

    @property
    def signer(self) -> str:
        return self.leaf.subject.rfc4514_string()

    def target(self) -> dict:
        """The payload's ``targetArtifact`` (signature-specification.md § Payload), read only now that the signature
        verified ("the payload is only parsed and processed once the signature has been verified")."""
        try:
            body = json.loads(self.payload, object_pairs_hook=_no_duplicates)
        except ValueError as exc:
            raise IntegrityError(f"the payload is not JSON: {exc}") from None
        target = body.get("targetArtifact") if isinstance(body, dict) else None
        if not isinstance(target, dict) or not isinstance(target.get("mediaType"), str) or \
                not isinstance(target.get("digest"), str) or type(target.get("size")) is not int:
            raise IntegrityError("the payload has no targetArtifact with mediaType, digest and size")
        return target


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError(f"duplicate member {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


def verify_primitive(envelope: Envelope, signed: bytes, *, pss_salt_equals_hash: bool) -> None:
    """The envelope's signature over ``signed`` verifies with its leaf's key, by the algorithm the leaf's key
    allows and the header names (both must agree: § Algorithm Selection). ECDSA signatures are raw r||s of the
    curve's width (RFC 8152 § 8.1, RFC 7518 § 3.4)."""
    if not envelope.chain:
        raise IntegrityError("the envelope carries no certificate chain")
    try:
        allowed = algorithm_of(envelope.leaf)
    except ChainError as exc:
        raise IntegrityError(str(exc)) from None
    if allowed is not envelope.algorithm:
        raise IntegrityError(f"the envelope says {envelope.algorithm.name}, but the key of its signing certificate "
                             f"allows only {allowed.name}")
    key = envelope.leaf.public_key()
    algorithm = envelope.algorithm
    try:
        if algorithm.rsa:
            assert isinstance(key, rsa.RSAPublicKey)
            salt = algorithm.hash_bytes if pss_salt_equals_hash else padding.PSS.AUTO
            key.verify(envelope.signature, signed, padding.PSS(padding.MGF1(algorithm.hash()), salt), algorithm.hash())
        else:
            assert isinstance(key, ec.EllipticCurvePublicKey)
            width = (key.curve.key_size + 7) // 8
            if len(envelope.signature) != 2 * width:
                raise IntegrityError(f"the {algorithm.name} signature is {len(envelope.signature)} bytes, not {2 * width}")
            r = int.from_bytes(envelope.signature[:width], "big")
            s = int.from_bytes(envelope.signature[width:], "big")
            key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(algorithm.hash()))
    except InvalidSignature:
        raise IntegrityError("the envelope's signature does not verify: the signed content was altered after "
                             "signing, or it was signed by another key than its certificate's") from None


def check_content(envelope: Envelope) -> None:
    """The rest of integrity (notation-core-go ``validateEnvelopeContent``, signature-specification.md § Signed
    Attributes, § Certificate Requirements): the signing time the scheme needs, an expiry after it, the chain's
    shape, the payload content type, no critical header this verifier does not understand."""
    if not envelope.payload:
        raise IntegrityError("the envelope has an empty payload")
    if envelope.scheme == SCHEME_X509 and envelope.signing_time is None:
        raise IntegrityError(f"the envelope of scheme {SCHEME_X509} has no {SIGNING_TIME}")
    if envelope.scheme == SCHEME_AUTHORITY and envelope.authentic_signing_time is None:
        raise IntegrityError(f"the envelope of scheme {SCHEME_AUTHORITY} has no {AUTHENTIC_SIGNING_TIME}")
    signed_at = envelope.signing_time or envelope.authentic_signing_time
    if envelope.expiry is not None and signed_at is not None and envelope.expiry <= signed_at:
        raise IntegrityError("the envelope's expiry is not after its signing time")
    if envelope.content_type != PAYLOAD_TYPE:
        raise IntegrityError(f"the payload content type is {envelope.content_type!r}, not {PAYLOAD_TYPE}")
    plugins = [h for h in PLUGIN_HEADERS if h in envelope.extended]
    if plugins:
        raise IntegrityError(f"the signature requires the verification plugin named in {plugins[0]} "
                             f"({envelope.extended[plugins[0]]!r}); arcmirror runs no plugins")
    unknown = [name for name in envelope.critical if name in envelope.extended]
    if unknown:
        raise IntegrityError(f"the envelope marks the header {unknown[0]!r} critical, which this verifier does not "
                             "understand (the spec: unknown critical attributes fail verification)")
    try:
        validate_code_signing_chain(envelope.chain)
    except ChainError as exc:
        raise IntegrityError(f"the envelope's certificate chain is invalid: {exc}") from None


def check_critical(critical: list, scheme: str, has_expiry: bool, present: set) -> None:
    """The ``crit`` list both formats share (signature-envelope-cose.md / -jws.md § Protected Headers): it names
    the signing scheme, the authentic signing time under signingAuthority, the expiry when there is one, and only
    headers that are present."""
    if not critical:
        raise IntegrityError("the envelope has no critical header list (crit)")
    needed = [SIGNING_SCHEME] + ([AUTHENTIC_SIGNING_TIME] if scheme == SCHEME_AUTHORITY else []) + \
        ([EXPIRY] if has_expiry else [])
    missing = [name for name in needed if name not in critical]
    if missing:
        raise IntegrityError(f"the envelope does not mark {missing[0]} critical, as the spec requires")
    absent = [name for name in critical if name not in present]
    if absent:
        raise IntegrityError(f"the envelope marks {absent[0]!r} critical but does not carry it")


def signed_attributes(protected: dict, parse_time, kind: str) -> tuple[str, object, object, object]:
    """The scheme and the three times of a protected header (each format parses its own time encoding), checked
    against each other: ``(scheme, signing time, authentic signing time, expiry)``."""
    scheme = protected.get(SIGNING_SCHEME)
    if not isinstance(scheme, str):
        raise IntegrityError(f"the {kind} envelope has no {SIGNING_SCHEME}")
    times = [parse_time(protected[name], name) if name in protected else None
             for name in (SIGNING_TIME, AUTHENTIC_SIGNING_TIME, EXPIRY)]
    check_times(scheme, times[0], times[1])
    return scheme, times[0], times[1], times[2]


def check_times(scheme: str, signing_time, authentic_signing_time) -> None:
    """Each time header belongs to one scheme (signature-specification.md § Signed Attributes)."""
    if scheme not in (SCHEME_X509, SCHEME_AUTHORITY):
        raise IntegrityError(f"the signing scheme {scheme!r} is not one the spec defines")
    if scheme == SCHEME_X509 and authentic_signing_time is not None:
        raise IntegrityError(f"{AUTHENTIC_SIGNING_TIME} is not allowed with the scheme {SCHEME_X509}")
    if scheme == SCHEME_AUTHORITY and signing_time is not None:
        raise IntegrityError(f"{SIGNING_TIME} is not allowed with the scheme {SCHEME_AUTHORITY}")


def signer_of(chain: list[Certificate]) -> str:
    return describe(chain[0]) if chain else "(no certificate)"
