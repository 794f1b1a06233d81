"""Blob downloads redirected to object storage, as MCR, ACR, ECR and Docker Hub do, against a real registry.

A fault proxy in front of the (real) source registry answers every blob GET with ``307`` to a storage
server, under a path prefix and with a signed query, like an Azure SAS link. The storage server is a
second proxy that serves the registry's blobs; each test breaks it in one way (refused, unresolvable,
403, stalled, reset, TLS, a malformed ``Location``) and checks the message a user sees, how long it
takes to fail, that a fresh link is asked of the registry, and that neither the signature nor the path
of the link appears anywhere: stdout, stderr, JUnit and JSON reports, the local store.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from helpers import BIG_TAG as TAG, invoke, registry_env, walk
from testbed.faultproxy import StorageServer
from testbed.registry import free_port

PREFIX = "/sascontainer-7f3a9c"
SIGNATURE = "Zm9vYmFyU2lnbmF0dXJlMTIz"
SIGNED = f"sv=2025-11-05&se=2026-11-27T07%3A00%3A00Z&sr=b&sp=r&sig={SIGNATURE}%3D"
IMAGE = "arc-bootstrapper"


@pytest.fixture
def storage(big, fault_proxy):
    """``(front, storage)``: the source registry behind a redirecting front, and its storage server."""
    server = StorageServer(big.registry.host, path_prefix=PREFIX).start()
    front = fault_proxy(big.registry)
    yield front, server
    server.stop()


def _env(front, target, store: Path, **extra) -> dict[str, str]:
    env = {"SOURCE_DOCKER_REGISTRY": front.host, "SOURCE_DOCKER_INSECURE": "true", "SOURCE_DOCKER_REPOSITORY": "arcdata",
           "SOURCE_DOCKER_TAG": TAG, **registry_env("TARGET_DOCKER", target), "TARGET_DOCKER_REPOSITORY": "mirror",
           "MIRROR_IMAGES": IMAGE, "MIRROR_RETRIES": "2", "MIRROR_TIMEOUT": "3", "MIRROR_STORE": str(store)}
    env.update(extra)
    return env


def _failure(path: Path, name: str = IMAGE) -> str:
    case = {c.get("name"): c for c in ET.parse(path).getroot().iter("testcase")}[name]
    assert case.find("failure") is not None, f"{name} did not fail"
    return case.find("failure").get("message")


def _no_link_anywhere(run, *folders: Path) -> None:
    """Neither the signature nor the link's path: in the output, the reports, the store."""
    texts = [run.output] + [p.read_text(errors="replace") for folder in (run.cwd, *folders)
                            for p in folder.rglob("*") if p.is_file() and p.stat().st_size < 5_000_000]
    for text in texts:
        assert SIGNATURE not in text and "sig=" not in text and PREFIX.strip("/") not in text


def test_a_redirected_download_works_and_keeps_the_link_to_itself(big, storage, new_registry, tmp_path):
    front, server = storage
    front.redirect_blobs_to(server.url, path_prefix=PREFIX, signed_query=SIGNED)
    target = new_registry(auth="basic")
    run = invoke(["mirror"], _env(front, target, tmp_path / "store"), tmp_path)
    assert run.code == 0, run.output
    assert target.manifest_digest(f"mirror/{IMAGE}", TAG) == big.digests[IMAGE]
    assert server.seen_authorization and all(h is None for h in server.seen_authorization)
    _no_link_anywhere(run)


@pytest.mark.parametrize("how", ["refused", "unresolvable"])
def test_a_storage_host_out_of_reach_is_named_with_what_to_allow(big, storage, new_registry, tmp_path, how):
    front, _ = storage
    where = f"http://127.0.0.1:{free_port()}" if how == "refused" else "http://blobs.storage.invalid:8080"
    front.redirect_blobs_to(where, path_prefix=PREFIX, signed_query=SIGNED)
    started = time.monotonic()
    run = invoke(["mirror"], _env(front, new_registry(), tmp_path / "store"), tmp_path)
    took = time.monotonic() - started
    assert run.code == 1
    message = _failure(tmp_path / "reports" / "mirror.xml")
    assert f"the source registry {front.host} redirected the download of blob sha256:" in message
    assert f"to {where}," in message and f"allow {where} in the firewall or proxy of this machine" in message
    if how == "refused":
        assert "could not be reached (connection refused)" in message
        assert "SOURCE_DOCKER_REGISTRY" not in message  # the registry was fine
        blob_gets = [r for r in front.requests if r.method == "GET" and "/blobs/" in r.path]
        assert len({r.path for r in blob_gets}) < len(blob_gets)  # asked the registry again: a fresh link
    else:
        assert "whose name does not resolve on this machine" in message
    assert took < 30
    _no_link_anywhere(run)


def test_a_refused_signature_says_clock_or_expiry_and_asks_for_a_new_link(big, storage, new_registry, tmp_path):
    front, server = storage
    front.redirect_blobs_to(server.url, path_prefix=PREFIX, signed_query=SIGNED)
    server.status("GET", r"/blobs/", 403, times=None, body=b"<Error><Code>AuthenticationFailed</Code></Error>")
    run = invoke(["mirror"], _env(front, new_registry(), tmp_path / "store"), tmp_path)
    assert run.code == 1
    message = _failure(tmp_path / "reports" / "mirror.xml")
    assert f"to {server.url}, which refused the signed link (HTTP 403): it expired, or this machine's clock is off" \
        in message
    assert "a rerun asks the registry for a new link" in message
    assert "grant pull rights" not in message
    assert sum(r.method == "GET" and "/blobs/" in r.path for r in front.requests) >= 2  # a new link each attempt
    _no_link_anywhere(run)


@pytest.mark.parametrize("fault", ["stall", "reset"])
def test_a_download_cut_at_the_storage_resumes_through_the_registry(big, storage, new_registry, tmp_path, fault):
    front, server = storage
    front.redirect_blobs_to(server.url, path_prefix=PREFIX, signed_query=SIGNED)
    victim = max(walk(big.registry, f"arcdata/{IMAGE}", TAG)[0].items(), key=lambda item: item[1])[0]
    if fault == "stall":
        server.stall("GET", f"/blobs/{victim}", 60, after_bytes=300_000)
    else:
        server.reset_after("GET", f"/blobs/{victim}", 300_000)
    target = new_registry()
    run = invoke(["mirror"], _env(front, target, tmp_path / "store", MIRROR_TIMEOUT="2"), tmp_path)
    assert run.code == 0, run.output
    assert target.manifest_digest(f"mirror/{IMAGE}", TAG) == big.digests[IMAGE]
    asked = [r for r in front.requests if r.method == "GET" and victim in r.path]
    assert len(asked) == 2 and asked[1].range  # the resume asked the registry (a fresh link), with Range
    _no_link_anywhere(run)


@pytest.mark.parametrize("location", [f"ftp://storage.example{PREFIX}/blob?{SIGNED}",
                                      f"http://[storage.example{PREFIX}/blob?{SIGNED}",
                                      f"https://storage.example:99999{PREFIX}/blob?{SIGNED}"])
def test_a_malformed_location_is_the_registry_s_error_and_is_not_retried(big, storage, new_registry, tmp_path,
                                                                        location):
    front, _ = storage
    front.status("GET", r"/blobs/", 307, times=None, headers={"Location": location})
    started = time.monotonic()
    run = invoke(["mirror"], _env(front, new_registry(), tmp_path / "store", MIRROR_RETRIES="5"), tmp_path)
    assert run.code == 1 and time.monotonic() - started < 10
    message = _failure(tmp_path / "reports" / "mirror.xml")
    assert "with a redirect that is not an http(s) URL (not shown: it may hold a signed credential)" in message
    blob_gets = [r for r in front.requests if r.method == "GET" and "/blobs/" in r.path]
    assert len(blob_gets) == len({r.path for r in blob_gets})  # each blob asked once: not transient
    _no_link_anywhere(run)


def test_tls_to_the_storage_host_names_it_and_the_ca_bundle(big, storage, new_registry, tls_registry, tmp_path):
    front, _ = storage
    where = f"https://127.0.0.1:{tls_registry.port}"  # a certificate from a CA this machine does not trust
    front.redirect_blobs_to(where, path_prefix=PREFIX, signed_query=SIGNED)
    run = invoke(["mirror"], _env(front, new_registry(), tmp_path / "store"), tmp_path)
    assert run.code == 1
    message = _failure(tmp_path / "reports" / "mirror.xml")
    assert f"to {where}, and TLS with that host failed" in message
    assert "set SOURCE_DOCKER_CA_BUNDLE" in message and "SOURCE_DOCKER_INSECURE covers the registry only" in message
    _no_link_anywhere(run)


def test_every_task_that_reads_blobs_keeps_the_link_to_itself(big, storage, new_registry, tmp_path):
    front, server = storage
    target = new_registry()
    seeded = invoke(["mirror"], _env(big.registry, target, tmp_path / "seed-store"), tmp_path / "seed")
    assert seeded.code == 0, seeded.output
    front.redirect_blobs_to(server.url, path_prefix=PREFIX, signed_query=SIGNED)
    server.status("GET", r"/blobs/", 403, times=None)
    store = tmp_path / "store"
    env = _env(front, target, store)
    for args in (["pull"], ["export", "--archive", str(tmp_path / "out.tar")]):
        run = invoke(args, env, tmp_path / args[0])
        assert run.code == 1, run.output
        assert "which refused the signed link (HTTP 403)" in _failure(tmp_path / args[0] / "reports" / f"{args[0]}.xml")
        _no_link_anywhere(run, store)
    # verify --deep reads the target's blobs: put the redirecting front before the target this time
    target_front = front.__class__(target.host).start()
    try:
        target_front.redirect_blobs_to(server.url, path_prefix=PREFIX, signed_query=SIGNED)
        env = _env(big.registry, target, store, TARGET_DOCKER_REGISTRY=target_front.host)
        run = invoke(["verify", "--deep"], env, tmp_path / "verify")
        assert run.code == 1
        assert "which refused the signed link (HTTP 403)" in _failure(tmp_path / "verify" / "reports" / "verify.xml")
        _no_link_anywhere(run)
    finally:
        target_front.stop()
