"""Registry answers as real registries give them: error bodies on a 5xx, foreign layers, platforms written
the containerd way, and indexes inside indexes."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import pytest
from helpers import invoke, mirror_env, registry_env, walk

from testbed.images import LayoutBuilder, stable_seed
from testbed.registry import Registry
from testbed.skopeo import load_release

TAG = "v1.41.0_2025-09-09"


def _failure(run, name: str, report: str = "mirror.xml") -> str:
    case = {c.get("name"): c for c in ET.fromstring(run.report(report)).iter("testcase")}[name]
    failure = case.find("failure")
    assert failure is not None, f"{name} did not fail"
    return failure.get("message")


@pytest.fixture(scope="module")
def odd_layout(tmp_path_factory):
    """A Windows-like image with a foreign layer, and an image whose index holds another index."""
    layout = tmp_path_factory.mktemp("odd") / "layout"
    builder = LayoutBuilder(layout)
    base = builder.layer(stable_seed("odd", "base"), 64 * 1024)
    digests = {
        "arc-windows": builder.foreign("arc-windows", [builder.layer(stable_seed("odd", "win"), 32 * 1024)]),
        "arc-nested": builder.nested("arc-nested", {
            "linux/amd64": [base, builder.layer(stable_seed("odd", "amd64"), 32 * 1024)],
            "linux/arm64": [base, builder.layer(stable_seed("odd", "arm64"), 32 * 1024)]}),
    }
    return layout, digests


@pytest.fixture(scope="module")
def odd_source(odd_layout, release_layout, tmp_path_factory, testbed_tools):
    """A source that allows foreign layer URLs (as MCR serves Windows images), loaded over the API."""
    layout, digests = odd_layout
    with Registry(tmp_path_factory.mktemp("odd-source"), foreign_urls=True) as source:
        for name, digest in digests.items():
            source.push_tree(layout, digest, f"arcdata/{name}", TAG)
        release_layout_dir, refs = release_layout
        load_release(release_layout_dir, {"arc-bootstrapper": refs["arc-bootstrapper"]}, source, "arcdata", TAG)
        yield source


def _env(source, target, names, **extra):
    env = {**registry_env("SOURCE_DOCKER", source), **registry_env("TARGET_DOCKER", target),
           "SOURCE_DOCKER_REPOSITORY": "arcdata", "TARGET_DOCKER_REPOSITORY": "mirror", "SOURCE_DOCKER_TAG": TAG,
           "MIRROR_IMAGES": ",".join(names)}
    env.update(extra)
    return env


def test_a_refusal_that_will_not_change_is_not_retried_and_says_what_the_registry_said(
        odd_source, new_registry, fault_proxy, tmp_path):
    target = new_registry()  # distribution as shipped: foreign layer URLs are not allowed
    proxy = fault_proxy(target)
    started = time.monotonic()
    run = invoke(["mirror"], _env(odd_source, target, ["arc-windows", "arc-bootstrapper"],
                                  TARGET_DOCKER_REGISTRY=proxy.host), tmp_path)
    elapsed = time.monotonic() - started
    assert run.code == 1, run.output
    message = _failure(run, "arc-windows")
    assert "(HTTP 500)" in message and "MANIFEST_BLOB_UNKNOWN blob unknown to registry (sha256:" in message
    assert "foreign (non-distributable) layers, kept at mcr.microsoft.com" in message
    assert "the target must allow them" in message and "run again later" not in message
    puts = [r for r in proxy.requests if r.method == "PUT" and "/arc-windows/manifests/" in r.path]
    assert len(puts) == 1  # asked once: the answer will not change
    assert elapsed < 15
    assert target.manifest_digest("mirror/arc-bootstrapper", TAG) == odd_source.manifest_digest(
        "arcdata/arc-bootstrapper", TAG)  # the other image is still mirrored


def test_a_5xx_that_may_pass_is_retried_and_its_error_body_is_shown(odd_source, new_registry, fault_proxy, tmp_path):
    target = new_registry()
    proxy = fault_proxy(target)
    body = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": "storage is read-only",
                                   "detail": {"backend": "s3"}}]}).encode()
    proxy.status("PUT", r"/manifests/", 503, times=None, body=body, headers={"Content-Type": "application/json"})
    run = invoke(["mirror"], _env(odd_source, target, ["arc-bootstrapper"], TARGET_DOCKER_REGISTRY=proxy.host,
                                  MIRROR_RETRIES="2"), tmp_path)
    assert run.code == 1
    message = _failure(run, "arc-bootstrapper")
    assert 'UNAVAILABLE storage is read-only ({"backend": "s3"})' in message and "gave up after 2 attempts" in message


def test_platforms_are_matched_the_way_containerd_writes_them(release, new_registry, tmp_path):
    # arc-sqlmi's index lists linux/amd64 and linux/arm64 without a variant
    for spelled in ("linux/arm64/v8", "linux/aarch64", "LINUX/ARM64"):
        target = new_registry()
        env = mirror_env(release.registry, target, release, MIRROR_IMAGES="arc-sqlmi", MIRROR_PLATFORMS=spelled)
        run = invoke(["mirror"], env, tmp_path / spelled.replace("/", "-"))
        assert run.code == 0, (spelled, run.output)
        data, _ = target.get_manifest("mirror/arcdata/arc-sqlmi", release.tag)
        assert [m["platform"]["architecture"] for m in json.loads(data)["manifests"]] == ["arm64"]
    env = mirror_env(release.registry, new_registry(), release, MIRROR_IMAGES="arc-sqlmi",
                     MIRROR_PLATFORMS="linux/arm64/v7")
    run = invoke(["mirror"], env, tmp_path / "v7")
    assert run.code == 1 and "has none of the platforms linux/arm64/v7" in _failure(run, "arc-sqlmi")


def test_platforms_are_found_in_an_index_inside_an_index(odd_source, new_registry, tmp_path):
    target = new_registry()
    run = invoke(["mirror"], _env(odd_source, target, ["arc-nested"], MIRROR_PLATFORMS="linux/amd64"), tmp_path)
    assert run.code == 0, run.output
    outer = json.loads(target.get_manifest("mirror/arc-nested", TAG)[0])
    inner = json.loads(target.get_manifest("mirror/arc-nested", outer["manifests"][0]["digest"])[0])
    assert [m["platform"]["architecture"] for m in inner["manifests"]] == ["amd64"]
    blobs, manifests = walk(target, "mirror/arc-nested", TAG)
    assert len(manifests) == 3 and all(target.has_blob("mirror/arc-nested", d) for d in blobs)
    verify = invoke(["verify"], _env(odd_source, target, ["arc-nested"], MIRROR_PLATFORMS="linux/amd64"),
                    tmp_path / "verify")
    assert verify.code == 0, verify.output
    # without MIRROR_PLATFORMS the nested index is copied as it is
    whole = new_registry()
    run = invoke(["mirror"], _env(odd_source, whole, ["arc-nested"]), tmp_path / "whole")
    assert run.code == 0, run.output
    assert whole.manifest_digest("mirror/arc-nested", TAG) == odd_source.manifest_digest("arcdata/arc-nested", TAG)
