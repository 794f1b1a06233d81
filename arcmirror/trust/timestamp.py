"""RFC 3161 timestamp countersignatures of Notary envelopes, verified offline.

trust-store-trust-policy.md § Timestamp Countersignature Verification details: the token is an RFC 3161
TimeStampToken (a CMS SignedData over a TSTInfo, RFC 5652) whose message imprint is the hash of the envelope's
primitive signature (signing-and-verification-workflow.md § Signing Steps 1.iii.b); the TSA certificate chain
must lead to a root of the policy's ``tsa`` trust store. What notation-go's tspclient-go v1.0.0 checks, and so do
we (``token.go``, ``internal/cms/signed.go``): SignedData version 3, TSTInfo version 1, an imprint of SHA-256/384/512,
the signed attributes (content type id-ct-TSTInfo, message digest of the TSTInfo), the ESS signingCertificateV2
attribute naming the signer's certificate (RFC 5035; required), the signer's signature over the signed attributes,
and the chain built with the ``tsa`` roots only -- certificates the token carries are intermediates at most, never
trusted for being there -- valid at the token's own time (genTime). ASN.1 is read with asn1crypto; every hash,
signature and path check is cryptography's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Sequence

from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from .certs import Certificate, ChainError, describe, validate_timestamping_chain

HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
#: RFC 3628's baseline time-stamp policy: without an accuracy, tspclient-go takes 1 s for it (``Validate``)
BASELINE_POLICY = "0.4.0.2023.1.1"


class TimestampError(ValueError):
    """The token does not prove when the signature existed; the message says why."""


@dataclass(frozen=True)
class Timestamp:
    time: dt.datetime  # genTime
    accuracy: dt.timedelta
    tsa: Certificate
    chain: list[Certificate]

    @property
    def earliest(self) -> dt.datetime:
        return self.time - self.accuracy

    @property
    def latest(self) -> dt.datetime:
        return self.time + self.accuracy


def _ca_constraints(policy, cert, constraints) -> None:
    if not constraints.ca:
        raise ValueError("a CA certificate without cA=true")


def _ca_usage(policy, cert, usage) -> None:
    if not usage.key_cert_sign:
        raise ValueError("a CA certificate whose key usage lacks keyCertSign")


def _tsa_purpose(policy, cert, purposes) -> None:
    if list(purposes) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise ValueError("the TSA certificate's extended key usage is not timeStamping only")


_ANY = verification.Criticality.AGNOSTIC
#: cryptography's path building with the spec's rules instead of the web PKI's (no SAN needed, EKU timeStamping)
_CA_POLICY = (verification.ExtensionPolicy.permit_all()
              .require_present(x509.BasicConstraints, _ANY, _ca_constraints)
              .require_present(x509.KeyUsage, _ANY, _ca_usage))
_TSA_POLICY = (verification.ExtensionPolicy.permit_all()
               .require_present(x509.ExtendedKeyUsage, verification.Criticality.CRITICAL, _tsa_purpose))


def _certificates(signed_data) -> list[Certificate]:
    found = []
    for choice in signed_data["certificates"] or []:
        if choice.name == "certificate":
            found.append(x509.load_der_x509_certificate(choice.chosen.dump()))
    return found


def _verify_signer(signer: Certificate, info, signed: bytes) -> None:
    """The SignerInfo's signature over the DER of its signed attributes, by cryptography."""
    key = signer.public_key()
    digest = info["digest_algorithm"]["algorithm"].native
    algorithm = info["signature_algorithm"]
    kind = algorithm.signature_algo
    if digest not in HASHES:
        raise TimestampError(f"the token is signed with the digest {digest}, not SHA-256/384/512")
    hash_algorithm = HASHES[digest]()
    try:
        if kind == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey):
            key.verify(info["signature"].native, signed, padding.PKCS1v15(), hash_algorithm)
        elif kind == "rsassa_pss" and isinstance(key, rsa.RSAPublicKey):
            params = algorithm["parameters"]
            pss_hash = params["hash_algorithm"]["algorithm"].native
            if pss_hash not in HASHES:
                raise TimestampError(f"the token's PSS signature uses {pss_hash}")
            key.verify(info["signature"].native, signed,
                       padding.PSS(padding.MGF1(HASHES[pss_hash]()), params["salt_length"].native), HASHES[pss_hash]())
        elif kind == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(info["signature"].native, signed, ec.ECDSA(hash_algorithm))
        else:
            raise TimestampError(f"the token's signature algorithm {kind} does not fit the TSA certificate's key")
    except InvalidSignature:
        raise TimestampError("the TSA's signature over the token does not verify") from None


def verify(token: bytes, signature: bytes, roots: Sequence[Certificate]) -> Timestamp:
    """Verify ``token`` as a timestamp of ``signature`` (the envelope's primitive signature bytes) by a TSA whose
    chain ends at one of ``roots`` (the policy's ``tsa`` stores). Raises TimestampError saying what failed."""
    if not roots:
        raise TimestampError("the trust policy names no tsa trust store certificate to verify the timestamp with")
    try:
        content = cms.ContentInfo.load(token, strict=True)
        if content["content_type"].native != "signed_data":
            raise TimestampError("the timestamp is not a CMS SignedData")
        signed_data = content["content"]
        if signed_data["version"].native != "v3":
            raise TimestampError("the timestamp's SignedData is not version 3")
        encapsulated = signed_data["encap_content_info"]
        if encapsulated["content_type"].native != "tst_info":
            raise TimestampError("the timestamp does not carry a TSTInfo")
        tst_der = encapsulated["content"].contents
        info = tsp.TSTInfo.load(tst_der, strict=True)
        if info["version"].native != "v1":
            raise TimestampError("the TSTInfo is not version 1")
        carried = _certificates(signed_data)
        signer_infos = list(signed_data["signer_infos"])
        imprint = info["message_imprint"]
        imprint_hash = imprint["hash_algorithm"]["algorithm"].native
        gen_time = info["gen_time"].native
        accuracy = info["accuracy"]
        policy = info["policy"].dotted
    except TimestampError:
        raise
    except (ValueError, TypeError, KeyError) as exc:  # asn1crypto's and cryptography's parse errors
        raise TimestampError(f"the timestamp token is malformed: {exc}") from None

    if imprint_hash not in HASHES:
        raise TimestampError(f"the timestamp's message imprint uses {imprint_hash}, not SHA-256/384/512")
    if imprint["hashed_message"].native != hashlib.new(imprint_hash, signature).digest():
        raise TimestampError("the timestamp is over other bytes than this envelope's signature")
    if not signer_infos:
        raise TimestampError("the timestamp has no signer")
    failures = []
    for signer_info in signer_infos:  # tspclient-go: the first signer that verifies
        try:
            tsa, chain = _verify_signer_info(signer_info, tst_der, carried, roots, gen_time)
        except TimestampError as exc:
            failures.append(str(exc))
            continue
        seconds = 0.0
        if accuracy.native:
            seconds = (accuracy["seconds"].native or 0) + (accuracy["millis"].native or 0) / 1e3 + \
                (accuracy["micros"].native or 0) / 1e6
        if seconds == 0 and policy == BASELINE_POLICY:
            seconds = 1.0
        return Timestamp(gen_time, dt.timedelta(seconds=seconds), tsa, chain)
    raise TimestampError(failures[0])


def _verify_signer_info(info, tst_der: bytes, carried: list[Certificate], roots: Sequence[Certificate],
                        gen_time: dt.datetime) -> tuple[Certificate, list[Certificate]]:
    sid = info["sid"]
    if sid.name != "issuer_and_serial_number":  # tspclient-go: SignerInfo version 1 only
        raise TimestampError("the timestamp's signer is not named by issuer and serial number")
    issuer, serial = sid.chosen["issuer"].dump(), sid.chosen["serial_number"].native
    signer = next((c for c in carried if c.serial_number == serial and c.issuer.public_bytes() == issuer), None)
    if signer is None:
        raise TimestampError("the timestamp does not carry its TSA's certificate")
    attributes = info["signed_attrs"]
    if not attributes:
        raise TimestampError("the timestamp's signer has no signed attributes")
    values = {a["type"].native: a["values"] for a in attributes}
    digest = info["digest_algorithm"]["algorithm"].native
    if digest not in HASHES:
        raise TimestampError(f"the timestamp is digested with {digest}, not SHA-256/384/512")
    if "content_type" not in values or values["content_type"][0].native != "tst_info":
        raise TimestampError("the timestamp's signed content type is not id-ct-TSTInfo")
    if "message_digest" not in values or values["message_digest"][0].native != hashlib.new(digest, tst_der).digest():
        raise TimestampError("the timestamp's signed message digest does not match its TSTInfo")
    if "signing_certificate_v2" not in values:
        raise TimestampError("the timestamp lacks the signingCertificateV2 attribute (RFC 5035) naming its TSA")
    ess = values["signing_certificate_v2"][0]["certs"][0]
    ess_hash = ess["hash_algorithm"]["algorithm"].native
    if ess_hash not in HASHES or ess["cert_hash"].native != hashlib.new(ess_hash, signer.public_bytes(Encoding.DER)).digest():
        raise TimestampError("the timestamp's signingCertificateV2 does not name the certificate that signed it")
    _verify_signer(signer, info, attributes.untag().dump())
    try:
        built = (verification.PolicyBuilder().store(verification.Store(list(roots))).time(gen_time)
                 .extension_policies(ca_policy=_CA_POLICY, ee_policy=_TSA_POLICY)
                 .build_client_verifier().verify(signer, [c for c in carried if c is not signer]))
    except verification.VerificationError as exc:
        raise TimestampError(f"the TSA certificate {describe(signer)} does not lead to a root of the tsa trust "
                             f"store at the timestamp's time: {exc}") from None
    chain = list(built.chain)
    try:
        validate_timestamping_chain(chain)
    except ChainError as exc:
        raise TimestampError(f"the TSA certificate chain is invalid: {exc}") from None
    return signer, chain
