"""The copy algorithm on its own, between in-memory registries: fast (milliseconds), and exact about
what was written, in what order and how often.

The same properties are proven against real registries elsewhere (test_mirror, test_faults); here
they are pinned down where no registry can show them, or only slowly: children first, the tag last,
one blob sent once across images in flight, mounts, failure isolation, a refused blob never
stored, referrers through the OCI referrers API on both sides, a source that lies, cancellation.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from arcmirror import cancel
from arcmirror.copy.blobs import PROBE_MIN_SIZE, SMALL_BODY
from arcmirror.copy.copier import Copier, ImageJob
from arcmirror.endpoints.memory import MemoryRegistry, MemoryRegistryWithReferrers
from arcmirror.oci.digest import sha256_digest
from arcmirror.oci.errors import HintedError
from arcmirror.oci.manifest import Manifest
from arcmirror.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from arcmirror.registry.retry import RetryPolicy

CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _manifest(body: dict) -> Manifest:
    data = json.dumps(body).encode()
    return Manifest(data, body["mediaType"], sha256_digest(data))


def _descriptor(data: bytes, media_type: str) -> dict:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}


def image(registry: MemoryRegistry, repo: str, layers: list[bytes], tag: str | None = None,
          platform: str = "linux/amd64") -> Manifest:
    """An OCI image in ``registry`` (blobs too); tagged when ``tag`` is given."""
    os_name, arch = platform.split("/")
    config = json.dumps({"os": os_name, "architecture": arch, "layers": len(layers)}).encode()
    for blob in (config, *layers):
        registry.add_blob(repo, blob)
    manifest = _manifest({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": _descriptor(config, CONFIG),
                          "layers": [_descriptor(layer, LAYER) for layer in layers]})
    registry.add_manifest(repo, manifest, tag)
    return manifest


def index(registry: MemoryRegistry, repo: str, children: dict[str, Manifest], tag: str) -> Manifest:
    entries = [{"mediaType": m.media_type, "digest": m.digest, "size": len(m.data),
                "platform": dict(zip(("os", "architecture"), platform.split("/")))}
               for platform, m in children.items()]
    manifest = _manifest({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    registry.add_manifest(repo, manifest, tag)
    return manifest


def copier(source, target, **options) -> Copier:
    return Copier(source, target, concurrency=options.pop("concurrency", 4),
                  retry=RetryPolicy(attempts=2, base_delay=0.001), **options)


def job(name: str, tag: str = "v1") -> ImageJob:
    return ImageJob(name, f"src/{name}", tag, f"dst/{name}", tag)


def writes(registry: MemoryRegistry, kind: str | None = None) -> list[tuple[str, str, str]]:
    return [entry for entry in registry.log if kind is None or entry[0] == kind]


def test_children_first_and_the_tag_last():
    source, target = MemoryRegistry("source"), MemoryRegistry("target")
    amd64 = image(source, "src/a", [b"base", b"amd64 layer"])
    arm64 = image(source, "src/a", [b"base", b"arm64 layer"], platform="linux/arm64")
    top = index(source, "src/a", {"linux/amd64": amd64, "linux/arm64": arm64}, "v1")
    [result] = copier(source, target).copy_all([job("a")])
    assert result.status == "copied" and result.digest == top.digest
    log = target.log
    assert log[-1] == ("manifest", "dst/a", "v1")  # the tag is the very last write
    for child in (amd64, arm64):
        child_put = log.index(("manifest", "dst/a", child.digest))
        assert child_put < len(log) - 1
        for blob in [d["digest"] for d in [child.json()["config"], *child.json()["layers"]]]:
            assert log.index(("blob", "dst/a", blob)) < child_put  # a manifest comes after its blobs
    assert result.manifests_pushed == 3 and result.tree == [top.digest, amd64.digest, arm64.digest]


def images_sharing_a_blob(count: int) -> tuple[MemoryRegistry, MemoryRegistry, bytes, list[str]]:
    """A source of ``count`` images ``src/imgN:v1``, each a shared blob and one of its own; an empty target."""
    source, target = MemoryRegistry("source"), MemoryRegistry("target")
    shared = b"x" * (PROBE_MIN_SIZE * 2)
    names = [f"img{n}" for n in range(count)]
    for name in names:
        image(source, f"src/{name}", [shared, name.encode()], tag="v1")
    return source, target, shared, names


def test_a_blob_shared_by_images_in_flight_moves_once_and_is_mounted_elsewhere():
    source, target, shared, names = images_sharing_a_blob(6)
    results = copier(source, target, concurrency=6).copy_all([job(n) for n in names])
    assert [r.status for r in results] == ["copied"] * 6
    digest = sha256_digest(shared)
    assert len([w for w in writes(target, "blob") if w[2] == digest]) == 1  # streamed once
    assert len([w for w in writes(target, "mount") if w[2] == digest]) == 5  # mounted into the others
    distinct = {d: len(data) for d, data in source.content.items()}  # every blob of the six images, once
    assert sum(r.bytes_sent for r in results) == sum(distinct.values())


def test_once_a_repository_holds_a_shared_blob_the_others_mount_it_together():
    # issue 20's tail at a capped link: the base layer's one upload ended, then 16 mounts went one after
    # another, a round trip each; and the image after the first ``concurrency`` ones began only when one ended
    source, target, shared, names = images_sharing_a_blob(8)
    lock, live, most = threading.Lock(), [0], {"mount": 0, "blob": 0}

    def slow(kind, repository, reference):
        if kind in most and reference == sha256_digest(shared):
            with lock:
                live[0] += 1
                most[kind] = max(most[kind], live[0])
            time.sleep(0.1)
            with lock:
                live[0] -= 1

    target.fail = slow
    read = source.get_manifest
    started: list[float] = []

    def get_manifest(repository, reference):
        started.append(time.monotonic())
        return read(repository, reference)

    source.get_manifest = get_manifest
    results = copier(source, target, concurrency=4).copy_all([job(n) for n in names])
    assert [r.status for r in results] == ["copied"] * 8
    assert most["blob"] == 1  # sent once, the others waiting for it
    assert most["mount"] == 7  # then mounted into the seven other repositories at once (a small blob: no slot)
    assert max(started) - min(started) < 0.1  # all eight images under way at once: twice the concurrency


def test_at_most_concurrency_large_bodies_stream_at_once_and_small_ones_never_wait_for_them():
    source, target = MemoryRegistry("source"), MemoryRegistry("target")
    names = [f"img{n}" for n in range(6)]
    large = {name: (name.encode() * 2**19)[:3 * 2**19] for name in names}  # 1.5 MiB each
    assert all(len(data) >= SMALL_BODY for data in large.values())
    for name in names:
        image(source, f"src/{name}", [large[name], b"small " + name.encode()], tag="v1")
    large_digests = {sha256_digest(data) for data in large.values()}
    lock, live, most = threading.Lock(), {True: 0, False: 0}, {True: 0, False: 0}

    def slow(kind, repository, reference):
        if kind == "blob":
            big = reference in large_digests
            with lock:
                live[big] += 1
                most[big] = max(most[big], live[big])
            time.sleep(0.1 if big else 0.05)
            with lock:
                live[big] -= 1

    target.fail = slow
    results = copier(source, target, concurrency=2).copy_all([job(n) for n in names])
    assert [r.status for r in results] == ["copied"] * 6
    assert most[True] == 2  # the large layers: two bodies at a time
    assert most[False] > 2  # configs and small layers: not held behind them


def test_layers_a_sibling_got_in_an_earlier_run_are_mounted_not_sent():
    source, target = MemoryRegistry("source"), MemoryRegistry("target")
    big = b"y" * PROBE_MIN_SIZE
    image(source, "src/old", [big], tag="v1")
    image(source, "src/new", [big, b"new"], tag="v1")
    copier(source, target).copy_all([job("old")])
    target.log.clear()
    [_, new] = copier(source, target).copy_all([job("old"), job("new")])
    assert new.blobs_mounted == 1 and ("mount", "dst/new", sha256_digest(big)) in target.log
    assert sha256_digest(big) not in [w[2] for w in writes(target, "blob")]


class MeteredRegistry(MemoryRegistry):
    """A source that counts manifest reads against a pull limit, as Docker Hub does."""

    def meters_manifest_reads(self) -> bool:
        return True


def _timed(registry, name: str, spans: dict, pause: float = 0.1):
    """Wrap ``registry.name`` so that each call sleeps ``pause`` and records its (start, end)."""
    inner = getattr(registry, name)

    def call(*args):
        start = time.monotonic()
        time.sleep(pause)
        try:
            return inner(*args)
        finally:
            spans.setdefault(name, []).append((start, time.monotonic()))

    setattr(registry, name, call)


@pytest.mark.parametrize("kind, reads", [(MemoryRegistry, 1), (MeteredRegistry, 0)])
def test_a_rerun_writes_nothing_and_reads_a_manifest_only_where_reads_are_free(kind, reads):
    source, target = kind("source"), MemoryRegistry("target")
    image(source, "src/a", [b"one", b"two"], tag="v1")
    copier(source, target).copy_all([job("a")])
    target.log.clear()
    spans: dict = {}
    _timed(source, "get_manifest", spans, 0)
    [again] = copier(source, target).copy_all([job("a")])
    assert again.status == "up-to-date" and target.log == []
    assert len(spans.get("get_manifest", [])) == reads  # Docker Hub: a HEAD, which counts no pull


@pytest.mark.parametrize("kind, together", [(MemoryRegistry, True), (MeteredRegistry, False)])
def test_the_target_s_tag_and_the_source_s_manifest_are_asked_at_once(kind, together):
    # one round trip where there were two, on every image's path (cold, next month, a no-op)
    source, target = kind("source"), MemoryRegistry("target")
    image(source, "src/a", [b"one", b"two"], tag="v1")
    spans: dict = {}
    _timed(target, "resolve", spans)
    _timed(source, "get_manifest", spans)
    [result] = copier(source, target).copy_all([job("a")])
    assert result.status == "copied"
    (tag_start, tag_end), (read_start, read_end) = spans["resolve"][0], spans["get_manifest"][0]
    assert (read_start < tag_end and tag_start < read_end) == together


def test_one_failing_image_never_stops_the_others_and_is_not_tagged():
    source, target = MemoryRegistry("source"), MemoryRegistry("target")
    for name in ("good", "bad"):
        image(source, f"src/{name}", [name.encode() * 10], tag="v1")

    def refuse(kind: str, repo: str, reference: str) -> None:
        if repo == "dst/bad" and kind == "blob":
            raise HintedError("the target refused it", "fix the target")

    target.fail = refuse
    good, bad = copier(source, target).copy_all([job("good"), job("bad")])
    assert good.status == "copied" and bad.status == "failed"
    assert bad.error == "the target refused it" and bad.hint == "fix the target"
    assert target.resolve("dst/bad", "v1") is None and target.resolve("dst/good", "v1") is not None


def test_a_blob_whose_content_is_not_its_digest_is_never_stored():
    source, target = MemoryRegistry("source"), MemoryRegistry("target")
    manifest = image(source, "src/a", [b"genuine!"], tag="v1")
    layer = manifest.json()["layers"][0]["digest"]
    source.content[layer] = b"tampered"  # same length, other bytes: the source lies
    [result] = copier(source, target).copy_all([job("a")])
    assert result.status == "failed" and "has content whose digest is" in result.error
    assert not target.has_blob("dst/a", layer) and target.resolve("dst/a", "v1") is None


def test_a_dry_run_reads_everything_and_writes_nothing():
    source, target = MemoryRegistry("source"), MemoryRegistry("target")
    image(source, "src/a", [b"one"], tag="v1")
    [result] = copier(source, target, dry_run=True).copy_all([job("a")])
    assert result.status == "would-copy" and result.blobs_copied == 2 and target.log == []


def test_referrers_through_the_api_on_both_sides():
    source, target = MemoryRegistryWithReferrers("source"), MemoryRegistryWithReferrers("target")
    subject = image(source, "src/a", [b"layer"], tag="v1")
    for blob in (b"{}", b"signature"):
        source.add_blob("src/a", blob)
    signature = _manifest({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "artifactType": "application/vnd.cncf.notary.signature",
                           "config": _descriptor(b"{}", "application/vnd.oci.empty.v1+json"),
                           "layers": [_descriptor(b"signature", "application/jose+json")],
                           "subject": {"mediaType": subject.media_type, "digest": subject.digest,
                                       "size": len(subject.data)}})
    source.add_manifest("src/a", signature)
    [result] = copier(source, target).copy_all([job("a")])
    assert result.status == "copied", result.error
    assert result.referrers == result.referrers_copied == 1
    assert target.resolve("dst/a", signature.digest) == signature.digest
    assert not any(t.startswith("sha256-") for t in target.list_tags("dst/a"))  # the API lists it: no tag schema
    assert [r["digest"] for r in target.referrers("dst/a", subject.digest)] == [signature.digest]


def test_a_source_that_lies_about_an_index_is_refused():
    """A source serving an index under its own child's digest: no real registry can, so memory stands in."""
    source, target = MemoryRegistry("source"), MemoryRegistry("target")
    child = "sha256:" + "1" * 64
    looping = _manifest({"schemaVersion": 2, "mediaType": OCI_INDEX,
                         "manifests": [{"mediaType": OCI_INDEX, "digest": child, "size": 10}]})
    source.add_manifest("src/a", looping, "v1")
    source.repositories["src/a"].manifests[child] = looping
    [result] = copier(source, target).copy_all([job("a")])
    assert result.status == "failed" and "refers to itself or nests deeper" in result.error


def test_a_cancelled_run_starts_nothing_and_writes_nothing():
    source, target = MemoryRegistry("source"), MemoryRegistry("target")
    image(source, "src/a", [b"one"], tag="v1")
    cancel.request()
    try:
        [result] = copier(source, target).copy_all([job("a")])
    finally:
        cancel.reset()
    assert result.status == "cancelled" and "cancelled by SIGTERM" in result.error and target.log == []


@pytest.mark.parametrize("platforms,kept", [(("linux/amd64",), ["amd64"]), (("linux/aarch64",), ["arm64"])])
def test_a_filtered_index_is_rewritten_with_only_the_platforms_asked_for(platforms, kept):
    from arcmirror.oci.platform import Platform

    source, target = MemoryRegistry("source"), MemoryRegistry("target")
    children = {p: image(source, "src/a", [p.encode()], platform=p) for p in ("linux/amd64", "linux/arm64")}
    top = index(source, "src/a", children, "v1")
    [result] = copier(source, target, platforms=[Platform.parse(p) for p in platforms]).copy_all([job("a")])
    assert result.status == "copied" and result.rewritten and result.digest != top.digest
    written = target.get_manifest("dst/a", "v1").json()
    assert [e["platform"]["architecture"] for e in written["manifests"]] == kept
