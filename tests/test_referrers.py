"""Signatures, SBOMs and attestations (OCI referrers, cosign tags) travel with the image."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from helpers import invoke, registry_env

from testbed.images import build_release
from testbed.signing import NOTATION, SBOM, attach
from testbed.skopeo import load_release

TAG = "v1.41.0_2025-09-09"
NAMES = ["arc-controller", "arc-sqlmi", "arc-bootstrapper"]


@pytest.fixture(scope="module")
def signed(tmp_path_factory, testbed_tools):
    """A source where arc-controller, arc-sqlmi's index and its arm64 child are signed; the SBOM is signed too."""
    from testbed.registry import Registry

    work = tmp_path_factory.mktemp("signed")
    refs = build_release(work / "layout", NAMES, TAG, multiarch=["arc-sqlmi"])
    with Registry(work / "source") as source:
        release = load_release(work / "layout", refs, source, "arcdata", TAG)
        sigs = {"arc-controller": attach(source, "arcdata/arc-controller", TAG, work / "sig", cosign=True),
                "arc-sqlmi": attach(source, "arcdata/arc-sqlmi", TAG, work / "sig")}
        index = json.loads(source.get_manifest("arcdata/arc-sqlmi", TAG)[0])
        arm64 = next(m["digest"] for m in index["manifests"] if m["platform"]["architecture"] == "arm64")
        sigs["arm64"] = attach(source, "arcdata/arc-sqlmi", TAG, work / "sig", kinds=(NOTATION,), subject_digest=arm64)
        sbom = sigs["arc-controller"].digests[SBOM]
        sigs["sbom"] = attach(source, "arcdata/arc-controller", TAG, work / "sig", kinds=(NOTATION,), subject_digest=sbom)
        release.sigs = sigs
        yield release


def _env(source, target, **extra):
    env = {**registry_env("SOURCE_DOCKER", source), **registry_env("TARGET_DOCKER", target),
           "SOURCE_DOCKER_REPOSITORY": "arcdata", "TARGET_DOCKER_REPOSITORY": "mirror",
           "SOURCE_DOCKER_TAG": TAG, "MIRROR_IMAGES": ",".join(NAMES)}
    env.update(extra)
    return env


def _listed(registry, repo, subject) -> list[str]:
    """The referrers of ``subject`` found through the registry's tag schema, read by the test bed."""
    tag = "sha256-" + subject[7:]
    if registry.manifest_digest(repo, tag) is None:
        return []
    return [m["digest"] for m in json.loads(registry.get_manifest(repo, tag)[0])["manifests"]]


def _every_referrer(signed):
    for name, attached in (("arc-controller", signed.sigs["arc-controller"]), ("arc-sqlmi", signed.sigs["arc-sqlmi"]),
                           ("arc-sqlmi", signed.sigs["arm64"]), ("arc-controller", signed.sigs["sbom"])):
        for digest in attached.digests.values():
            yield name, attached.subject, digest


def test_referrers_arrive_with_identical_digests_and_are_found_again(signed, new_registry, tmp_path):
    target = new_registry(auth="basic")
    run = invoke(["mirror"], _env(signed.registry, target), tmp_path)
    assert run.code == 0, run.output
    for name, subject, digest in _every_referrer(signed):
        assert target.manifest_digest(f"mirror/{name}", digest) == digest
        assert digest in _listed(target, f"mirror/{name}", subject)
    # the tag-schema index itself arrives unchanged, and so does cosign's signature tag
    controller = signed.sigs["arc-controller"]
    assert target.manifest_digest("mirror/arc-controller", "sha256-" + controller.subject[7:]) == controller.index_digest
    assert target.manifest_digest("mirror/arc-controller", f"sha256-{controller.subject[7:]}.sig") == \
        controller.cosign_digest
    images = run.images()
    assert images["arc-controller"]["referrers"] == images["arc-controller"]["referrers_copied"] == 4
    assert images["arc-sqlmi"]["referrers_copied"] == 3 and images["arc-bootstrapper"]["referrers"] == 0
    case = next(c for c in ET.fromstring(run.report()).iter("testcase") if c.get("name") == "arc-controller")
    assert "referrers (signatures, SBOMs, attestations): 4 found, 4 copied" in case.find("system-out").text

    again = invoke(["mirror"], _env(signed.registry, target), tmp_path / "again")
    assert again.code == 0 and again.record()["totals"]["bytes_sent"] == 0
    assert {i["status"] for i in again.record()["images"]} == {"up-to-date"}


def test_referrers_can_be_skipped_or_filtered(signed, new_registry, tmp_path):
    target = new_registry()
    run = invoke(["mirror"], _env(signed.registry, target, MIRROR_REFERRERS="false"), tmp_path / "off")
    assert run.code == 0, run.output
    assert not [t for t in target.tags("mirror/arc-controller") if t.startswith("sha256-")]

    other = new_registry()
    run = invoke(["mirror"], _env(signed.registry, other, MIRROR_REFERRER_TYPES=SBOM), tmp_path / "sbom")
    assert run.code == 0, run.output
    subject = signed.sigs["arc-controller"].subject
    assert _listed(other, "mirror/arc-controller", subject) == [signed.sigs["arc-controller"].digests[SBOM]]
    assert other.manifest_digest("mirror/arc-controller", f"sha256-{subject[7:]}.sig") is None


def test_the_target_index_keeps_referrers_it_already_had(signed, release_layout, new_registry, tmp_path):
    """Several referrers of one subject from different runs (and tools) all stay listed."""
    target = new_registry()
    env = _env(signed.registry, target, MIRROR_REFERRER_TYPES=SBOM, MIRROR_IMAGES="arc-controller")
    assert invoke(["mirror"], env, tmp_path / "first").code == 0
    subject = signed.sigs["arc-controller"].subject
    theirs = attach(target, "mirror/arc-controller", TAG, tmp_path / "theirs", kinds=("application/vnd.example+json",))
    env["MIRROR_REFERRER_TYPES"] = ""
    assert invoke(["mirror"], env, tmp_path / "second").code == 0
    listed = _listed(target, "mirror/arc-controller", subject)
    assert len(listed) == len(set(listed)) == 3
    assert set(signed.sigs["arc-controller"].digests.values()) | set(theirs.digests.values()) == set(listed)


def test_discover_lists_them_and_verify_misses_none(signed, new_registry, tmp_path):
    target = new_registry()
    env = _env(signed.registry, target)
    assert invoke(["discover"], env, tmp_path).code == 0
    plan = {i["name"]: i for i in json.loads((tmp_path / "reports/plan.json").read_text())["images"]}
    kinds = sorted(r.get("artifact_type") or "cosign" for r in plan["arc-controller"]["referrers"])
    assert kinds == ["application/spdx+json", NOTATION, NOTATION, "cosign"]
    assert len(plan["arc-sqlmi"]["referrers"]) == 3
    assert invoke(["mirror", "--plan", str(tmp_path / "reports/plan.json")], env, tmp_path).code == 0
    assert invoke(["verify"], env, tmp_path).code == 0

    missing = signed.sigs["arm64"].digests[NOTATION]
    target.delete_manifest("mirror/arc-sqlmi", missing)
    run = invoke(["verify"], env, tmp_path)
    assert run.code == 1
    failure = next(c for c in ET.fromstring(run.report("verify.xml")).iter("testcase")
                   if c.get("name") == "arc-sqlmi").find("failure")
    assert f"referrer {missing}" in failure.get("message") and "is missing" in failure.get("message")
    assert invoke(["mirror"], env, tmp_path / "repair").code == 0
    assert invoke(["verify"], env, tmp_path).code == 0


def test_pull_push_and_the_archive_carry_them(signed, new_registry, tmp_path):
    env = _env(signed.registry, new_registry())
    assert invoke(["pull"], env, tmp_path).code == 0
    assert invoke(["tag"], env, tmp_path).code == 0
    pushed = invoke(["push"], env, tmp_path)
    assert pushed.code == 0, pushed.output
    del env["TARGET_DOCKER_REGISTRY"]
    assert invoke(["export", "--archive", str(tmp_path / "arc.tar")], env, tmp_path).code == 0
    airgap = new_registry()
    imported = invoke(["import", "--archive", str(tmp_path / "arc.tar")],
                      {**registry_env("TARGET_DOCKER", airgap), "TARGET_DOCKER_REPOSITORY": "arc"}, tmp_path / "in")
    assert imported.code == 0, imported.output
    for name, subject, digest in _every_referrer(signed):
        assert airgap.manifest_digest(f"arc/{name}", digest) == digest
        assert digest in _listed(airgap, f"arc/{name}", subject)
