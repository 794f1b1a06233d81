"""Notary Project signature verification, case by case and level by level (no registry: the envelopes are the test
bed's own, written from the specification by ``testbed.notary``, and notaryproject's own test data).

Every check has a case that breaks exactly that check, under strict, permissive, audit and skip; the expected
verdicts follow the spec's table (trust-store-trust-policy.md § Signature Verification details): integrity and the
payload binding are always enforced, authenticity is logged under audit, the authentic timestamp and expiry are
logged under permissive and audit, skip verifies nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from arcmirror.trust import notary as verifier
from arcmirror.trust.policy import PolicyError, parse_dn, parse_policy
from arcmirror.trust.store import TrustFolder, TrustFolderError
from testbed import notary, pki, tsa

UTC = dt.timezone.utc
NOW = dt.datetime.now(UTC)
COSE, JWS = "application/cose", "application/jose+json"
DESCRIPTOR = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "c0" * 32, "size": 1234}
LEVELS = ("strict", "permissive", "audit", "skip")
FIXTURES = Path(__file__).parent / "data" / "notary"


class PKI:
    """A publisher's PKI (root, intermediate, signing leaves), a TSA, and an attacker's."""

    def __init__(self):
        self.root = pki.CA.root("Arc Test Root CA", key=pki.pooled_key("rsa-3072", "root"),
                                subject={"C": "US", "ST": "WA", "O": "Arc Test"})
        self.intermediate = self.root.intermediate("Arc Test Signing CA")
        self.leaf = self.intermediate.leaf("Arc Signer", key=pki.pooled_key("rsa-3072", "leaf"),
                                           subject={"C": "US", "ST": "WA", "L": "Redmond", "O": "Arc Test"})
        self.ec_leaf = self.intermediate.leaf("Arc EC Signer", key="ec-p384",
                                              subject={"C": "US", "ST": "WA", "O": "Arc Test"})
        self.expired = self.intermediate.leaf("Arc Expired Signer", key="ec-p256",
                                              subject={"C": "US", "ST": "WA", "O": "Arc Test"},
                                              not_before=dt.timedelta(days=-30), not_after=dt.timedelta(days=-1))
        self.bad_eku = self.intermediate.leaf("Arc Server", key="ec-p256", eku=["serverAuth"],
                                              subject={"C": "US", "ST": "WA", "O": "Arc Test"})
        self.tsa_root = pki.CA.root("Test TSA Root", key="ec-p384")
        self.tsa = tsa.TSA(self.tsa_root.tsa(key=pki.pooled_key("rsa-2048", "tsa")))
        self.impostor = self.root.impostor()  # the same name as the publisher's root, another key
        self.stranger = pki.CA.root("Someone Else Root", key="ec-p256")


@pytest.fixture(scope="module")
def p() -> PKI:
    return PKI()


def folder(tmp_path: Path, p: PKI, level: str, *, identities=("*",), override=None, verify_timestamp=None,
           tsa_store=False, crls=()) -> TrustFolder:
    stores = {"ca:arc": [p.root]}
    names = ["ca:arc"]
    if tsa_store:
        stores["tsa:timestamps"] = [p.tsa_root]
        names.append("tsa:timestamps")
    statement = notary.policy("arc", level=level, trust_stores=names if level != "skip" else (),
                              identities=identities if level != "skip" else ("*",), override=override,
                              verify_timestamp=verify_timestamp)
    path = notary.trust_folder(tmp_path / f"trust-{level}", policies=[statement], stores=stores if level != "skip" else {})
    for number, crl in enumerate(crls):
        (path / "crl").mkdir(exist_ok=True)
        pki.write_crl(path / "crl" / f"{number}.crl", crl)
    return TrustFolder.open(path)


def check(envelope: bytes, media_type: str, trust: TrustFolder, descriptor=DESCRIPTOR) -> verifier.SignatureResult:
    statement = trust.policy.for_reference("registry.example/arcdata/arc-controller@" + descriptor["digest"])
    if statement.level == "skip":
        return verifier.SignatureResult("sha256:skip", "skipped")
    return verifier.verify("sha256:" + "51" * 32, media_type, envelope, descriptor, statement, trust)


def payload(**knobs) -> bytes:
    return notary.payload(DESCRIPTOR, **knobs)


#: case -> (how to sign it, the check that must fail (None: passes), the levels under which the image passes,
#: whether the policy verifies timestamps: a tsa store and verifyTimestamp "always")
def cases(p: PKI) -> dict:
    other = {**DESCRIPTOR, "digest": "sha256:" + "0d" * 32}
    return {
        "valid, RSA-3072 PS384": (lambda f: f(payload(), p.leaf), None, LEVELS, False),
        "valid ES384, timestamped": (lambda f: f(payload(), p.ec_leaf, timestamp=p.tsa), None, LEVELS, True),
        "payload for another digest": (lambda f: f(notary.payload(other), p.leaf), "payload", ("skip",), False),
        "payload altered after signing": (lambda f: f(payload(), p.leaf, payload_after=notary.payload(other)),
                                          "integrity", ("skip",), False),
        "unknown critical header": (lambda f: f(payload(), p.leaf, unknown_critical="io.example.mustunderstand",
                                                protected={"io.example.mustunderstand": "x"}), "integrity", ("skip",),
                                    False),
        "untrusted root": (lambda f: f(payload(), p.stranger.leaf("Stranger", key="ec-p256",
                                                                  subject={"C": "US", "ST": "WA", "O": "X"})),
                           "authenticity", ("audit", "skip"), False),
        "attacker's root carried in the envelope": (
            lambda f: f(payload(), p.impostor.leaf("Arc Signer", key="ec-p256",
                                                   subject={"C": "US", "ST": "WA", "O": "Arc Test"})),
            "authenticity", ("audit", "skip"), False),
        "attacker's TSA root carried in the token": (
            lambda f: f(payload(), p.leaf, timestamp=tsa.attacker_tsa(p.tsa_root)), "authenticTimestamp",
            ("permissive", "audit", "skip"), True),
        "leaf with a forbidden EKU (serverAuth)": (lambda f: f(payload(), p.bad_eku), "integrity", ("skip",), False),
        "expired leaf, no timestamp": (lambda f: f(payload(), p.expired), "authenticTimestamp",
                                       ("permissive", "audit", "skip"), False),
        "expired leaf, timestamped while valid": (
            lambda f: f(payload(), p.expired, signing_time=NOW - dt.timedelta(days=10),
                        timestamp=p.tsa.stamper(gen_time=NOW - dt.timedelta(days=10))), None, LEVELS, True),
        "expired leaf, timestamped after": (
            lambda f: f(payload(), p.expired, timestamp=p.tsa), "authenticTimestamp", ("permissive", "audit", "skip"),
            True),
        "expired signature": (lambda f: f(payload(), p.leaf, signing_time=NOW - dt.timedelta(days=3),
                                          expiry=NOW - dt.timedelta(days=1)), "expiry", ("permissive", "audit", "skip"),
                              False),
        "timestamp over the wrong bytes": (lambda f: f(payload(), p.leaf, timestamp=p.tsa, timestamp_over=b"other"),
                                           "authenticTimestamp", ("permissive", "audit", "skip"), True),
        "timestamp required, none": (lambda f: f(payload(), p.leaf), "authenticTimestamp",
                                     ("permissive", "audit", "skip"), True),
        "alg not the key's": (lambda f: f(payload(), p.leaf, alg="PS256"), "integrity", ("skip",), False),
        "chain without its root": (lambda f: f(payload(), p.leaf, chain=[p.leaf.cert, p.intermediate.cert]),
                                   "integrity", ("skip",), False),
    }


@pytest.mark.parametrize("envelope", ["cose", "jws"])
def test_the_verdict_table(envelope, p, tmp_path):
    """Each case under each level: passes where the spec says, and the failing check is exactly the one broken."""
    sign = notary.sign_cose if envelope == "cose" else notary.sign_jws
    media_type = COSE if envelope == "cose" else JWS
    folders = {(level, stamped): folder(tmp_path / str(stamped), p, level, tsa_store=stamped)
               for level in LEVELS for stamped in (False, True)}
    table = []
    for name, (make, broken, passes, stamped) in cases(p).items():
        data = make(sign)
        for level in LEVELS:
            result = check(data, media_type, folders[(level, stamped)])
            failed = [c.name for c in result.checks if c.ok is False]
            table.append((name, level, result.ok, failed))
            assert result.ok == (level in passes), (name, level, result.error, [c.line() for c in result.checks])
            if level != "skip":
                assert failed == ([broken] if broken else []), (name, level, [c.line() for c in result.checks])
    print("\n".join(f"{n:45} {lv:10} {'pass' if ok else 'FAIL'} {','.join(f)}" for n, lv, ok, f in table))


def test_the_messages_say_what_failed_and_what_to_do(p, tmp_path):
    strict = folder(tmp_path, p, "strict", tsa_store=False)
    untrusted = check(notary.sign_cose(payload(), p.stranger.leaf("Stranger", key="ec-p256",
                                                                    subject={"C": "US", "ST": "WA", "O": "X"})),
                      COSE, strict)
    assert "no certificate of it is in the trust stores ca:arc" in untrusted.error
    assert "truststore/x509/ca/" in untrusted.error
    expired = check(notary.sign_cose(payload(), p.expired), COSE, folder(tmp_path / "n", p, "strict", tsa_store=False))
    assert "is not valid now" in expired.error and "add a tsa trust store" in expired.error
    assert check(notary.sign_cose(payload(), p.leaf), COSE, strict).ok  # no tsa store: the leaf valid now suffices
    always = check(notary.sign_cose(payload(), p.leaf), COSE, folder(tmp_path / "a", p, "strict", tsa_store=True))
    assert not always.ok and "no timestamp countersignature" in always.error
    later = folder(tmp_path / "x", p, "strict", tsa_store=True, verify_timestamp="afterCertExpiry")
    assert check(notary.sign_cose(payload(), p.leaf), COSE, later).ok  # required once a certificate expired only


def test_trusted_identities(p, tmp_path):
    envelope = notary.sign_jws(payload(), p.leaf)
    exact = folder(tmp_path / "1", p, "strict", tsa_store=False, identities=["x509.subject: C=US, ST=WA, L=Redmond, O=Arc Test, CN=Arc Signer"])
    subset = folder(tmp_path / "2", p, "strict", tsa_store=False, identities=["x509.subject: O=Arc Test, C=US, ST=WA"])
    other = folder(tmp_path / "3", p, "strict", tsa_store=False, identities=["x509.subject: C=US, ST=WA, O=Someone Else"])
    audit = folder(tmp_path / "4", p, "audit", tsa_store=False, identities=["x509.subject: C=US, ST=WA, O=Someone Else"])
    assert check(envelope, JWS, exact).ok and check(envelope, JWS, subset).ok
    refused = check(envelope, JWS, other)
    assert not refused.ok and "is not one of the trusted identities" in refused.error
    assert check(envelope, JWS, audit).ok  # audit logs authenticity


def test_revocation_offline(p, tmp_path):
    """A certificate naming a CRL cannot be checked online: strict fails saying what to set; a CRL the site carried
    in decides (not revoked: passes; revoked: fails)."""
    intermediate = p.root.intermediate("Arc CRL CA", key="ec-p384")
    leaf = intermediate.leaf("Arc CRL Signer", key="ec-p256", crl_urls=["http://crl.example/arc.crl"],
                             subject={"C": "US", "ST": "WA", "O": "Arc Test"})
    envelope = notary.sign_cose(payload(), leaf)
    unknown = check(envelope, COSE, folder(tmp_path / "s", p, "strict"))
    assert not unknown.ok and unknown.error.startswith("revocation: ") and "crl/" in unknown.error
    assert "\"revocation\": \"log\"" in unknown.error
    assert check(envelope, COSE, folder(tmp_path / "p", p, "permissive")).ok
    assert check(envelope, COSE, folder(tmp_path / "k", p, "strict", override={"revocation": "skip"})).ok
    fresh = intermediate.crl([], next_update=dt.timedelta(days=7))
    assert check(envelope, COSE, folder(tmp_path / "c", p, "strict", crls=[fresh])).ok
    revoked = intermediate.crl([leaf], next_update=dt.timedelta(days=7))
    result = check(envelope, COSE, folder(tmp_path / "r", p, "strict", crls=[revoked]))
    assert not result.ok and "is revoked" in result.error
    stale = intermediate.crl([], last_update=dt.timedelta(days=-10), next_update=dt.timedelta(days=-1))
    assert not check(envelope, COSE, folder(tmp_path / "o", p, "strict", crls=[stale])).ok
    forged = p.stranger.crl([], next_update=dt.timedelta(days=7))  # not signed by the leaf's issuer
    assert not check(envelope, COSE, folder(tmp_path / "f", p, "strict", crls=[forged])).ok


def test_signing_authority_scheme(p, tmp_path):
    statement = notary.policy("arc", trust_stores=["signingAuthority:arc"])
    path = notary.trust_folder(tmp_path / "sa", policies=[statement], stores={"signingAuthority:arc": [p.root]})
    trust = TrustFolder.open(path)
    good = notary.sign_cose(payload(), p.leaf, scheme="notary.x509.signingAuthority")
    assert check(good, COSE, trust).ok
    late = notary.sign_cose(payload(), p.expired, scheme="notary.x509.signingAuthority", signing_time=NOW)
    result = check(late, COSE, trust)
    assert not result.ok and "was not valid at the authentic signing time" in result.error
    # the wrong store type: a notary.x509 signature is not verified with a signingAuthority store
    assert not check(notary.sign_cose(payload(), p.leaf), COSE, trust).ok


# -- notaryproject's own envelopes (notation-go, Apache-2.0: tests/data/notary/PROVENANCE.md) -------------------

def fixture_folder(tmp_path, ca=None, tsa_root=None, level="strict", override=None):
    stores, names = {}, []
    if ca:
        stores["ca:fixture"] = {ca.name: ca.read_bytes()}
        names.append("ca:fixture")
    if tsa_root:
        stores["tsa:fixture"] = {tsa_root.name: tsa_root.read_bytes()}
        names.append("tsa:fixture")
    statement = notary.policy("fixture", level=level, trust_stores=names, override=override)
    return TrustFolder.open(notary.trust_folder(tmp_path, policies=[statement], stores=stores))


NOTATION_TARGET = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "digest": "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0", "size": 481}
TIMESTAMPED_TARGET = {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                      "digest": "sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda", "size": 528}


@pytest.mark.parametrize("name, media_type", [("cose_signature.sig", COSE), ("jws_signature.sig", JWS)])
def test_notation_s_own_envelopes_verify(name, media_type, tmp_path):
    trust = fixture_folder(tmp_path, ca=FIXTURES / "alpine.pem")
    result = check((FIXTURES / name).read_bytes(), media_type, trust, NOTATION_TARGET)
    assert result.ok, result.error
    wrong = check((FIXTURES / name).read_bytes(), media_type, trust, {**NOTATION_TARGET, "size": 480})
    assert not wrong.ok and wrong.error.startswith("payload")


@pytest.mark.parametrize("name, media_type", [("coseWithTimestamp.sig", COSE), ("jwsWithTimestamp.sig", JWS)])
def test_notation_s_timestamped_envelopes(name, media_type, tmp_path):
    """Their TSA (GlobalSign) names OCSP and CRL services: offline, the TSA's revocation cannot be known, which the
    spec enforces whenever the timestamp is verified; the timestamp itself verifies (its time is reported)."""
    trust = fixture_folder(tmp_path / "t", ca=FIXTURES / "TestTimestamp.crt", tsa_root=FIXTURES / "globalsignRoot.cer")
    result = check((FIXTURES / name).read_bytes(), media_type, trust, TIMESTAMPED_TARGET)
    assert not result.ok and "timestamping certificate" in result.error and "cannot be determined offline" in result.error
    logged = fixture_folder(tmp_path / "l", ca=FIXTURES / "TestTimestamp.crt", tsa_root=FIXTURES / "globalsignRoot.cer",
                            override={"authenticTimestamp": "log"})
    assert check((FIXTURES / name).read_bytes(), media_type, logged, TIMESTAMPED_TARGET).ok


def test_notation_s_expired_leaf_saved_by_its_timestamp(tmp_path):
    """notation-go's coseExpiredWithTimestamp: the leaf was valid for ten minutes in 2024, the GlobalSign timestamp
    falls inside them. Without a tsa store the expired leaf fails; with it, the timestamp is what is checked."""
    data = (FIXTURES / "coseExpiredWithTimestamp.sig").read_bytes()
    without = check(data, COSE, fixture_folder(tmp_path / "w", ca=FIXTURES / "testTSA-leaf.pem"), TIMESTAMPED_TARGET)
    assert not without.ok and "is not valid now" in without.error
    logged = fixture_folder(tmp_path / "l", ca=FIXTURES / "testTSA-leaf.pem", tsa_root=FIXTURES / "globalsignRoot.cer",
                            override={"revocation": "skip"})
    result = check(data, COSE, logged, TIMESTAMPED_TARGET)
    stamp = next(c for c in result.checks if c.name == "authenticTimestamp")
    assert result.timestamp == dt.datetime(2024, 6, 18, 7, 21, 12, tzinfo=UTC)
    assert "cannot be determined offline" in stamp.message  # the timestamp verified; only the TSA's revocation is unknown


# -- the trust folder and policy, as notation validates them -----------------------------------------------------

@pytest.mark.parametrize("document, words", [
    ({"version": "2.0", "trustPolicies": []}, "version"),
    ({"version": "1.0", "trustPolicies": [notary.policy("a", trust_stores=["ca:x"]),
                                          notary.policy("a", scopes=["r.example/x"], trust_stores=["ca:x"])]},
     "named 'a'"),
    ({"version": "1.0", "trustPolicies": [notary.policy("a", trust_stores=["ca:x"]),
                                          notary.policy("b", trust_stores=["ca:x"])]}, "more than one place"),
    ({"version": "1.0", "trustPolicies": [notary.policy("a", trust_stores=["ca:x"], override={"integrity": "log"})]},
     "integrity cannot be overridden"),
    ({"version": "1.0", "trustPolicies": [notary.policy("a", trust_stores=["ca:x"], override={"expiry": "skip"})]},
     "expiry can be set to enforce or log"),
    ({"version": "1.0", "trustPolicies": [notary.policy("a", trust_stores=["x509:x"])]}, "trust store"),
    ({"version": "1.0", "trustPolicies": [notary.policy("a", trust_stores=["ca:x"],
                                                        identities=["x509.subject: CN=only"])]}, "needs C, ST and O"),
    ({"version": "1.0", "trustPolicies": [notary.policy("a", scopes=["notascope"], trust_stores=["ca:x"])]},
     "is not registry/repository"),
])
def test_a_trust_policy_notation_would_refuse_is_refused(document, words):
    with pytest.raises(PolicyError, match=words):
        parse_policy(document, "trustpolicy.oci.json")


def test_scopes_choose_the_statement():
    policy = parse_policy({"version": "1.0", "trustPolicies": [
        notary.policy("mcr", scopes=["mcr.microsoft.com/arcdata/arc-controller"], trust_stores=["ca:ms"]),
        notary.policy("rest", level="skip")]}, "p")
    assert policy.for_reference("mcr.microsoft.com/arcdata/arc-controller@sha256:00").name == "mcr"
    assert policy.for_reference("mcr.microsoft.com/arcdata/arc-sqlmi@sha256:00").name == "rest"


def test_distinguished_names_as_notation_reads_them():
    assert parse_dn("CN=a\\,b, O=Microsoft Corporation, L=Redmond, S=Washington, C=US") == \
        {"CN": "a,b", "O": "Microsoft Corporation", "L": "Redmond", "ST": "Washington", "C": "US"}
    for bad in ("C=US, ST=WA, O=a+OU=b", "C=US, ST=WA, O=a, O=b", "C=US, O=a", "C=US, ST=WA, O=#0101"):
        with pytest.raises(ValueError):
            parse_dn(bad)


def test_a_trust_store_notation_would_refuse_is_refused(p, tmp_path):
    statement = notary.policy("arc", trust_stores=["ca:arc"])
    path = notary.trust_folder(tmp_path / "t", policies=[statement], stores={"ca:arc": [p.root]})
    (path / "truststore/x509/ca/arc/sub").mkdir()
    trust = TrustFolder.open(path)
    with pytest.raises(TrustFolderError, match="not a regular file"):
        trust.certificates("ca", ["arc"])
    result = check(notary.sign_cose(payload(), p.leaf), COSE, trust)
    assert not result.ok and result.error.startswith("authenticity")
    shutil.rmtree(path / "truststore/x509/ca/arc/sub")
    (path / "truststore/x509/ca/arc/leaf.pem").write_bytes(p.leaf.pem)  # neither a CA nor self-signed
    with pytest.raises(TrustFolderError, match="neither a CA nor self-signed"):
        TrustFolder.open(path).certificates("ca", ["arc"])
    (path / "trustpolicy.json").write_text(json.dumps({"version": "1.0", "trustPolicies": []}))
    assert TrustFolder.open(path).policy.source.endswith("trustpolicy.oci.json")  # the .oci one wins


def test_a_run_without_a_trust_folder_loads_no_cryptography():
    """Verification's libraries are imported only when MIRROR_TRUST_DIR or MIRROR_COSIGN_KEYS asks for them."""
    import subprocess
    import sys

    code = ("import sys, arcmirror.tasks, arcmirror.runs.mirror, arcmirror.runs.discover, arcmirror.runs.verify, "
            "arcmirror.runs.airgap; print(sorted({m.split('.')[0] for m in sys.modules} & {'cryptography', 'cbor2', "
            "'asn1crypto'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
