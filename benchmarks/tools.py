"""The peer tools: how each one copies a case's release from the source into a fresh target.

Tools (``--only``):

* ``floor``       -- the release's distinct blob files, read straight from the source registry's
                     storage, pushed to the target with ``curl`` (POST, then PUT ``?digest=``),
                     4 at a time: what the target itself costs to take in the bytes.
* ``floor-relay`` -- the same blobs streamed ``curl GET source | curl PUT target``, 4 at a time:
                     what a relay costs (the source registry serving too) before any tool's work.
* ``arcmirror``   -- ``python -m invoke mirror`` as a user runs it (a subprocess; default
                     settings: concurrency 16), configured through the environment.
* ``pull-push``   -- ``invoke pull`` then ``invoke push`` through a local store (skipped with a
                     visible line while ``invoke --list`` does not show both tasks).
* ``skopeo-copy`` -- ``skopeo copy --all --preserve-digests``, image after image.
* ``skopeo-sync`` -- one ``skopeo sync --all --preserve-digests --src yaml`` of the same list.
* ``docker``      -- ``docker pull``/``tag``/``push``, image after image, through a private Docker
                     engine (:mod:`testbed.dockerd`); skipped when ``dockerd`` is absent.

Tools that keep local state (docker's image store, pull-push's store) start each run empty; in
``noop`` and ``incremental`` they first copy the previous state untimed (the same release, or last
month's), as a user running them every month would have done.

In the WAN scenario a tool is given the hosts of the relays in front of both registries
(:attr:`RunContext.source_host`, :attr:`RunContext.target_host`) instead of the registries'.

arcmirror runs only as a subprocess (``python -m invoke``): the harness never imports it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import yaml

from benchmarks.measure import ProcResult, blob_file, log, process_cpu, run_measured, run_pipe
from benchmarks.scenarios import REPO, ROOT, Case
from benchmarks.wan import Relays
from testbed import dockerd
from testbed.registry import Registry

TOOLS = ("floor", "floor-relay", "arcmirror", "arcmirror-baseline", "pull-push", "skopeo-copy", "skopeo-sync",
         "docker")
#: Timed only when another checkout of arcmirror is given (``--baseline DIR``): the same data, the same run.
OPTIONAL_TOOLS = ("arcmirror-baseline",)
FLOOR_PARALLEL = 4
#: The variable the pull-push runner passes to ``invoke pull``/``invoke push`` for the local store.
STORE_VARIABLE = "MIRROR_STORE"


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def arcmirror_python() -> str:
    """The interpreter of the project's virtualenv (as ``scripts/bootstrap`` makes it)."""
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def invoke_command(*args: str, root: Path = ROOT) -> list[str]:
    """``invoke ARGS`` for the checkout at ``root`` (this one, or a baseline), with this checkout's interpreter."""
    return [arcmirror_python(), "-m", "invoke", "--search-root", str(root), *args]


def invoke_tasks(root: Path = ROOT) -> set[str]:
    """Task names that ``invoke --list`` shows for the checkout at ``root``."""
    result = subprocess.run(invoke_command("--list", root=root), capture_output=True, text=True, check=False,
                            cwd=tempfile.gettempdir(), timeout=60)
    return {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ") and line.split()}


@dataclass
class Outcome:
    seconds: float
    peak_rss: int | None = None
    bytes_sent: int | None = None
    inner_seconds: float | None = None  # what arcmirror's own report says the run took
    cpu: float | None = None  # CPU seconds of the tool's processes (docker: of the engine)
    extra: dict = field(default_factory=dict)


class ToolError(RuntimeError):
    pass


@dataclass
class RunContext:
    """One run of a tool: the case, the fresh target, a work directory, the tag to copy; and, in the
    WAN scenario, the relays in front of both registries, whose hosts the tool is given instead."""

    case: Case
    target: Registry
    workdir: Path
    tag: str
    relays: Relays | None = None

    @property
    def source(self) -> Registry:
        return self.case.source

    @property
    def source_host(self) -> str:
        """``host:port`` the tool reads from: the source registry, or the relay in front of it."""
        return self.relays.source_host if self.relays else self.source.host

    @property
    def target_host(self) -> str:
        """``host:port`` the tool writes to: the target registry, or the relay in front of it."""
        return self.relays.target_host if self.relays else self.target.host

    @property
    def source_url(self) -> str:
        return f"{self.source.scheme}://{self.source_host}"

    @property
    def target_url(self) -> str:
        return f"{self.target.scheme}://{self.target_host}"


class Tool:
    name = ""
    preserves_digests = True
    stateful = False

    def unavailable(self) -> str | None:
        return None

    def reset(self) -> None:
        """Forget local state (only stateful tools have any)."""

    def run(self, ctx: RunContext) -> Outcome:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _check(result: ProcResult, what: str) -> None:
    if result.returncode != 0:
        raise ToolError(f"{what} exited {result.returncode}: {_tail(result.stderr + chr(10) + result.stdout)}")


class FloorTool(Tool):
    """Each distinct blob pushed with curl, 4 at a time: from the source registry's files (``floor``),
    or streamed from the source registry (``floor-relay``: ``curl GET | curl PUT``, what any relay
    costs, without the tool's own work)."""

    name = "floor"
    relay = False

    def unavailable(self) -> str | None:
        return None if shutil.which("curl") else "curl is not installed (apt-get install curl)"

    def run(self, ctx: RunContext) -> Outcome:
        curl = shutil.which("curl")
        files = sorted(((d, blob_file(ctx.source, d)) for d in ctx.case.blobs.data),
                       key=lambda item: -item[1].stat().st_size)
        base = f"{ctx.target_url}/v2/{REPO}/floor/blobs/uploads/"
        put_options = ["-sS", "-f", "-H", "Content-Type: application/octet-stream", "-H", "Expect:"]

        def upload(item: tuple[str, Path]) -> float:
            digest, path = item
            post = run_measured([curl, "-sS", "-f", "-X", "POST", "-D", "-", "-o", "/dev/null", base])
            location = next((line.split(":", 1)[1].strip() for line in post.stdout.splitlines()
                             if line.lower().startswith("location:")), None)
            if post.returncode or not location:
                raise ToolError(f"curl POST {base} failed: {post.stderr.strip() or post.stdout.strip()}")
            if location.startswith("/"):
                location = ctx.target_url + location
            url = f"{location}{'&' if '?' in location else '?'}digest={digest}"
            if self.relay:
                source = f"{ctx.source_url}/v2/{REPO}/{ctx.case.blobs.owner[digest]}/blobs/{digest}"
                size = str(ctx.case.blobs.data[digest])
                got, put, cpu, stderr = run_pipe(
                    [curl, "-sS", "-f", source],
                    [curl, *put_options, "-H", f"Content-Length: {size}", "-X", "PUT", "--data-binary", "@-", url])
                if got or put:
                    raise ToolError(f"curl GET | curl PUT of {digest} failed: {stderr.strip()}")
                return post.cpu + cpu
            put = run_measured([curl, *put_options, "-T", str(path), url])
            if put.returncode:
                raise ToolError(f"curl PUT of {digest} failed: {put.stderr.strip()}")
            return post.cpu + put.cpu

        started = time.perf_counter()
        with ThreadPoolExecutor(FLOOR_PARALLEL) as pool:
            cpu = sum(pool.map(upload, files))
        seconds = time.perf_counter() - started
        return Outcome(seconds, bytes_sent=sum(p.stat().st_size for _, p in files), cpu=cpu)


class RelayFloorTool(FloorTool):
    name = "floor-relay"
    relay = True


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("SOURCE_DOCKER_", "TARGET_DOCKER_", "MIRROR_", "DOCKER_"))}


def arcmirror_env(ctx: RunContext, report_dir: Path, **more: str) -> dict[str, str]:
    """The environment of an ``invoke mirror`` run for this context (what a pipeline would set)."""
    docker_config = ctx.workdir / "docker-config"
    docker_config.mkdir(exist_ok=True)
    return {
        **_clean_environ(),
        "SOURCE_DOCKER_REGISTRY": ctx.source_host, "SOURCE_DOCKER_INSECURE": "true",
        "SOURCE_DOCKER_REPOSITORY": REPO, "SOURCE_DOCKER_TAG": ctx.tag,
        "TARGET_DOCKER_REGISTRY": ctx.target_host, "TARGET_DOCKER_INSECURE": "true",
        "TARGET_DOCKER_REPOSITORY": REPO,
        "MIRROR_IMAGES": ",".join(ctx.case.names),
        "MIRROR_REPORT_DIR": str(report_dir),
        "DOCKER_CONFIG": str(docker_config),  # no credentials from the machine's Docker config
        **more,
    }


class ArcmirrorTool(Tool):
    """``invoke mirror`` of this checkout, or (``arcmirror-baseline``) of another one given as ``root``."""

    name = "arcmirror"

    def __init__(self, tasks: Callable[[], set[str]], root: Path | None = ROOT, name: str = "arcmirror") -> None:
        self._tasks = tasks
        self.root = root
        self.name = name

    def unavailable(self) -> str | None:
        if self.root is None:
            return "give --baseline DIR (another checkout of arcmirror) to time it beside this one"
        if "mirror" not in self._tasks():
            return "`invoke --list` shows no mirror task"
        return None

    def mirror(self, ctx: RunContext, report_dir: Path) -> tuple[ProcResult, dict]:
        report_dir.mkdir(parents=True, exist_ok=True)
        result = run_measured(invoke_command("mirror", root=self.root), env=arcmirror_env(ctx, report_dir),
                              cwd=ctx.workdir, poll_tree=ctx.case.poll_tree)
        _check(result, "invoke mirror")
        record = json.loads((report_dir / "mirror.json").read_text())
        return result, record

    def run(self, ctx: RunContext) -> Outcome:
        result, record = self.mirror(ctx, ctx.workdir / "reports")
        outcome = Outcome(result.seconds, peak_rss=result.peak_rss, cpu=result.cpu,
                          bytes_sent=record["totals"]["bytes_sent"], inner_seconds=record.get("elapsed"))
        if ctx.case.scenario == "incremental":
            # The same command again on the now complete target: the "no-op time" of the goal.
            again, again_record = self.mirror(ctx, ctx.workdir / "reports-again")
            outcome.extra["noop_after"] = again.seconds
            outcome.extra["noop_after_bytes"] = again_record["totals"]["bytes_sent"]
        return outcome


class PullPushTool(Tool):
    """``invoke pull``, ``invoke tag`` (when the project has it) and ``invoke push``: one report dir
    per release (the plan that ``pull`` discovers lives there), one store for the whole run."""

    name = "pull-push"
    stateful = True

    def __init__(self, tasks: Callable[[], set[str]], workdir: Path) -> None:
        self._tasks = tasks
        self.store = workdir / "pull-push-store"

    def unavailable(self) -> str | None:
        missing = [t for t in ("pull", "push") if t not in self._tasks()]
        if missing:
            return f"not available: `invoke --list` shows no {' or '.join(missing)} task yet"
        return None

    def steps(self) -> list[str]:
        return [t for t in ("pull", "tag", "push") if t in self._tasks()]

    def reset(self) -> None:
        shutil.rmtree(self.store, ignore_errors=True)

    def run(self, ctx: RunContext) -> Outcome:
        self.store.mkdir(parents=True, exist_ok=True)
        report_dir = ctx.workdir / f"reports-pull-push-{ctx.tag}"
        report_dir.mkdir(parents=True, exist_ok=True)
        env = arcmirror_env(ctx, report_dir, **{STORE_VARIABLE: str(self.store)})
        seconds, peak, cpu = 0.0, 0, 0.0
        for task in self.steps():
            result = run_measured(invoke_command(task), env=env, cwd=ctx.workdir, poll_tree=ctx.case.poll_tree)
            _check(result, f"invoke {task}")
            seconds += result.seconds
            peak = max(peak, result.peak_rss)
            cpu += result.cpu
        record = report_dir / "push.json"
        sent = json.loads(record.read_text()).get("totals", {}).get("bytes_sent") if record.exists() else None
        return Outcome(seconds, peak_rss=peak, bytes_sent=sent, cpu=cpu)


def _skopeo(*args: str) -> list[str]:
    return [shutil.which("skopeo") or "skopeo", "--insecure-policy", *args]


class SkopeoCopyTool(Tool):
    name = "skopeo-copy"

    def unavailable(self) -> str | None:
        return None if shutil.which("skopeo") else "skopeo is not installed (apt-get install skopeo)"

    def run(self, ctx: RunContext) -> Outcome:
        seconds, peak, cpu = 0.0, 0, 0.0
        for name in ctx.case.names:
            result = run_measured(_skopeo(
                "copy", "--all", "--preserve-digests",
                "--src-tls-verify=false", "--src-no-creds", "--dest-tls-verify=false", "--dest-no-creds",
                f"docker://{ctx.source_host}/{REPO}/{name}:{ctx.tag}",
                f"docker://{ctx.target_host}/{REPO}/{name}:{ctx.tag}",
            ), cwd=ctx.workdir, poll_tree=ctx.case.poll_tree)
            _check(result, f"skopeo copy {name}")
            seconds += result.seconds
            peak = max(peak, result.peak_rss)
            cpu += result.cpu
        return Outcome(seconds, peak_rss=peak, cpu=cpu)


class SkopeoSyncTool(Tool):
    name = "skopeo-sync"

    def unavailable(self) -> str | None:
        return SkopeoCopyTool().unavailable()

    def run(self, ctx: RunContext) -> Outcome:
        # --src yaml: one invocation for the whole list; the destination gets DEST/<last path
        # component>:TAG, i.e. the same REPO/NAME:TAG layout as the other tools.
        sync_yaml = ctx.workdir / "sync.yaml"
        sync_yaml.write_text(yaml.safe_dump({ctx.source_host: {
            "tls-verify": False,
            "images": {f"{REPO}/{name}": [ctx.tag] for name in ctx.case.names},
        }}, sort_keys=False))
        result = run_measured(_skopeo(
            "sync", "--all", "--preserve-digests", "--src", "yaml", "--dest", "docker",
            "--dest-tls-verify=false", "--dest-no-creds", str(sync_yaml), f"{ctx.target_host}/{REPO}",
        ), cwd=ctx.workdir, poll_tree=ctx.case.poll_tree)
        _check(result, "skopeo sync")
        return Outcome(result.seconds, peak_rss=result.peak_rss, cpu=result.cpu)


class DockerTool(Tool):
    name = "docker"
    preserves_digests = False  # the engine re-compresses layers on push
    stateful = True

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.engine: dockerd.DockerEngine | None = None
        self._reason = dockerd.unavailable_reason()

    def unavailable(self) -> str | None:
        if self._reason is None and self.engine is None:
            try:
                log("starting a private Docker engine (dockerd, vfs storage)")
                self.engine = dockerd.DockerEngine(self.workdir / "dockerd",
                                                   insecure_registries=["127.0.0.0/8"]).start()
            except dockerd.DockerEngineError as exc:
                self._reason = f"the Docker engine did not start: {_tail(str(exc), 3)}"
        return self._reason

    def reset(self) -> None:
        if self.engine:
            self.engine.remove_all_images()

    def run(self, ctx: RunContext) -> Outcome:
        assert self.engine is not None
        cli = dockerd.docker_cli_path()
        env = {**_clean_environ(), **self.engine.env}
        seconds = 0.0
        engine_cpu = process_cpu(self.engine.pid)
        for name in ctx.case.names:
            source = f"{ctx.source_host}/{REPO}/{name}:{ctx.tag}"
            target = f"{ctx.target_host}/{REPO}/{name}:{ctx.tag}"
            for args in (("pull", source), ("tag", source, target), ("push", target)):
                result = run_measured([cli, *args], env=env, cwd=ctx.workdir)
                _check(result, f"docker {args[0]} {name}")
                seconds += result.seconds
        return Outcome(seconds, cpu=process_cpu(self.engine.pid) - engine_cpu)

    def close(self) -> None:
        if self.engine:
            self.engine.stop()
            self.engine.remove_data()
            self.engine = None


def make_tools(names: Sequence[str], *, tasks: Callable[[], set[str]], workdir: Path,
               baseline: Path | None = None) -> dict[str, Tool]:
    """The tools called ``names``, in :data:`TOOLS` order; ``tasks`` gives ``invoke --list``'s task names;
    ``baseline`` is another checkout of arcmirror to time as ``arcmirror-baseline``."""
    makers: dict[str, Callable[[], Tool]] = {
        "floor": FloorTool,
        "floor-relay": RelayFloorTool,
        "arcmirror": lambda: ArcmirrorTool(tasks),
        "arcmirror-baseline": lambda: ArcmirrorTool(lambda: invoke_tasks(baseline), baseline,
                                                    "arcmirror-baseline"),
        "pull-push": lambda: PullPushTool(tasks, workdir),
        "skopeo-copy": SkopeoCopyTool,
        "skopeo-sync": SkopeoSyncTool,
        "docker": lambda: DockerTool(workdir),
    }
    return {name: makers[name]() for name in TOOLS if name in names}
