"""Pieces of the registry client and copy engine that need no server."""

from __future__ import annotations

import hashlib
import json

import pytest

from arcmirror.copy.blobs import VerifyingBody
from arcmirror.oci.digest import sha256_digest
from arcmirror.oci.errors import DigestMismatchError, NotFoundError
from arcmirror.oci.manifest import Manifest
from arcmirror.oci.platform import Platform, filter_index
from arcmirror.registry.auth import Credentials, Token, TokenCache, parse_challenge
from arcmirror.registry.credentials import docker_config_credentials
from arcmirror.registry.retry import RetryPolicy
from arcmirror.secret import Secret


def test_parse_bearer_challenge():
    c = parse_challenge('Bearer realm="https://auth.example/token",service="registry.example",'
                        'scope="repository:arcdata/arc-sqlmi:pull,push repository:x:pull"')
    assert c.scheme == "bearer" and c.realm == "https://auth.example/token"
    assert c.service == "registry.example"
    assert c.scopes == ("repository:arcdata/arc-sqlmi:pull,push", "repository:x:pull")
    assert parse_challenge('Basic realm="Registry Realm"').scheme == "basic"
    assert parse_challenge(None) is None


def test_token_cache_reuses_wider_grants():
    cache = TokenCache()
    wide = Token(Secret("t"), expires_at=1e18)
    cache.put(frozenset({"a", "b"}), wide)
    assert cache.get(frozenset({"a"})) is wide
    assert cache.get(frozenset({"c"})) is None
    cache.put(frozenset({"c"}), Token(Secret("old"), expires_at=0))
    assert cache.get(frozenset({"c"})) is None  # expired


def test_credentials_repr_has_no_password():
    creds = Credentials("u", Secret("hunter2"), "test")
    assert "hunter2" not in repr(creds)
    assert creds.basic_header().startswith("Basic ")


def test_docker_config_auths(tmp_path):
    import base64

    (tmp_path / "config.json").write_text(json.dumps({
        "auths": {"https://reg.example:5000": {"auth": base64.b64encode(b"bob:s3cret").decode()}}}))
    creds = docker_config_credentials("reg.example:5000", {"DOCKER_CONFIG": str(tmp_path)})
    assert creds.username == "bob" and creds.password.reveal() == "s3cret"
    assert docker_config_credentials("other.example", {"DOCKER_CONFIG": str(tmp_path)}) is None
    (tmp_path / "config.json").write_text("{broken")
    assert docker_config_credentials("reg.example:5000", {"DOCKER_CONFIG": str(tmp_path)}) is None


def test_retry_policy_honours_retry_after_with_a_cap():
    policy = RetryPolicy(attempts=5, base_delay=1, max_delay=8, max_retry_after=30)
    assert policy.delay(1, retry_after=2.5) == 2.5
    assert policy.delay(1, retry_after=600) == 30
    for attempt in range(1, 8):
        assert 0 < policy.delay(attempt) <= 8


def _body(chunks, digest, size):
    return list(VerifyingBody(iter(chunks), digest, size, lambda n: None))


def test_verifying_body_passes_good_content():
    data = [b"a" * 1000, b"b" * 10]
    digest = sha256_digest(b"".join(data))
    assert _body(data, digest, 1010) == data


@pytest.mark.parametrize("chunks,size", [([b"x" * 100], 100), ([b"a" * 50], 100), ([b"a" * 60, b"b" * 60], 100)])
def test_verifying_body_withholds_the_last_chunk_of_bad_content(chunks, size):
    digest = "sha256:" + hashlib.sha256(b"a" * size).hexdigest()
    forwarded = []
    with pytest.raises(DigestMismatchError):
        for chunk in VerifyingBody(iter(chunks), digest, size, lambda n: None):
            forwarded.append(chunk)
    assert sum(map(len, forwarded)) < size  # never the whole body


def _index(*archs):
    body = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + c * 64, "size": 10,
         "platform": {"os": "linux", "architecture": a}} for a, c in zip(archs, "abcdef")]}
    data = json.dumps(body).encode()
    return Manifest(data, body["mediaType"], sha256_digest(data))


def test_filter_index_keeps_bytes_when_nothing_is_dropped():
    m = _index("amd64", "arm64")
    assert filter_index(m, [Platform.parse("linux/amd64"), Platform.parse("linux/arm64")], "x")[0] is m


def test_filter_index_rewrites_and_keeps_attestations_of_kept_entries():
    m = _index("amd64", "arm64")
    body = m.json()
    body["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "e" * 64,
                              "size": 5, "platform": {"os": "unknown", "architecture": "unknown"},
                              "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                                              "vnd.docker.reference.digest": "sha256:" + "b" * 64}})
    data = json.dumps(body).encode()
    m = Manifest(data, m.media_type, sha256_digest(data))
    out, _ = filter_index(m, [Platform.parse("linux/arm64")], "x")
    digests = [e["digest"] for e in out.json()["manifests"]]
    assert digests == ["sha256:" + "b" * 64, "sha256:" + "e" * 64]
    assert out.digest == sha256_digest(out.data) != m.digest


def test_filter_index_without_a_match_names_what_exists():
    with pytest.raises(NotFoundError) as err:
        filter_index(_index("amd64"), [Platform.parse("windows/amd64")], "arcdata/x")
    assert "linux/amd64" in str(err.value) and "MIRROR_PLATFORMS" in str(err.value)


def test_shards_cover_every_image_once_balanced_by_bytes():
    from arcmirror.runs.plan import Plan, PlannedImage, shard_plan

    sizes = {"a": 900, "b": 500, "c": 400, "d": 300, "e": 100, "f": 100, "g": 0}
    images = [PlannedImage(n, n, n, n, n, "t", digest="sha256:" + "0" * 64, blobs={"sha256:" + n * 64: s} if s else {})
              for n, s in sizes.items()]
    images[1].bytes_in_target = 500  # "b" is already in the target: nothing to copy
    plan = Plan("s", "r", "t", "r", "v1", "v1", "x", "set", [], images)
    for count in (1, 2, 3, 7, 9):
        parts = [shard_plan(plan, i, count) for i in range(1, count + 1)]
        names = [i.name for p in parts for i in p.images]
        assert sorted(names) == sorted(sizes)  # every image in exactly one shard
        assert [i.name for i in shard_plan(plan, 1, count).images] == [i.name for i in parts[0].images]
        assert all(p.shard == f"{k}/{count}" for k, p in enumerate(parts, 1))
    two = [sum(i.bytes - i.bytes_in_target for i in shard_plan(plan, k, 2).images) for k in (1, 2)]
    assert abs(two[0] - two[1]) <= 100


@pytest.mark.parametrize("host, product, metered", [
    ("docker.io", None, True), ("registry-1.docker.io", None, True), ("index.docker.io", None, True),
    ("mirror.example:5000", "Docker Hub", True),  # a challenge naming Docker Hub's token service
    ("mcr.microsoft.com", None, False), ("registry.example", "Harbor", False),
])
def test_only_docker_hub_has_its_manifest_reads_counted(host, product, metered):
    # docs.docker.com/docker-hub/usage/pulls: a GET of /v2/*/manifests/* is a pull, a HEAD is not
    from arcmirror.endpoints.registry import RegistryEndpoint
    from arcmirror.registry.client import RegistryClient

    client = RegistryClient(host, insecure=False, label="source registry", prefix="SOURCE_DOCKER",
                            retry=RetryPolicy(attempts=1), timeout=(1.0, 1.0))
    client.product = product
    assert RegistryEndpoint(client).meters_manifest_reads() is metered


def test_the_first_mount_from_a_repository_is_asked_alone():
    # Harbor refuses a mount from a repository it will not read (401); 16 mounts of a base layer asked at once
    # met that refusal 16 times, where the first answer should decide for the others
    import threading
    import time

    from arcmirror.registry.client import MountSources

    sources, results, asked_at = MountSources(), [], []

    def mount(n: int) -> None:
        first = sources.ask("mirror/a")
        asked_at.append((time.monotonic(), first))
        if first:
            time.sleep(0.2)
            sources.refuse("mirror/a")
            sources.answered("mirror/a")
        results.append(sources.refused("mirror/a"))

    threads = [threading.Thread(target=mount, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert [first for _, first in asked_at].count(True) == 1
    start = next(t for t, first in asked_at if first)
    assert all(t >= start + 0.2 for t, first in asked_at if not first)  # the others waited for the answer
    assert results == [True] * 8  # and none of them asks for the refused mount
    assert sources.ask("mirror/b") and not sources.refused("mirror/b")  # each repository on its own
