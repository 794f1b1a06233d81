"""COSE_Sign1 Notary envelopes (``application/cose``), as specs/signature-envelope-cose.md defines them.

The envelope is ``COSE_Sign1_Tagged`` (RFC 9052 § 4.2: CBOR tag 18 over ``[protected bstr, unprotected map,
payload bstr, signature bstr]``). What is verified is RFC 9052 § 4.4's Sig_structure ``["Signature1",
protected (the bytes as received), external_aad = h'', payload]``. CBOR is decoded by cbor2's pure decoder,
made strict here as go-cose (notation-core-go's COSE library) is: no indefinite lengths, no duplicate map
keys, tags kept as tags (a time header must be tag 1), the outer item a tag 18 over a 4-element array.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import cbor2
from cbor2._decoder import CBORDecoder  # the pure decoder (the C one cannot be made strict)
from cryptography import x509

from .certs import BY_COSE
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
    check_critical,
    signed_attributes,
    verify_primitive,
)

#: RFC 9052 § 3.1 common header labels
ALG, CRIT, CONTENT_TYPE, X5CHAIN = 1, 2, 3, 33
_KNOWN = {ALG, CRIT, CONTENT_TYPE, SIGNING_SCHEME, SIGNING_TIME, AUTHENTIC_SIGNING_TIME, EXPIRY}


class _StrictDecoder(CBORDecoder):
    """cbor2's pure decoder without indefinite lengths, duplicate map keys or semantic tags (every tag is kept as a
    CBORTag, so a time header's tag number can be checked). ``decode`` dispatches itself: cbor2's table of major
    types names the base class's methods (cbor2 is pinned below 6 in pyproject.toml for this)."""

    def decode(self, immutable: bool = False, unshared: bool = False) -> Any:
        if self._decode_depth > 64:
            raise cbor2.CBORDecodeValueError("nested deeper than 64 levels")
        self._decode_depth += 1
        try:
            initial = self.read(1)[0]
            major, subtype = initial >> 5, initial & 31
            if subtype == 31:
                raise cbor2.CBORDecodeValueError("indefinite-length items are not allowed")
            if major == 5:
                return self._map(subtype)
            if major == 6:
                return cbor2.CBORTag(self._decode_length(subtype), self.decode())
            if major == 4:
                return [self.decode() for _ in range(self._decode_length(subtype))]
            return _BASE[major](self, subtype)
        finally:
            self._decode_depth -= 1

    def _map(self, subtype: int) -> dict:
        found: dict = {}
        for _ in range(self._decode_length(subtype)):
            key = self.decode()
            if not isinstance(key, (int, str)):
                raise cbor2.CBORDecodeValueError("a map key is not an int or a string")
            if key in found:
                raise cbor2.CBORDecodeValueError(f"the map has the key {key!r} twice")
            found[key] = self.decode()
        return found


_BASE = {0: CBORDecoder.decode_uint, 1: CBORDecoder.decode_negint, 2: CBORDecoder.decode_bytestring,
         3: CBORDecoder.decode_string, 7: CBORDecoder.decode_special}


def _loads(data: bytes) -> Any:
    stream = io.BytesIO(data)
    value = _StrictDecoder(stream).decode()
    if stream.read(1):
        raise cbor2.CBORDecodeValueError("data after the CBOR item")
    return value


def _time(value: Any, name: str) -> dt.datetime:
    """A time header: tag 1 over an epoch number (RFC 8949 § 3.4.2), as notation-core-go requires (``parseTime``)."""
    if not isinstance(value, cbor2.CBORTag) or value.tag != 1 or type(value.value) not in (int, float):
        raise IntegrityError(f"the header {name} is not an epoch date/time (CBOR tag 1)")
    try:
        return dt.datetime.fromtimestamp(value.value, dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise IntegrityError(f"the header {name} is out of range") from None


def parse(data: bytes) -> tuple[Envelope, bytes]:
    """The envelope and the bytes its signature covers; IntegrityError for anything the spec does not allow."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise IntegrityError("the COSE envelope is larger than 32 MiB")
    if data[:2] != b"\xd2\x84":  # go-cose: "#6.18" then "array of length 4"
        raise IntegrityError("not a COSE_Sign1_Tagged envelope (CBOR tag 18 over an array of 4)")
    try:
        outer = _loads(data)
        protected_bytes, unprotected, payload, signature = outer.value
        if not all(isinstance(x, bytes) for x in (protected_bytes, payload, signature)) or \
                not isinstance(unprotected, dict):
            raise IntegrityError("the COSE_Sign1 array is not [bstr, map, bstr, bstr]")
        protected = _loads(protected_bytes) if protected_bytes else {}
    except IntegrityError:
        raise
    except (cbor2.CBORError, ValueError, TypeError, EOFError, RecursionError) as exc:
        raise IntegrityError(f"the COSE envelope is not valid CBOR: {exc}") from None
    if not isinstance(protected, dict):
        raise IntegrityError("the COSE protected header is not a map")
    if not signature:
        raise IntegrityError("the COSE envelope has an empty signature")
    if CRIT in unprotected or set(unprotected) & _KNOWN:
        raise IntegrityError("the COSE unprotected header carries a header that must be protected")

    algorithm = BY_COSE.get(protected.get(ALG)) if type(protected.get(ALG)) is int else None
    if algorithm is None:
        raise IntegrityError(f"the COSE alg {protected.get(ALG)!r} is not one the spec allows "
                             "(PS256/384/512, ES256/384/512)")
    scheme, signing_time, authentic, expiry = signed_attributes(protected, _time, "COSE")
    critical = protected.get(CRIT)
    if not isinstance(critical, list) or not all(isinstance(c, (int, str)) for c in critical):
        raise IntegrityError("the COSE crit header is not a list of labels")
    if any(isinstance(c, int) and 0 <= c <= 8 for c in critical):  # signature-envelope-cose.md § crit
        raise IntegrityError("the COSE crit header lists a label from 0 to 8, which the spec forbids")
    check_critical(critical, scheme, expiry is not None, set(protected))
    content_type = protected.get(CONTENT_TYPE)
    if not isinstance(content_type, str):
        raise IntegrityError("the COSE envelope has no content type (label 3) as a text string")

    chain_items = unprotected.get(X5CHAIN)  # notation-core-go: unprotected, and an array (decision in README)
    if not isinstance(chain_items, list) or not chain_items or not all(isinstance(c, bytes) for c in chain_items):
        raise IntegrityError("the COSE envelope carries no certificate chain (x5chain, label 33, an array)")
    try:
        chain = [x509.load_der_x509_certificate(item) for item in chain_items]
    except ValueError as exc:
        raise IntegrityError(f"a certificate of the COSE x5chain does not parse: {exc}") from None
    timestamp = unprotected.get(TIMESTAMP)
    agent = unprotected.get(SIGNING_AGENT)
    envelope = Envelope(
        "COSE", algorithm, scheme, payload, chain, signature, content_type=content_type,
        signing_time=signing_time, authentic_signing_time=authentic, expiry=expiry,
        timestamp=timestamp if isinstance(timestamp, bytes) and timestamp else None,
        critical=list(critical), extended={k: v for k, v in protected.items() if k not in _KNOWN},
        signing_agent=agent if isinstance(agent, str) else None)
    # RFC 9052 § 4.4: the protected header as received, never re-encoded
    signed = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    return envelope, signed


def verify(data: bytes) -> Envelope:
    envelope, signed = parse(data)
    verify_primitive(envelope, signed, pss_salt_equals_hash=True)  # go-cose: PSSSaltLengthEqualsHash (RFC 8230)
    return envelope
