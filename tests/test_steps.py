"""discover, pull, tag, push, verify, gate, export and import against the real test bed."""

from __future__ import annotations

import io
import json
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import invoke, mirror_env, registry_env, walk

from testbed.images import build_release
from testbed.skopeo import load, load_release

TAG = "v1.41.0_2025-09-09"
TARGET_REPO = "mirror/arcdata"


def _cases(xml: str) -> dict[str, ET.Element]:
    return {c.get("name"): c for c in ET.fromstring(xml).iter("testcase")}


def _failure(xml: str, name: str) -> str:
    failure = _cases(xml)[name].find("failure")
    assert failure is not None, f"{name} did not fail"
    return failure.get("message")


def _env(source, target, names, **extra) -> dict[str, str]:
    env = {**registry_env("SOURCE_DOCKER", source), **registry_env("TARGET_DOCKER", target),
           "SOURCE_DOCKER_REPOSITORY": "arcdata", "TARGET_DOCKER_REPOSITORY": TARGET_REPO,
           "MIRROR_IMAGES": ",".join(names)}
    env.update(extra)
    return env


@pytest.fixture
def tagged_source(release_layout, new_registry):
    """A source holding arc-bootstrapper under several tags, and arc-controller under the newest."""
    layout, refs = release_layout
    source = new_registry()
    for tag in ("v1.9.0_2025-08-12", "v1.10.0_2025-09-09", "v1.10.0_2025-08-01", "latest", "v1.2.0_2026-01-01",
                "public-preview-sep-2020"):
        load(layout, refs["arc-bootstrapper"], f"{source.host}/arcdata/arc-bootstrapper:{tag}")
    load(layout, refs["arc-controller"], f"{source.host}/arcdata/arc-controller:v1.10.0_2025-09-09")
    return source


def test_discover_picks_the_newest_release_by_version_then_date(tagged_source, new_registry, tmp_path):
    target = new_registry()
    run = invoke(["discover"], _env(tagged_source, target, ["arc-bootstrapper", "arc-controller"]), tmp_path)
    assert run.code == 0, run.output
    plan = run.record("plan.json")
    assert plan["tag"] == "v1.10.0_2025-09-09"
    assert "newest of 4 release tags" in plan["tag_reason"] and "2 other tags ignored" in plan["tag_reason"]
    assert "Release tag: v1.10.0_2025-09-09" in run.stderr
    assert [i["target_tag"] for i in plan["images"]] == ["v1.10.0_2025-09-09"] * 2
    image = plan["images"][0]
    assert image["digest"] == tagged_source.manifest_digest("arcdata/arc-bootstrapper", "v1.10.0_2025-09-09")
    assert image["blobs"] == walk(tagged_source, "arcdata/arc-bootstrapper", "v1.10.0_2025-09-09")[0]
    assert image["in_target"] is False
    assert plan["totals"]["unique_bytes"] == sum(
        {**plan["images"][0]["blobs"], **plan["images"][1]["blobs"]}.values())
    assert set(_cases(run.report("discover.xml"))) == {"arc-bootstrapper", "arc-controller"}

    # latest-release means the same; mirror without a tag chooses it too
    mirrored = invoke(["mirror"], _env(tagged_source, target, ["arc-bootstrapper", "arc-controller"]), tmp_path / "m")
    assert mirrored.code == 0, mirrored.output
    assert target.manifest_digest(f"{TARGET_REPO}/arc-controller", "v1.10.0_2025-09-09") is not None
    again = invoke(["discover", "--tag", "latest-release"],
                   _env(tagged_source, target, ["arc-bootstrapper", "arc-controller"]), tmp_path / "again")
    assert again.record("plan.json")["totals"]["images_in_target"] == 2


def test_catalog_discovery_finds_new_images_and_skips_stale_ones(release_layout, new_registry, tmp_path):
    layout, refs = release_layout
    source = new_registry(auth="token")  # MCR-like: _catalog and tags through anonymous bearer tokens
    creds = source.creds
    for name in ("arc-bootstrapper", "arc-controller", "arc-postgres-14"):  # arc-postgres-14: new this month
        load(layout, refs[name], f"{source.host}/arcdata/{name}:{TAG}", creds=creds)
    load(layout, refs["arc-controller-db"], f"{source.host}/arcdata/arc-ha-operator:v1.2.0_2021-01-01", creds=creds)
    load(layout, refs["arc-controller-db"], f"{source.host}/other/arc-controller:{TAG}", creds=creds)
    image_set = tmp_path / "set.yaml"
    image_set.write_text("images: [arc-bootstrapper, arc-controller, arc-sqlmi]\nreference_image: arc-bootstrapper\n")
    target = new_registry()
    env = _env(source, target, [], MIRROR_DISCOVER="catalog", MIRROR_IMAGE_SET=str(image_set), SOURCE_DOCKER_TAG=TAG)
    del env["MIRROR_IMAGES"], env["SOURCE_DOCKER_USERNAME"], env["SOURCE_DOCKER_PASSWORD"]
    run = invoke(["discover"], env, tmp_path / "run")
    assert run.code == 0, run.output
    plan = run.record("plan.json")
    assert [i["name"] for i in plan["images"]] == ["arc-bootstrapper", "arc-controller", "arc-postgres-14"]
    assert plan["extra"] == ["arc-postgres-14"] and plan["missing"] == ["arc-sqlmi"]
    assert "arc-postgres-14" in run.stdout and "arc-sqlmi" in run.stdout
    assert _cases(run.report("discover.xml"))["arc-sqlmi"].find("skipped") is not None


def test_missing_image_in_the_set_fails_discover(release, new_registry, tmp_path):
    target = new_registry()
    env = mirror_env(release.registry, target, release, MIRROR_IMAGES="arc-bootstrapper,arc-gone")
    run = invoke(["discover"], env, tmp_path)
    assert run.code == 1
    assert "does not exist" in _failure(run.report("discover.xml"), "arc-gone")
    assert run.record("plan.json")["missing"] == ["arc-gone"]


def test_pull_tag_push_equals_mirror_and_pins_the_plan(release_layout, new_registry, tmp_path):
    layout, refs = release_layout
    names = ["arc-bootstrapper", "arc-sqlmi", "arc-controller"]
    source = new_registry()
    pinned = load_release(layout, {n: refs[n] for n in names}, source, "arcdata", TAG)
    target = new_registry(auth="basic")
    env = _env(source, target, names, SOURCE_DOCKER_TAG=TAG)
    assert invoke(["discover"], env, tmp_path).code == 0

    # the source tag moves after discovery: the plan's digest is what lands
    load(layout, refs["arc-controller-db"], f"{source.host}/arcdata/arc-controller:{TAG}")
    moved = source.manifest_digest("arcdata/arc-controller", TAG)
    assert moved != pinned.digests["arc-controller"]

    pulled = invoke(["pull"], env, tmp_path)
    assert pulled.code == 0, pulled.output
    assert (tmp_path / ".arcmirror/store/index.json").is_file()
    assert pulled.record("pull.json")["totals"]["bytes_sent"] == pulled.record("plan.json")["totals"]["unique_bytes"]
    again = invoke(["pull"], env, tmp_path)
    assert again.code == 0 and again.record("pull.json")["totals"]["bytes_sent"] == 0
    tagged = invoke(["tag"], env, tmp_path)
    assert tagged.code == 0, tagged.output
    index = json.loads((tmp_path / ".arcmirror/store/index.json").read_text())
    names_in_store = {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]}
    assert f"{target.host}/{TARGET_REPO}/arc-sqlmi:{TAG}" in names_in_store
    assert f"{source.host}/arcdata/arc-sqlmi:{TAG}" in names_in_store
    pushed = invoke(["push"], env, tmp_path)
    assert pushed.code == 0, pushed.output
    for name in names:
        assert target.manifest_digest(f"{TARGET_REPO}/{name}", TAG) == pinned.digests[name]

    verified = invoke(["verify", "--deep"], env, tmp_path)
    assert verified.code == 0, verified.output
    assert invoke(["gate"], env, tmp_path).code == 0

    # mirror with the same plan gives the same result into another registry
    other = new_registry()
    env2 = _env(source, other, names, SOURCE_DOCKER_TAG=TAG)
    mirrored = invoke(["mirror", "--plan", str(tmp_path / "reports/plan.json")], env2, tmp_path / "m")
    assert mirrored.code == 0, mirrored.output
    for name in names:
        assert other.manifest_digest(f"{TARGET_REPO}/{name}", TAG) == pinned.digests[name]


def test_verify_catches_a_deleted_blob_and_a_retagged_image(release, new_registry, tmp_path):
    target = new_registry()
    env = mirror_env(release.registry, target, release)
    assert invoke(["discover"], env, tmp_path).code == 0
    assert invoke(["mirror", "--plan", str(tmp_path / "reports/plan.json")], env, tmp_path).code == 0
    assert invoke(["verify"], env, tmp_path).code == 0

    blobs, _ = walk(target, f"{TARGET_REPO}/arc-controller", release.tag)
    victim = max(blobs, key=blobs.get)
    target.delete_blob(f"{TARGET_REPO}/arc-controller", victim)
    load(release.layout, release.refs["arc-bootstrapper"], f"{target.host}/{TARGET_REPO}/arc-controller-db:{release.tag}")

    run = invoke(["verify"], env, tmp_path)
    assert run.code == 1
    xml = run.report("verify.xml")
    assert f"blob {victim}" in _failure(xml, "arc-controller") and "is missing" in _failure(xml, "arc-controller")
    assert "points at" in _failure(xml, "arc-controller-db")
    assert _cases(xml)["arc-sqlmi"].find("failure") is None
    gated = invoke(["gate"], env, tmp_path)
    assert gated.code == 1
    assert "arc-controller: verification failed" in gated.stdout and "GATE FAILED" in gated.stdout

    # the mirror repairs it: only the missing blob and the retagged manifest are sent
    repaired = invoke(["mirror", "--plan", str(tmp_path / "reports/plan.json")], env, tmp_path)
    assert repaired.code == 0
    assert invoke(["verify"], env, tmp_path).code == 0


def test_gate_needs_every_report_and_reads_shards(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "plan.json").write_text(json.dumps({"tag": TAG, "images": [{"name": "a"}, {"name": "b"}]}))
    missing = invoke(["gate"], {}, tmp_path)
    assert missing.code == 1 and "no verification report" in missing.stdout

    def verify_xml(**cases):
        body = "".join(f'<testcase name="{n}" classname="arcmirror.verify">'
                       + ("" if ok else '<failure message="blob x is missing"/>') + "</testcase>"
                       for n, ok in cases.items())
        return f'<testsuites><testsuite name="v">{body}</testsuite></testsuites>'

    (reports / "shard-1").mkdir()
    (reports / "shard-1" / "verify.xml").write_text(verify_xml(a=True))
    partial = invoke(["gate"], {}, tmp_path)
    assert partial.code == 1 and "b: no passing verification" in partial.stdout
    (reports / "shard-2").mkdir()
    (reports / "shard-2" / "verify.xml").write_text(verify_xml(b=True))
    assert invoke(["gate"], {}, tmp_path).code == 0
    (reports / "shard-2" / "verify.xml").write_text(verify_xml(b=False))
    failed = invoke(["gate"], {}, tmp_path)
    assert failed.code == 1 and "b: verification failed: blob x is missing" in failed.stdout
    (reports / "shard-2" / "verify.xml").write_text("<testsuites><testsuite")
    broken = invoke(["gate"], {}, tmp_path)
    assert broken.code == 1 and "unreadable" in broken.stdout
    (reports / "plan.json").unlink()
    (reports / "shard-2" / "verify.xml").write_text(verify_xml(b=True))
    assert "no plan.json" in invoke(["gate"], {}, tmp_path).stdout


def _archive_members(path: Path) -> set[str]:
    with tarfile.open(path) as tar:
        return {m.name for m in tar.getmembers()}


def test_export_import_incremental_and_refusals(new_registry, tmp_path):
    names = ["arc-bootstrapper", "arc-controller", "arc-sqlmi", "arc-postgres-12", "arc-postgres-11"]
    layout = tmp_path / "layout"
    refs1 = build_release(layout, names, "v1.40.0_2025-08-12", multiarch=["arc-sqlmi"])
    refs2 = build_release(layout, names, TAG, multiarch=["arc-sqlmi"], changed=["arc-controller"])
    source = new_registry()
    load_release(layout, refs1, source, "arcdata", "v1.40.0_2025-08-12")
    load_release(layout, refs2, source, "arcdata", TAG)
    connected = tmp_path / "connected"
    env1 = _env(source, source, names, SOURCE_DOCKER_TAG="v1.40.0_2025-08-12")
    del env1["TARGET_DOCKER_REGISTRY"]
    full = connected / "arc-2025-08.tar"
    exported = invoke(["export", "--archive", str(full)], env1, connected / "m1")
    assert exported.code == 0, exported.output

    # the disconnected side sees only its own registry
    airgap = new_registry(auth="basic")
    side = {**registry_env("TARGET_DOCKER", airgap), "TARGET_DOCKER_REPOSITORY": "arc"}
    imported = invoke(["import", "--archive", str(full)], side, tmp_path / "airgap")
    assert imported.code == 0, imported.output
    for name in names:
        assert airgap.manifest_digest(f"arc/{name}", "v1.40.0_2025-08-12") == \
            source.manifest_digest(f"arcdata/{name}", "v1.40.0_2025-08-12")
    assert set(_cases(imported.report("verify.xml"))) == set(names)

    # next month: only the new blobs travel
    env2 = _env(source, source, names, SOURCE_DOCKER_TAG=TAG)
    del env2["TARGET_DOCKER_REGISTRY"]
    delta = connected / "arc-2025-09.tar"
    exported2 = invoke(["export", "--archive", str(delta), "--since", str(connected / "m1/reports/plan.json")],
                       env2, connected / "m2")
    assert exported2.code == 0, exported2.output
    old_blobs = set(json.loads((connected / "m1/reports/plan.json").read_text())["images"][0]["blobs"])
    new_plan = json.loads((connected / "m2/reports/plan.json").read_text())
    new_blobs = {d for i in new_plan["images"] for d in i["blobs"]}
    all_old = {d for i in json.loads((connected / "m1/reports/plan.json").read_text())["images"] for d in i["blobs"]}
    carried = {m.rsplit("/", 1)[1] for m in _archive_members(delta) if m.startswith("blobs/")}
    assert {d[7:] for d in new_blobs - all_old} <= carried
    assert not {d[7:] for d in (new_blobs & all_old)} & carried
    assert old_blobs
    assert delta.stat().st_size < full.stat().st_size / 2
    imported2 = invoke(["import", "--archive", str(delta)], side, tmp_path / "airgap2")
    assert imported2.code == 0, imported2.output
    for name in names:
        assert airgap.manifest_digest(f"arc/{name}", TAG) == source.manifest_digest(f"arcdata/{name}", TAG)

    # a delta into a registry that never got the full archive names what to do
    fresh = new_registry()
    lost = invoke(["import", "--archive", str(delta)], registry_env("TARGET_DOCKER", fresh), tmp_path / "fresh")
    assert lost.code == 1 and "import the earlier (full) archive first" in lost.report("import.xml")

    # a corrupted copy is refused before anything is pushed
    corrupt = tmp_path / "corrupt.tar"
    data = bytearray(full.read_bytes())
    with tarfile.open(full) as tar:
        member = max((m for m in tar.getmembers() if m.name.startswith("blobs/")), key=lambda m: m.size)
    data[member.offset_data + member.size // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    empty = new_registry()
    refused = invoke(["import", "--archive", str(corrupt)], registry_env("TARGET_DOCKER", empty), tmp_path / "c")
    assert refused.code == 1
    assert member.name in refused.stdout and "corrupt" in refused.stdout
    assert empty.catalog() == []

    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    cut = invoke(["import", "--archive", str(truncated)], registry_env("TARGET_DOCKER", empty), tmp_path / "t")
    assert cut.code == 1 and ("truncated" in cut.stdout or "missing" in cut.stdout)
    assert empty.catalog() == []


@pytest.mark.parametrize("name,kind", [("../evil", "file"), ("/etc/evil", "file"), ("blobs/sha256/link", "symlink")])
def test_import_refuses_unsafe_entries(new_registry, tmp_path, name, kind):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        contents = json.dumps({"version": 1, "files": [], "plan": {}}).encode()
        info = tarfile.TarInfo("arcmirror-archive.json")
        info.size = len(contents)
        tar.addfile(info, io.BytesIO(contents))
        info = tarfile.TarInfo(name)
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    target = new_registry()
    run = invoke(["import", "--archive", str(archive)], registry_env("TARGET_DOCKER", target), tmp_path / "run")
    assert run.code == 1
    assert "refused" in run.stdout
    assert target.catalog() == []
    assert not Path("/etc/evil").exists() and not (tmp_path / "evil").exists()
