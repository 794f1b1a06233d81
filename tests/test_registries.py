"""arcmirror against the registries sites really run, reproduced by fronts before a real registry.

Each front (:mod:`testbed.personalities`) reproduces one product's documented behaviour on the wire in
front of a real CNCF distribution registry; the quirks and their sources are in those modules. For
each product, as target: ``mirror`` cold, a rerun that writes nothing, next month's release (one image
changed, one unchanged under the new tag), ``verify``, ``import`` of an archive, the release's
signatures; as source where it applies. Where the site must act, the failing image says so in that
product's terms.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from helpers import invoke, registry_env, walk

from testbed.images import build_release
from testbed.personalities import (
    ACR,
    ECR,
    Artifactory,
    ArtifactRegistry,
    DockerHub,
    Gitea,
    GitLab,
    Harbor,
    Nexus,
    Quay,
    Zot,
)
from testbed.registry import Registry
from testbed.signing import NOTATION, attach
from testbed.skopeo import load, load_release

T1 = "v1.41.0_2025-09-09"
T2 = "v1.42.0_2025-10-14"
NAMES = ["arc-controller", "arc-sqlmi", "arc-bootstrapper"]


@pytest.fixture(scope="module")
def releases(tmp_path_factory, testbed_tools):
    """Two releases in an anonymous source: T1 (arc-controller and arc-sqlmi's index signed, a cosign
    signature on arc-controller), and T2 where arc-controller (signed again) and arc-sqlmi changed and
    arc-bootstrapper is the same manifest under the new tag."""
    work = tmp_path_factory.mktemp("registries")
    layout = work / "layout"
    refs1 = build_release(layout, NAMES, T1, multiarch=["arc-sqlmi"])
    refs2 = build_release(layout, NAMES, T2, multiarch=["arc-sqlmi"], changed=["arc-controller"])
    with Registry(work / "source") as source:
        first = load_release(layout, refs1, source, "arcdata", T1)
        load_release(layout, {n: refs2[n] for n in NAMES if n != "arc-bootstrapper"}, source, "arcdata", T2)
        load(layout, refs1["arc-bootstrapper"], f"{source.host}/arcdata/arc-bootstrapper:{T2}")
        first.sigs = {"arc-controller": attach(source, "arcdata/arc-controller", T1, work / "sig", cosign=True),
                      "arc-sqlmi": attach(source, "arcdata/arc-sqlmi", T1, work / "sig", kinds=(NOTATION,)),
                      "next": attach(source, "arcdata/arc-controller", T2, work / "sig", kinds=(NOTATION,))}
        first.layout_dir, first.refs1, first.work = layout, refs1, work
        yield first


@pytest.fixture(scope="module")
def archive(releases, tmp_path_factory):
    """T1 exported to an archive, once."""
    work = tmp_path_factory.mktemp("registries-archive")
    env = {**registry_env("SOURCE_DOCKER", releases.registry), "SOURCE_DOCKER_REPOSITORY": "arcdata",
           "SOURCE_DOCKER_TAG": T1, "MIRROR_IMAGES": ",".join(NAMES)}
    path = work / "release.tar"
    exported = invoke(["export", "--archive", str(path)], env, work)
    assert exported.code == 0, exported.output
    return path


def env_for(source, target, repository: str = "mirror/arcdata", tag: str = T1, **extra) -> dict[str, str]:
    env = {**registry_env("SOURCE_DOCKER", source), **registry_env("TARGET_DOCKER", target),
           "SOURCE_DOCKER_REPOSITORY": "arcdata", "SOURCE_DOCKER_TAG": tag,
           "TARGET_DOCKER_REPOSITORY": repository, "MIRROR_IMAGES": ",".join(NAMES), "MIRROR_RETRIES": "3"}
    env.update(extra)
    return env


def writes(front) -> Counter:
    """What the front let through that writes: PUTs and upload POSTs, by method."""
    return Counter(s.method for s in front.requests if s.method in ("PUT", "POST", "PATCH", "DELETE"))


def failures(run) -> dict[str, str]:
    """Each failed image's message and hint, from the JSON record."""
    return {i["name"]: f"{i.get('error')} -- {i.get('hint')}" for i in run.record()["images"] if i["status"] == "failed"}


def signature_of(releases, name: str) -> tuple[str, str]:
    """(subject digest, the notation signature's digest) of an image of T1."""
    attached = releases.sigs[name]
    return attached.subject, attached.digests[NOTATION]


def target_cases(releases, archive, front, upstream, tmp_path, *, api: bool, fresh_front) -> dict[str, str]:
    """The target cases against one personality; returns what each case did, for the closing table."""
    outcome: dict[str, str] = {}
    started = time.monotonic()
    cold = invoke(["mirror"], env_for(releases.registry, front), tmp_path / "cold")
    assert cold.code == 0, cold.output
    for name in NAMES:
        assert upstream.manifest_digest(f"mirror/arcdata/{name}", T1) == releases.digests[name]
    subject, signature = signature_of(releases, "arc-controller")
    assert upstream.manifest_digest("mirror/arcdata/arc-controller", signature) == signature
    schema_index = upstream.manifest_digest("mirror/arcdata/arc-controller", "sha256-" + subject[7:])
    if api:  # the target lists the referrers itself: no tag-schema index beside its API
        assert schema_index is None
        assert signature in [d["digest"] for d in front.personality.referrers[("mirror/arcdata/arc-controller",
                                                                                   subject)]]
    else:
        assert schema_index is not None
    outcome["mirror"] = f"ok ({time.monotonic() - started:.1f} s)"

    front.clear_requests()
    again = invoke(["mirror"], env_for(releases.registry, front), tmp_path / "again")
    assert again.code == 0, again.output
    assert not writes(front), f"a rerun wrote {writes(front)}: {again.output}"
    assert "0 copied, 3 already up to date" in again.stdout
    outcome["rerun"] = "ok, nothing written"

    discovered = invoke(["discover"], env_for(releases.registry, front, tag=T2), tmp_path / "next")
    assert discovered.code == 0, discovered.output
    front.clear_requests()
    incremental = invoke(["mirror", "--plan", str(tmp_path / "next/reports/plan.json")],
                         env_for(releases.registry, front, tag=T2), tmp_path / "next")
    assert incremental.code == 0, incremental.output
    for name in NAMES:
        assert upstream.manifest_digest(f"mirror/arcdata/{name}", T2) == \
            releases.registry.manifest_digest(f"arcdata/{name}", T2)
    next_subject, next_signature = releases.sigs["next"].subject, releases.sigs["next"].digests[NOTATION]
    assert upstream.manifest_digest("mirror/arcdata/arc-controller", next_signature) == next_signature
    assert (upstream.manifest_digest("mirror/arcdata/arc-controller", "sha256-" + next_subject[7:]) is None) == api
    tag_puts = [s for s in front.requests if s.method == "PUT" and s.path.endswith("/arc-bootstrapper/manifests/" + T2)]
    assert len(tag_puts) == 1  # the unchanged image: its new tag, once, and none of its blobs
    assert not [s for s in front.requests if "/arc-bootstrapper/blobs/" in s.path]
    outcome["incremental"] = "ok, the unchanged image retagged without a blob request"

    verified = invoke(["verify"], env_for(releases.registry, front, tag=T2), tmp_path / "next")
    assert verified.code == 0, verified.output
    outcome["verify"] = "ok"

    airgap_front, airgap = fresh_front()
    side = {**registry_env("TARGET_DOCKER", airgap_front), "TARGET_DOCKER_REPOSITORY": "mirror/arcdata",
            "MIRROR_RETRIES": "3"}
    imported = invoke(["import", "--archive", str(archive)], side, tmp_path / "import")
    assert imported.code == 0, imported.output
    for name in NAMES:
        assert airgap.manifest_digest(f"mirror/arcdata/{name}", T1) == releases.digests[name]
    assert airgap.manifest_digest("mirror/arcdata/arc-controller", signature) == signature
    outcome["import"] = "ok"
    outcome["referrers"] = "through its API, no tag-schema index" if api else "tag schema index"
    return outcome


#: The targets: a personality, the auth of the registry behind it (as the product logs in), and whether
#: it keeps the referrers API (so arcmirror must not write the tag-schema index there).
TARGETS = {
    "harbor-2.11": (lambda: Harbor(version=(2, 11)), "token", True),
    "harbor-2.8": (lambda: Harbor(version=(2, 8)), "token", True),
    "harbor-2.7": (lambda: Harbor(version=(2, 7)), "token", False),
    "artifactory": (Artifactory, "basic", False),
    "nexus": (Nexus, "basic", False),
    "quay-3.11": (lambda: Quay(version=(3, 11)), "token", False),
    "quay-3.12": (lambda: Quay(version=(3, 12)), "token", True),
    "ecr": (lambda: ECR(repositories=[f"mirror/arcdata/{n}" for n in NAMES]), "basic", True),
    "artifact-registry": (ArtifactRegistry, "token", False),
    "gitlab": (lambda: GitLab(projects=["mirror/arcdata"]), "token", False),
    "acr": (ACR, "token", True),
    "gitea": (Gitea, "token", False),
    "zot": (Zot, None, True),
}


@pytest.mark.parametrize("product", list(TARGETS))
def test_a_release_into_each_registry(product, releases, archive, new_registry, registry_front, tmp_path):
    make, auth, api = TARGETS[product]

    def fresh_front():
        upstream = new_registry(auth=auth)
        return registry_front(upstream, make()), upstream

    front, upstream = fresh_front()
    target_cases(releases, archive, front, upstream, tmp_path, api=api, fresh_front=fresh_front)


# -- where the site must act: the failing image says what to do, in the product's terms ---------------

def test_harbor_project_not_created(releases, new_registry, registry_front, tmp_path):
    harbor = Harbor(projects=["mirror"])
    front = registry_front(new_registry(auth="token"), harbor)
    started = time.monotonic()
    run = invoke(["mirror"], env_for(releases.registry, front, repository="arcdata"), tmp_path / "run")
    assert run.code == 1, run.output
    assert time.monotonic() - started < 15
    for name, text in failures(run).items():
        assert "project 'arcdata'" in text and "Harbor" in text and "New Project" in text, text
        assert "PASSWORD" not in text, text
    assert set(failures(run)) == set(NAMES)
    assert not writes(front)
    harbor.create_project("arcdata")
    assert invoke(["mirror"], env_for(releases.registry, front, repository="arcdata"), tmp_path / "again").code == 0


def test_harbor_a_repository_outside_any_project(releases, new_registry, registry_front, tmp_path):
    front = registry_front(new_registry(auth="token"), Harbor())
    run = invoke(["mirror"], env_for(releases.registry, front, repository=""), tmp_path)
    assert run.code == 1
    for text in failures(run).values():
        assert "Harbor" in text and "TARGET_DOCKER_REPOSITORY" in text and "project" in text, text


def test_harbor_a_refused_mount_becomes_an_upload(releases, new_registry, registry_front, tmp_path):
    """Harbor answers a mount it will not do with 401 (go-containerregistry#1404): upload instead, and
    do not ask again for mounts from that repository."""
    front = registry_front(new_registry(auth="token"), Harbor(unreadable=["mirror"]))
    run = invoke(["mirror"], env_for(releases.registry, front), tmp_path)
    assert run.code == 0, run.output
    mounts = [s for s in front.requests if s.method == "POST" and "mount=" in s.query]
    assert mounts and all(s.status == 401 for s in mounts)
    asked = Counter(s.query for s in mounts)
    assert max(asked.values()) == 1  # no mount asked twice: a refusal is not retried, the upload follows


def test_harbor_immutable_tag_already_pointing_elsewhere(releases, new_registry, registry_front, tmp_path):
    front = registry_front(new_registry(auth="token"), Harbor(immutable_tags=("stable",)))
    assert invoke(["mirror"], env_for(releases.registry, front, TARGET_DOCKER_TAG="stable"), tmp_path / "a").code == 0
    front.clear_requests()
    assert invoke(["mirror"], env_for(releases.registry, front, TARGET_DOCKER_TAG="stable"), tmp_path / "b").code == 0
    assert not writes(front)  # an identical tag is never written again
    run = invoke(["mirror"], env_for(releases.registry, front, tag=T2, TARGET_DOCKER_TAG="stable"), tmp_path / "c")
    assert run.code == 1
    failed = failures(run)
    assert set(failed) == {"arc-controller", "arc-sqlmi"}  # arc-bootstrapper is the same image: up to date
    for text in failed.values():
        assert "immutable" in text and "Tag Immutability" in text and "TARGET_DOCKER_TAG" in text, text


def test_ecr_repositories_not_created(releases, new_registry, registry_front, tmp_path):
    ecr = ECR()
    front = registry_front(new_registry(auth="basic"), ecr)
    started = time.monotonic()
    run = invoke(["mirror"], env_for(releases.registry, front), tmp_path / "run")
    assert run.code == 1, run.output
    assert time.monotonic() - started < 15
    failed = failures(run)
    assert set(failed) == set(NAMES)
    for name, text in failed.items():
        assert f"aws ecr create-repository --repository-name mirror/arcdata/{name} --registry-id 123456789012" in text, text
        assert "ECR" in text and "cannot connect" not in text and "PASSWORD" not in text, text
    dropped = [s for s in front.requests if s.method == "POST"]
    blobs = sum(len(walk(releases.registry, f"arcdata/{name}", T1)[0]) for name in NAMES)
    assert len(dropped) <= blobs  # never a retry loop: at most the first POST of each blob in flight
    for name in NAMES:
        ecr.create_repository(f"mirror/arcdata/{name}")
    assert invoke(["mirror"], env_for(releases.registry, front), tmp_path / "again").code == 0


def test_ecr_immutable_tags(releases, new_registry, registry_front, tmp_path):
    front = registry_front(new_registry(auth="basic"),
                           ECR(repositories=[f"mirror/arcdata/{n}" for n in NAMES], immutable=True))
    env = env_for(releases.registry, front, TARGET_DOCKER_TAG="stable")
    assert invoke(["mirror"], env, tmp_path / "a").code == 0
    front.clear_requests()
    assert invoke(["mirror"], env, tmp_path / "b").code == 0
    assert not writes(front)
    run = invoke(["mirror"], {**env, "SOURCE_DOCKER_TAG": T2}, tmp_path / "c")
    assert run.code == 1
    failed = failures(run)
    assert set(failed) == {"arc-controller", "arc-sqlmi"}
    for text in failed.values():
        assert "IMMUTABLE" in text and "put-image-tag-mutability" in text and "TARGET_DOCKER_TAG" in text, text


@pytest.mark.parametrize("mode", ["refused", "unauthorized"])
def test_quay_nested_repositories(mode, releases, new_registry, registry_front, tmp_path):
    front = registry_front(new_registry(auth="token"), Quay(nested=mode, organizations=["team"]))
    run = invoke(["mirror"], env_for(releases.registry, front, repository="team/arcdata"), tmp_path)
    assert run.code == 1, run.output
    for text in failures(run).values():
        assert "Quay" in text and "TARGET_DOCKER_REPOSITORY=team" in text and "3 segments" in text, text
        if mode == "refused":
            assert "FEATURE_EXTENDED_REPOSITORY_NAMES" in text and "PASSWORD" not in text, text
    assert invoke(["mirror"], env_for(releases.registry, front, repository="team"), tmp_path / "ok").code == 0


def test_quay_organization_not_created(releases, new_registry, registry_front, tmp_path):
    front = registry_front(new_registry(auth="token"), Quay(organizations=["mirror"]))
    run = invoke(["mirror"], env_for(releases.registry, front, repository="arcdata"), tmp_path)
    assert run.code == 1
    for text in failures(run).values():
        assert "organization 'arcdata'" in text and "Quay" in text, text


def test_gitlab_path_deeper_than_the_project_allows(releases, new_registry, registry_front, tmp_path):
    front = registry_front(new_registry(auth="token"), GitLab(projects=["group/mirror"]))
    run = invoke(["mirror"], env_for(releases.registry, front, repository="group/mirror/arc/data"), tmp_path)
    assert run.code == 1
    for text in failures(run).values():
        assert "GitLab" in text and "project" in text and "two" in text, text
    ok = invoke(["mirror"], env_for(releases.registry, front, repository="group/mirror/arcdata"), tmp_path / "ok")
    assert ok.code == 0, ok.output


def test_nexus_without_redeploy_refuses_a_new_tag_on_an_image_it_holds(releases, new_registry, registry_front,
                                                                       tmp_path):
    front = registry_front(new_registry(auth="basic"), Nexus(redeploy=False))
    assert invoke(["mirror"], env_for(releases.registry, front), tmp_path / "a").code == 0
    front.clear_requests()
    assert invoke(["mirror"], env_for(releases.registry, front), tmp_path / "b").code == 0
    assert not writes(front)
    run = invoke(["mirror"], env_for(releases.registry, front, tag=T2), tmp_path / "c")
    assert run.code == 1
    failed = failures(run)
    assert set(failed) == {"arc-bootstrapper"}  # the unchanged image under the new tag
    assert "Allow redeploy" in failed["arc-bootstrapper"] and "docker-hosted" in failed["arc-bootstrapper"]


# -- as a source ---------------------------------------------------------------------------------------

def source_env(front, target, **extra) -> dict[str, str]:
    env = {**registry_env("SOURCE_DOCKER", front), **registry_env("TARGET_DOCKER", target),
           "SOURCE_DOCKER_REPOSITORY": "arcdata", "TARGET_DOCKER_REPOSITORY": "mirror",
           "MIRROR_IMAGES": ",".join(NAMES), "MIRROR_RETRIES": "3"}
    env.update(extra)
    return env


@pytest.mark.parametrize("personality", [Artifactory, Nexus, lambda: Quay(version=(3, 11), organizations=["arcdata"])],
                         ids=["artifactory", "nexus", "quay-3.11"])
def test_odd_tag_lists_of_a_source(personality, releases, new_registry, registry_front, tmp_path):
    """Digests among the tags (Artifactory), null (Nexus), pages of 50 in id order (Quay): the newest
    release is still found, and images copy."""
    front = registry_front(releases.registry, personality())
    if isinstance(front.personality, Quay):
        for number in range(60):  # more than a page of older releases
            data, media_type = releases.registry.get_manifest("arcdata/arc-bootstrapper", T1)
            releases.registry.request("PUT", f"/v2/arcdata/arc-bootstrapper/manifests/v1.0.{number}_2024-01-01",
                                      data=data, headers={"Content-Type": media_type}).raise_for_status()
    target = new_registry()
    discovered = invoke(["discover"], source_env(front, target), tmp_path)
    assert discovered.code == 0, discovered.output
    assert json.loads((tmp_path / "reports/plan.json").read_text())["tag"] == T2
    mirrored = invoke(["mirror"], source_env(front, target, SOURCE_DOCKER_TAG=T1), tmp_path / "m")
    assert mirrored.code == 0, mirrored.output
    subject, signature = signature_of(releases, "arc-controller")
    assert target.manifest_digest("mirror/arc-controller", signature) == signature


def test_harbor_2_7_as_a_source(releases, new_registry, registry_front, tmp_path):
    """Harbor 2.7 answers the referrers API with 401 and no challenge (regclient#384): that is no API."""
    front = registry_front(releases.registry, Harbor(version=(2, 7), projects=["arcdata"]))
    target = new_registry()
    run = invoke(["mirror"], source_env(front, target, SOURCE_DOCKER_TAG=T1), tmp_path)
    assert run.code == 0, run.output
    subject, signature = signature_of(releases, "arc-controller")
    assert target.manifest_digest("mirror/arc-controller", signature) == signature
    assert any(s.path.startswith("/v2/arcdata/") and "/referrers/" in s.path and s.status == 401
               for s in front.requests)


def test_docker_hub_rate_limit(releases, new_registry, registry_front, tmp_path):
    hub = DockerHub(limit=2, window=1.0, retry_after=1)
    front = registry_front(releases.registry, hub)
    target = new_registry()
    run = invoke(["mirror"], source_env(front, target, SOURCE_DOCKER_TAG=T1), tmp_path)
    assert run.code == 0, run.output
    assert hub.refused > 0
    assert not [s for s in front.requests if s.method == "HEAD" and s.status == 429]
    hub.limit, hub.window = 0, 3600.0
    spent = invoke(["mirror"], source_env(front, target, SOURCE_DOCKER_TAG=T2, MIRROR_RETRIES="1"), tmp_path / "spent")
    assert spent.code == 1
    for text in failures(spent).values():
        assert "rate limit" in text and "SOURCE_DOCKER_USERNAME" in text, text


def test_referrers_api_on_both_sides(releases, new_registry, registry_front, tmp_path):
    """A source that lists referrers only through its API (zot), into a target that keeps the API too."""
    upstream = new_registry()
    source_front = registry_front(upstream, Zot())
    layout, refs = releases.layout_dir, releases.refs1
    through = source_front.view(upstream)
    load_release(layout, {"arc-controller": refs["arc-controller"]}, through, "arcdata", T1)
    attached = attach(through, "arcdata/arc-controller", T1, releases.work / "sig-api")
    # the tag-schema index attach() also wrote is gone: only the API lists the signature
    index = upstream.manifest_digest("arcdata/arc-controller", "sha256-" + attached.subject[7:])
    upstream.delete_manifest("arcdata/arc-controller", index)
    target_front = registry_front(new_registry(), Zot())
    env = {**source_env(source_front, target_front, SOURCE_DOCKER_TAG=T1), "MIRROR_IMAGES": "arc-controller"}
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 0, run.output
    for digest in attached.digests.values():
        listed = target_front.personality.referrers[("mirror/arc-controller", attached.subject)]
        assert digest in [d["digest"] for d in listed]
    target_front.clear_requests()
    assert invoke(["mirror"], env, tmp_path / "again").code == 0
    assert not writes(target_front)


@pytest.mark.parametrize("personality", [ArtifactRegistry, lambda: ECR(repositories=["mirror/arc-empty",
                                                                                    "mirror/arc-controller"])],
                         ids=["artifact-registry", "ecr"])
def test_an_empty_blob_where_the_registry_stores_none(personality, releases, new_registry, registry_front, tmp_path):
    """Artifact Registry (oras-go#294) and ECR (radius#7855) refuse a 0-byte blob: that image fails saying so,
    the others are mirrored."""
    from testbed.images import OCI_LAYER_GZIP, Layer, LayoutBuilder

    builder = LayoutBuilder(tmp_path / "layout")
    empty = builder.write_blob(b"")
    layer = Layer(empty["digest"], 0, empty["digest"], builder.blob_path(empty["digest"]), OCI_LAYER_GZIP)
    builder.image("arc-empty:" + T1, [builder.layer(7, 4096), layer])
    source = new_registry()
    load(tmp_path / "layout", "arc-empty:" + T1, f"{source.host}/arcdata/arc-empty:{T1}")
    load_release(releases.layout_dir, {"arc-controller": releases.refs1["arc-controller"]}, source, "arcdata", T1)
    front = registry_front(new_registry(auth="basic"), personality())
    run = invoke(["mirror"], env_for(source, front, repository="mirror", MIRROR_IMAGES="arc-empty,arc-controller",
                                     MIRROR_REFERRERS="false"), tmp_path / "run")
    assert run.code == 1
    assert set(failures(run)) == {"arc-empty"}
    text = failures(run)["arc-empty"]
    assert "empty (0-byte) blob" in text and empty["digest"] in text, text


@pytest.mark.parametrize("personality", [lambda: Harbor(projects=["arcdata"]), lambda: GitLab(projects=["arcdata"])],
                         ids=["harbor", "gitlab"])
def test_a_catalog_the_registry_keeps_to_itself(personality, releases, new_registry, registry_front, tmp_path):
    """Harbor lists its catalog to system administrators only (harbor#7898), GitLab to nobody (portainer#2956):
    discovery by catalog says to use the image set."""
    upstream = new_registry(auth="token")
    load_release(releases.layout_dir, {"arc-controller": releases.refs1["arc-controller"]}, upstream, "arcdata", T1)
    front = registry_front(upstream, personality())
    env = {**source_env(front, new_registry(), SOURCE_DOCKER_TAG=T1, MIRROR_DISCOVER="catalog"),
           "MIRROR_IMAGES": "arc-controller"}
    run = invoke(["discover"], env, tmp_path)
    assert run.code == 1, run.output
    assert "MIRROR_DISCOVER=set" in run.output and "PASSWORD" not in run.output, run.output
    assert invoke(["discover"], {**env, "MIRROR_DISCOVER": "set"}, tmp_path / "set").code == 0


def test_docker_hub_a_repository_that_does_not_exist(releases, new_registry, registry_front, tmp_path):
    """Docker Hub answers 401, not 404, for a repository that does not exist (docker-library/meta-scripts#33)."""
    upstream = new_registry(auth="token")
    load_release(releases.layout_dir, {"arc-controller": releases.refs1["arc-controller"]}, upstream, "arcdata", T1)
    front = registry_front(upstream, DockerHub())
    env = {**source_env(front, new_registry(), SOURCE_DOCKER_TAG=T1), "MIRROR_IMAGES": "arc-controller,arc-nothere"}
    env = {k: v for k, v in env.items() if not k.startswith("SOURCE_DOCKER_USERNAME") and k != "SOURCE_DOCKER_PASSWORD"}
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 1, run.output
    assert set(failures(run)) == {"arc-nothere"}
    text = failures(run)["arc-nothere"]
    assert "does not exist" in text and "Docker Hub" in text and "SOURCE_DOCKER_USERNAME" in text, text
