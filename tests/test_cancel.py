"""A pipeline job cancelled or timed out: SIGINT, then SIGTERM, in the middle of real transfers.

Every run is slowed by a fault proxy between arcmirror and the source (a trickle, or a stall that
never ends), signalled once one image is done and others are in flight, and must stop within a few
seconds: exit 130 or 143, its reports written (finished images passed, the others failed and marked
cancelled), no tag for an unfinished image, and a rerun that completes.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest
from helpers import BIG_NAMES as NAMES
from helpers import BIG_TAG as TAG
from helpers import ROOT, invoke, registry_env, start_invoke, wait_for, walk

#: How long a cancelled run may take to stop (it measures well under one second here).
STOP_WITHIN = 5.0


def _env(source_host: str, target, **extra) -> dict[str, str]:
    env = {"SOURCE_DOCKER_REGISTRY": source_host, "SOURCE_DOCKER_INSECURE": "true",
           **registry_env("TARGET_DOCKER", target), "SOURCE_DOCKER_REPOSITORY": "arcdata",
           "SOURCE_DOCKER_TAG": TAG, "TARGET_DOCKER_REPOSITORY": "mirror", "MIRROR_IMAGES": ",".join(NAMES),
           "MIRROR_CONCURRENCY": "1"}
    env.update(extra)
    return env


def _signal_and_time(process, signum: int) -> tuple[float, str]:
    sent = time.monotonic()
    process.send_signal(signum)
    output, _ = process.communicate(timeout=30)
    return time.monotonic() - sent, output


def _cases(path) -> dict[str, ET.Element]:
    return {c.get("name"): c for c in ET.parse(path).getroot().iter("testcase")}


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_mirror_stops_within_seconds_with_reports_and_the_rerun_completes(big, fault_proxy, new_registry, tmp_path,
                                                                          signum, code):
    proxy = fault_proxy(big.registry)
    proxy.trickle("GET", r"/arc-sqlmi/blobs/", 600_000, times=None)  # the second image takes ~10 s
    own = set(walk(big.registry, "arcdata/arc-bootstrapper", TAG)[0]) - set(
        walk(big.registry, "arcdata/arc-controller", TAG)[0])  # not the base layer the others share
    for digest in own:  # never gets anywhere
        proxy.stall("GET", rf"/arc-bootstrapper/blobs/{digest}", 120, after_bytes=100_000, times=None)
    target = new_registry(auth="basic")
    env = _env(proxy.host, target, MIRROR_CONCURRENCY="4")  # all three under way, a body slot each
    process = start_invoke(["mirror"], env, tmp_path / "first")
    wait_for(lambda: target.manifest_digest("mirror/arc-controller", TAG) is not None, timeout=30)
    wait_for(lambda: any("/arc-sqlmi/blobs/" in r.path and r.bytes_out > 200_000 for r in proxy.requests))
    took, output = _signal_and_time(process, signum)

    assert process.returncode == code, output
    assert took < STOP_WITHIN, f"stopped {took:.1f}s after the signal"
    name = signal.Signals(signum).name
    assert f"{name} received: stopping" in output and f"cancelled by {name}" in output
    assert "CANCELLED before they were done (2): arc-sqlmi, arc-bootstrapper" in output
    cases = _cases(tmp_path / "first" / "reports" / "mirror.xml")
    assert cases["arc-controller"].find("failure") is None
    for unfinished in ("arc-sqlmi", "arc-bootstrapper"):
        failure = cases[unfinished].find("failure")
        assert failure is not None and failure.get("type") == "cancelled"
        assert f"cancelled by {name} before this image finished" in failure.get("message")
        assert target.manifest_digest(f"mirror/{unfinished}", TAG) is None  # nothing unfinished is tagged

    proxy.clear()
    rerun = invoke(["mirror"], env, tmp_path / "second")
    assert rerun.code == 0, rerun.output
    for image in NAMES:
        assert target.manifest_digest(f"mirror/{image}", TAG) == big.digests[image]
    assert rerun.images()["arc-controller"]["status"] == "up-to-date"


def test_a_step_stops_the_same_way(big, fault_proxy, tmp_path):
    proxy = fault_proxy(big.registry)
    proxy.trickle("GET", r"/arc-sqlmi/blobs/", 600_000, times=None)
    env = {"SOURCE_DOCKER_REGISTRY": proxy.host, "SOURCE_DOCKER_INSECURE": "true", "SOURCE_DOCKER_REPOSITORY": "arcdata",
           "SOURCE_DOCKER_TAG": TAG, "MIRROR_IMAGES": ",".join(NAMES), "MIRROR_CONCURRENCY": "1",
           "MIRROR_STORE": str(tmp_path / "store")}
    process = start_invoke(["pull"], env, tmp_path)
    wait_for(lambda: any("/arc-sqlmi/blobs/" in r.path and r.bytes_out > 200_000 for r in proxy.requests), timeout=30)
    took, output = _signal_and_time(process, signal.SIGINT)
    assert process.returncode == 130, output
    assert took < STOP_WITHIN, f"stopped {took:.1f}s after the signal"
    cases = _cases(tmp_path / "reports" / "pull.xml")
    assert cases["arc-controller"].find("failure") is None
    assert cases["arc-sqlmi"].find("failure").get("type") == "cancelled"
    assert not list((tmp_path / "store").rglob(".partial-*"))  # nothing half-written in the store
    proxy.clear()
    again = invoke(["pull"], env, tmp_path)
    assert again.code == 0, again.output


def test_the_same_signal_twice_stops_at_once_sigterm_after_sigint_lets_the_stop_finish(tmp_path):
    # a real run stops faster than a second signal can be sent by hand: drive the handler directly
    script = ("import signal, sys\n"
              "from arcmirror import cancel\n"
              "cancel.install()\n"
              "signal.raise_signal(signal.SIGINT)\n"
              "signal.raise_signal(signal.SIGTERM)\n"  # what a pipeline sends next: the stopping goes on
              "print('still stopping', cancel.exit_code(), flush=True)\n"
              "signal.raise_signal(signal.SIGINT)\n"
              "print('not reached', flush=True)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert done.returncode == 130
    assert "still stopping 130" in done.stdout and "not reached" not in done.stdout
    assert "SIGINT again: stopping now" in done.stderr


def _cancelled_run(args, env, cwd, ready, signum=signal.SIGTERM):
    """Start ``invoke ARGS``, signal it once ``ready()`` holds; return (exit code, seconds to stop, output)."""
    process = start_invoke(args, env, cwd)
    wait_for(ready, timeout=30)
    took, output = _signal_and_time(process, signum)
    return process.returncode, took, output


def _source_env(host: str, tmp_path) -> dict[str, str]:
    return {"SOURCE_DOCKER_REGISTRY": host, "SOURCE_DOCKER_INSECURE": "true", "SOURCE_DOCKER_REPOSITORY": "arcdata",
            "SOURCE_DOCKER_TAG": TAG, "MIRROR_IMAGES": ",".join(NAMES), "MIRROR_STORE": str(tmp_path / "store")}


def test_every_kind_of_wait_is_cut_short(big, fault_proxy, new_registry, tmp_path):
    """Waits on a stalled server, on a retry's backoff and on a Retry-After all end at the signal."""
    source = fault_proxy(big.registry)
    source.stall("GET", r"/manifests/", 120, times=None)
    code, took, output = _cancelled_run(["discover"], {**_source_env(source.host, tmp_path),
                                                       "TARGET_DOCKER_REGISTRY": "127.0.0.1:9"},
                                        tmp_path / "discover", lambda: bool(source.requests))
    assert (code, took < STOP_WITHIN) == (143, True), output
    assert "cancelled by SIGTERM" in output

    target = new_registry()
    busy = fault_proxy(target)
    busy.status("POST", r"/blobs/uploads/", 503, times=None)  # retried with backoff, MIRROR_RETRIES times
    env = {**_source_env(big.registry.host, tmp_path), **registry_env("TARGET_DOCKER", target),
           "TARGET_DOCKER_REGISTRY": busy.host, "TARGET_DOCKER_REPOSITORY": "mirror", "MIRROR_RETRIES": "20"}
    assert invoke(["pull"], env, tmp_path / "push").code == 0
    assert invoke(["tag"], env, tmp_path / "push").code == 0
    code, took, output = _cancelled_run(["push"], env, tmp_path / "push",
                                        lambda: sum(r.status == 503 for r in busy.requests) >= 3)
    assert (code, took < STOP_WITHIN) == (143, True), output
    cases = _cases(tmp_path / "push" / "reports" / "push.xml")
    assert all(c.find("failure").get("type") == "cancelled" for c in cases.values())

    archive = tmp_path / "release.tar"
    assert invoke(["export", "--archive", str(archive)], env, tmp_path / "push").code == 0
    busy.clear()
    busy.status("POST", r"/blobs/uploads/", 429, headers={"Retry-After": "60"}, times=None)
    code, took, output = _cancelled_run(["import", "--archive", str(archive)], env, tmp_path / "import",
                                        lambda: any(r.status == 429 for r in busy.requests), signal.SIGINT)
    assert (code, took < STOP_WITHIN) == (130, True), output
    assert _cases(tmp_path / "import" / "reports" / "import.xml")
    assert not (tmp_path / "import" / "reports" / "verify.xml").exists()  # no verification of a cancelled import
