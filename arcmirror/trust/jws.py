"""JWS Notary envelopes (``application/jose+json``), as specs/signature-envelope-jws.md defines them.

Flattened JWS JSON serialization only (RFC 7515 § 7.2.2): ``{"protected", "header", "payload", "signature"}``;
``protected``, ``payload`` and ``signature`` are base64url without padding, ``x5c`` and the timestamp are
standard base64 (RFC 7515 § 4.1.6, notation-core-go ``jws/types.go``). The signing input is
``ASCII(protected "." payload)`` as received (RFC 7515 § 5.2). Written on ``cryptography`` directly rather than
jwcrypto or joserfc: neither knows the Notary critical headers nor binds the algorithm to the certificate's
key, and both would still need all of this around them.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re

from cryptography import x509

from .certs import BY_NAME
from .envelope import (
    AUTHENTIC_SIGNING_TIME,
    EXPIRY,
    MAX_ENVELOPE_BYTES,
    SIGNING_AGENT,
    SIGNING_SCHEME,
    SIGNING_TIME,
    TIMESTAMP,
    Envelope,
    IntegrityError,
    _no_duplicates,
    check_critical,
    signed_attributes,
    verify_primitive,
)

_KNOWN = {"alg", "cty", "crit", SIGNING_SCHEME, SIGNING_TIME, AUTHENTIC_SIGNING_TIME, EXPIRY}
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def _b64url(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not _B64URL.match(value) or len(value) % 4 == 1:
        raise IntegrityError(f"the JWS {what} is not base64url without padding")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _b64(value: object, what: str) -> bytes:
    try:
        if not isinstance(value, str):
            raise ValueError
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise IntegrityError(f"the JWS {what} is not base64") from None


def _time(value: object, name: str) -> dt.datetime:
    """An RFC 3339 time (signature-envelope-jws.md § Protected Headers)."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
        raise IntegrityError(f"the header {name} is not an RFC 3339 time")
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    if "." in text:  # Python 3.9's fromisoformat takes 3 or 6 fraction digits only
        head, rest = text.split(".", 1)
        fraction, offset = re.match(r"(\d+)(.*)", rest).groups()
        text = f"{head}.{(fraction + '000000')[:6]}{offset}"
    try:
        return dt.datetime.fromisoformat(text).astimezone(dt.timezone.utc)
    except ValueError:
        raise IntegrityError(f"the header {name} is not a valid time") from None


def parse(data: bytes) -> tuple[Envelope, bytes]:
    if len(data) > MAX_ENVELOPE_BYTES:
        raise IntegrityError("the JWS envelope is larger than 32 MiB")
    try:
        body = json.loads(data, object_pairs_hook=_no_duplicates)
    except ValueError as exc:
        raise IntegrityError(f"the JWS envelope is not JSON: {exc}") from None
    if not isinstance(body, dict) or "signatures" in body:
        raise IntegrityError("the JWS envelope is not in the flattened JSON serialization")
    protected_text, payload_text = body.get("protected"), body.get("payload")
    protected_bytes = _b64url(protected_text, "protected header")
    payload = _b64url(payload_text, "payload")
    signature = _b64url(body.get("signature"), "signature")
    if not signature:
        raise IntegrityError("the JWS envelope has an empty signature")
    try:
        protected = json.loads(protected_bytes, object_pairs_hook=_no_duplicates)
    except ValueError as exc:
        raise IntegrityError(f"the JWS protected header is not JSON: {exc}") from None
    header = body.get("header") or {}
    if not isinstance(protected, dict) or not isinstance(header, dict):
        raise IntegrityError("the JWS headers are not JSON objects")
    if set(header) & _KNOWN:
        raise IntegrityError("the JWS unprotected header carries a header that must be protected")

    algorithm = BY_NAME.get(protected.get("alg")) if isinstance(protected.get("alg"), str) else None
    if algorithm is None:
        raise IntegrityError(f"the JWS alg {protected.get('alg')!r} is not one the spec allows "
                             "(PS256/384/512, ES256/384/512)")
    scheme, signing_time, authentic, expiry = signed_attributes(protected, _time, "JWS")
    critical = protected.get("crit")
    if not isinstance(critical, list) or not all(isinstance(c, str) for c in critical):
        raise IntegrityError("the JWS crit header is not a list of names")
    registered = [c for c in critical if c in ("alg", "cty", "crit", SIGNING_TIME)]
    if registered:  # signature-envelope-jws.md § crit: "MUST only contain headers apart from registered headers"
        raise IntegrityError(f"the JWS crit header lists {registered[0]!r}, which the spec does not allow there")
    check_critical(critical, scheme, expiry is not None, set(protected))
    content_type = protected.get("cty")

    chain_items = header.get("x5c")
    if not isinstance(chain_items, list) or not chain_items:
        raise IntegrityError("the JWS envelope carries no certificate chain (x5c)")
    try:
        chain = [x509.load_der_x509_certificate(_b64(item, "x5c certificate")) for item in chain_items]
    except ValueError as exc:
        raise IntegrityError(f"a certificate of the JWS x5c does not parse: {exc}") from None
    timestamp = _b64(header[TIMESTAMP], TIMESTAMP) if header.get(TIMESTAMP) else None
    agent = header.get(SIGNING_AGENT)
    envelope = Envelope(
        "JWS", algorithm, scheme, payload, chain, signature,
        content_type=content_type if isinstance(content_type, str) else "",
        signing_time=signing_time, authentic_signing_time=authentic, expiry=expiry, timestamp=timestamp,
        critical=list(critical), extended={k: v for k, v in protected.items() if k not in _KNOWN},
        signing_agent=agent if isinstance(agent, str) else None)
    try:  # golang-jwt decodes the payload as a claims object: a JWS payload that is not one fails integrity
        if not isinstance(json.loads(payload), dict):
            raise ValueError
    except ValueError:
        raise IntegrityError("the JWS payload is not a JSON object") from None
    return envelope, f"{protected_text}.{payload_text}".encode("ascii")


def verify(data: bytes) -> Envelope:
    envelope, signed = parse(data)
    verify_primitive(envelope, signed, pss_salt_equals_hash=False)  # golang-jwt verifies PSS with an auto salt
    return envelope
