"""X.509 certificates as the Notary Project signature specification requires them.

Sources (notaryproject/specifications, ``specs/``): signature-specification.md § Certificate Requirements
and § Signature Algorithm Requirements / § Algorithm Selection; where the spec leaves room, what
notation-core-go v1.3.0 does (``x509/codesigning_cert_validations.go``, ``x509/timestamp_cert_validations.go``,
``x509/helper.go``, ``internal/algorithm/algorithm.go``), cited beside each rule. No cryptography is written
here: signatures are checked by ``cryptography`` (``verify_directly_issued_by``), extensions read with it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Certificate = x509.Certificate


class ChainError(ValueError):
    """A certificate or chain breaks the spec's requirements; the message says which and why."""


@dataclass(frozen=True)
class Algorithm:
    """A signature algorithm of the spec's table: the only one a leaf key allows (§ Algorithm Selection)."""

    name: str  # PS256, ... ES512 (the JWS name)
    cose: int  # its COSE alg label
    hash: type[hashes.HashAlgorithm]
    rsa: bool

    @property
    def hash_bytes(self) -> int:
        return self.hash.digest_size


#: signature-specification.md § Algorithm Selection: RSA 2048/3072/4096 -> PS256/384/512, EC P-256/384/521 ->
#: ES256/384/512; signature-envelope-cose.md § Supported alg header values (-37, -38, -39, -7, -35, -36)
ALGORITHMS = {
    ("rsa", 2048): Algorithm("PS256", -37, hashes.SHA256, True),
    ("rsa", 3072): Algorithm("PS384", -38, hashes.SHA384, True),
    ("rsa", 4096): Algorithm("PS512", -39, hashes.SHA512, True),
    ("ec", 256): Algorithm("ES256", -7, hashes.SHA256, False),
    ("ec", 384): Algorithm("ES384", -35, hashes.SHA384, False),
    ("ec", 521): Algorithm("ES512", -36, hashes.SHA512, False),
}
BY_NAME = {a.name: a for a in ALGORITHMS.values()}
BY_COSE = {a.cose: a for a in ALGORITHMS.values()}


def algorithm_of(cert: Certificate) -> Algorithm:
    """The one signature algorithm the certificate's key allows, or ChainError for a key the spec does not.

    notation-core-go ``ExtractKeySpec``: the RSA size is the modulus length in bytes times 8 (a 2047-bit
    modulus counts as 2048), EC curves P-256/384/521 only.
    """
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        spec = ("rsa", ((key.key_size + 7) // 8) * 8)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        spec = ("ec", {"secp256r1": 256, "secp384r1": 384, "secp521r1": 521}.get(key.curve.name, 0))
    else:
        spec = (type(key).__name__, 0)
    if spec not in ALGORITHMS:
        raise ChainError(f"the key of {describe(cert)} is {spec[0].upper()} {spec[1] or ''} bits, which the "
                         "Notary Project does not allow (RSA 2048/3072/4096 or ECDSA P-256/P-384/P-521)".replace("  ", " "))
    return ALGORITHMS[spec]


def describe(cert: Certificate) -> str:
    """``"CN=..., O=..."`` for messages (RFC 4514, the most specific attribute first)."""
    return f'"{cert.subject.rfc4514_string()}"'


def load_certificates(data: bytes) -> list[Certificate]:
    """Every certificate of a PEM file (all its blocks) or of DER (one or several concatenated), as notation
    reads a trust store file (notation-core-go ``x509/cert.go`` ``parseCertificates``); none is an error."""
    if b"-----BEGIN" in data:
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise ChainError(f"not a PEM certificate file: {exc}") from None
    else:
        certs = []
        rest = data
        while rest:
            length = _der_length(rest)
            try:
                certs.append(x509.load_der_x509_certificate(rest[:length]))
            except ValueError as exc:
                raise ChainError(f"not a DER certificate: {exc}") from None
            rest = rest[length:]
    if not certs:
        raise ChainError("no certificate in it")
    return certs


def _der_length(data: bytes) -> int:
    """The length of the DER element at the start of ``data`` (a SEQUENCE: one certificate)."""
    if len(data) < 2 or data[0] != 0x30:
        raise ChainError("not a DER certificate (no SEQUENCE)")
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4 or len(data) < 2 + count:
        raise ChainError("not a DER certificate (a bad length)")
    return 2 + count + int.from_bytes(data[2:2 + count], "big")


# -- chains ---------------------------------------------------------------------------------------------

#: signature-specification.md § Other requirements 3: no chain certificate signed with SHA-1 (nor MD5)
_WEAK = (hashes.SHA1, hashes.MD5)


def _issued_by(cert: Certificate, issuer: Certificate) -> bool:
    """``issuer`` signed ``cert`` and is named as its issuer (byte-equal names, as notation-core-go compares
    ``RawIssuer``/``RawSubject``), checked by cryptography."""
    if cert.issuer.public_bytes() != issuer.subject.public_bytes():
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # noqa: BLE001 - InvalidSignature, ValueError, TypeError: not issued by it
        return False
    return True


def self_signed(cert: Certificate) -> bool:
    return _issued_by(cert, cert)


def _extension(cert: Certificate, kind):
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:  # a duplicate or malformed extension
        raise ChainError(f"{describe(cert)} has a malformed extension: {exc}") from None


def _check_links(chain: Sequence[Certificate], what: str) -> None:
    """notation-core-go ``ValidateCodeSigningCertChain`` steps 1-3: ordered leaf to root, each issued by the next,
    only the last self-signed, nothing signed with SHA-1."""
    if not chain:
        raise ChainError(f"the {what} certificate chain is empty")
    for cert in chain:
        if isinstance(cert.signature_hash_algorithm, _WEAK):
            raise ChainError(f"{describe(cert)} is signed with {cert.signature_hash_algorithm.name.upper()}, which "
                             "the spec forbids")
    if len(chain) == 1:
        if not self_signed(chain[0]):
            raise ChainError(f"the {what} chain is the single certificate {describe(chain[0])}, which is not "
                             "self-signed: the chain must end with its root")
        return
    for index, cert in enumerate(chain):
        last = index == len(chain) - 1
        if last:
            if not self_signed(cert):
                raise ChainError(f"the last certificate of the {what} chain, {describe(cert)}, is not a self-signed "
                                 "root: the chain must end with its root")
        else:
            if self_signed(cert):
                raise ChainError(f"{describe(cert)} of the {what} chain is self-signed but not its last certificate")
            if not _issued_by(cert, chain[index + 1]):
                raise ChainError(f"{describe(cert)} is not issued by the next certificate of the {what} chain, "
                                 f"{describe(chain[index + 1])}: the chain must go from the leaf to the root")


def _check_ca(cert: Certificate, below: int, *, critical_key_usage: bool) -> None:
    """A CA of the chain (§ Root and intermediate CA certificates): cA=true, its path length respected,
    keyUsage with keyCertSign (critical for code signing). basicConstraints' criticality is not required:
    notation-core-go does not check it (decision written in README)."""
    constraints = _extension(cert, x509.BasicConstraints)
    if constraints is None or not constraints.value.ca:
        raise ChainError(f"{describe(cert)} is used as a CA but its basic constraints do not say cA=true")
    limit = constraints.value.path_length
    if limit is not None and limit < below:
        raise ChainError(f"{describe(cert)} allows {limit} CA certificates below it (pathLenConstraint), the chain "
                         f"has {below}")
    usage = _extension(cert, x509.KeyUsage)
    if usage is None or (critical_key_usage and not usage.critical):
        raise ChainError(f"{describe(cert)} is a CA without a critical key usage extension")
    if not usage.value.key_cert_sign:
        raise ChainError(f"{describe(cert)} is a CA whose key usage lacks keyCertSign")


#: key usages a signing leaf must not have (§ Leaf Certificates: keyUsage)
_LEAF_FORBIDDEN_USAGES = ("key_encipherment", "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign")


def _check_leaf_usage(cert: Certificate, *, critical: bool) -> None:
    constraints = _extension(cert, x509.BasicConstraints)
    if constraints is not None and constraints.value.ca:
        raise ChainError(f"the signing certificate {describe(cert)} is a CA (basic constraints cA=true)")
    usage = _extension(cert, x509.KeyUsage)
    if usage is None or (critical and not usage.critical):
        raise ChainError(f"the signing certificate {describe(cert)} has no{' critical' if critical else ''} key "
                         "usage extension")
    value = usage.value
    if not value.digital_signature:
        raise ChainError(f"the key usage of {describe(cert)} lacks digitalSignature")
    forbidden = [name for name in _LEAF_FORBIDDEN_USAGES if getattr(value, name)]
    if value.key_agreement and (value.encipher_only or value.decipher_only):
        forbidden.append("encipherOnly/decipherOnly")
    if forbidden:
        raise ChainError(f"the key usage of {describe(cert)} has {', '.join(forbidden)}, which a signing "
                         "certificate must not have")


#: § Leaf Certificates, Extended Key Usage: a code signing leaf "MUST NOT contain anyExtendedKeyUsage, serverAuth,
#: clientAuth, emailProtection and timeStamping"; notation-core-go also refuses OCSPSigning (kept: stricter)
_FORBIDDEN_PURPOSES = {
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage", ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth", ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping", ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}


def validate_code_signing_chain(chain: Sequence[Certificate]) -> None:
    """The envelope's chain as signature-specification.md § Certificate Requirements (and notation-core-go's
    ``ValidateCodeSigningCertChain``) require; validity periods are not looked at here (§ trust policy: the
    authentic timestamp step does that)."""
    _check_links(chain, "signing")
    for index, cert in enumerate(chain):
        if index == 0:
            _check_leaf_usage(cert, critical=True)
            purposes = _extension(cert, x509.ExtendedKeyUsage)
            bad = [_FORBIDDEN_PURPOSES[oid] for oid in (purposes.value if purposes else []) if oid in _FORBIDDEN_PURPOSES]
            if bad:
                raise ChainError(f"the signing certificate {describe(cert)} may be used for {', '.join(bad)}, which "
                                 "a code signing certificate must not")
            algorithm_of(cert)
        else:
            _check_ca(cert, index - 1, critical_key_usage=True)


def validate_timestamping_chain(chain: Sequence[Certificate]) -> None:
    """A TSA chain (leaf first, as the path validation built it) as § Certificate Requirements and RFC 3161 § 2.3
    require: the leaf's extended key usage is timeStamping only, and critical (notation-core-go
    ``ValidateTimestampingCertChain``); key usage need only be present."""
    _check_links(chain, "timestamping")
    for index, cert in enumerate(chain):
        if index == 0:
            _check_leaf_usage(cert, critical=False)
            purposes = _extension(cert, x509.ExtendedKeyUsage)
            if purposes is None or not purposes.critical or list(purposes.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
                raise ChainError(f"the timestamping certificate {describe(cert)} must have a critical extended key "
                                 "usage of timeStamping only")
            algorithm_of(cert)
        else:
            _check_ca(cert, index - 1, critical_key_usage=False)


def valid_at(cert: Certificate, when: dt.datetime) -> bool:
    """Inclusive bounds, as Go's x509 and notation-go compare them."""
    return cert.not_valid_before_utc <= when <= cert.not_valid_after_utc


def revocation_pointers(cert: Certificate) -> list[str]:
    """Where the certificate says its revocation status is published (OCSP responders, CRL distribution points)."""
    found: list[str] = []
    access = _extension(cert, x509.AuthorityInformationAccess)
    for description in (access.value if access else []):
        if description.access_method == x509.AuthorityInformationAccessOID.OCSP:
            found.append(f"OCSP {description.access_location.value}")
    points = _extension(cert, x509.CRLDistributionPoints)
    for point in (points.value if points else []):
        found += [f"CRL {name.value}" for name in (point.full_name or []) if isinstance(name, x509.UniformResourceIdentifier)]
    return found




# -- the subject as a distinguished name (trust-store-trust-policy.md § Trusted Identities Constraints) ----------

#: notation-go matches trusted identities against Go's ``pkix.Name.String()`` of the leaf subject, which knows these
#: attributes only (and prints any other as ``OID=#hex``, which its DN parser refuses)
_KNOWN = {NameOID.COUNTRY_NAME: "C", NameOID.STATE_OR_PROVINCE_NAME: "ST", NameOID.LOCALITY_NAME: "L",
          NameOID.STREET_ADDRESS: "STREET", NameOID.POSTAL_CODE: "POSTALCODE", NameOID.ORGANIZATION_NAME: "O",
          NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.COMMON_NAME: "CN", NameOID.SERIAL_NUMBER: "SERIALNUMBER"}
_LAST_WINS = {"CN", "SERIALNUMBER"}


def subject_attributes(cert: Certificate) -> dict[str, str]:
    """The leaf subject as trusted identities are matched against it (notation-go, see §7.11 of our notes):
    only C, ST, L, STREET, POSTALCODE, O, OU, CN, SERIALNUMBER; another attribute, or two values of one of the
    first seven, makes the subject unmatchable by anything but ``*`` (ChainError says why)."""
    found: dict[str, str] = {}
    for attribute in cert.subject:
        key = _KNOWN.get(attribute.oid)
        if key is None:
            raise ChainError(f"its subject has the attribute {attribute.oid.dotted_string} "
                             f"({attribute.oid._name}), which notation cannot match against trusted identities")
        if key in found and key not in _LAST_WINS:
            raise ChainError(f"its subject has {key} twice, which notation cannot match against trusted identities")
        found[key] = attribute.value if isinstance(attribute.value, str) else attribute.value.decode()
    return found
