"""Faults and hostile input between arcmirror and real registries (a fault-injecting proxy in between)."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import time
import xml.etree.ElementTree as ET

import pytest
from helpers import BIG_NAMES as NAMES
from helpers import BIG_TAG as TAG
from helpers import invoke, registry_env, start_invoke, wait_for, walk

from testbed.faultproxy import StorageServer
from testbed.registry import Registry
from testbed.skopeo import load_release


def _largest(release) -> str:
    return max(release.blobs, key=release.blobs.get)


def _env(source_host: str, target: Registry, **extra) -> dict[str, str]:
    env = {"SOURCE_DOCKER_REGISTRY": source_host, "SOURCE_DOCKER_INSECURE": "true",
           **registry_env("TARGET_DOCKER", target),
           "SOURCE_DOCKER_REPOSITORY": "arcdata", "SOURCE_DOCKER_TAG": TAG, "TARGET_DOCKER_REPOSITORY": "mirror",
           "MIRROR_IMAGES": ",".join(NAMES), "MIRROR_TIMEOUT": "10"}
    env.update(extra)
    return env


def _assert_complete(big, target) -> None:
    for name in NAMES:
        assert target.manifest_digest(f"mirror/{name}", TAG) == big.digests[name]
        blobs, _ = walk(target, f"mirror/{name}", TAG)
        assert all(target.has_blob(f"mirror/{name}", d) for d in blobs)


def _cases(run) -> dict[str, ET.Element]:
    return {c.get("name"): c for c in ET.fromstring(run.report()).iter("testcase")}


# -- dropped connections ------------------------------------------------------------------------

def test_reset_in_the_middle_of_a_download_resumes_with_range(big, fault_proxy, new_registry, tmp_path):
    proxy = fault_proxy(big.registry)
    victim = _largest(big)
    proxy.reset_after("GET", f"/blobs/{victim}", 1_000_000)
    target = new_registry()
    run = invoke(["mirror"], _env(proxy.host, target), tmp_path)
    assert run.code == 0, run.output
    _assert_complete(big, target)
    gets = [r for r in proxy.requests if r.method == "GET" and victim in r.path]
    assert len(gets) == 2
    assert gets[0].fault == "reset" and gets[1].range and gets[1].range.startswith("bytes=")
    assert int(gets[1].range[6:].rstrip("-")) >= 900_000  # resumed near where it stopped, not from 0
    assert sum(g.bytes_out for g in gets) < big.blobs[victim] * 1.5


def test_reset_in_the_middle_of_an_upload_retries_the_blob(big, fault_proxy, new_registry, tmp_path):
    target = new_registry()
    proxy = fault_proxy(target)
    proxy.reset_after("PUT", r"/blobs/uploads/", 500_000, direction="request", times=2)
    env = _env(big.registry.host, target, TARGET_DOCKER_REGISTRY=proxy.host)
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 0, run.output
    _assert_complete(big, target)
    assert sum(r.fault == "reset" for r in proxy.requests) == 2


def test_server_errors_and_429_with_retry_after(big, fault_proxy, new_registry, tmp_path):
    target = new_registry()
    target_proxy = fault_proxy(target)
    target_proxy.status("HEAD", r"/manifests/", 503, times=2)
    target_proxy.status("PUT", r"/blobs/uploads/", 502, times=1)
    target_proxy.status("PUT", r"/manifests/", 500, times=1)
    source_proxy = fault_proxy(big.registry)
    source_proxy.status("GET", r"/blobs/", 429, headers={"Retry-After": "2"}, times=1)
    env = _env(source_proxy.host, target, TARGET_DOCKER_REGISTRY=target_proxy.host, MIRROR_IMAGES="arc-controller")
    started = time.monotonic()
    run = invoke(["mirror"], env, tmp_path)
    elapsed = time.monotonic() - started
    assert run.code == 0, run.output
    assert target.manifest_digest("mirror/arc-controller", TAG) == big.digests["arc-controller"]
    assert 2.0 <= elapsed < 12  # the 2 s Retry-After was waited for, and not wildly more
    assert sum(r.status == 429 for r in source_proxy.requests) == 1


def test_permanent_server_errors_fail_that_image_with_what_was_tried(big, fault_proxy, new_registry, tmp_path):
    source_proxy = fault_proxy(big.registry)
    source_proxy.status("GET", r"/arc-controller/blobs/", 503, times=None)
    target = new_registry()
    env = _env(source_proxy.host, target, MIRROR_RETRIES="2", MIRROR_IMAGES="arc-controller,arc-bootstrapper")
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 1
    message = _cases(run)["arc-controller"].find("failure").get("message")
    assert "503" in message and "gave up after 2 attempts" in message
    assert target.manifest_digest("mirror/arc-controller", TAG) is None  # no tag on a half-written image
    assert target.manifest_digest("mirror/arc-bootstrapper", TAG) == big.digests["arc-bootstrapper"]


def test_a_stalled_download_times_out_and_resumes_a_slow_one_is_left_alone(big, fault_proxy, new_registry, tmp_path):
    proxy = fault_proxy(big.registry)
    blobs = sorted(big.blobs, key=big.blobs.get, reverse=True)
    stalled, slow = blobs[0], blobs[1]
    proxy.stall("GET", f"/blobs/{stalled}", 30, after_bytes=200_000)
    proxy.trickle("GET", f"/blobs/{slow}", 1_200_000)  # ~2.6 s for 3 MB: slower than MIRROR_TIMEOUT=2, but alive
    target = new_registry()
    run = invoke(["mirror"], _env(proxy.host, target, MIRROR_TIMEOUT="2"), tmp_path)
    assert run.code == 0, run.output
    _assert_complete(big, target)
    stalled_gets = [r for r in proxy.requests if r.method == "GET" and stalled in r.path]
    slow_gets = [r for r in proxy.requests if r.method == "GET" and slow in r.path]
    assert len(stalled_gets) == 2 and stalled_gets[1].range
    assert len(slow_gets) == 1 and slow_gets[0].fault == "trickle"


# -- the target going away, tokens expiring, runs interrupted or concurrent ---------------------

def test_target_restarted_in_the_middle_of_a_run(big, fault_proxy, new_registry, tmp_path):
    proxy = fault_proxy(big.registry)
    proxy.trickle("GET", r"/blobs/", 2_000_000, times=None)  # a run of a few seconds
    target = new_registry(auth="basic")
    process = start_invoke(["mirror"], _env(proxy.host, target, MIRROR_CONCURRENCY="2"), tmp_path)
    wait_for(lambda: any(r.method == "GET" and "/blobs/" in r.path and r.bytes_out > 500_000 for r in proxy.requests))
    target.restart()
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    _assert_complete(big, target)


def test_token_expiring_in_the_middle_of_a_run(big, fault_proxy, new_registry, tmp_path):
    # the token server says 62 s, the registry stops accepting each token after 2 s: arcmirror
    # meets real 401s mid-run and must fetch new tokens, even in the middle of streaming a blob
    target = new_registry(auth="token", ttl=62, registry_leeway=60)
    proxy = fault_proxy(big.registry)
    proxy.trickle("GET", r"/blobs/", 1_500_000, times=None)
    before = target.token.issued
    run = invoke(["mirror"], _env(proxy.host, target, MIRROR_CONCURRENCY="2"), tmp_path)
    assert run.code == 0, run.output
    _assert_complete(big, target)
    assert target.token.issued - before >= 3
    assert target.password not in run.output


def test_killed_run_then_rerun_sends_only_what_is_missing(big, fault_proxy, new_registry, tmp_path):
    proxy = fault_proxy(big.registry)
    proxy.trickle("GET", r"/blobs/", 2_000_000, times=None)
    target = new_registry()
    env = _env(proxy.host, target, MIRROR_CONCURRENCY="1")
    process = start_invoke(["mirror"], env, tmp_path / "first")
    repos = {d: [f"mirror/{n}" for n in NAMES] for d in big.blobs}
    wait_for(lambda: len(target.blob_digests() & set(big.blobs)) >= 2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    present = {d for d in big.blobs if any(target.has_blob(r, d) for r in repos[d])}
    assert present and present != set(big.blobs)
    proxy.clear()
    rerun = invoke(["mirror"], env, tmp_path / "second")
    assert rerun.code == 0, rerun.output
    _assert_complete(big, target)
    sent = rerun.record()["totals"]["bytes_sent"]
    assert sent == sum(size for d, size in big.blobs.items() if d not in present)


def test_two_runs_into_the_same_target_at_once(big, new_registry, tmp_path):
    target = new_registry(auth="basic")
    env = _env(big.registry.host, target)
    first, second = start_invoke(["mirror"], env, tmp_path / "a"), start_invoke(["mirror"], env, tmp_path / "b")
    out1, _ = first.communicate(timeout=120)
    out2, _ = second.communicate(timeout=120)
    assert first.returncode == 0, out1
    assert second.returncode == 0, out2
    _assert_complete(big, target)


def test_a_blob_the_registry_misses_for_a_moment_is_asked_for_and_the_manifest_pushed_again(
        big, fault_proxy, new_registry, tmp_path):
    # distribution 2.x rewrites a blob's link in place: a second writer linking the same blob into the same
    # repository while a manifest is checked makes it answer this (seen with the two runs above). The
    # proxy gives that answer once, deterministically.
    target = new_registry()
    proxy = fault_proxy(target)
    blobs, _ = walk(big.registry, "arcdata/arc-controller", TAG)
    errors = [{"code": "DIGEST_INVALID", "message": "provided digest did not match uploaded content"},
              {"code": "MANIFEST_BLOB_UNKNOWN", "message": "blob unknown to registry", "detail": sorted(blobs)[0]}]
    proxy.status("PUT", r"/arc-controller/manifests/", 400, headers={"Content-Type": "application/json"},
                 body=json.dumps({"errors": errors}).encode(), times=1)
    env = _env(big.registry.host, target, TARGET_DOCKER_REGISTRY=proxy.host, MIRROR_IMAGES="arc-controller")
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 0, run.output
    assert target.manifest_digest("mirror/arc-controller", TAG) == big.digests["arc-controller"]
    seen = proxy.requests
    refused = next(i for i, r in enumerate(seen) if r.fault == "status")
    after = seen[refused + 1:]
    asked = {r.path.rsplit("/", 1)[1] for r in after if r.method == "HEAD" and "/blobs/" in r.path}
    assert asked == set(blobs)  # every blob of that manifest was asked for again, none was sent again
    assert not any(r.method in ("POST", "PATCH") for r in after)
    assert [r.status for r in after if r.method == "PUT"] == [201]


# -- hostile or broken answers (the proxy answers in the registry's place) ------------------------

def _client(host: str):
    from arcmirror.registry.client import RegistryClient
    from arcmirror.registry.retry import RetryPolicy

    return RegistryClient(host, insecure=True, label=f"source registry {host}", prefix="SOURCE_DOCKER",
                          retry=RetryPolicy(attempts=2, base_delay=0.01), timeout=(10.0, 10.0))


@pytest.mark.parametrize("body,content_type,expected", [
    (b"{this is not json", "application/vnd.oci.image.manifest.v1+json", "is not valid JSON"),
    (b'{"schemaVersion": 2, "mediaType": "application/vnd.evil.manifest+json"}', "application/vnd.evil.manifest+json",
     "which arcmirror does not copy"),
    (b'["a", "list"]', "application/vnd.oci.image.manifest.v1+json", "is not a JSON object"),
    (b"{" + b" " * (5 * 1024 * 1024) + b"}", "application/vnd.oci.image.manifest.v1+json", "limit for a manifest"),
])
def test_broken_manifests_are_refused_with_an_explanation(big, fault_proxy, body, content_type, expected):
    from arcmirror.oci.errors import ProtocolError

    proxy = fault_proxy(big.registry)
    proxy.status("GET", r"/manifests/", 200, headers={"Content-Type": content_type}, body=body)
    with _client(proxy.host) as client, pytest.raises(ProtocolError) as err:
        client.get_manifest("arcdata/arc-controller", TAG)
    assert expected in str(err.value)


def test_a_manifest_that_does_not_match_its_digest_fails_the_image(big, fault_proxy, new_registry, tmp_path):
    proxy = fault_proxy(big.registry)
    # by digest, and by tag with the registry's Docker-Content-Digest header: the body is not that manifest
    proxy.status("GET", r"/arc-controller/manifests/", 200,
                 headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                          "Docker-Content-Digest": big.digests["arc-controller"]},
                 body=b'{"schemaVersion":2,"config":{},"layers":[]}', times=None)
    target = new_registry()
    run = invoke(["mirror"], _env(proxy.host, target), tmp_path)
    assert run.code == 1
    assert "has content whose digest is" in _cases(run)["arc-controller"].find("failure").get("message")
    assert target.manifest_digest("mirror/arc-controller", TAG) is None
    assert target.manifest_digest("mirror/arc-bootstrapper", TAG) == big.digests["arc-bootstrapper"]


def test_a_pagination_link_to_another_host_is_not_followed(big, fault_proxy, new_registry, tmp_path):
    proxy = fault_proxy(big.registry)
    proxy.status("GET", r"/tags/list", 200, times=None, body=b'{"tags":["v1.40.0_2025-08-12"]}',
                 headers={"Content-Type": "application/json",
                          "Link": '<http://evil.example/v2/arcdata/arc-bootstrapper/tags/list?n=1>; rel="next"'})
    env = _env(proxy.host, new_registry())
    del env["SOURCE_DOCKER_TAG"]
    run = invoke(["discover"], env, tmp_path)
    assert run.code == 1
    assert "pagination link to another host" in run.stderr and "evil.example" in run.stderr


def test_a_token_realm_on_another_host_over_plain_http_gets_no_password(big, fault_proxy, new_registry, tmp_path):
    target = new_registry(auth="basic")
    proxy = fault_proxy(target)
    proxy.status("*", r"^/v2/", 401, times=None,  # every answer challenges (the first real request is the ping)
                 headers={"WWW-Authenticate": 'Bearer realm="http://localhost:9/token",service="evil"'})
    env = _env(big.registry.host, target, TARGET_DOCKER_REGISTRY=proxy.host, MIRROR_IMAGES="arc-bootstrapper")
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 1
    assert "plain HTTP on another host" in run.stdout and "will not send a password there" in run.stdout


# -- credentials ---------------------------------------------------------------------------------

def test_storage_redirect_does_not_get_the_authorization_header(big, big_layout, fault_proxy, new_registry, tmp_path):
    layout, refs = big_layout
    source = new_registry(auth="basic")
    load_release(layout, refs, source, "arcdata", TAG)
    storage = StorageServer(big.registry.host).start()  # the anonymous registry plays the object storage
    try:
        proxy = fault_proxy(source)
        proxy.redirect_blobs_to(storage.url)
        target = new_registry()
        env = {**_env(proxy.host, target), "SOURCE_DOCKER_USERNAME": source.username,
               "SOURCE_DOCKER_PASSWORD": source.password}
        run = invoke(["mirror"], env, tmp_path)
        assert run.code == 0, run.output
        _assert_complete(big, target)
        assert storage.seen_authorization and all(h is None for h in storage.seen_authorization)
        assert any(r.authorization == "Basic" for r in proxy.requests)
    finally:
        storage.stop()


def test_credential_helper_gets_the_server_on_stdin_and_nothing_reaches_disk(big, new_registry, tmp_path):
    target = new_registry(auth="basic")
    bin_dir, config_dir = tmp_path / "bin", tmp_path / "docker"
    bin_dir.mkdir()
    config_dir.mkdir()
    log = tmp_path / "helper.log"
    helper = bin_dir / "docker-credential-fake"
    helper.write_text(f"""#!{sys.executable}
import json, sys
server = sys.stdin.read()
with open({str(log)!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv, "server": server}}) + "\\n")
print(json.dumps({{"Username": {target.username!r}, "Secret": {target.password!r}}}))
""")
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    (config_dir / "config.json").write_text(json.dumps({"credsStore": "fake"}))
    env = _env(big.registry.host, target, DOCKER_CONFIG=str(config_dir),
               PATH=f"{bin_dir}:{os.environ['PATH']}", MIRROR_IMAGES="arc-bootstrapper")
    del env["TARGET_DOCKER_USERNAME"], env["TARGET_DOCKER_PASSWORD"]
    run = invoke(["mirror"], env, tmp_path / "run")
    assert run.code == 0, run.output
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls and all(c["argv"][1:] == ["get"] for c in calls)
    assert target.host in [c["server"] for c in calls]
    assert (config_dir / "config.json").read_text() == json.dumps({"credsStore": "fake"})  # no login written
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert target.password not in path.read_text(errors="replace")
