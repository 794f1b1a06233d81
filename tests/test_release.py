"""Which images make up a release: catalog discovery in every task, and a release that has no images."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from helpers import invoke, registry_env

from testbed.skopeo import load

TAG = "v1.41.0_2025-09-09"
TYPO = "v1.41.0_2025-09-9"


def _cases(xml: str) -> dict[str, ET.Element]:
    return {c.get("name"): c for c in ET.fromstring(xml).iter("testcase")}


@pytest.fixture
def catalog_source(release_layout, new_registry):
    """An MCR-like source (bearer tokens, anonymous pull and catalog) with this month's images, one of them
    new (not in the image set), a stale repository from an old release, and an older release of one image."""
    layout, refs = release_layout
    source = new_registry(auth="token")
    for name in ("arc-bootstrapper", "arc-controller", "arc-postgres-14"):
        load(layout, refs[name], f"{source.host}/arcdata/{name}:{TAG}", creds=source.creds)
    load(layout, refs["arc-bootstrapper"], f"{source.host}/arcdata/arc-bootstrapper:v1.40.0_2025-08-12",
         creds=source.creds)
    load(layout, refs["arc-controller-db"], f"{source.host}/arcdata/arc-ha-operator:v1.2.0_2021-01-01",
         creds=source.creds)
    return source


def _env(source, target, tmp_path, **extra) -> dict[str, str]:
    image_set = tmp_path / "set.yaml"
    image_set.write_text("images: [arc-bootstrapper, arc-controller, arc-sqlmi]\nreference_image: arc-bootstrapper\n")
    env = {**registry_env("SOURCE_DOCKER", source, with_creds=False), **registry_env("TARGET_DOCKER", target),
           "SOURCE_DOCKER_REPOSITORY": "arcdata", "TARGET_DOCKER_REPOSITORY": "mirror", "SOURCE_DOCKER_TAG": TAG,
           "MIRROR_DISCOVER": "catalog", "MIRROR_IMAGE_SET": str(image_set)}
    env.update(extra)
    return env


def test_mirror_honours_catalog_discovery(catalog_source, new_registry, tmp_path):
    target = new_registry()
    run = invoke(["mirror"], _env(catalog_source, target, tmp_path), tmp_path / "run")
    assert run.code == 0, run.output
    assert sorted(target.catalog()) == ["mirror/arc-bootstrapper", "mirror/arc-controller", "mirror/arc-postgres-14"]
    cases = _cases(run.report())
    assert cases["arc-postgres-14"].find("failure") is None  # new this month: found in the catalog
    assert cases["arc-sqlmi"].find("skipped") is not None  # in the set, not released with this tag
    assert "arc-ha-operator" not in cases  # stale: no repository with the tag
    # the option says the same as the variable
    env = _env(catalog_source, new_registry(), tmp_path)
    del env["MIRROR_DISCOVER"]
    by_option = invoke(["mirror", "--discover", "catalog"], env, tmp_path / "option")
    assert by_option.code == 0, by_option.output
    assert "arc-postgres-14" in _cases(by_option.report())


def test_a_release_with_no_images_fails_every_step_naming_the_tag(catalog_source, new_registry, tmp_path):
    target = new_registry()
    env = _env(catalog_source, target, tmp_path, SOURCE_DOCKER_TAG=TYPO)
    expected = f"release {TYPO} has no images"
    nearest = f"the nearest tags that exist (arc-bootstrapper): {TAG}"

    discover = invoke(["discover"], env, tmp_path)
    assert discover.code == 1, discover.output
    assert expected in discover.stderr and nearest in discover.stderr and "SOURCE_DOCKER_TAG" in discover.stderr
    assert not (tmp_path / "reports" / "plan.json").exists()
    failures = [c.find("failure") for c in _cases(discover.report("discover.xml")).values()]
    assert failures and all(f is not None and expected in f.get("message") for f in failures)

    mirror = invoke(["mirror"], env, tmp_path / "mirror")
    assert mirror.code == 1 and expected in mirror.output and "deploy Azure Arc" not in mirror.output
    planned = invoke(["mirror", "--plan", str(tmp_path / "reports" / "plan.json")], env, tmp_path)
    assert planned.code == 1 and "deploy Azure Arc" not in planned.output
    verify = invoke(["verify"], env, tmp_path)
    assert verify.code == 1 and expected in verify.output
    gate = invoke(["gate"], env, tmp_path)
    assert gate.code == 1 and f"discover failed, so there is no plan: {expected}" in gate.stdout
    assert target.catalog() == []

    # the image set instead of the catalog: every image missing is the same error
    del env["MIRROR_DISCOVER"]
    by_set = invoke(["discover"], env, tmp_path / "set")
    assert by_set.code == 1 and expected in by_set.stderr and nearest in by_set.stderr
    # and mirror says, for each image, which tags are near
    direct = invoke(["mirror"], env, tmp_path / "direct")
    assert direct.code == 1
    assert f"the nearest tags of arcdata/arc-bootstrapper: {TAG}" in direct.stdout


def test_a_plan_without_images_is_refused(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "plan.json").write_text(
        '{"version": 1, "source_registry": "mcr.microsoft.com", "source_repository": "arcdata", '
        '"target_registry": "r.example", "target_repository": "arcdata", "tag": "%s", "target_tag": "%s", '
        '"tag_reason": "x", "image_source": "catalog", "platforms": [], "images": []}' % (TAG, TAG))
    env = {"TARGET_DOCKER_REGISTRY": "127.0.0.1:9", "SOURCE_DOCKER_TAG": TAG}
    for step in (["verify"], ["mirror", "--plan", str(reports / "plan.json")], ["push"]):
        run = invoke(step, env, tmp_path)
        assert run.code == 1, (step, run.output)
        assert f"holds no images of release {TAG}" in run.stderr
    (reports / "verify.xml").write_text('<testsuites><testsuite name="v"></testsuite></testsuites>')
    gate = invoke(["gate"], env, tmp_path)
    assert gate.code == 1 and f"holds no images of release {TAG}" in gate.stdout
