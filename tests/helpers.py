"""Helpers for tests that drive arcmirror through its real front door (``invoke``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from testbed.registry import Registry

ROOT = Path(__file__).resolve().parent.parent
INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(ROOT)]
#: The release of the ``big`` fixture: 3 MB layers, for runs that must take a while.
BIG_TAG = "v1.41.0_2025-09-09"
BIG_NAMES = ["arc-controller", "arc-sqlmi", "arc-bootstrapper"]


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    cwd: Path

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def report(self, name: str = "mirror.xml") -> str:
        return (self.cwd / "reports" / name).read_text()

    def record(self, name: str = "mirror.json") -> dict:
        return json.loads((self.cwd / "reports" / name).read_text())

    def images(self) -> dict[str, dict]:
        return {i["name"]: i for i in self.record()["images"]}


def registry_env(prefix: str, registry: Registry, *, with_creds: bool = True) -> dict[str, str]:
    env = {f"{prefix}_REGISTRY": registry.host}
    if registry.scheme == "http":
        env[f"{prefix}_INSECURE"] = "true"
    elif registry.ca_bundle:
        env[f"{prefix}_CA_BUNDLE"] = str(registry.ca_bundle)
    if with_creds and registry.username:
        env[f"{prefix}_USERNAME"] = registry.username
        env[f"{prefix}_PASSWORD"] = registry.password
    return env


def mirror_env(source: Registry, target: Registry, release, *, source_creds: bool = True, **extra: str) -> dict[str, str]:
    env = {
        **registry_env("SOURCE_DOCKER", source, with_creds=source_creds),
        **registry_env("TARGET_DOCKER", target),
        "SOURCE_DOCKER_REPOSITORY": release.repo,
        "SOURCE_DOCKER_TAG": release.tag,
        "TARGET_DOCKER_REPOSITORY": "mirror/arcdata",
        "MIRROR_IMAGES": ",".join(release.names),
    }
    env.update(extra)
    return env


def invoke(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> Run:
    """Run ``invoke ARGS`` in ``cwd`` with only ``env`` (plus PATH and a private HOME)."""
    cwd.mkdir(parents=True, exist_ok=True)
    home = cwd / "home"
    home.mkdir(exist_ok=True)
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8", **env}
    done = subprocess.run(INVOKE + args, env=full_env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return Run(done.returncode, done.stdout, done.stderr, cwd)


def start_invoke(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """``invoke ARGS`` in the background (stdout and stderr together, as text), with only ``env``."""
    cwd.mkdir(parents=True, exist_ok=True)
    full = {"PATH": os.environ["PATH"], "HOME": str(cwd), "LANG": "C.UTF-8", **env}
    return subprocess.Popen(INVOKE + args, env=full, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")


def walk(registry: Registry, repo: str, ref: str) -> tuple[dict[str, int], list[str]]:
    """Every blob (digest -> size) and manifest digest under ``repo:ref``, read with the test bed's own client."""
    blobs: dict[str, int] = {}
    manifests: list[str] = []
    pending = [ref]
    while pending:
        data, media_type = registry.get_manifest(repo, pending.pop())
        body = json.loads(data)
        manifests.append("sha256:" + __import__("hashlib").sha256(data).hexdigest())
        if (body.get("mediaType") or media_type) in INDEX_TYPES:
            pending += [m["digest"] for m in body["manifests"]]
        else:
            for d in [body["config"], *body["layers"]]:
                blobs[d["digest"]] = d["size"]
    return blobs, manifests


def release_blobs(registry: Registry, release) -> dict[str, int]:
    """The unique blobs of a whole release in ``registry``."""
    blobs: dict[str, int] = {}
    for name in release.names:
        blobs.update(walk(registry, release.repository(name), release.tag)[0])
    return blobs
