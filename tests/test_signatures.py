"""Signatures verified where arcmirror runs, against real registries: discover shows who signed, mirror and pull
verify at the source before anything of an image is written, import verifies every image of an archive before any
is pushed (against this side's own trust folder), verify checks the target, the gate says who signed each image.

The release is signed by the test bed's own Notary signer (``testbed.notary``, from the specification) and cosign
signer; nothing of arcmirror grades itself.
"""

from __future__ import annotations

import json
import time

import pytest
from helpers import invoke, registry_env, walk

from testbed import cosign as cosign_signer
from testbed import notary, pki, tsa
from testbed.images import build_release
from testbed.personalities import Zot
from testbed.registry import Registry
from testbed.skopeo import load_release

TAG = "v1.41.0_2025-09-09"
NAMES = ["arc-controller", "arc-sqlmi", "arc-bootstrapper"]
SUBJECT = {"C": "US", "ST": "Washington", "L": "Redmond", "O": "Arc Publisher"}
IDENTITY = "x509.subject: C=US, ST=Washington, L=Redmond, O=Arc Publisher, CN=Arc Signing"


class Publisher:
    def __init__(self):
        self.root = pki.CA.root("Arc Publisher Root", key=pki.pooled_key("rsa-3072", "publisher-root"),
                                subject={"C": "US", "ST": "Washington", "O": "Arc Publisher"})
        self.leaf = self.root.intermediate("Arc Publisher Signing CA").leaf(
            "Arc Signing", key=pki.pooled_key("rsa-3072", "publisher-leaf"), subject=SUBJECT)
        self.tsa_root = pki.CA.root("Arc TSA Root", key="ec-p384")
        self.tsa = tsa.TSA(self.tsa_root.tsa(key=pki.pooled_key("rsa-2048", "publisher-tsa")))
        self.stranger = pki.CA.root("Stranger Root", key="ec-p256").leaf(
            "Stranger", key="ec-p256", subject={"C": "US", "ST": "Nowhere", "O": "Stranger"})
        self.cosign = cosign_signer.generate_key()


@pytest.fixture(scope="module")
def publisher():
    return Publisher()


@pytest.fixture(scope="module")
def signed(publisher, tmp_path_factory, testbed_tools):
    """arc-controller: COSE, timestamped, plus a signed SBOM (a referrer of a referrer) and a cosign signature;
    arc-sqlmi: its index signed (JWS) and its arm64 manifest signed on its own; arc-bootstrapper: unsigned."""
    work = tmp_path_factory.mktemp("signed")
    refs = build_release(work / "layout", NAMES, TAG, multiarch=["arc-sqlmi"])
    with Registry(work / "source") as source:
        release = load_release(work / "layout", refs, source, "arcdata", TAG)
        notary.sign_image(source, "arcdata/arc-controller", TAG, publisher.leaf, envelope="cose", timestamp=publisher.tsa)
        notary.sign_image(source, "arcdata/arc-sqlmi", TAG, publisher.leaf, envelope="jws")
        index = json.loads(source.get_manifest("arcdata/arc-sqlmi", TAG)[0])
        release.arm64 = next(m["digest"] for m in index["manifests"] if m["platform"]["architecture"] == "arm64")
        release.amd64 = next(m["digest"] for m in index["manifests"] if m["platform"]["architecture"] == "amd64")
        notary.sign_image(source, "arcdata/arc-sqlmi", release.arm64, publisher.leaf, envelope="cose")
        # an SBOM of arc-controller, itself signed by the publisher: a referrer of a referrer
        from testbed.signing import SBOM, attach
        sbom = attach(source, "arcdata/arc-controller", TAG, work / "sbom", kinds=(SBOM,)).digests[SBOM]
        notary.sign_image(source, "arcdata/arc-controller", sbom, publisher.leaf, envelope="cose")
        cosign_signer.attach_cosign(source, "arcdata/arc-controller", TAG, publisher.cosign)
        release.work = work
        yield release


def trust(tmp_path, publisher, *, level="strict", scopes=("*",), extra=(), tsa_store=True, identities=(IDENTITY,),
          verify_timestamp="afterCertExpiry"):
    stores = {"ca:arc": [publisher.root]}
    names = ["ca:arc"]
    if tsa_store:
        stores["tsa:arc"] = [publisher.tsa_root]
        names.append("tsa:arc")
    statements = [notary.policy("arc", scopes=scopes, level=level, trust_stores=names, identities=identities,
                                verify_timestamp=verify_timestamp), *extra]
    return notary.trust_folder(tmp_path / "trust", policies=statements, stores=stores)


def env_for(source, target, folder=None, **extra):
    env = {**registry_env("SOURCE_DOCKER", source), **registry_env("TARGET_DOCKER", target),
           "SOURCE_DOCKER_REPOSITORY": "arcdata", "TARGET_DOCKER_REPOSITORY": "mirror",
           "SOURCE_DOCKER_TAG": TAG, "MIRROR_IMAGES": ",".join(NAMES)}
    if folder is not None:
        env["MIRROR_TRUST_DIR"] = str(folder)
    env.update(extra)
    return env


def images(run, name="mirror.json"):
    return {i["name"]: i for i in run.record(name)["images"]}


def test_discover_shows_who_signed_each_image_without_a_trust_folder(signed, publisher, new_registry, tmp_path):
    run = invoke(["discover"], env_for(signed.registry, new_registry()), tmp_path)
    assert run.code == 0, run.output
    plan = {i["name"]: i for i in json.loads((tmp_path / "reports/plan.json").read_text())["images"]}
    controller = [s for s in plan["arc-controller"]["signatures"] if s["kind"] == "notary"]
    assert len(controller) == 2  # the image's own and the SBOM's
    own = next(s for s in controller if s["subject"] == signed.digests["arc-controller"])
    assert own["format"] == "COSE" and "O=Arc Publisher" in own["signer"] and own["timestamped"]
    assert [s["format"] for s in plan["arc-sqlmi"]["signatures"] if s["kind"] == "notary"].count("JWS") == 1
    assert any(s["kind"] == "cosign" for s in plan["arc-controller"]["signatures"])
    assert plan["arc-bootstrapper"]["signatures"] == []
    report = run.report("discover.xml")
    assert "signed by CN=Arc Signing" in report and "signatures: none" in report


def test_mirror_verifies_at_the_source_and_keeps_an_unsigned_image_out(signed, publisher, new_registry, tmp_path):
    target = new_registry()
    started = time.monotonic()
    run = invoke(["mirror"], env_for(signed.registry, target, trust(tmp_path, publisher)), tmp_path)
    elapsed = time.monotonic() - started
    assert run.code == 1, run.output
    found = images(run)
    assert found["arc-controller"]["status"] == "copied" and found["arc-sqlmi"]["status"] == "copied"
    assert found["arc-controller"]["signatures"]["signers"] == [
        "CN=Arc Signing,O=Arc Publisher,L=Redmond,ST=Washington,C=US"]
    bootstrapper = found["arc-bootstrapper"]
    assert bootstrapper["status"] == "failed" and "no Notary signature is associated" in bootstrapper["error"]
    assert target.tags("mirror/arc-bootstrapper") == []  # nothing of it in the target
    own = set(walk(signed.registry, "arcdata/arc-bootstrapper", TAG)[0]) - {
        d for n in ("arc-controller", "arc-sqlmi") for d in walk(signed.registry, f"arcdata/{n}", TAG)[0]}
    assert own and not own & target.blob_digests()
    report = run.report()
    assert "signature verification of" in report and "authenticity: passed (enforce)" in report
    assert "no timestamp verified: verifyTimestamp is afterCertExpiry" in report
    print(f"mirror with verification of 3 images: {elapsed:.2f} s")
    always = trust(tmp_path / "always", publisher, verify_timestamp="always")
    stamped = invoke(["mirror"], env_for(signed.registry, new_registry(), always, MIRROR_IMAGES="arc-controller"),
                     tmp_path / "always")
    assert stamped.code == 0, stamped.output
    assert "timestamp: " in stamped.report() and "by CN=Test TSA" in stamped.report()


@pytest.mark.parametrize("level, passes", [("strict", False), ("permissive", False), ("audit", False)])
def test_an_unsigned_image_fails_under_every_level_but_skip(level, passes, signed, publisher, new_registry, tmp_path):
    folder = trust(tmp_path, publisher, level=level)
    run = invoke(["mirror"], env_for(signed.registry, new_registry(), folder, MIRROR_IMAGES="arc-bootstrapper"), tmp_path)
    assert (run.code == 0) == passes, run.output
    skip = trust(tmp_path / "skip", publisher, scopes=[f"{signed.registry.host}/arcdata/arc-controller"],
                 extra=[notary.policy("rest", level="skip")])
    assert invoke(["mirror"], env_for(signed.registry, new_registry(), skip, MIRROR_IMAGES="arc-bootstrapper"),
                  tmp_path / "s").code == 0


def test_a_signer_outside_the_trusted_identities_fails(signed, publisher, new_registry, tmp_path):
    folder = trust(tmp_path, publisher, identities=["x509.subject: C=US, ST=Washington, O=Someone Else"])
    run = invoke(["mirror"], env_for(signed.registry, new_registry(), folder, MIRROR_IMAGES="arc-controller"), tmp_path)
    assert run.code == 1
    assert "is not one of the trusted identities" in images(run)["arc-controller"]["error"] or \
        "is not one of the trusted identities" in run.report()


def test_platforms_kept_are_verified_on_their_own(signed, publisher, new_registry, tmp_path):
    folder = trust(tmp_path, publisher)
    arm = invoke(["mirror"], env_for(signed.registry, new_registry(), folder, MIRROR_IMAGES="arc-sqlmi",
                                     MIRROR_PLATFORMS="linux/arm64"), tmp_path / "arm")
    assert arm.code == 0, arm.output
    assert "rewritten by MIRROR_PLATFORMS, so it has no signature" in arm.report()
    amd = invoke(["mirror"], env_for(signed.registry, new_registry(), folder, MIRROR_IMAGES="arc-sqlmi",
                                     MIRROR_PLATFORMS="linux/amd64"), tmp_path / "amd")
    assert amd.code == 1 and signed.amd64 in images(amd)["arc-sqlmi"]["error"]


def test_import_verifies_the_archive_against_this_side_s_trust_folder(signed, publisher, new_registry, tmp_path):
    connected = tmp_path / "connected"
    env = {**registry_env("SOURCE_DOCKER", signed.registry), "SOURCE_DOCKER_REPOSITORY": "arcdata",
           "SOURCE_DOCKER_TAG": TAG, "MIRROR_IMAGES": "arc-controller,arc-sqlmi"}
    archive = connected / "release.tar"
    assert invoke(["export", "--archive", str(archive)], env, connected).code == 0
    # the disconnected side trusts only a stranger: every image refused before any is pushed
    stranger = notary.trust_folder(tmp_path / "stranger", policies=[notary.policy("x", trust_stores=["ca:x"])],
                                   stores={"ca:x": [publisher.stranger]})
    airgap = new_registry(auth="basic")
    side = {**registry_env("TARGET_DOCKER", airgap), "TARGET_DOCKER_REPOSITORY": "arc", "MIRROR_TRUST_DIR": str(stranger)}
    refused = invoke(["import", "--archive", str(archive)], side, tmp_path / "refused")
    assert refused.code == 1
    assert "not imported: signature verification failed" in refused.report("import.xml")
    assert airgap.catalog() == []  # nothing of any image was pushed
    side["MIRROR_TRUST_DIR"] = str(trust(tmp_path, publisher))
    accepted = invoke(["import", "--archive", str(archive)], side, tmp_path / "accepted")
    assert accepted.code == 0, accepted.output
    assert airgap.manifest_digest("arc/arc-controller", TAG) == signed.digests["arc-controller"]
    assert "signature verification of" in accepted.report("verify.xml")  # verified again in the target


def test_verify_checks_signatures_in_the_target_and_the_gate_names_the_signers(signed, publisher, new_registry,
                                                                               tmp_path):
    target = new_registry()
    env = env_for(signed.registry, target)
    assert invoke(["discover"], env, tmp_path).code == 0
    assert invoke(["mirror", "--plan", str(tmp_path / "reports/plan.json")], env, tmp_path).code == 0
    verified = invoke(["verify"], {**env, "MIRROR_TRUST_DIR": str(trust(tmp_path, publisher))}, tmp_path)
    assert verified.code == 1
    record = {i["name"]: i for i in verified.record("verify.json")["images"]}
    assert record["arc-controller"]["ok"] and not record["arc-bootstrapper"]["ok"]
    gate = invoke(["gate"], {}, tmp_path)
    assert gate.code == 1
    assert "arc-controller: CN=Arc Signing" in gate.stdout and "arc-bootstrapper: no verified signature" in gate.stdout


def test_cosign_key_signatures(signed, publisher, new_registry, tmp_path):
    key = publisher.cosign.write_public(tmp_path / "cosign.pub")
    other = cosign_signer.generate_key().write_public(tmp_path / "other.pub")
    env = env_for(signed.registry, new_registry(), MIRROR_IMAGES="arc-controller", MIRROR_COSIGN_KEYS=str(key))
    assert invoke(["mirror"], env, tmp_path / "right").code == 0
    wrong = invoke(["mirror"], {**env, "MIRROR_COSIGN_KEYS": str(other)}, tmp_path / "wrong")
    assert wrong.code == 1 and "does not verify with any key of MIRROR_COSIGN_KEYS" in images(wrong)["arc-controller"]["error"]
    unsigned = invoke(["mirror"], {**env, "MIRROR_IMAGES": "arc-bootstrapper"}, tmp_path / "unsigned")
    assert unsigned.code == 1 and "no cosign signature" in images(unsigned)["arc-bootstrapper"]["error"]


def test_cosign_payload_for_another_image(publisher, new_registry, tmp_path):
    layout = tmp_path / "layout"
    refs = build_release(layout, ["arc-controller", "arc-sqlmi"], TAG)
    source = new_registry()
    load_release(layout, refs, source, "arcdata", TAG)
    other = source.manifest_digest("arcdata/arc-sqlmi", TAG)
    cosign_signer.attach_cosign(source, "arcdata/arc-controller", TAG, publisher.cosign, payload_digest=other)
    key = publisher.cosign.write_public(tmp_path / "cosign.pub")
    run = invoke(["mirror"], env_for(source, new_registry(), MIRROR_IMAGES="arc-controller",
                                     MIRROR_COSIGN_KEYS=str(key)), tmp_path)
    assert run.code == 1 and f"is for {other}" in images(run)["arc-controller"]["error"]


def test_signatures_found_through_a_source_s_referrers_api(publisher, new_registry, registry_front, tmp_path):
    upstream = new_registry()
    front = registry_front(upstream, Zot())
    layout = tmp_path / "layout"
    refs = build_release(layout, ["arc-controller"], TAG)
    load_release(layout, refs, front.view(upstream), "arcdata", TAG)
    notary.sign_image(front.view(upstream), "arcdata/arc-controller", TAG, publisher.leaf, referrers_api=True)
    run = invoke(["mirror"], env_for(front, new_registry(), trust(tmp_path, publisher), MIRROR_IMAGES="arc-controller"),
                 tmp_path)
    assert run.code == 0, run.output
    assert any("/referrers/" in s.path for s in front.requests)


def test_a_trust_folder_that_cannot_be_used_is_a_configuration_error(signed, new_registry, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "trustpolicy.oci.json").write_text(json.dumps({"version": "1.0", "trustPolicies": [
        notary.policy("a", trust_stores=["ca:a"], override={"integrity": "log"})]}))
    run = invoke(["mirror"], env_for(signed.registry, new_registry(), folder), tmp_path)
    assert run.code == 2 and "integrity cannot be overridden" in run.stderr


def test_the_engine_route_does_not_pretend_to_verify(signed, publisher, new_registry, tmp_path):
    run = invoke(["mirror"], env_for(signed.registry, new_registry(), trust(tmp_path, publisher),
                                     MIRROR_ENGINE="docker"), tmp_path)
    assert run.code == 2 and "needs the registry route" in run.stderr
