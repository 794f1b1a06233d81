"""``invoke mirror`` end to end against real registries (CNCF distribution) of every flavour."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from helpers import invoke, mirror_env, release_blobs, walk

TARGET_REPO = "mirror/arcdata"


def _testcases(xml: str) -> dict[str, ET.Element]:
    return {case.get("name"): case for case in ET.fromstring(xml).iter("testcase")}


def _assert_mirrored(release, target, tag=None) -> None:
    """Every image's target digest equals the source digest, read by the test bed's own client."""
    for name in release.names:
        got = target.manifest_digest(f"{TARGET_REPO}/{name}", tag or release.tag)
        assert got == release.digests[name], f"{name}: target {got} != source {release.digests[name]}"


@pytest.mark.parametrize("auth,tls", [(None, False), ("basic", False), ("basic", True), ("token", False)],
                         ids=["anonymous", "basic", "tls", "token"])
def test_mirror_keeps_every_digest(release, new_registry, tmp_path, auth, tls):
    target = new_registry(auth=auth, tls=tls)
    run = invoke(["mirror"], mirror_env(release.registry, target, release), tmp_path)
    assert run.code == 0, run.output
    _assert_mirrored(release, target)
    cases = _testcases(run.report())
    assert set(cases) == set(release.names)
    assert not [c for c in cases.values() if c.find("failure") is not None]
    assert f"{len(release.names)} images: {len(release.names)} copied" in run.stdout
    # media types are kept: Docker schema 2 and manifest lists stay Docker, OCI stays OCI
    for name in release.names:
        _, source_type = release.registry.get_manifest(release.repository(name), release.tag)
        _, target_type = target.get_manifest(f"{TARGET_REPO}/{name}", release.tag)
        assert source_type == target_type


def test_mcr_like_bearer_source_anonymous(token_release, new_registry, tmp_path):
    """Like MCR: anonymous bearer tokens on the source, Basic auth on the target."""
    target = new_registry(auth="basic")
    env = mirror_env(token_release.registry, target, token_release, source_creds=False)
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 0, run.output
    _assert_mirrored(token_release, target)


def test_shared_blobs_move_once_and_rerun_sends_nothing(release, new_registry, tmp_path):
    target = new_registry()
    unique = release_blobs(release.registry, release)
    env = mirror_env(release.registry, target, release, MIRROR_CONCURRENCY="8")
    first = invoke(["mirror"], env, tmp_path / "first")
    assert first.code == 0, first.output
    totals = first.record()["totals"]
    copied = sum(i["blobs_copied"] for i in first.record()["images"])
    # every unique blob crossed the wire exactly once, however many images share it
    assert copied == len(unique)
    assert totals["bytes_sent"] == sum(unique.values())
    assert target.blob_digests() >= set(unique)

    before = target.blob_digests()
    second = invoke(["mirror"], env, tmp_path / "second")
    assert second.code == 0, second.output
    assert second.record()["totals"]["bytes_sent"] == 0
    assert {i["status"] for i in second.record()["images"]} == {"up-to-date"}
    assert target.blob_digests() == before

    # a new target tag for the same release: manifests only, no blob is sent
    third = invoke(["mirror", "--target-tag", "stable"], env, tmp_path / "third")
    assert third.code == 0, third.output
    assert third.record()["totals"]["bytes_sent"] == 0
    _assert_mirrored(release, target, tag="stable")


def test_platform_filter_rewrites_the_index(release, new_registry, tmp_path):
    target = new_registry()
    env = mirror_env(release.registry, target, release, MIRROR_PLATFORMS="linux/arm64")
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 0, run.output
    images = run.images()
    for name in release.multiarch:
        data, _ = target.get_manifest(f"{TARGET_REPO}/{name}", release.tag)
        platforms = [m["platform"]["architecture"] for m in json.loads(data)["manifests"]]
        assert platforms == ["arm64"]
        assert images[name]["rewritten"] is True
        assert images[name]["digest"] != release.digests[name]
        assert target.manifest_digest(f"{TARGET_REPO}/{name}", release.tag) == images[name]["digest"]
        # the amd64 child and its own layers were not copied
        source_index = json.loads(release.registry.get_manifest(release.repository(name), release.tag)[0])
        amd64 = next(m for m in source_index["manifests"] if m["platform"]["architecture"] == "amd64")
        assert target.manifest_digest(f"{TARGET_REPO}/{name}", amd64["digest"]) is None
    # single-platform images are copied unchanged
    for name in set(release.names) - release.multiarch:
        assert images[name]["digest"] == release.digests[name]


def test_missing_image_fails_alone(release, new_registry, tmp_path):
    target = new_registry()
    env = mirror_env(release.registry, target, release)
    env["MIRROR_IMAGES"] += ",arc-not-in-this-release"
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 1
    _assert_mirrored(release, target)
    case = _testcases(run.report())["arc-not-in-this-release"]
    failure = case.find("failure")
    assert failure is not None
    assert "does not exist on the source registry" in failure.get("message")
    assert "SOURCE_DOCKER_TAG" in failure.get("message")
    assert "FAILED arc-not-in-this-release" in run.stdout


@pytest.mark.parametrize("auth", ["basic", "token"])
def test_wrong_password_names_the_variables(release, new_registry, tmp_path, auth):
    target = new_registry(auth=auth)
    env = mirror_env(release.registry, target, release, TARGET_DOCKER_PASSWORD="not-the-password-x9")
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 1
    assert "refused the credentials of user 'mirror'" in run.stdout
    assert "TARGET_DOCKER_USERNAME and TARGET_DOCKER_PASSWORD" in run.stdout
    cases = _testcases(run.report())
    assert all(c.find("failure") is not None for c in cases.values())
    assert "not-the-password-x9" not in run.output + run.report() + json.dumps(run.record())
    assert target.catalog() == []  # nothing written


def test_missing_login_is_explained(release, new_registry, tmp_path):
    target = new_registry(auth="basic")
    env = mirror_env(release.registry, target, release)
    del env["TARGET_DOCKER_USERNAME"], env["TARGET_DOCKER_PASSWORD"]
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 1
    assert "requires a login" in run.stdout and "set TARGET_DOCKER_USERNAME" in run.stdout


def test_unreachable_and_unknown_registries(release, tmp_path):
    from testbed.registry import free_port

    env = mirror_env(release.registry, release.registry, release,
                     TARGET_DOCKER_REGISTRY=f"127.0.0.1:{free_port()}", MIRROR_IMAGES="arc-bootstrapper,arc-controller")
    run = invoke(["mirror"], env, tmp_path / "dead")
    assert run.code == 1
    assert "cannot connect to the target registry" in run.stdout
    assert "check TARGET_DOCKER_REGISTRY" in run.stdout

    env["TARGET_DOCKER_REGISTRY"] = "no-such-registry.invalid"
    run = invoke(["mirror"], env, tmp_path / "unknown")
    assert run.code == 1
    assert "cannot be found" in run.stdout and "TARGET_DOCKER_REGISTRY" in run.stdout


def test_tls_without_ca_bundle_says_how_to_fix(release, tls_registry, tmp_path):
    env = mirror_env(release.registry, tls_registry, release, MIRROR_IMAGES="arc-bootstrapper")
    del env["TARGET_DOCKER_CA_BUNDLE"]
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 1
    assert "TLS handshake with the target registry" in run.stdout
    assert "TARGET_DOCKER_CA_BUNDLE" in run.stdout and "TARGET_DOCKER_INSECURE" in run.stdout


def test_bad_settings_exit_2_listing_every_problem(tmp_path):
    env = {
        "SOURCE_DOCKER_TAG": "v1/bad",
        "TARGET_DOCKER_REGISTRY": "https://registry.example/path",
        "MIRROR_IMAGES": "Arc Controller",
        "TARGET_DOCKER_PASSWORD": "secret-only-password-1",
        "MIRROR_CONCURRENCY": "lots",
    }
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 2
    for text in ("SOURCE_DOCKER_TAG", "TARGET_DOCKER_REGISTRY", "MIRROR_IMAGES", "MIRROR_CONCURRENCY",
                 "TARGET_DOCKER_PASSWORD is set but TARGET_DOCKER_USERNAME is not"):
        assert text in run.stderr
    assert "secret-only-password-1" not in run.output
    assert not (tmp_path / "reports").exists()


def test_unknown_option_is_a_usage_error(tmp_path):
    run = invoke(["mirror", "--no-such-option"], {}, tmp_path)
    assert run.code == 2
    assert "--no-such-option" in run.stderr


def test_env_file_and_docker_config_credentials(release, new_registry, tmp_path):
    """Settings from a named .env file; target credentials from the Docker client config."""
    import base64

    target = new_registry(auth="basic")
    env = mirror_env(release.registry, target, release, MIRROR_IMAGES="arc-bootstrapper,arc-sqlmi")
    user, password = env.pop("TARGET_DOCKER_USERNAME"), env.pop("TARGET_DOCKER_PASSWORD")
    env_file = tmp_path / "site.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    docker_config = tmp_path / "dockercfg"
    docker_config.mkdir()
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (docker_config / "config.json").write_text(json.dumps({"auths": {target.host: {"auth": auth}}}))
    run = invoke(["mirror", "--env-file", str(env_file)], {"DOCKER_CONFIG": str(docker_config)}, tmp_path / "run")
    assert run.code == 0, run.output
    assert target.manifest_digest(f"{TARGET_REPO}/arc-sqlmi", release.tag) == release.digests["arc-sqlmi"]
    assert password not in run.output

    missing = invoke(["mirror", "--env-file", str(tmp_path / "nope.env")], {}, tmp_path / "missing")
    assert missing.code == 2 and "nope.env does not exist" in missing.stderr


def test_no_secret_anywhere(token_release, new_registry, tmp_path):
    """Passwords and tokens never reach stdout, stderr, reports (or the token server's log of requests)."""
    target = new_registry(auth="token")
    env = mirror_env(token_release.registry, target, token_release, source_creds=False)
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 0, run.output
    assert target.token.issued > 0
    everything = run.output + "".join(p.read_text() for p in (tmp_path / "reports").iterdir())
    assert target.password not in everything
    assert "eyJ" not in everything  # every JWT (token) starts with base64url '{"'
    assert not any(target.password in p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())


def test_corrupt_source_blob_is_refused(release_layout, new_registry, tmp_path):
    """A source serving bytes that do not match the digest: the image fails, the target never stores them."""
    from testbed.skopeo import load_release

    layout, refs = release_layout
    source = new_registry()
    corrupt = load_release(layout, {"arc-controller": refs["arc-controller"], "arc-bootstrapper": refs["arc-bootstrapper"]},
                           source, "arcdata", "v1.41.0_2025-09-09")
    blobs, _ = walk(source, corrupt.repository("arc-controller"), corrupt.tag)
    shared = set(walk(source, corrupt.repository("arc-bootstrapper"), corrupt.tag)[0])
    victim = max((d for d in blobs if d not in shared), key=blobs.get)
    data_file = source.blobs_dir / "sha256" / victim[7:9] / victim[7:] / "data"
    raw = bytearray(data_file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data_file.write_bytes(bytes(raw))

    target = new_registry()
    run = invoke(["mirror"], mirror_env(source, target, corrupt), tmp_path)
    assert run.code == 1
    failure = _testcases(run.report())["arc-controller"].find("failure")
    assert victim in failure.get("message") and "refused" in failure.get("message")
    assert not target.has_blob(f"{TARGET_REPO}/arc-controller", victim)
    assert victim not in target.blob_digests()
    assert target.manifest_digest(f"{TARGET_REPO}/arc-controller", corrupt.tag) is None
    assert target.manifest_digest(f"{TARGET_REPO}/arc-bootstrapper", corrupt.tag) == corrupt.digests["arc-bootstrapper"]


def test_a_new_image_mounts_layers_its_siblings_got_in_an_earlier_run(release, new_registry, tmp_path):
    target = new_registry()
    env = mirror_env(release.registry, target, release, MIRROR_IMAGES="arc-bootstrapper,arc-controller")
    assert invoke(["mirror"], env, tmp_path / "first").code == 0
    env["MIRROR_IMAGES"] = "arc-bootstrapper,arc-controller,arc-controller-db"  # new this month
    run = invoke(["mirror"], env, tmp_path / "second")
    assert run.code == 0, run.output
    new = run.images()["arc-controller-db"]
    mine, _ = walk(release.registry, release.repository("arc-controller-db"), release.tag)
    siblings = set(walk(release.registry, release.repository("arc-bootstrapper"), release.tag)[0]) | \
        set(walk(release.registry, release.repository("arc-controller"), release.tag)[0])
    shared = {d for d in mine if d in siblings}
    assert shared and new["blobs_mounted"] == len(shared)
    assert new["bytes_sent"] == sum(size for d, size in mine.items() if d not in shared)


def test_repair_sends_a_blob_lost_under_a_tag_in_place(release, new_registry, tmp_path):
    target = new_registry()
    env = mirror_env(release.registry, target, release, MIRROR_IMAGES="arc-controller,arc-sqlmi")
    assert invoke(["mirror"], env, tmp_path / "first").code == 0
    blobs, _ = walk(target, f"{TARGET_REPO}/arc-controller", release.tag)
    lost = max(blobs, key=blobs.get)
    target.delete_blob(f"{TARGET_REPO}/arc-controller", lost)

    quick = invoke(["mirror"], env, tmp_path / "quick")  # a tag in place is taken as complete
    assert quick.code == 0 and quick.record()["totals"]["bytes_sent"] == 0
    repaired = invoke(["mirror", "--repair"], env, tmp_path / "repair")
    assert repaired.code == 0, repaired.output
    images = repaired.images()
    assert images["arc-controller"]["status"] == "copied" and images["arc-sqlmi"]["status"] == "up-to-date"
    assert images["arc-controller"]["bytes_sent"] + 0 <= blobs[lost] and \
        images["arc-controller"]["blobs_copied"] + images["arc-controller"]["blobs_mounted"] == 1
    assert target.has_blob(f"{TARGET_REPO}/arc-controller", lost)


def test_insecure_means_unverified_tls_too(release, tls_registry, tmp_path):
    """*_INSECURE=true on a TLS registry with a private CA: HTTPS without verification (Docker's meaning)."""
    env = mirror_env(release.registry, tls_registry, release, MIRROR_IMAGES="arc-bootstrapper",
                     TARGET_DOCKER_INSECURE="true", TARGET_DOCKER_REPOSITORY="insecure/arcdata")
    del env["TARGET_DOCKER_CA_BUNDLE"]
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 0, run.output
    assert tls_registry.manifest_digest("insecure/arcdata/arc-bootstrapper", release.tag) == \
        release.digests["arc-bootstrapper"]


def test_proxy_variables_are_honoured(release, new_registry, fault_proxy, tmp_path):
    """HTTP_PROXY carries the target's traffic; NO_PROXY keeps the source direct."""
    target = new_registry()
    proxy = fault_proxy(target)  # a forward proxy here: it relays absolute-form requests to the target
    # NO_PROXY lists host names (no ports, as for curl): the target is named localhost, the source 127.0.0.1
    env = mirror_env(release.registry, target, release, MIRROR_IMAGES="arc-bootstrapper",
                     TARGET_DOCKER_REGISTRY=f"localhost:{target.port}", HTTP_PROXY=proxy.url, NO_PROXY="127.0.0.1")
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 0, run.output
    assert target.manifest_digest(f"{TARGET_REPO}/arc-bootstrapper", release.tag) == release.digests["arc-bootstrapper"]
    paths = [r.path for r in proxy.requests]
    assert any(p.endswith(f"{TARGET_REPO}/arc-bootstrapper/manifests/{release.tag}") for p in paths)
    assert not any("/arcdata/" in p and TARGET_REPO not in p for p in paths)


def test_a_dead_source_still_gives_one_failed_case_per_image(tmp_path):
    from testbed.registry import free_port

    env = {"SOURCE_DOCKER_REGISTRY": f"127.0.0.1:{free_port()}", "SOURCE_DOCKER_INSECURE": "true",
           "TARGET_DOCKER_REGISTRY": "registry.example", "MIRROR_IMAGES": "arc-bootstrapper,arc-controller",
           "MIRROR_RETRIES": "1"}
    run = invoke(["mirror"], env, tmp_path)  # no tag: the newest release must be read from the dead source
    assert run.code == 1
    cases = _testcases(run.report())
    assert set(cases) == {"arc-bootstrapper", "arc-controller"}
    assert all("cannot connect to the source registry" in c.find("failure").get("message") for c in cases.values())
    discovered = invoke(["discover"], env, tmp_path / "discover")
    assert discovered.code == 1 and "cannot connect to the source registry" in discovered.stderr
    assert len(_testcases(discovered.report("discover.xml"))) == 2
