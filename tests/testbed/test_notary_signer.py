"""Tests proving the test bed's own signers (testbed.pki, testbed.tsa, testbed.notary, testbed.cosign) make
what the Notary Project specification and cosign describe, checked with tools other than the signers:
``openssl verify`` / ``openssl crl`` / ``openssl ts -verify``, ``cbor2`` and ``cryptography`` directly, and
real registries (distribution for the referrers tag schema, a zot front for the referrers API).

No arcmirror code: the signer must grade arcmirror's verifier, not the other way round.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
import subprocess
from pathlib import Path

import cbor2
import pytest
import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from testbed import cosign, notary, pki, tsa
from testbed.images import LayoutBuilder
from testbed.personalities import Zot

UTC = dt.timezone.utc
DESCRIPTOR = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
              "digest": "sha256:" + "ab" * 32, "size": 1234}


# -- the PKI, made once for the module (RSA keys are the slow part) ---------------------------------

class PKI:
    def __init__(self, directory: Path):
        self.dir = directory
        self.root = pki.CA.root(key=pki.pooled_key("rsa-3072", "root"))
        self.intermediate = self.root.intermediate()
        self.rsa = self.intermediate.leaf("Signer RSA", key=pki.pooled_key("rsa-3072", "leaf"))
        self.ec = self.intermediate.leaf("Signer EC", key="ec-p256")
        self.tsa_root = pki.CA.root("Test TSA Root", key="ec-p384")
        self.tsa = tsa.TSA(self.tsa_root.tsa(key=pki.pooled_key("rsa-2048", "tsa")))
        self.root_pem = pki.write_pem(directory / "root.pem", self.root)
        self.intermediate_pem = pki.write_pem(directory / "intermediate.pem", self.intermediate)


@pytest.fixture(scope="module")
def p(tmp_path_factory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


def openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


def openssl_verify(p: PKI, leaf, *extra: str, root: Path | None = None) -> subprocess.CompletedProcess:
    path = pki.write_pem(p.dir / f"leaf-{leaf.serial}.pem", leaf)
    return openssl("verify", "-CAfile", str(root or p.root_pem), "-untrusted", str(p.intermediate_pem),
                   "-purpose", "any", *extra, str(path))


def extension(cert: x509.Certificate, oid):
    return cert.extensions.get_extension_for_oid(oid)


# -- certificates -----------------------------------------------------------------------------------

def test_the_pki_follows_the_certificate_requirements(p):
    for ca in (p.root, p.intermediate):
        bc = extension(ca.cert, ExtensionOID.BASIC_CONSTRAINTS)
        ku = extension(ca.cert, ExtensionOID.KEY_USAGE)
        assert bc.critical and bc.value.ca
        assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    leaf = p.rsa.cert
    ku = extension(leaf, ExtensionOID.KEY_USAGE)
    assert ku.critical and ku.value.digital_signature
    assert not (ku.value.key_cert_sign or ku.value.crl_sign or ku.value.key_encipherment or ku.value.data_encipherment
                or ku.value.key_agreement)
    assert list(extension(leaf, ExtensionOID.EXTENDED_KEY_USAGE).value) == [ExtendedKeyUsageOID.CODE_SIGNING]
    assert extension(leaf, ExtensionOID.BASIC_CONSTRAINTS).value.ca is False
    assert pki.key_spec(p.rsa.key) == "rsa-3072" and pki.key_spec(p.ec.key) == "ec-p256"
    eku = extension(p.tsa.cert, ExtensionOID.EXTENDED_KEY_USAGE)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    assert p.rsa.chain == [p.rsa.cert, p.intermediate.cert, p.root.cert]
    assert pki.dn(p.rsa) == "C=US, ST=WA, L=Seattle, O=arcmirror testbed, CN=Signer RSA"
    assert p.rsa.identity == "x509.subject: " + pki.dn(p.rsa)


def test_openssl_verifies_the_chains(p):
    for leaf in (p.rsa, p.ec):
        result = openssl_verify(p, leaf)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith(": OK")
    tsa_root = pki.write_pem(p.dir / "tsa-root.pem", p.tsa_root)
    tsa_leaf = pki.write_pem(p.dir / "tsa-leaf.pem", p.tsa.cert)
    result = openssl("verify", "-CAfile", str(tsa_root), "-purpose", "timestampsign", str(tsa_leaf))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("knobs, check", [
    ({"eku": ["serverAuth"]}, lambda c: list(extension(c, ExtensionOID.EXTENDED_KEY_USAGE).value)
     == [ExtendedKeyUsageOID.SERVER_AUTH]),
    ({"eku": ["codeSigning", "timeStamping"]}, lambda c: ExtendedKeyUsageOID.TIME_STAMPING
     in extension(c, ExtensionOID.EXTENDED_KEY_USAGE).value),
    ({"eku": ["anyExtendedKeyUsage"]}, lambda c: ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE
     in extension(c, ExtensionOID.EXTENDED_KEY_USAGE).value),
    ({"eku": None}, lambda c: ExtensionOID.EXTENDED_KEY_USAGE not in [e.oid for e in c.extensions]),
    ({"key_usage": ["digital_signature", "key_cert_sign"]}, lambda c: extension(
        c, ExtensionOID.KEY_USAGE).value.key_cert_sign),
    ({"ku_critical": False}, lambda c: not extension(c, ExtensionOID.KEY_USAGE).critical),
    ({"ca": True}, lambda c: extension(c, ExtensionOID.BASIC_CONSTRAINTS).value.ca),
    ({"key": "rsa-1024"}, lambda c: c.public_key().key_size == 1024),
    ({"key": "ec-p521"}, lambda c: c.public_key().curve.key_size == 521),
    ({"crl_urls": "http://crl.invalid/int.crl"}, lambda c: extension(
        c, ExtensionOID.CRL_DISTRIBUTION_POINTS).value[0].full_name[0].value == "http://crl.invalid/int.crl"),
    ({"ocsp_urls": "http://ocsp.invalid"}, lambda c: extension(
        c, ExtensionOID.AUTHORITY_INFORMATION_ACCESS).value[0].access_location.value == "http://ocsp.invalid"),
    ({"extensions": [(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"), True)]},
     lambda c: extension(c, x509.ObjectIdentifier("1.3.6.1.4.1.99999.1")).critical),
], ids=["serverAuth", "timeStamping", "anyEKU", "no-EKU", "keyCertSign", "ku-not-critical", "cA", "rsa-1024",
        "p521", "crl-url", "ocsp-url", "unknown-critical"])
def test_leaf_knobs_make_structurally_valid_certificates(p, knobs, check):
    """Each knob changes what it says, and openssl (which knows nothing of Notary's rules) still builds the
    chain: a verifier rejecting them does so for the Notary reason."""
    leaf = p.intermediate.leaf("Knob", **{"key": "ec-p256", **knobs})
    assert check(leaf.cert)
    result = openssl_verify(p, leaf, *(["-ignore_critical"] if "extensions" in knobs else []))
    assert result.returncode == 0, result.stdout + result.stderr


def test_ca_knobs(p, tmp_path):
    weak = p.root.intermediate("SHA-1 Intermediate", key="ec-p256", signature_hash="sha1", path_length=0)
    assert weak.cert.signature_algorithm_oid == x509.SignatureAlgorithmOID.RSA_WITH_SHA1
    assert extension(weak.cert, ExtensionOID.BASIC_CONSTRAINTS).value.path_length == 0
    leaf = weak.leaf("Under SHA-1", key="ec-p256", signature_hash="sha1")
    assert leaf.cert.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA1
    result = openssl("verify", "-auth_level", "0", "-CAfile", str(p.root_pem),
                     "-untrusted", str(pki.write_pem(tmp_path / "weak.pem", weak)),
                     str(pki.write_pem(tmp_path / "leaf.pem", leaf)))
    assert result.returncode == 0, result.stderr  # a good signature, only its hash is forbidden
    loose = p.root.intermediate("Loose", key="ec-p256", bc_critical=False, key_usage=["crl_sign"])
    assert not extension(loose.cert, ExtensionOID.BASIC_CONSTRAINTS).critical
    assert not extension(loose.cert, ExtensionOID.KEY_USAGE).value.key_cert_sign
    not_ca = p.root.intermediate("Not a CA", key="ec-p256", ca=False)
    assert extension(not_ca.cert, ExtensionOID.BASIC_CONSTRAINTS).value.ca is False


def test_validity_knobs(p):
    expired = p.intermediate.leaf("Expired", key="ec-p256", not_before=dt.timedelta(days=-30),
                                  not_after=dt.timedelta(days=-1))
    future = p.intermediate.leaf("Future", key="ec-p256", not_before=dt.timedelta(days=10))
    start = pki.now().replace(hour=0, minute=0, second=0) - dt.timedelta(days=60)
    fixed = p.intermediate.leaf("Fixed", key="ec-p256", not_before=start, not_after=start + dt.timedelta(days=30))
    assert "certificate has expired" in openssl_verify(p, expired).stderr
    assert "not yet valid" in openssl_verify(p, future).stderr
    assert fixed.cert.not_valid_before_utc == start
    assert fixed.cert.not_valid_after_utc == start + dt.timedelta(days=30)
    assert openssl_verify(p, fixed).returncode != 0
    at = str(int((start + dt.timedelta(days=15)).timestamp()))
    assert openssl_verify(p, fixed, "-attime", at).returncode == 0


def test_the_impostor_root_has_the_real_name_and_another_key(p):
    impostor = p.root.impostor(key="ec-p384")
    assert impostor.cert.subject == p.root.cert.subject and impostor.cert.issuer == p.root.cert.subject
    assert pki.der(impostor) != pki.der(p.root)
    assert pki.public_key_pem(impostor.cert.public_key()) != pki.public_key_pem(p.root.cert.public_key())
    rogue = impostor.leaf("Signer RSA", key="ec-p256")
    assert rogue.chain[-1] == impostor.cert
    result = openssl("verify", "-CAfile", str(p.root_pem),
                     "-untrusted", str(pki.write_pem(p.dir / "imp.pem", impostor)),
                     str(pki.write_pem(p.dir / "rogue.pem", rogue)))
    assert result.returncode != 0
    own = openssl("verify", "-CAfile", str(p.dir / "imp.pem"), str(p.dir / "rogue.pem"))
    assert own.returncode == 0, own.stderr


def test_self_signed_leaf(p):
    leaf = pki.self_signed(key="ec-p256")
    assert leaf.chain == [leaf.cert] and leaf.cert.issuer == leaf.cert.subject
    assert extension(leaf.cert, ExtensionOID.BASIC_CONSTRAINTS).value.ca is False
    path = pki.write_pem(p.dir / "self.pem", leaf)
    assert openssl("verify", "-CAfile", str(path), "-partial_chain", str(path)).returncode == 0


def test_crl(p, tmp_path):
    revoked = p.intermediate.leaf("Revoked", key="ec-p256", crl_urls="http://crl.invalid/int.crl")
    crl = p.intermediate.crl([revoked, 4242], next_update=dt.timedelta(days=2))
    assert {r.serial_number for r in crl} == {revoked.serial, 4242}
    assert crl.next_update_utc > dt.datetime.now(UTC) > crl.last_update_utc
    assert crl.is_signature_valid(p.intermediate.cert.public_key())
    der_path = pki.write_crl(tmp_path / "int.crl", crl)
    result = openssl("crl", "-inform", "DER", "-in", str(der_path), "-CAfile", str(p.intermediate_pem), "-noout")
    assert "verify OK" in result.stdout + result.stderr
    pem_path = pki.write_crl(tmp_path / "int.crl.pem", crl, "pem")
    result = openssl_verify(p, revoked, "-crl_check", "-CRLfile", str(pem_path))
    assert result.returncode != 0 and "certificate revoked" in result.stderr
    assert openssl_verify(p, p.ec, "-crl_check", "-CRLfile", str(pem_path)).returncode == 0
    stale = p.intermediate.crl([], last_update=dt.timedelta(days=-10), next_update=dt.timedelta(days=-3))
    assert stale.next_update_utc < dt.datetime.now(UTC)
    entry = pki.write_crl_cache(tmp_path / "cache" / "crl", "http://crl.invalid/int.crl", crl)
    assert entry.name == hashlib.sha256(b"http://crl.invalid/int.crl").hexdigest()
    assert base64.b64decode(json.loads(entry.read_text())["rawBaseCRL"]) == pki.crl_bytes(crl)


# -- time stamping ----------------------------------------------------------------------------------

@pytest.mark.parametrize("hash_name", ["sha256", "sha384", "sha512"])
def test_openssl_tokens_verify(p, hash_name):
    token = p.tsa.openssl_token(b"signature bytes", hash_name)
    info = tsa.token_info(token)
    assert info["hash"] == hash_name and info["imprint"] == hashlib.new(hash_name, b"signature bytes").digest()
    assert "signing_certificate_v2" in info["signed_attributes"]
    assert pki.der(p.tsa.cert) in info["certificates"]
    result = tsa.openssl_verify(token, b"signature bytes", [p.tsa_root])
    assert result.returncode == 0, result.stdout + result.stderr
    assert tsa.openssl_verify(token, b"other bytes", [p.tsa_root]).returncode != 0


def test_python_tokens_verify_and_say_what_they_were_told(p):
    then = dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    token = p.tsa.token(b"signature bytes", "sha384", gen_time=then, accuracy=(1, 500, 0))
    info = tsa.token_info(token)
    assert info["gen_time"] == then and info["accuracy"] == 1.5 and info["hash"] == "sha384"
    assert info["version"] == "v3" and info["policy"] == tsa.POLICY
    assert set(info["signed_attributes"]) == {"content_type", "message_digest", "signing_certificate_v2"}
    result = tsa.openssl_verify(token, b"signature bytes", [p.tsa_root], [p.tsa.cert])
    assert result.returncode == 0, result.stdout + result.stderr
    assert tsa.token_info(p.tsa.token(b"x", accuracy=None))["accuracy"] is None
    with_time = p.tsa.token(b"x", cms_signing_time=then)
    assert "signing_time" in tsa.token_info(with_time)["signed_attributes"]
    assert tsa.openssl_verify(with_time, b"x", [p.tsa_root]).returncode == 0


@pytest.mark.parametrize("knobs, error", [
    ({"imprint": hashlib.sha256(b"other").digest()}, "imprint"),
    ({"ess": None}, "signing certificate"),
    ({"bad_signature": True}, ""),
    ({"embed": []}, "signer certificate not found"),
], ids=["wrong-imprint", "no-signingCertificateV2", "bad-signature", "no-certificates"])
def test_python_token_knobs_fail_openssl(p, knobs, error):
    token = p.tsa.token(b"signature bytes", **knobs)
    result = tsa.openssl_verify(token, b"signature bytes", [p.tsa_root])
    assert result.returncode != 0
    assert error in (result.stdout + result.stderr)


def test_ess_knobs(p):
    v1 = tsa.token_info(p.tsa.token(b"x", ess="v1"))["signed_attributes"]
    assert "signing_certificate" in v1 and "signing_certificate_v2" not in v1
    wrong = p.tsa.token(b"x", ess_cert=p.rsa.cert)
    assert "ess cert id not found" in tsa.openssl_verify(wrong, b"x", [p.tsa_root]).stderr


def test_attacker_tsa_embeds_its_root(p):
    attacker = tsa.attacker_tsa(p.tsa_root)
    assert attacker.root.subject == p.tsa_root.cert.subject and attacker.root != p.tsa_root.cert
    token = attacker.token(b"x")
    assert pki.der(attacker.root) in tsa.token_info(token)["certificates"]
    assert tsa.openssl_verify(token, b"x", [p.tsa_root]).returncode != 0
    assert tsa.openssl_verify(token, b"x", [attacker.root]).returncode == 0


# -- envelopes --------------------------------------------------------------------------------------

def verify_raw(public, name: str, signature: bytes, data: bytes, salt: int | None = None) -> None:
    digest = notary.ALGORITHMS[name].hash
    if name.startswith("PS"):
        salt = digest.digest_size if salt is None else salt
        public.verify(signature, data, padding.PSS(padding.MGF1(digest()), salt), digest())
    else:
        width = len(signature) // 2
        assert width == (public.curve.key_size + 7) // 8
        r, s = int.from_bytes(signature[:width], "big"), int.from_bytes(signature[width:], "big")
        public.verify(encode_dss_signature(r, s), data, ec.ECDSA(digest()))


def test_payload():
    body = json.loads(notary.payload(DESCRIPTOR))
    assert body == {"targetArtifact": DESCRIPTOR}
    other = json.loads(notary.payload(DESCRIPTOR, digest="sha256:" + "cd" * 32, size=1, media_type="x/y"))
    assert other["targetArtifact"] == {"mediaType": "x/y", "digest": "sha256:" + "cd" * 32, "size": 1}
    noted = json.loads(notary.payload(DESCRIPTOR, annotations={"k": "v"}))
    assert noted["targetArtifact"]["annotations"] == {"k": "v"}


def test_cose_envelope_round_trips_and_verifies(p):
    signed_at = dt.datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
    payload = notary.payload(DESCRIPTOR)
    envelope = notary.sign_cose(payload, p.rsa, signing_time=signed_at, timestamp=p.tsa)
    assert envelope[:2] == b"\xd2\x84"  # tag 18, array of 4
    message = cbor2.loads(envelope)
    assert isinstance(message, cbor2.CBORTag) and message.tag == 18
    protected_bytes, header, body, signature = message.value
    protected = cbor2.loads(protected_bytes)
    assert protected[1] == -38  # PS384 for RSA-3072
    assert protected[2] == [notary.H_SCHEME]
    assert protected[3] == notary.PAYLOAD_MEDIA_TYPE
    assert protected[notary.H_SCHEME] == "notary.x509"
    assert protected[notary.H_TIME] == signed_at
    assert b"\xc1\x1a" + struct.pack(">I", int(signed_at.timestamp())) in protected_bytes  # tag 1 + uint32
    assert header[33] == [pki.der(c) for c in p.rsa.chain]
    assert header[notary.H_AGENT] == notary.AGENT
    assert body == payload
    structure = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    p.rsa.cert.public_key().verify(signature, structure, padding.PSS(padding.MGF1(hashes.SHA384()), 48),
                                   hashes.SHA384())
    token = header[notary.H_TIMESTAMP]
    assert tsa.token_info(token)["imprint"] == hashlib.sha384(signature).digest()
    result = tsa.openssl_verify(token, signature, [p.tsa_root])
    assert result.returncode == 0, result.stdout + result.stderr


def test_cose_ecdsa_and_signing_authority(p):
    envelope = notary.sign_cose(notary.payload(DESCRIPTOR), p.ec, scheme=notary.SIGNING_AUTHORITY,
                                expiry=dt.datetime(2099, 1, 1, tzinfo=UTC))
    decoded = notary.decode(envelope, notary.COSE)
    assert decoded.protected[1] == -7 and len(decoded.signature) == 64
    assert decoded.protected[2] == [notary.H_SCHEME, notary.H_AUTH_TIME, notary.H_EXPIRY]
    assert notary.H_TIME not in decoded.protected and notary.H_AUTH_TIME in decoded.protected
    assert decoded.protected[notary.H_EXPIRY] == dt.datetime(2099, 1, 1, tzinfo=UTC)
    verify_raw(p.ec.cert.public_key(), "ES256", decoded.signature, decoded.signing_input)


def test_jws_envelope_verifies(p):
    signed_at = dt.datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
    payload = notary.payload(DESCRIPTOR)
    envelope = notary.sign_jws(payload, p.rsa, signing_time=signed_at, expiry=dt.datetime(2099, 1, 1, tzinfo=UTC),
                               timestamp=p.tsa)
    document = json.loads(envelope)
    assert set(document) == {"payload", "protected", "header", "signature"}
    for part in ("payload", "protected", "signature"):
        assert "=" not in document[part] and "+" not in document[part] and "/" not in document[part]
    protected = json.loads(notary.b64url_decode(document["protected"]))
    assert protected == {"alg": "PS384", "cty": notary.PAYLOAD_MEDIA_TYPE,
                         "crit": [notary.H_SCHEME, notary.H_EXPIRY], notary.H_SCHEME: "notary.x509",
                         notary.H_TIME: "2025-06-01T12:00:00Z", notary.H_EXPIRY: "2099-01-01T00:00:00Z"}
    assert notary.b64url_decode(document["payload"]) == payload
    header = document["header"]
    assert [base64.b64decode(c, validate=True) for c in header["x5c"]] == [pki.der(c) for c in p.rsa.chain]
    signature = notary.b64url_decode(document["signature"])
    signing_input = f"{document['protected']}.{document['payload']}".encode("ascii")
    p.rsa.cert.public_key().verify(signature, signing_input, padding.PSS(padding.MGF1(hashes.SHA384()), 48),
                                   hashes.SHA384())
    token = base64.b64decode(header[notary.H_TIMESTAMP], validate=True)
    assert tsa.openssl_verify(token, signature, [p.tsa_root]).returncode == 0
    ec_envelope = notary.decode(notary.sign_jws(payload, p.ec), notary.JWS)
    assert ec_envelope.protected["alg"] == "ES256"
    verify_raw(p.ec.cert.public_key(), "ES256", ec_envelope.signature, ec_envelope.signing_input)


@pytest.mark.parametrize("kind", ["cose", "jws"])
def test_failure_knobs(p, kind):
    payload = notary.payload(DESCRIPTOR)
    public = p.rsa.cert.public_key()

    def make(**knobs) -> notary.Decoded:
        return notary.decode(notary.sign(kind, payload, p.rsa, **knobs), kind)

    alg_of = (lambda d: d.protected[1]) if kind == "cose" else (lambda d: d.protected["alg"])
    crit_of = (lambda d: d.protected.get(2, [])) if kind == "cose" else (lambda d: d.protected.get("crit", []))

    good = make()
    verify_raw(public, "PS384", good.signature, good.signing_input)

    # the payload altered after signing: the old signature covers the old payload only
    altered = make(payload_after=notary.payload(DESCRIPTOR, digest="sha256:" + "00" * 32))
    assert json.loads(altered.payload)["targetArtifact"]["digest"] == "sha256:" + "00" * 32
    with pytest.raises(InvalidSignature):
        verify_raw(public, "PS384", altered.signature, altered.signing_input)

    # an algorithm that is not the key's: the header says PS256 and the signature is PS256 with the RSA-3072 key
    lying = make(alg="PS256")
    assert alg_of(lying) in (-37, "PS256")
    verify_raw(public, "PS256", lying.signature, lying.signing_input)

    unknown = make(unknown_critical="io.example.unknown")
    assert "io.example.unknown" in crit_of(unknown) and "io.example.unknown" in unknown.protected

    expired = make(expiry=dt.datetime(2020, 1, 1, tzinfo=UTC))
    assert notary.H_EXPIRY in crit_of(expired) and expired.protected[notary.H_EXPIRY]

    stamped = make(timestamp=p.tsa.stamper(), timestamp_over=b"not the signature")
    assert tsa.token_info(stamped.timestamp)["imprint"] == hashlib.sha384(b"not the signature").digest()

    backwards = make(chain=list(reversed(p.rsa.chain)))
    assert backwards.chain == [pki.der(c) for c in reversed(p.rsa.chain)]
    impostor = p.root.impostor(key="ec-p384")
    smuggled = make(chain=[p.rsa.cert, p.intermediate.cert, impostor.cert])
    assert smuggled.chain[-1] == pki.der(impostor)

    no_crit = make(crit=[])
    assert not crit_of(no_crit)
    untagged = make(protected={notary.H_TIME: None})
    assert notary.H_TIME not in untagged.protected

    bad_eku = p.intermediate.leaf("TLS server", key="ec-p256", eku=["serverAuth"])
    decoded = notary.decode(notary.sign(kind, payload, bad_eku), kind)
    assert decoded.certificates[0] == bad_eku.cert
    verify_raw(bad_eku.cert.public_key(), "ES256", decoded.signature, decoded.signing_input)


def test_cose_only_knobs(p):
    payload = notary.payload(DESCRIPTOR)
    assert notary.sign_cose(payload, p.ec, tagged=False)[:1] == b"\x84"
    protected_bytes = cbor2.loads(notary.sign_cose(payload, p.ec, time_tag=None,
                                                   signing_time=dt.datetime(2025, 1, 1, tzinfo=UTC))).value[0]
    assert cbor2.loads(protected_bytes)[notary.H_TIME] == int(dt.datetime(2025, 1, 1, tzinfo=UTC).timestamp())
    salted = notary.decode(notary.sign_cose(payload, p.rsa, salt_length=20), notary.COSE)
    with pytest.raises(InvalidSignature):
        verify_raw(p.rsa.cert.public_key(), "PS384", salted.signature, salted.signing_input)
    verify_raw(p.rsa.cert.public_key(), "PS384", salted.signature, salted.signing_input, salt=20)


# -- signature manifests and registries -------------------------------------------------------------

def test_signature_manifest_shape(p):
    signed_at = dt.datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
    envelope = notary.sign_cose(notary.payload(DESCRIPTOR), p.rsa, signing_time=signed_at)
    made = notary.signature_manifest(envelope, notary.COSE, {**DESCRIPTOR, "annotations": {"x": "y"}})
    manifest = json.loads(made.data)
    assert manifest == made.manifest
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["artifactType"] == "application/vnd.cncf.notary.signature"
    assert manifest["config"] == {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
                                  "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}
    assert manifest["layers"] == [{"mediaType": "application/cose", "size": len(envelope),
                                   "digest": "sha256:" + hashlib.sha256(envelope).hexdigest()}]
    assert manifest["subject"] == DESCRIPTOR
    thumbprints = json.loads(manifest["annotations"]["io.cncf.notary.x509chain.thumbprint#S256"])
    assert thumbprints == [hashlib.sha256(pki.der(c)).hexdigest() for c in p.rsa.chain]
    assert manifest["annotations"]["org.opencontainers.image.created"] == "2025-06-01T12:00:00Z"
    assert made.digest == "sha256:" + hashlib.sha256(made.data).hexdigest()
    assert made.blobs == {manifest["layers"][0]["digest"]: envelope, manifest["config"]["digest"]: b"{}"}
    legacy = notary.signature_manifest(notary.sign_jws(notary.payload(DESCRIPTOR), p.ec), "jws", DESCRIPTOR,
                                       legacy=True).manifest
    assert "artifactType" not in legacy and legacy["config"]["mediaType"] == notary.ARTIFACT_TYPE
    assert legacy["layers"][0]["mediaType"] == "application/jose+json"


def push_image(registry, repo: str, tmp_path: Path, seed: int = 1) -> dict:
    builder = LayoutBuilder(tmp_path / f"layout-{seed}")
    digest = builder.image("image", [builder.layer(seed, 2048)])
    registry.push_tree(builder.path, digest, repo, "v1")
    return notary.subject_descriptor(registry, repo, "v1")


def blob(registry, repo: str, digest: str) -> bytes:
    response = registry.request("GET", f"/v2/{repo}/blobs/{digest}", scopes=[f"repository:{repo}:pull"])
    response.raise_for_status()
    return response.content


def test_attach_notary_through_the_tag_schema(p, new_registry, tmp_path):
    registry = new_registry()
    subject = push_image(registry, "app/signed", tmp_path)
    cose_envelope = notary.sign_cose(notary.payload(subject), p.rsa)
    jws_envelope = notary.sign_jws(notary.payload(subject), p.ec)
    first = notary.attach_notary(registry, "app/signed", "v1", cose_envelope, "application/cose")
    second = notary.attach_notary(registry, "app/signed", subject["digest"], jws_envelope, "application/jose+json")
    index = json.loads(registry.get_manifest("app/signed", "sha256-" + subject["digest"][7:])[0])
    assert [m["digest"] for m in index["manifests"]] == [first, second]
    assert all(m["artifactType"] == notary.ARTIFACT_TYPE for m in index["manifests"])
    assert "io.cncf.notary.x509chain.thumbprint#S256" in index["manifests"][0]["annotations"]
    manifest = json.loads(registry.get_manifest("app/signed", first)[0])
    assert manifest["subject"] == subject
    assert blob(registry, "app/signed", manifest["layers"][0]["digest"]) == cose_envelope
    assert blob(registry, "app/signed", manifest["config"]["digest"]) == b"{}"
    again = notary.attach_notary(registry, "app/signed", "v1", cose_envelope, "application/cose")
    assert again == first
    assert len(json.loads(registry.get_manifest("app/signed", "sha256-" + subject["digest"][7:])[0])["manifests"]) == 2


def test_attach_notary_through_the_referrers_api(p, new_registry, registry_front, tmp_path):
    upstream = new_registry()
    front = registry_front(upstream, Zot())
    registry = front.view(upstream)
    subject = push_image(registry, "app/signed", tmp_path)
    signed = notary.sign_image(registry, "app/signed", "v1", p.rsa, envelope="jws", referrers_api=True)
    assert signed.subject == subject
    session = requests.Session()
    session.trust_env = False
    listing = session.get(f"{front.url}/v2/app/signed/referrers/{subject['digest']}",
                          params={"artifactType": notary.ARTIFACT_TYPE}, timeout=10)
    assert listing.status_code == 200
    assert [m["digest"] for m in listing.json()["manifests"]] == [signed.digest]
    assert listing.json()["manifests"][0]["artifactType"] == notary.ARTIFACT_TYPE
    assert upstream.manifest_digest("app/signed", "sha256-" + subject["digest"][7:]) is None
    envelope = notary.decode(signed.envelope, notary.JWS)
    assert json.loads(envelope.payload)["targetArtifact"] == subject


def test_cosign_signatures(new_registry, tmp_path):
    registry = new_registry()
    subject = push_image(registry, "app/cosigned", tmp_path)
    key, other = cosign.generate_key(), cosign.generate_key()
    public = serialization.load_pem_public_key(key.write_public(tmp_path / "cosign.pub").read_bytes())
    digest = cosign.attach_cosign(registry, "app/cosigned", "v1", key)
    tag = "sha256-" + subject["digest"][7:] + ".sig"
    data, _ = registry.get_manifest("app/cosigned", tag)
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    manifest = json.loads(data)
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    payload = blob(registry, "app/cosigned", layer["digest"])
    assert json.loads(payload) == {"critical": {"identity": {"docker-reference": f"{registry.host}/app/cosigned"},
                                                "image": {"docker-manifest-digest": subject["digest"]},
                                                "type": "cosign container image signature"}, "optional": None}
    signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    public.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    config = json.loads(blob(registry, "app/cosigned", manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [layer["digest"]]

    cosign.attach_cosign(registry, "app/cosigned", "v1", key, sign_with=other)
    cosign.attach_cosign(registry, "app/cosigned", "v1", key, payload_digest="sha256:" + "00" * 32)
    layers = json.loads(registry.get_manifest("app/cosigned", tag)[0])["layers"]
    assert len(layers) == 3
    payloads = [blob(registry, "app/cosigned", layer["digest"]) for layer in layers]
    verdicts = [cosign.verify(key.public_pem, payload, layer["annotations"]["dev.cosignproject.cosign/signature"])
                for payload, layer in zip(payloads, layers)]
    assert verdicts == [True, False, True]
    assert json.loads(payloads[2])["critical"]["image"]["docker-manifest-digest"] == "sha256:" + "00" * 32


# -- notation's configuration folder ----------------------------------------------------------------

def test_trust_folder_layout(p, tmp_path):
    statements = [
        notary.policy("images", scopes=["localhost:5000/app/signed"], trust_stores=["ca:acme", "tsa:stamps"],
                      identities=[p.rsa.identity], override={"revocation": "skip"}, verify_timestamp="afterCertExpiry"),
        notary.policy("everything-else", level="skip"),
    ]
    folder = notary.trust_folder(tmp_path / "notation", policies=statements, stores={
        "ca:acme": [p.root],
        "tsa:stamps": [p.tsa_root.cert],
        "signingAuthority:sa": {"root.crt": p.root, "garbage.pem": b"not a certificate"},
    })
    document = json.loads((folder / "trustpolicy.oci.json").read_text())
    assert document["version"] == "1.0"
    first, second = document["trustPolicies"]
    assert first == {"name": "images", "registryScopes": ["localhost:5000/app/signed"],
                     "signatureVerification": {"level": "strict", "override": {"revocation": "skip"},
                                               "verifyTimestamp": "afterCertExpiry"},
                     "trustStores": ["ca:acme", "tsa:stamps"],
                     "trustedIdentities": ["x509.subject: C=US, ST=WA, L=Seattle, O=arcmirror testbed, CN=Signer RSA"]}
    assert second == {"name": "everything-else", "registryScopes": ["*"], "signatureVerification": {"level": "skip"}}
    stores = folder / "truststore" / "x509"
    [ca_file] = (stores / "ca" / "acme").iterdir()
    assert ca_file.suffix == ".pem" and x509.load_pem_x509_certificate(ca_file.read_bytes()) == p.root.cert
    [tsa_file] = (stores / "tsa" / "stamps").iterdir()
    assert x509.load_pem_x509_certificate(tsa_file.read_bytes()) == p.tsa_root.cert
    assert sorted(f.name for f in (stores / "signingAuthority" / "sa").iterdir()) == ["garbage.pem", "root.crt"]
    whole = notary.trust_folder(tmp_path / "raw", policies={"version": "2.0", "trustPolicies": []})
    assert json.loads((whole / "trustpolicy.oci.json").read_text()) == {"version": "2.0", "trustPolicies": []}
