"""An RFC 3161 time-stamping authority for signature tests: bare ``TimeStampToken`` bytes (a CMS
``ContentInfo`` with ``SignedData`` over a ``TSTInfo``), what a Notary Project envelope carries in
``io.cncf.notary.timestampSignature``.

Two independent ways to make a token:

* :meth:`TSA.openssl_token` runs ``openssl ts -query``/``-reply -token_out`` (certReq set, ``ess_cert_id_alg =
  sha256`` so the token has a signingCertificateV2 attribute): the real path for valid tokens, stamped "now".
* :meth:`TSA.token` builds the token with asn1crypto + cryptography, so it can say anything: any ``gen_time``
  and ``accuracy`` (an expired signing certificate rescued by a timestamp from when it was valid), a wrong
  message imprint, no (or a v1, or a wrong) ESS signing-certificate attribute, a broken signature, the
  certificates it embeds. :func:`attacker_tsa` is a TSA under an impostor root that embeds that root.

:func:`openssl_verify` checks a token with ``openssl ts -verify``. Never uses arcmirror's code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from . import pki

#: the TSA policy the tokens name (GlobalSign's, as in notation's test tokens)
POLICY = "1.3.6.1.4.1.4146.2.3"
#: RFC 3628 baseline time-stamp policy (an all-zero accuracy then means 1 s to notation)
BASELINE_POLICY = "0.4.0.2023.1.1"
HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
Stamper = Callable[[bytes, str], bytes]

_OPENSSL_CONF = """\
[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir             = {dir}
serial          = $dir/serial
crypto_device   = builtin
signer_cert     = {signer_cert}
{certs_line}
signer_key      = {signer_key}
signer_digest   = {signer_digest}
default_policy  = {policy}
digests         = sha256, sha384, sha512
accuracy        = secs:{accuracy}
clock_precision_digits = 0
ordering        = no
tsa_name        = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _ax_cert(cert: x509.Certificate) -> ax509.Certificate:
    return ax509.Certificate.load(pki.der(cert))


def _ax_name(name: x509.Name) -> ax509.Name:
    return ax509.Name.load(name.public_bytes())


class TSA:
    """A TSA: ``signer`` (a :class:`~testbed.pki.Issued` with EKU timeStamping, critical) and the certificates
    its tokens embed (``embed``; default the TSA certificate and its intermediates, not the root)."""

    def __init__(self, signer: pki.Issued, *, embed: Iterable[x509.Certificate] | None = None):
        self.signer = signer
        self.embed = list(embed) if embed is not None else signer.chain[:-1]

    @classmethod
    def create(cls, root: pki.CA | None = None, *, cn: str = "Test TSA", key=None, **knobs) -> "TSA":
        """A TSA certificate (RSA-2048 unless ``key``; knobs as :meth:`~testbed.pki.CA.tsa`) under ``root``
        (default: a new "Test TSA Root", EC P-384)."""
        root = root or pki.CA.root("Test TSA Root", key="ec-p384")
        return cls(root.tsa(cn, key=key, **knobs))

    @property
    def cert(self) -> x509.Certificate:
        return self.signer.cert

    @property
    def root(self) -> x509.Certificate:
        """The last certificate of the TSA's chain (what a ``tsa`` trust store holds)."""
        return self.signer.chain[-1]

    # -- openssl -------------------------------------------------------------------------------------

    def openssl_token(self, data: bytes, hash: str = "sha256", *, policy: str = POLICY, accuracy: int = 1,
                      signer_digest: str = "sha256") -> bytes:
        """A token over ``data`` (imprint ``hash``) from ``openssl ts``, stamped now, with certReq set (the
        TSA certificate and :attr:`embed`'s others included) and a signingCertificateV2 attribute."""
        if hash not in HASHES:
            raise ValueError(f"hash must be one of {sorted(HASHES)}")
        with tempfile.TemporaryDirectory(prefix="tsa-") as tmp:
            d = Path(tmp)
            (d / "data").write_bytes(data)
            (d / "serial").write_text(f"{secrets.randbits(63):016x}\n")  # even hex digits
            cert_path, key_path = self.signer.write(d, "tsa")
            others = [c for c in self.embed if c != self.cert]
            certs_line = f"certs = {pki.write_pem(d / 'certs.pem', *others)}" if others else ""
            (d / "tsa.cnf").write_text(_OPENSSL_CONF.format(
                dir=d, signer_cert=cert_path, signer_key=key_path, certs_line=certs_line,
                signer_digest=signer_digest, policy=policy, accuracy=accuracy))
            _openssl("ts", "-query", "-data", str(d / "data"), f"-{hash}", "-cert", "-out", str(d / "req.tsq"))
            _openssl("ts", "-reply", "-config", str(d / "tsa.cnf"), "-queryfile", str(d / "req.tsq"),
                     "-token_out", "-out", str(d / "token.der"))
            return (d / "token.der").read_bytes()

    def __call__(self, data: bytes, hash: str = "sha256") -> bytes:
        """:meth:`openssl_token` (so a TSA is a stamper for :func:`testbed.notary.sign_cose`)."""
        return self.openssl_token(data, hash)

    # -- Python --------------------------------------------------------------------------------------

    def token(self, data: bytes, hash: str = "sha256", *, gen_time: dt.datetime | None = None,
              accuracy: float | tuple[int, int, int] | None = 1, policy: str = POLICY,
              serial: int | None = None, nonce: int | None = None, imprint: bytes | None = None,
              ess: str | None = "v2", ess_cert: x509.Certificate | None = None, ess_hash: str = "sha256",
              embed: Iterable[x509.Certificate] | None = None, signer_digest: str = "sha256",
              tsa_name: bool = True, cms_signing_time: dt.datetime | None = None,
              bad_signature: bool = False) -> bytes:
        """A token over ``data`` built here, saying whatever the knobs say:

        * ``gen_time``: any time (default now); ``accuracy``: seconds (float), ``(s, ms, us)``, 0 (present with
          every field absent: 1 s under :data:`BASELINE_POLICY` for notation), or None (absent); ``policy``;
        * ``imprint``: the hashed message to claim instead of ``hash(data)`` (a wrong message imprint);
        * ``ess``: ``"v2"`` (signingCertificateV2, RFC 5035), ``"v1"`` (SHA-1 signingCertificate only),
          ``"both"``, or None (missing); ``ess_cert``: the certificate the attribute names (a wrong one);
        * ``embed``: the certificates in the token (default :attr:`embed`; ``[]`` for none);
        * ``cms_signing_time``: add a CMS signingTime signed attribute; ``bad_signature``: flip a signature bit.
        """
        gen_time = (gen_time or dt.datetime.now(pki.UTC).replace(microsecond=0)).astimezone(pki.UTC)
        tst = {
            "version": "v1",
            "policy": policy,
            "message_imprint": {"hash_algorithm": {"algorithm": hash},
                                "hashed_message": imprint if imprint is not None else hashlib.new(hash, data).digest()},
            "serial_number": serial if serial is not None else secrets.randbits(63),
            "gen_time": gen_time,
        }
        if accuracy is not None:
            if isinstance(accuracy, tuple):
                seconds, millis, micros = accuracy
            else:
                seconds, rest = int(accuracy), round((accuracy - int(accuracy)) * 1_000_000)
                millis, micros = divmod(rest, 1000)
            fields = {k: v for k, v in (("seconds", seconds), ("millis", millis), ("micros", micros)) if v}
            tst["accuracy"] = fields or tsp.Accuracy.load(b"\x30\x00")  # present, every field absent
        if nonce is not None:
            tst["nonce"] = nonce
        if tsa_name:
            tst["tsa"] = ax509.GeneralName(name="directory_name", value=_ax_name(self.cert.subject))
        tst_info = tsp.TSTInfo(tst)
        tst_der = tst_info.dump()

        signer_der = pki.der(self.cert)
        named = pki.der(ess_cert) if ess_cert is not None else signer_der
        issuer_serial = {"issuer": [ax509.GeneralName(name="directory_name", value=_ax_name(
            (ess_cert or self.cert).issuer))], "serial_number": (ess_cert or self.cert).serial_number}
        attributes = [
            {"type": "content_type", "values": ["tst_info"]},
            {"type": "message_digest", "values": [hashlib.new(signer_digest, tst_der).digest()]},
        ]
        if ess in ("v2", "both"):
            attributes.append({"type": "signing_certificate_v2", "values": [{"certs": [{
                "hash_algorithm": {"algorithm": ess_hash}, "cert_hash": hashlib.new(ess_hash, named).digest(),
                "issuer_serial": issuer_serial}]}]})
        if ess in ("v1", "both"):
            attributes.append({"type": "signing_certificate", "values": [{"certs": [{
                "cert_hash": hashlib.sha1(named).digest(), "issuer_serial": issuer_serial}]}]})
        elif ess not in ("v2", None):
            raise ValueError("ess must be 'v2', 'v1', 'both' or None")
        if cms_signing_time is not None:
            moment = cms_signing_time.astimezone(pki.UTC)
            attributes.append({"type": "signing_time", "values": [cms.Time(
                name="utc_time" if 1950 <= moment.year < 2050 else "general_time", value=moment)]})
        signed_attrs = cms.CMSAttributes(attributes)
        to_sign = signed_attrs.dump()  # DER SET OF (asn1crypto sorts the members), what the signature covers

        key = self.signer.key
        digest = HASHES[signer_digest]()
        if isinstance(key, rsa.RSAPrivateKey):
            signature = key.sign(to_sign, padding.PKCS1v15(), digest)
            signature_algorithm = {"algorithm": "rsassa_pkcs1v15"}
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            signature = key.sign(to_sign, ec.ECDSA(digest))
            signature_algorithm = {"algorithm": f"{signer_digest}_ecdsa"}
        else:
            raise ValueError(f"unsupported TSA key {type(key).__name__}")
        if bad_signature:
            signature = signature[:-1] + bytes([signature[-1] ^ 1])

        signer_info = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value={
                "issuer": _ax_name(self.cert.issuer), "serial_number": self.cert.serial_number}),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": signer_digest}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm(signature_algorithm),
            "signature": signature,
        })
        certificates = [_ax_cert(c) for c in (self.embed if embed is None else embed)]
        signed_data = {
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": signer_digest})],
            "encap_content_info": {"content_type": "tst_info", "content": core.ParsableOctetString(tst_der)},
            "signer_infos": [signer_info],
        }
        if certificates:
            signed_data["certificates"] = certificates
        return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(signed_data)}).dump()

    def stamper(self, **knobs) -> Stamper:
        """``(data, hash) -> token`` with :meth:`token`'s knobs (for :func:`testbed.notary.sign_cose`)."""
        return lambda data, hash="sha256": self.token(data, hash, **knobs)


def attacker_tsa(real_root: pki.CA, *, cn: str = "Test TSA", key=None) -> TSA:
    """A TSA under an impostor of ``real_root`` (same subject name, another key) whose tokens embed that
    impostor root: a verifier must not take a root from the token."""
    impostor = real_root.impostor()
    signer = impostor.tsa(cn, key=key)
    return TSA(signer, embed=[signer.cert, impostor.cert])


def _openssl(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is not installed (scripts/bootstrap installs Debian's openssl)")
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result


def openssl_verify(token: bytes, data: bytes, roots: Iterable, untrusted: Iterable = ()) -> subprocess.CompletedProcess:
    """``openssl ts -verify -token_in`` of ``token`` over ``data``, trusting ``roots`` only, with ``untrusted``
    certificates offered for the chain. ``returncode == 0`` means verified; stdout/stderr say why not."""
    with tempfile.TemporaryDirectory(prefix="tsa-verify-") as tmp:
        d = Path(tmp)
        (d / "token.der").write_bytes(token)
        (d / "data").write_bytes(data)
        args = ["openssl", "ts", "-verify", "-token_in", "-in", str(d / "token.der"), "-data", str(d / "data"),
                "-CAfile", str(pki.write_pem(d / "roots.pem", *roots))]
        untrusted = list(untrusted)
        if untrusted:
            args += ["-untrusted", str(pki.write_pem(d / "untrusted.pem", *untrusted))]
        return subprocess.run(args, capture_output=True, text=True, check=False)


def token_info(token: bytes) -> dict:
    """What a token says (parsed, not verified): ``gen_time``, ``hash``, ``imprint``, ``accuracy`` (seconds),
    ``policy``, ``serial``, ``certificates`` (DER), ``signed_attributes`` (names), ``version``."""
    content = cms.ContentInfo.load(token)["content"]
    tst = content["encap_content_info"]["content"].parsed
    accuracy = tst["accuracy"]
    present = not isinstance(accuracy, core.Void)
    seconds = 0.0
    if present:
        seconds = ((accuracy["seconds"].native or 0) + (accuracy["millis"].native or 0) / 1e3
                   + (accuracy["micros"].native or 0) / 1e6)
    signer = content["signer_infos"][0]
    return {
        "version": content["version"].native,
        "gen_time": tst["gen_time"].native,
        "hash": tst["message_imprint"]["hash_algorithm"]["algorithm"].native,
        "imprint": tst["message_imprint"]["hashed_message"].native,
        "accuracy": seconds if present else None,
        "policy": tst["policy"].dotted,
        "serial": tst["serial_number"].native,
        "certificates": [c.chosen.dump() for c in (content["certificates"] or [])],
        "signed_attributes": [a["type"].native for a in signer["signed_attrs"]],
    }
