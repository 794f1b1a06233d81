"""What a run costs in requests, counted at fronts before real registries: the figures `invoke bench` measures
at 25 ms, held here so they cannot creep up (issue 20: a no-op at most 3 requests per image, the run's checks
included; next month's unchanged image retagged with one request to the target)."""

from __future__ import annotations

from collections import Counter

from helpers import invoke

from testbed.images import build_release
from testbed.skopeo import load, load_release

NAMES = [f"arc-image-{n:02d}" for n in range(8)]


def _env(source, target, tag):
    return {"SOURCE_DOCKER_REGISTRY": source.host, "SOURCE_DOCKER_INSECURE": "true",
            "TARGET_DOCKER_REGISTRY": target.host, "TARGET_DOCKER_INSECURE": "true",
            "SOURCE_DOCKER_REPOSITORY": "arcdata", "TARGET_DOCKER_REPOSITORY": "mirror", "SOURCE_DOCKER_TAG": tag,
            "MIRROR_IMAGES": ",".join(NAMES)}


def test_a_no_op_and_next_month_s_unchanged_images(new_registry, fault_proxy, tmp_path):
    layout = tmp_path / "layout"
    refs = build_release(layout, NAMES, "v1.41.0_2025-09-09")
    upstream = new_registry()
    load_release(layout, refs, upstream, "arcdata", "v1.41.0_2025-09-09")
    for name in NAMES:  # next month: every image unchanged under the new tag
        load(layout, refs[name], f"{upstream.host}/arcdata/{name}:v1.42.0_2025-10-14")
    target_registry = new_registry()
    source, target = fault_proxy(upstream), fault_proxy(target_registry)
    assert invoke(["mirror"], _env(source, target, "v1.41.0_2025-09-09"), tmp_path / "cold").code == 0

    source.clear_requests(), target.clear_requests()
    again = invoke(["mirror"], {**_env(source, target, "v1.41.0_2025-09-09"), "PYTHONPROFILEIMPORTTIME": "1"},
                   tmp_path / "again")
    assert again.code == 0, again.output
    imported = {line.rsplit("|", 1)[1].strip() for line in again.stderr.splitlines() if line.startswith("import time:")}
    assert imported and not {m for m in imported if m.split(".")[0] in ("docker", "rich", "cryptography", "cbor2")
                             or m.startswith(("arcmirror.dockerengine", "arcmirror.runs.engine", "arcmirror.trust"))}
    total = len(source.requests) + len(target.requests)
    assert total <= 3 * len(NAMES) + 1, (Counter((r.method, r.path.rsplit("/", 2)[-2]) for r in source.requests),
                                         Counter(r.method for r in target.requests))
    assert not [r for r in source.requests + target.requests if r.path == "/v2/"]  # the checks ride on requests

    source.clear_requests(), target.clear_requests()
    retag = invoke(["mirror"], _env(source, target, "v1.42.0_2025-10-14"), tmp_path / "next")
    assert retag.code == 0, retag.output
    per_image = Counter(r.path.split("/")[3] for r in target.requests if r.path.startswith("/v2/mirror/"))
    assert all(count <= 3 for count in per_image.values()), per_image  # HEAD the tag, HEAD the digest, PUT the tag
    assert not [r for r in target.requests if "/blobs/" in r.path]
    print(f"no-op: {total} requests for {len(NAMES)} images; next month, target: {dict(per_image)}")
