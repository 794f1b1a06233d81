"""A small X.509 PKI for signature tests, made with ``cryptography`` only.

Certificates follow the Notary Project's "Certificate Requirements" (notaryproject/specifications,
``specs/signature-specification.md``) unless a knob says otherwise:

* root and intermediate CAs (:class:`CA`): basicConstraints **critical** cA=true (pathLen optional),
  keyUsage **critical** keyCertSign|cRLSign;
* code-signing leaves (:meth:`CA.leaf`): keyUsage **critical** digitalSignature, EKU codeSigning,
  basicConstraints cA=false, RSA-3072 by default (RSA 2048/3072/4096, EC P-256/384/521 are legal);
* time-stamping leaves (:meth:`CA.tsa`): keyUsage digitalSignature, EKU timeStamping only, **critical**.

Every way a certificate must fail verification is one keyword argument of :meth:`CA.leaf` /
:meth:`CA.intermediate` / :meth:`CA.root` (see :func:`issue`): ``eku=`` (serverAuth, timeStamping,
anyExtendedKeyUsage, ...), ``key_usage=`` (keyCertSign on a leaf), ``ca=True`` on a leaf, ``key="rsa-1024"``,
``not_before=``/``not_after=`` (datetimes, or timedeltas from now: expired, not yet valid), ``crl_urls=`` /
``ocsp_urls=`` (revocation pointers nobody can reach offline), ``signature_hash="sha1"``, unknown critical
``extensions=``; :meth:`CA.impostor` is an "attacker" root with the same subject name as a real one and
another key. :meth:`CA.crl` writes a CRL. Never uses arcmirror's code.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

UTC = dt.timezone.utc
PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey]
When = Union[dt.datetime, dt.timedelta, None]

#: key specifications :func:`new_key` understands
KEY_SPECS = ("rsa-1024", "rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384", "ec-p521", "ed25519")
_CURVES = {"ec-p256": ec.SECP256R1, "ec-p384": ec.SECP384R1, "ec-p521": ec.SECP521R1}

#: EKU names (RFC 5280 / notation's spelling) -> OID; dotted strings and ObjectIdentifiers also work
EKU = {
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
    "anyExtendedKeyUsage": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
}
#: keyUsage bits, as ``cryptography.x509.KeyUsage`` names them
KEY_USAGE_BITS = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                  "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
#: the subject attributes every certificate gets unless told otherwise (trusted identities need C, ST, O)
DEFAULT_SUBJECT = {"C": "US", "ST": "WA", "L": "Seattle", "O": "arcmirror testbed"}
_NAME_OIDS = {"C": NameOID.COUNTRY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "L": NameOID.LOCALITY_NAME,
              "STREET": NameOID.STREET_ADDRESS, "POSTALCODE": NameOID.POSTAL_CODE,
              "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "CN": NameOID.COMMON_NAME,
              "SERIALNUMBER": NameOID.SERIAL_NUMBER, "emailAddress": NameOID.EMAIL_ADDRESS}
_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


def now() -> dt.datetime:
    """The current UTC time, whole seconds (what certificates and signatures carry)."""
    return dt.datetime.now(UTC).replace(microsecond=0)


def when(value: When, default: dt.timedelta) -> dt.datetime:
    """A datetime as given (naive ones are UTC), or ``now() + value`` for a timedelta (``default`` for None)."""
    if value is None:
        value = default
    if isinstance(value, dt.timedelta):
        return now() + value
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- keys --------------------------------------------------------------------------------------------

def new_key(spec: str = "rsa-3072") -> PrivateKey:
    """A fresh private key: ``rsa-<bits>``, ``ec-p256``/``ec-p384``/``ec-p521`` or ``ed25519``."""
    if spec.startswith("rsa-"):
        return rsa.generate_private_key(65537, int(spec[4:]))
    if spec in _CURVES:
        return ec.generate_private_key(_CURVES[spec]())
    if spec == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key spec {spec!r} (one of {', '.join(KEY_SPECS)})")


_POOL: dict[tuple[str, str], PrivateKey] = {}


def pooled_key(spec: str = "rsa-3072", label: str = "default") -> PrivateKey:
    """The process's one key for ``(spec, label)``: RSA keys take 0.1-0.2 s each, so tests reuse them.
    Different labels give different keys (an impostor root must not share its real root's key)."""
    if (spec, label) not in _POOL:
        _POOL[(spec, label)] = new_key(spec)
    return _POOL[(spec, label)]


def _key(key: PrivateKey | str | None, default: str) -> PrivateKey:
    if key is None:
        return new_key(default)
    if isinstance(key, str):
        return new_key(key)
    return key


def key_spec(key) -> str:
    """``rsa-3072``, ``ec-p384``, ``ed25519``... of a private or public key."""
    public = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(public, rsa.RSAPublicKey):
        return f"rsa-{public.key_size}"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return f"ec-p{public.curve.key_size}"
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "ed25519"
    raise ValueError(f"unsupported key {type(public).__name__}")


def _signature_hash(signing_key: PrivateKey, name: str | None):
    if isinstance(signing_key, ed25519.Ed25519PrivateKey):
        return None
    if name is not None:
        return _HASHES[name]()
    if isinstance(signing_key, ec.EllipticCurvePrivateKey):
        return {256: hashes.SHA256, 384: hashes.SHA384, 521: hashes.SHA512}.get(signing_key.curve.key_size,
                                                                                hashes.SHA256)()
    return {3072: hashes.SHA384, 4096: hashes.SHA512}.get(signing_key.key_size, hashes.SHA256)()


# -- names -------------------------------------------------------------------------------------------

def name(cn: str | None, **attributes: str | None) -> x509.Name:
    """``C=US, ST=WA, L=Seattle, O=arcmirror testbed, CN=<cn>``; keyword arguments replace (None: drop)
    or add attributes (``OU=``, ``STREET=``, ``emailAddress=``...)."""
    values = {**DEFAULT_SUBJECT, **attributes, "CN": cn}
    return x509.Name([x509.NameAttribute(_NAME_OIDS[k], v) for k, v in values.items() if v is not None])


def _as_name(subject: x509.Name | dict | str | None, cn: str) -> x509.Name:
    if subject is None:
        return name(cn)
    if isinstance(subject, x509.Name):
        return subject
    if isinstance(subject, dict):
        return name(subject.get("CN", cn), **{k: v for k, v in subject.items() if k != "CN"})
    raise TypeError("subject must be an x509.Name or a dict of attributes")


def dn(cert: x509.Certificate | "Issued") -> str:
    """The subject as notation's trusted identities write it: ``C=US, ST=WA, L=Seattle, O=..., CN=...``."""
    cert = _cert(cert)
    short = {oid: k for k, oid in _NAME_OIDS.items()}
    return ", ".join(f"{short.get(a.oid, a.oid.dotted_string)}={a.value}" for a in cert.subject)


def identity(cert: x509.Certificate | "Issued") -> str:
    """A trust policy's trusted identity for this certificate's subject: ``x509.subject: C=US, ...``."""
    return f"x509.subject: {dn(cert)}"


# -- certificates ------------------------------------------------------------------------------------

def _eku_oid(value) -> ObjectIdentifier:
    if isinstance(value, ObjectIdentifier):
        return value
    if value in EKU:
        return EKU[value]
    return ObjectIdentifier(value)


def issue(subject: x509.Name, public_key, issuer: "Issued | None", signing_key: PrivateKey, *,
          not_before: When = None, not_after: When = None, serial: int | None = None,
          ca: bool | None = False, path_length: int | None = None, bc_critical: bool = True,
          key_usage: Iterable[str] | None = ("digital_signature",), ku_critical: bool = True,
          eku: Iterable | None = None, eku_critical: bool = False,
          crl_urls: str | Iterable[str] = (), ocsp_urls: str | Iterable[str] = (),
          extensions: Iterable[tuple[x509.ExtensionType, bool]] = (), signature_hash: str | None = None,
          issuer_name: x509.Name | None = None, validity: tuple[dt.timedelta, dt.timedelta] | None = None,
          ) -> x509.Certificate:
    """One certificate; every knob is a keyword:

    * ``not_before``/``not_after``: a datetime, or a timedelta from now (``validity`` gives the defaults);
    * ``ca``: basicConstraints cA (None: no basicConstraints at all), ``path_length``, ``bc_critical``;
    * ``key_usage``: the keyUsage bits set (:data:`KEY_USAGE_BITS`; None: no keyUsage), ``ku_critical``;
    * ``eku``: EKU names (:data:`EKU`) or OIDs (None: no EKU extension), ``eku_critical``;
    * ``crl_urls``/``ocsp_urls``: CRL distribution points / OCSP authority information access;
    * ``extensions``: more ``(extension, critical)`` pairs (an unknown critical one, say);
    * ``signature_hash``: sha1/sha256/sha384/sha512 for the issuer's signature (default by its key);
    * ``issuer_name``: the issuer name written in the certificate (default: the issuer's subject).
    """
    before, after = validity or (dt.timedelta(days=-1), dt.timedelta(days=365))
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer_name or (issuer.cert.subject if issuer else subject))
               .public_key(public_key)
               .serial_number(serial if serial is not None else x509.random_serial_number())
               .not_valid_before(when(not_before, before))
               .not_valid_after(when(not_after, after))
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    authority_key = issuer.cert.public_key() if issuer else public_key
    builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority_key), critical=False)
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None),
                                        critical=bc_critical)
    if key_usage is not None:
        bits = set(key_usage)
        unknown = bits - set(KEY_USAGE_BITS)
        if unknown:
            raise ValueError(f"unknown keyUsage bits {sorted(unknown)}")
        builder = builder.add_extension(x509.KeyUsage(**{b: b in bits for b in KEY_USAGE_BITS}), critical=ku_critical)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([_eku_oid(e) for e in eku]), critical=eku_critical)
    crl_urls = [crl_urls] if isinstance(crl_urls, str) else list(crl_urls)
    if crl_urls:
        builder = builder.add_extension(x509.CRLDistributionPoints([
            x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None) for u in crl_urls]),
            critical=False)
    ocsp_urls = [ocsp_urls] if isinstance(ocsp_urls, str) else list(ocsp_urls)
    if ocsp_urls:
        builder = builder.add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(u))
            for u in ocsp_urls]), critical=False)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    if signature_hash == "sha1":  # cryptography no longer signs with SHA-1: sign the TBS ourselves
        return _sha1_signed(builder.sign(signing_key, _signature_hash(signing_key, None)), signing_key)
    return builder.sign(signing_key, _signature_hash(signing_key, signature_hash))


def _sha1_signed(cert: x509.Certificate, signing_key: PrivateKey) -> x509.Certificate:
    """``cert`` re-signed with sha1WithRSAEncryption / ecdsa-with-SHA1 (which Notary forbids in a chain)."""
    from asn1crypto import algos
    from asn1crypto import x509 as ax509
    from cryptography.hazmat.primitives.asymmetric import padding

    if isinstance(signing_key, rsa.RSAPrivateKey):
        algorithm = algos.SignedDigestAlgorithm({"algorithm": "sha1_rsa", "parameters": None})
    elif isinstance(signing_key, ec.EllipticCurvePrivateKey):
        algorithm = algos.SignedDigestAlgorithm({"algorithm": "sha1_ecdsa"})
    else:
        raise ValueError("SHA-1 signatures need an RSA or EC issuer key")
    parsed = ax509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    tbs = parsed["tbs_certificate"].copy()
    tbs["signature"] = algorithm
    tbs_der = tbs.dump(force=True)
    if isinstance(signing_key, rsa.RSAPrivateKey):
        signature = signing_key.sign(tbs_der, padding.PKCS1v15(), hashes.SHA1())
    else:
        signature = signing_key.sign(tbs_der, ec.ECDSA(hashes.SHA1()))
    resigned = ax509.Certificate({"tbs_certificate": tbs, "signature_algorithm": algorithm,
                                  "signature_value": signature})
    return x509.load_der_x509_certificate(resigned.dump())


def _cert(value) -> x509.Certificate:
    return value.cert if isinstance(value, Issued) else value


class Issued:
    """A certificate with its private key and its issuer (None: self-signed)."""

    def __init__(self, cert: x509.Certificate, key: PrivateKey, issuer: "CA | None" = None):
        self.cert = cert
        self.key = key
        self.issuer = issuer

    @property
    def chain(self) -> list[x509.Certificate]:
        """This certificate and its issuers up to the root: leaf first, root last (an envelope's x5chain)."""
        return [self.cert] + (self.issuer.chain if self.issuer is not None else [])

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)

    @property
    def thumbprint(self) -> str:
        """Lower-case hex SHA-256 of the DER certificate."""
        return hashlib.sha256(self.der).hexdigest()

    @property
    def dn(self) -> str:
        return dn(self.cert)

    @property
    def identity(self) -> str:
        return identity(self.cert)

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    def write(self, directory: os.PathLike | str, stem: str, *, chain: bool = False) -> tuple[Path, Path]:
        """``<stem>.pem`` (the certificate, or with ``chain`` the whole chain) and ``<stem>.key``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        cert_path = write_pem(directory / f"{stem}.pem", *(self.chain if chain else [self.cert]))
        key_path = directory / f"{stem}.key"
        key_path.write_bytes(self.key_pem)
        return cert_path, key_path

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.dn} {key_spec(self.key)}>"


class CA(Issued):
    """A certificate authority: a root (:meth:`root`, :meth:`impostor`) or an intermediate (:meth:`intermediate`),
    issuing code-signing leaves (:meth:`leaf`), time-stamping leaves (:meth:`tsa`) and CRLs (:meth:`crl`)."""

    CA_KEY_USAGE = ("key_cert_sign", "crl_sign")

    @classmethod
    def root(cls, cn: str = "Test Root CA", *, key: PrivateKey | str | None = None, subject=None, **knobs) -> "CA":
        """A self-signed root (RSA-3072 unless ``key``), valid a year back and ten ahead; knobs as :func:`issue`
        (``path_length``, ``key_usage``, ``bc_critical``, ``not_after``...)."""
        key = _key(key, "rsa-3072")
        knobs.setdefault("ca", True)
        knobs.setdefault("key_usage", cls.CA_KEY_USAGE)
        knobs.setdefault("validity", (dt.timedelta(days=-365), dt.timedelta(days=3650)))
        subject = _as_name(subject, cn)
        return cls(issue(subject, key.public_key(), None, key, **knobs), key, None)

    def impostor(self, *, key: PrivateKey | str | None = None, **knobs) -> "CA":
        """An attacker's root: the same subject name (and validity) as this root, another key."""
        knobs.setdefault("not_before", self.cert.not_valid_before_utc)
        knobs.setdefault("not_after", self.cert.not_valid_after_utc)
        return CA.root(subject=self.cert.subject, key=_key(key, key_spec(self.key)), **knobs)

    def intermediate(self, cn: str = "Test Intermediate CA", *, key: PrivateKey | str | None = None, subject=None,
                     **knobs) -> "CA":
        """An intermediate CA (EC P-384 unless ``key``) issued by this one; knobs as :func:`issue`."""
        key = _key(key, "ec-p384")
        knobs.setdefault("ca", True)
        knobs.setdefault("key_usage", self.CA_KEY_USAGE)
        knobs.setdefault("validity", (dt.timedelta(days=-180), dt.timedelta(days=1825)))
        return CA(issue(_as_name(subject, cn), key.public_key(), self, self.key, **knobs), key, self)

    def leaf(self, cn: str = "Test Signer", *, key: PrivateKey | str | None = None, subject=None,
             eku: Iterable | None = ("codeSigning",), **knobs) -> Issued:
        """A code-signing leaf (RSA-3072 unless ``key``): keyUsage critical digitalSignature, EKU codeSigning,
        basicConstraints cA=false, valid from yesterday for a year. Knobs as :func:`issue`, e.g.
        ``eku=["serverAuth"]``, ``key_usage=["digital_signature", "key_cert_sign"]``, ``ca=True``,
        ``key="rsa-1024"``, ``not_after=-timedelta(days=1)``, ``crl_urls="http://..."``."""
        key = _key(key, "rsa-3072")
        return Issued(issue(_as_name(subject, cn), key.public_key(), self, self.key, eku=eku, **knobs), key, self)

    def tsa(self, cn: str = "Test TSA", *, key: PrivateKey | str | None = None, subject=None,
            eku: Iterable | None = ("timeStamping",), eku_critical: bool = True, **knobs) -> Issued:
        """A time-stamping leaf (RSA-2048 unless ``key``): EKU timeStamping only and critical (RFC 3161 §2.3),
        keyUsage critical digitalSignature, valid a year back and five ahead."""
        key = _key(key, "rsa-2048")
        knobs.setdefault("validity", (dt.timedelta(days=-365), dt.timedelta(days=1825)))
        return Issued(issue(_as_name(subject, cn), key.public_key(), self, self.key, eku=eku,
                            eku_critical=eku_critical, **knobs), key, self)

    def crl(self, revoked: Iterable[Issued | x509.Certificate | int] = (), *, last_update: When = None,
            next_update: When = None, number: int = 1, reason: x509.ReasonFlags | None = None,
            revocation_date: When = None, invalidity_date: When = None, signature_hash: str | None = None,
            ) -> x509.CertificateRevocationList:
        """A CRL of this CA listing ``revoked`` (certificates or serial numbers): thisUpdate an hour ago,
        nextUpdate in a week unless told (a timedelta from now or a datetime: a past one is a stale CRL)."""
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(self.cert.subject)
                   .last_update(when(last_update, dt.timedelta(hours=-1)))
                   .next_update(when(next_update, dt.timedelta(days=7)))
                   .add_extension(x509.CRLNumber(number), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.cert.public_key()),
                                  critical=False))
        for item in revoked:
            serial = item if isinstance(item, int) else _cert(item).serial_number
            entry = (x509.RevokedCertificateBuilder().serial_number(serial)
                     .revocation_date(when(revocation_date, dt.timedelta(hours=-2))))
            if reason is not None:
                entry = entry.add_extension(x509.CRLReason(reason), critical=False)
            if invalidity_date is not None:
                entry = entry.add_extension(
                    x509.InvalidityDate(when(invalidity_date, dt.timedelta()).replace(tzinfo=None)), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        return builder.sign(self.key, _signature_hash(self.key, signature_hash))


def self_signed(cn: str = "Test Self-signed Signer", *, key: PrivateKey | str | None = None, subject=None,
                eku: Iterable | None = ("codeSigning",), **knobs) -> Issued:
    """A one-certificate chain: a self-signed certificate meeting the *leaf* requirements (cA=false,
    keyUsage digitalSignature, EKU codeSigning), as notation's own test certificates are."""
    key = _key(key, "rsa-3072")
    return Issued(issue(_as_name(subject, cn), key.public_key(), None, key, eku=eku, **knobs), key, None)


# -- files -------------------------------------------------------------------------------------------

def der(cert) -> bytes:
    """DER bytes of a certificate (or of an :class:`Issued`'s)."""
    return _cert(cert).public_bytes(serialization.Encoding.DER)


def pem(*certs) -> bytes:
    """Concatenated PEM of certificates (or :class:`Issued`)."""
    return b"".join(_cert(c).public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_key_pem(key) -> bytes:
    """SubjectPublicKeyInfo PEM of a private or public key."""
    public = key.public_key() if hasattr(key, "private_bytes") else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _write(path: os.PathLike | str, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_pem(path: os.PathLike | str, *certs) -> Path:
    """Write certificates as one PEM file; return its path."""
    return _write(path, pem(*certs))


def write_der(path: os.PathLike | str, cert) -> Path:
    """Write one certificate as DER; return its path."""
    return _write(path, der(cert))


def write_key(path: os.PathLike | str, key: PrivateKey) -> Path:
    """Write a private key as PKCS#8 PEM; return its path."""
    return _write(path, key_pem(key))


def crl_bytes(crl: x509.CertificateRevocationList, encoding: str = "der") -> bytes:
    return crl.public_bytes(serialization.Encoding.DER if encoding == "der" else serialization.Encoding.PEM)


def write_crl(path: os.PathLike | str, crl: x509.CertificateRevocationList, encoding: str = "der") -> Path:
    """Write a CRL (``der`` or ``pem``); return its path."""
    return _write(path, crl_bytes(crl, encoding))


def write_crl_cache(crl_dir: os.PathLike | str, url: str, crl: x509.CertificateRevocationList) -> Path:
    """A notation CRL file-cache entry (``{NOTATION_CACHE}/crl/``): the file named by the hex SHA-256 of the
    distribution point URL holding ``{"rawBaseCRL": <standard base64 DER>}`` (notation-go
    ``verifier/crl/crl.go``: ``fileCacheContent``); notation uses it while nextUpdate has not passed."""
    content = {"rawBaseCRL": base64.b64encode(crl_bytes(crl)).decode()}
    return _write(Path(crl_dir) / hashlib.sha256(url.encode()).hexdigest(), json.dumps(content).encode() + b"\n")
