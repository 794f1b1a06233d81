"""The Docker engine route (issue 7): pull by digest, tag, push and verify through a real ``dockerd``.

A private engine (``testbed.dockerd``, vfs storage, loopback registries insecure) is
started once for the session; every test that needs it starts from an engine holding no image,
with ``DOCKER_HOST`` pointing at it and ``DOCKER_CONFIG`` / ``HOME`` at fresh, empty directories.
The tests are skipped, saying why, only when no engine can be started here.
"""

from __future__ import annotations

import base64
import json
import secrets
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import mirror_env

from arcmirror.dockerengine.hints import display_host, engine_hint, scrub
from arcmirror.dockerengine.stream import EngineError, read_stream
from arcmirror.runs.discover import run_discover
from arcmirror.runs.engine import (
    run_engine_mirror,
    run_engine_pull,
    run_engine_push,
    run_engine_tag,
)
from arcmirror.runs.engine_verify import run_engine_verify, verify_engine_image
from arcmirror.runs.plan import Plan, PlannedImage
from arcmirror.runs.wiring import open_client
from arcmirror.secret import Secret
from arcmirror.settings.load import Settings, load_settings
from testbed import dockerd
from testbed.skopeo import load_release

#: OCI single-platform, OCI index (amd64 + arm64), Docker schema 2, Docker manifest list.
IMAGES = ("arc-bootstrapper", "arc-sqlmi", "arc-monitor-fluentbit", "arc-logsdb-dashboards")
TARGET_REPO = "mirror/arcdata"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
MISSING_DIGEST = "sha256:" + "0" * 64


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory):
    """A private ``dockerd`` for the session; skipped (with the reason) only when none can start."""
    reason = dockerd.unavailable_reason()
    if reason:
        pytest.skip(f"no Docker engine: {reason}")
    engine = dockerd.DockerEngine(tmp_path_factory.mktemp("dockerd"), insecure_registries=["127.0.0.0/8"])
    try:
        engine.start()
    except dockerd.DockerEngineError as exc:
        pytest.skip(f"no Docker engine: dockerd did not start: {str(exc).splitlines()[0]}")
    yield engine
    engine.stop()
    engine.remove_data()


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty DOCKER_CONFIG (and HOME) for the test: the engine route must leave them empty."""
    config, home = tmp_path / "docker-config", tmp_path / "home"
    config.mkdir()
    home.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("HOME", str(home))
    return config


@pytest.fixture
def engine(docker_engine: dockerd.DockerEngine, docker_config: Path, monkeypatch: pytest.MonkeyPatch):
    """The session's engine holding no image, reached through DOCKER_HOST like any Docker client."""
    docker_engine.remove_all_images()
    monkeypatch.setenv("DOCKER_HOST", docker_engine.host)
    for name in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    return docker_engine


# -- helpers -----------------------------------------------------------------------------------

def _settings(tmp_path: Path, source, target, release, names=IMAGES, **extra: str) -> Settings:
    env = mirror_env(source, target, release, MIRROR_IMAGES=",".join(names), TARGET_DOCKER_REPOSITORY=TARGET_REPO,
                     **extra)
    return load_settings(env, cwd=tmp_path)


def _plan(settings: Settings) -> Plan:
    plan, run = run_discover(settings)
    assert run.ok, run.summary()
    return plan


def _cases(path: Path) -> dict[str, ET.Element]:
    return {c.get("name"): c for c in ET.parse(path).getroot().iter("testcase")}


def _failure(path: Path, name: str) -> str:
    failure = _cases(path)[name].find("failure")
    assert failure is not None, f"{name} did not fail in {path.name}"
    return failure.get("message") or ""


def _record(settings: Settings, step: str) -> dict[str, dict]:
    return {e["name"]: e for e in json.loads((settings.report_dir / f"{step}.json").read_text())["images"]}


def _manifest(registry, repo: str, ref: str) -> dict:
    data, media_type = registry.get_manifest(repo, ref)
    body = json.loads(data)
    body.setdefault("mediaType", media_type.split(";")[0])
    return body


def _amd64(registry, repo: str, ref: str) -> dict:
    """The linux/amd64 image manifest under ``repo:ref`` (itself, or the child of an index)."""
    body = _manifest(registry, repo, ref)
    if body["mediaType"] in INDEX_TYPES:
        child = next(m for m in body["manifests"]
                     if m["platform"]["os"] == "linux" and m["platform"]["architecture"] == "amd64")
        body = _manifest(registry, repo, child["digest"])
    return body


def _engine_refs(engine: dockerd.DockerEngine) -> list[str]:
    client = engine.client()
    try:
        return sorted(ref for image in client.images.list(all=True)
                      for ref in image.attrs.get("RepoTags", []) + image.attrs.get("RepoDigests", []))
    finally:
        client.close()


def _assert_no_secret(secret: str, *places: Path) -> None:
    forms = [secret.encode(), base64.b64encode(secret.encode())]
    for place in places:
        files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]
        for path in files:
            data = path.read_bytes()
            assert not any(form in data for form in forms), f"a password is written in {path}"


# -- without an engine: the stream, the hints, the masks, an engine that is not there --------------

def test_read_stream_fails_on_an_error_inside_the_stream():
    stream = [{"status": "The push refers to repository [r/x]"},
              {"status": "Preparing", "progressDetail": {}, "id": "abc"},
              {"errorDetail": {"message": "unauthorized: authentication required"}, "error": "unauthorized"}]
    with pytest.raises(EngineError) as caught:
        read_stream(stream)
    assert caught.value.message == "unauthorized: authentication required"

    done = read_stream([{"status": "Preparing", "id": "a"}, {"status": "Pushed", "id": "a"},
                        {"status": "Mounted from mirror/x", "id": "b"},
                        {"status": "v1: digest: sha256:ab size: 945"},
                        {"progressDetail": {}, "aux": {"Tag": "v1", "Digest": "sha256:ab", "Size": 945}}])
    assert done.aux == {"Tag": "v1", "Digest": "sha256:ab", "Size": 945}
    assert (done.count("Pushed"), done.count("Mounted from")) == (1, 1)


def test_a_long_transfer_says_how_far_it_is():
    from arcmirror.runs.engine import _heartbeat

    said: list[str] = []
    on_message = _heartbeat(said.append, "arc-sqlmi", "pulling", every=0.0)
    for message in ({"status": "Pull complete", "id": "a"}, {"status": "Downloading", "id": "b"}):
        on_message(message)
    assert said[-1] == "arc-sqlmi: still pulling: 1 of 2 layers done"


def test_hints_masks_and_hosts():
    assert "insecure-registries" in engine_hint("http: server gave HTTP response to HTTPS client", None, "pull")
    assert "certs.d" in engine_hint("x509: certificate signed by unknown authority", None, "pull")
    assert "discover" in engine_hint("manifest for r/x@sha256:00 not found: manifest unknown", None, "pull")
    assert scrub("bad password hunter22 for u", [Secret("hunter22"), None]) == "bad password **** for u"
    assert display_host("tcp://user:hunter22@engine:2376") == "tcp://user@engine:2376"
    assert display_host("unix:///var/run/docker.sock") == "unix:///var/run/docker.sock"


def _hand_made_plan(tmp_path: Path, platforms=()) -> tuple[Settings, Plan]:
    settings = load_settings({"SOURCE_DOCKER_REGISTRY": "127.0.0.1:9", "SOURCE_DOCKER_TAG": "v1",
                              "TARGET_DOCKER_REGISTRY": "127.0.0.1:10", "TARGET_DOCKER_USERNAME": "mirror",
                              "TARGET_DOCKER_PASSWORD": "s3cret-word", "MIRROR_IMAGES": "one,two"}, cwd=tmp_path)
    images = [PlannedImage(n, f"127.0.0.1:9/arcdata/{n}:v1", f"arcdata/{n}", f"127.0.0.1:10/arcdata/{n}:v1",
                           f"arcdata/{n}", "v1", digest=MISSING_DIGEST, target_digest=MISSING_DIGEST)
              for n in ("one", "two")]
    plan = Plan("127.0.0.1:9", "arcdata", "127.0.0.1:10", "arcdata", "v1", "v1", "given", "MIRROR_IMAGES",
                list(platforms), images, created="2025-09-09T00:00:00Z")
    return settings, plan


def test_an_unreachable_engine_fails_every_image_naming_docker_host(tmp_path):
    settings, plan = _hand_made_plan(tmp_path)
    socket = f"unix://{tmp_path}/no-engine.sock"
    for step in (lambda: run_engine_mirror(settings, plan, cleanup=True, environ={"DOCKER_HOST": socket}),
                 lambda: run_engine_verify(settings, plan, environ={"DOCKER_HOST": socket})):
        run = step()
        assert run.exit_code == 1 and len(run.cases) == 2
        for case in run.cases:
            assert f"cannot reach the Docker engine at {socket}" in case.message
            assert "DOCKER_HOST" in case.hint
    assert "cannot reach the Docker engine" in _failure(settings.report_dir / "mirror.xml", "one")
    _assert_no_secret("s3cret-word", settings.report_dir)


# -- with the engine -----------------------------------------------------------------------------

def test_engine_mirror_pushes_verifies_and_keeps_the_images(engine, docker_config, release, new_registry, tmp_path):
    target = new_registry(auth="basic")
    settings = _settings(tmp_path, release.registry, target, release)
    plan = _plan(settings)
    said: list[str] = []

    run = run_engine_mirror(settings, plan, cleanup=False, say=said.append)

    assert run.exit_code == 0, run.summary()
    assert sorted(c.name for c in run.cases) == sorted(IMAGES) and all(c.ok for c in run.cases)
    junit = _cases(settings.report_dir / "mirror.xml")
    assert sorted(junit) == sorted(IMAGES) and not any(c.find("failure") is not None for c in junit.values())
    record = _record(settings, "mirror")
    for name in IMAGES:
        repo = f"{TARGET_REPO}/{name}"
        entry = record[name]
        # the digest reported is the one the engine pushed, and the tag points at it
        assert entry["digest"].startswith("sha256:") and entry["digest"] == target.manifest_digest(repo, release.tag)
        assert entry["source_digest"] == release.digests[name] and entry["platform"] == "linux/amd64"
        assert f"pushed digest: {entry['digest']}" in junit[name].find("system-out").text
        # the engine pushed a single-platform Docker manifest holding the source's amd64 image
        pushed = _manifest(target, repo, release.tag)
        source = _amd64(release.registry, release.repository(name), release.tag)
        assert pushed["mediaType"] == DOCKER_MANIFEST
        assert pushed["config"]["digest"] == source["config"]["digest"] == entry["image_id"]
        if name in release.multiarch:
            assert entry["digest"] != release.digests[name]
    assert any("pushed" in line for line in said)
    # kept by default: the engine holds the pulled digests and the target tags
    refs = _engine_refs(engine)
    for name in IMAGES:
        assert f"{target.host}/{TARGET_REPO}/{name}:{release.tag}" in refs
        assert f"{release.registry.host}/{release.repository(name)}@{release.digests[name]}" in refs

    verified = run_engine_verify(settings, plan)
    assert verified.exit_code == 0, verified.summary()
    checks = {e["name"]: e for e in json.loads((settings.report_dir / "verify.json").read_text())["images"]}
    for name in IMAGES:
        assert checks[name]["pushed_digest"] == checks[name]["target_digest"] == record[name]["digest"]
        assert checks[name]["config_digest"] == record[name]["image_id"]
        assert any(line.startswith("layer diff IDs: 3 in the source, 3 in the target")
                   for line in _cases(settings.report_dir / "verify.xml")[name].find("system-out").text.splitlines())

    # verify is not vacuous: another image under the tag fails (config digest and diff IDs differ) ...
    bootstrapper = next(i for i in plan.images if i.name == "arc-bootstrapper")
    with open_client(settings.source, settings) as src, open_client(settings.target, settings) as tgt:
        case = verify_engine_image(src, tgt, bootstrapper, f"{TARGET_REPO}/arc-sqlmi", release.tag, "linux/amd64")
    assert not case.ok and case.step == "verify"
    assert "config digest" in case.message and "layer diff IDs differ from the source's from layer 2" in case.message
    # ... and so does a layer lost in the target, for that image only
    broken = "arc-bootstrapper"
    layer = _manifest(target, f"{TARGET_REPO}/{broken}", release.tag)["layers"][-1]["digest"]
    target.delete_blob(f"{TARGET_REPO}/{broken}", layer)
    again = run_engine_verify(settings, plan)
    assert again.exit_code == 1
    assert [c.name for c in again.cases if not c.ok] == [broken]
    assert f"blob {layer}" in _failure(settings.report_dir / "verify.xml", broken)

    assert list(docker_config.iterdir()) == [], "nothing is written to the Docker config"
    assert not (tmp_path / "home" / ".docker").exists()
    _assert_no_secret(target.password, settings.report_dir, docker_config, engine.log, engine.client_config)


def test_engine_errors_fail_only_their_image(engine, release, new_registry, tmp_path):
    # a private source: one image lacks a layer (an error inside the pull stream), one is pinned to
    # a digest that does not exist (the engine refuses the call), one is fine
    source = new_registry()
    names = ("arc-bootstrapper", "arc-monitor-fluentbit", "arc-sqlmi")
    private = load_release(release.layout, {n: release.refs[n] for n in names}, source, release.repo, release.tag,
                           docker_format=[n for n in names if n in release.docker_format])
    lost = _manifest(source, private.repository("arc-monitor-fluentbit"), release.tag)["layers"][-1]["digest"]
    source.delete_blob(private.repository("arc-monitor-fluentbit"), lost)
    target = new_registry(auth="basic")
    settings = _settings(tmp_path, source, target, private, names)
    plan = _plan(settings)
    plan = replace(plan, images=[replace(i, digest=MISSING_DIGEST) if i.name == "arc-bootstrapper" else i
                                 for i in plan.images])

    run = run_engine_mirror(settings, plan, cleanup=False)

    assert run.exit_code == 1
    junit = settings.report_dir / "mirror.xml"
    assert _cases(junit)["arc-sqlmi"].find("failure") is None
    missing = _failure(junit, "arc-bootstrapper")
    assert "manifest unknown" in missing and "run 'invoke discover' again" in missing
    layer = _failure(junit, "arc-monitor-fluentbit")
    assert f"the Docker engine at {engine.host} failed to pull" in layer
    assert "unknown" in layer.lower() or "not found" in layer.lower(), layer
    record = _record(settings, "mirror")
    assert record["arc-sqlmi"]["digest"] == target.manifest_digest(f"{TARGET_REPO}/arc-sqlmi", release.tag)
    assert record["arc-bootstrapper"]["digest"] is None and record["arc-monitor-fluentbit"]["digest"] is None
    assert target.manifest_digest(f"{TARGET_REPO}/arc-monitor-fluentbit", release.tag) is None


def test_a_wrong_password_fails_each_push_with_the_engines_message(engine, docker_config, release, new_registry,
                                                                   tmp_path):
    target = new_registry(auth="basic")
    names = ("arc-bootstrapper", "arc-monitor-fluentbit")
    plan = _plan(_settings(tmp_path, release.registry, target, release, names))
    wrong = "wrong-" + secrets.token_urlsafe(12)
    settings = _settings(tmp_path, release.registry, target, release, names, TARGET_DOCKER_PASSWORD=wrong)

    run = run_engine_mirror(settings, plan, cleanup=True)

    assert run.exit_code == 1 and len(run.cases) == 2
    for case in run.cases:
        assert "failed to push" in case.message and "unauthorized: authentication required" in case.message
        assert "TARGET_DOCKER_USERNAME and TARGET_DOCKER_PASSWORD" in case.hint
    assert "unauthorized" in _failure(settings.report_dir / "mirror.xml", names[0])
    assert _engine_refs(engine) == [], "--cleanup also cleans up after a failed image"
    assert list(docker_config.iterdir()) == []
    _assert_no_secret(wrong, settings.report_dir, engine.log, docker_config)
    _assert_no_secret(target.password, settings.report_dir, engine.log, docker_config)


def test_cleanup_leaves_no_image_but_keeps_one_the_engine_had(engine, release, new_registry, tmp_path):
    target = new_registry(auth="basic")
    settings = _settings(tmp_path, release.registry, target, release)
    plan = _plan(settings)
    had = f"{release.registry.host}/{release.repository('arc-sqlmi')}@{release.digests['arc-sqlmi']}"
    engine.docker("pull", had)

    run = run_engine_mirror(settings, plan, cleanup=True)

    assert run.exit_code == 0, run.summary()
    assert _engine_refs(engine) == [had], "only the image the engine held before the run is left"
    engine.docker("rmi", had)
    client = engine.client()
    try:
        assert client.images.list(all=True) == []
    finally:
        client.close()
    assert "kept" in _record(settings, "mirror")["arc-sqlmi"]["cleanup"]
    assert "removed" in _record(settings, "mirror")["arc-bootstrapper"]["cleanup"]
    assert run_engine_verify(settings, plan).exit_code == 0


def test_pull_tag_push_as_steps_then_verify(engine, docker_config, release, new_registry, tmp_path):
    target = new_registry(auth="basic")
    names = ("arc-logsdb-dashboards", "arc-bootstrapper")
    settings = _settings(tmp_path, release.registry, target, release, names)
    plan = _plan(settings)

    early = run_engine_tag(settings, plan)
    assert early.exit_code == 1 and all("run 'invoke pull --engine docker' first" in c.hint for c in early.cases)

    runs = [run_engine_pull(settings, plan), run_engine_tag(settings, plan), run_engine_push(settings, plan, True)]
    for run in runs:
        assert run.exit_code == 0, run.summary()
        assert sorted(_cases(run.junit)) == sorted(names)
    assert [r.junit.name for r in runs] == ["pull.xml", "tag.xml", "push.xml"]
    assert _engine_refs(engine) == [], "push --cleanup removes what pull and tag made"

    pushed = _record(settings, "push")
    verified = run_engine_verify(settings, plan)
    assert verified.exit_code == 0, verified.summary()
    checks = {e["name"]: e for e in json.loads((settings.report_dir / "verify.json").read_text())["images"]}
    for name in names:
        assert pushed[name]["digest"] == target.manifest_digest(f"{TARGET_REPO}/{name}", release.tag)
        assert checks[name]["pushed_digest"] == pushed[name]["digest"]
    assert list(docker_config.iterdir()) == []
    _assert_no_secret(target.password, settings.report_dir, engine.log)


def test_platforms_the_engine_cannot_copy_are_refused(engine, tmp_path):
    settings, plan = _hand_made_plan(tmp_path, platforms=["linux/arm64"])
    run = run_engine_mirror(settings, plan)
    assert run.exit_code == 1
    for case in run.cases:
        assert "MIRROR_PLATFORMS asks for linux/arm64" in case.message and "linux/amd64" in case.message
        assert "unset MIRROR_PLATFORMS" in case.hint


def test_the_tasks_take_the_engine_route(engine, docker_engine, docker_config, release, new_registry, tmp_path):
    """``invoke mirror --engine docker --cleanup`` and ``invoke verify --engine docker`` through the front door."""
    from helpers import invoke, mirror_env

    target = new_registry(auth="basic")
    env = mirror_env(release.registry, target, release, MIRROR_IMAGES="arc-bootstrapper,arc-sqlmi",
                     DOCKER_HOST=docker_engine.host, DOCKER_CONFIG=str(docker_config))
    run = invoke(["mirror", "--engine", "docker", "--cleanup"], env, tmp_path)
    assert run.code == 0, run.output
    assert target.manifest_digest("mirror/arcdata/arc-sqlmi", release.tag) is not None
    assert _engine_refs(docker_engine) == []
    verified = invoke(["verify", "--engine", "docker"], env, tmp_path)
    assert verified.code == 0, verified.output
    assert invoke(["mirror", "--cleanup"], env, tmp_path / "x").code == 2
    assert invoke(["mirror", "--engine", "docker", "--dry-run"], env, tmp_path / "y").code == 2
    assert invoke(["mirror", "--engine", "podman"], env, tmp_path / "z").code == 2
    assert target.password not in run.output + verified.output
