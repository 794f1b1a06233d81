"""Benchmark arcmirror against its peers and the target registry's own floor, on the same data.

A synthetic Arc-like release (the 17 image names of ``config/arc-data-services.yaml``,
linux/amd64, one base layer shared by all, two runtime layers shared by halves, one unique layer
per image; about 400 MB of distinct blob bytes at ``--scale 1``) is built once per scenario as an
OCI layout, loaded with skopeo into a CNCF distribution registry on loopback (the source), and then
copied by every tool, run after run, each time into a fresh target registry (a new storage
directory and a new process, seeded with a snapshot when the scenario needs a non-empty target).

Tools (``--only``):

* ``floor``       -- the release's distinct blob files, read straight from the source registry's
                     storage, pushed to the target with ``curl`` (POST, then PUT ``?digest=``),
                     4 at a time: what the target itself costs to take in the bytes.
* ``floor-relay`` -- the same blobs streamed ``curl GET source | curl PUT target``, 4 at a time:
                     what a relay costs (the source registry serving too) before any tool's work.
* ``arcmirror``   -- ``python -m invoke mirror`` as a user runs it (a subprocess; default
                     settings: concurrency 4), configured through the environment.
* ``pull-push``   -- ``invoke pull`` then ``invoke push`` through a local store (skipped with a
                     visible line while ``invoke --list`` does not show both tasks).
* ``skopeo-copy`` -- ``skopeo copy --all --preserve-digests``, image after image.
* ``skopeo-sync`` -- one ``skopeo sync --all --preserve-digests --src yaml`` of the same list.
* ``docker``      -- ``docker pull``/``tag``/``push``, image after image, through a private Docker
                     engine (:mod:`testbed.dockerd`); skipped when ``dockerd`` is absent.

Scenarios (``--scenarios``):

* ``cold``           -- empty target.
* ``cold-multiarch`` -- the same release as linux/amd64 + linux/arm64 indexes (about the same bytes).
* ``noop``           -- the target already holds the release: at 16 and at 64 images (48 small
                        ``arc-extra-NN`` images added) to get the cost of one more image.
* ``incremental``    -- next month's release (new tag, about 20% of the unique layers changed)
                        into a target holding this month's.
* ``memory``         -- one image with a 1 GB layer (times ``--scale``): peak RSS of the process tree.

Tools that keep local state (docker's image store, pull-push's store) start each run empty; in
``noop`` and ``incremental`` they first copy the previous state untimed (the same release, or last
month's), as a user running them every month would have done.

Each figure is the median of ``--runs`` runs (tools interleaved, their order rotated per run),
quoted as ratios to the floor and to ``skopeo copy``. The table goes to stdout and, with the
machine's description, to ``--output`` (``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import yaml

from testbed import dockerd
from testbed.images import build_release, layout_refs
from testbed.registry import Registry
from testbed.skopeo import load_release

ROOT = Path(__file__).resolve().parent.parent
IMAGE_SET = ROOT / "config" / "arc-data-services.yaml"
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"

REPO = "arcdata"
TAG = "v1.41.0_2025-09-09"
NEXT_TAG = "v1.42.0_2025-10-14"
MB = 1_000_000

#: Distinct blob bytes of the default release (scale 1) and how they split.
RELEASE_BYTES = 400 * MB
BASE_SHARE, RUNTIME_SHARE = 0.15, 0.10  # the base layer; each of the two runtime layers
MEMORY_LAYER_BYTES = 1000 * MB
CHANGED_SHARE = 0.20
NOOP_SIZES = {"unique_size": 64 * 1024, "base_size": 256 * 1024, "shared_size": 128 * 1024}
NOOP_COUNTS = (16, 64)
FLOOR_PARALLEL = 4
#: The variable the pull-push runner passes to ``invoke pull``/``invoke push`` for the local store.
STORE_VARIABLE = "MIRROR_STORE"
PROCESS_TIMEOUT = 3600

TOOLS = ("floor", "floor-relay", "arcmirror", "pull-push", "skopeo-copy", "skopeo-sync", "docker")
SCENARIOS = ("cold", "cold-multiarch", "noop", "incremental", "memory")
#: Tools a scenario does not measure, and why (printed in the table).
NOT_MEASURED = {
    "cold-multiarch": {"docker": "docker pulls only the engine's platform (linux/amd64): not comparable"},
    "noop": {"floor": "nothing to send: the floor of a no-op is 0",
             "floor-relay": "nothing to send: the floor of a no-op is 0"},
    "memory": {"skopeo-sync": "same copy code as skopeo copy (measured)",
               "docker": "the work happens in dockerd, not in a client process"},
}
BASELINE = "skopeo-copy"


_T0 = time.monotonic()


def log(text: str) -> None:
    print(f"{time.monotonic() - _T0:7.1f}s {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Processes


@dataclass
class ProcResult:
    returncode: int
    seconds: float
    peak_rss: int  # bytes: the largest of ru_maxrss and the polled sum over the process tree
    stdout: str
    stderr: str
    cpu: float = 0.0  # user + system seconds of the process and the children it waited for


def _process_table() -> dict[int, tuple[int, int]]:
    """``{pid: (ppid, rss_bytes)}`` for every process (from /proc)."""
    page = os.sysconf("SC_PAGE_SIZE")
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            table[int(entry)] = (int(fields[1]), int(fields[21]) * page)
        except (OSError, IndexError, ValueError):
            continue
    return table


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants right now."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += table.get(current, (0, 0))[1]
        stack.extend(children.get(current, ()))
    return total


def run_measured(command: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                 poll_tree: bool = False, timeout: float = PROCESS_TIMEOUT) -> ProcResult:
    """Run ``command``; wall time, exit code, output and peak RSS (``wait4``'s, and the polled tree's)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        peak = 0
        stop = threading.Event()
        started = time.perf_counter()
        process = subprocess.Popen(list(command), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=err)

        def poll() -> None:
            nonlocal peak
            while not stop.wait(0.05):
                peak = max(peak, tree_rss(process.pid))

        poller = threading.Thread(target=poll, daemon=True) if poll_tree else None
        if poller:
            poller.start()
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        if poller:
            poller.join()
        out.seek(0)
        err.seek(0)
        return ProcResult(process.returncode, seconds, max(peak, usage.ru_maxrss * 1024),
                          out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                          usage.ru_utime + usage.ru_stime)


def process_cpu(pid: int | None) -> float:
    """User + system seconds used so far by ``pid`` and its reaped children (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def registry_pid(registry: Registry) -> int | None:
    process = getattr(registry, "_process", None)
    return process.pid if process is not None else None


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def _version(command: Sequence[str]) -> str:
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (result.stdout or result.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def arcmirror_python() -> str:
    """The interpreter of the project's virtualenv (as ``scripts/bootstrap`` makes it)."""
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def invoke_command(*args: str) -> list[str]:
    return [arcmirror_python(), "-m", "invoke", "--search-root", str(ROOT), *args]


def invoke_tasks() -> set[str]:
    """Task names that ``invoke --list`` shows for the project."""
    result = subprocess.run(invoke_command("--list"), capture_output=True, text=True, check=False,
                            cwd=tempfile.gettempdir(), timeout=60)
    return {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ") and line.split()}


# ---------------------------------------------------------------------------------------------
# Releases


def arc_names() -> list[str]:
    return list(yaml.safe_load(IMAGE_SET.read_text())["images"])


def noop_names(count: int) -> list[str]:
    """The first 16 Arc names, then ``arc-extra-NN`` up to ``count``."""
    base = arc_names()[:16]
    return (base + [f"arc-extra-{i:02d}" for i in range(1, count - len(base) + 1)])[:count]


def changed_names(names: Sequence[str], share: float = CHANGED_SHARE) -> list[str]:
    """About ``share`` of ``names``, spread evenly (at least one)."""
    count = max(1, round(share * len(names)))
    return [names[min(len(names) - 1, int((i + 0.5) * len(names) / count))] for i in range(count)]


def release_sizes(scale: float, images: int, platforms: int = 1) -> dict[str, int]:
    """Layer sizes giving about ``RELEASE_BYTES * scale`` distinct bytes for ``images`` images."""
    total = RELEASE_BYTES * scale
    unique = total * (1 - BASE_SHARE - 2 * RUNTIME_SHARE) / (images * platforms)
    return {"base_size": max(1024, int(total * BASE_SHARE)),
            "shared_size": max(1024, int(total * RUNTIME_SHARE)),
            "unique_size": max(1024, int(unique))}


@dataclass
class Blobs:
    """The blobs one release needs: ``{digest: size}`` of manifests and of everything else."""

    manifests: dict[str, int] = field(default_factory=dict)
    data: dict[str, int] = field(default_factory=dict)  # configs and layers
    owner: dict[str, str] = field(default_factory=dict)  # digest -> an image name whose repository has it

    @property
    def data_bytes(self) -> int:
        return sum(self.data.values())

    def minus(self, other: "Blobs") -> "Blobs":
        return Blobs({d: s for d, s in self.manifests.items() if d not in other.manifests},
                     {d: s for d, s in self.data.items() if d not in other.data}, self.owner)


def release_blobs(layout: Path, refs: dict[str, str]) -> Blobs:
    """Every distinct blob reachable from ``refs`` in the OCI layout."""
    blobs = Blobs()
    digests = layout_refs(layout)

    def walk(name: str, digest: str) -> None:
        path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
        blobs.manifests[digest] = path.stat().st_size
        manifest = json.loads(path.read_bytes())
        for child in manifest.get("manifests", []):
            walk(name, child["digest"])
        for descriptor in [manifest.get("config"), *manifest.get("layers", [])]:
            if descriptor:
                blobs.data[descriptor["digest"]] = descriptor["size"]
                blobs.owner.setdefault(descriptor["digest"], name)

    for name, ref in refs.items():
        walk(name, digests[ref])
    return blobs


@dataclass
class Case:
    """One measured situation: a release in a source, a target state, the tools that run."""

    scenario: str
    label: str
    source: Registry
    names: list[str]
    tag: str
    digests: dict[str, str]  # name -> manifest digest the target must end with
    blobs: Blobs  # what the floor pushes (the release's, or only the new ones)
    seed: Path | None = None  # registry storage to copy into each fresh target
    prep_tag: str | None = None  # what stateful tools copy (untimed) before the timed run
    description: str = ""
    poll_tree: bool = False


# ---------------------------------------------------------------------------------------------
# Tools


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
    case: Case
    target: Registry
    workdir: Path
    tag: str

    @property
    def source(self) -> Registry:
        return self.case.source


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


def run_pipe(first: Sequence[str], second: Sequence[str]) -> tuple[int, int, float, str]:
    """``first | second``: (first's exit code, second's, CPU seconds of both, their stderr)."""
    with tempfile.TemporaryFile() as err:
        producer = subprocess.Popen(list(first), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        consumer = subprocess.Popen(list(second), stdin=producer.stdout, stdout=subprocess.DEVNULL, stderr=err)
        producer.stdout.close()
        cpu = 0.0
        codes = []
        for process in (producer, consumer):
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            codes.append(process.returncode)
            cpu += usage.ru_utime + usage.ru_stime
        err.seek(0)
        return codes[0], codes[1], cpu, err.read().decode(errors="replace")


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
        blobs_dir = ctx.source.blobs_dir / "sha256"
        files = sorted(((d, blobs_dir / d[7:9] / d[7:] / "data") for d in ctx.case.blobs.data),
                       key=lambda item: -item[1].stat().st_size)
        base = f"{ctx.target.url}/v2/{REPO}/floor/blobs/uploads/"
        put_options = ["-sS", "-f", "-H", "Content-Type: application/octet-stream", "-H", "Expect:"]

        def upload(item: tuple[str, Path]) -> float:
            digest, path = item
            post = run_measured([curl, "-sS", "-f", "-X", "POST", "-D", "-", "-o", "/dev/null", base])
            location = next((line.split(":", 1)[1].strip() for line in post.stdout.splitlines()
                             if line.lower().startswith("location:")), None)
            if post.returncode or not location:
                raise ToolError(f"curl POST {base} failed: {post.stderr.strip() or post.stdout.strip()}")
            if location.startswith("/"):
                location = ctx.target.url + location
            url = f"{location}{'&' if '?' in location else '?'}digest={digest}"
            if self.relay:
                source = f"{ctx.source.url}/v2/{REPO}/{ctx.case.blobs.owner[digest]}/blobs/{digest}"
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
        "SOURCE_DOCKER_REGISTRY": ctx.source.host, "SOURCE_DOCKER_INSECURE": "true",
        "SOURCE_DOCKER_REPOSITORY": REPO, "SOURCE_DOCKER_TAG": ctx.tag,
        "TARGET_DOCKER_REGISTRY": ctx.target.host, "TARGET_DOCKER_INSECURE": "true",
        "TARGET_DOCKER_REPOSITORY": REPO,
        "MIRROR_IMAGES": ",".join(ctx.case.names),
        "MIRROR_REPORT_DIR": str(report_dir),
        "DOCKER_CONFIG": str(docker_config),  # no credentials from the machine's Docker config
        **more,
    }


class ArcmirrorTool(Tool):
    name = "arcmirror"

    def unavailable(self) -> str | None:
        if "mirror" not in self._tasks():
            return "`invoke --list` shows no mirror task"
        return None

    def __init__(self, tasks: Callable[[], set[str]]) -> None:
        self._tasks = tasks

    def mirror(self, ctx: RunContext, report_dir: Path) -> tuple[ProcResult, dict]:
        report_dir.mkdir(parents=True, exist_ok=True)
        result = run_measured(invoke_command("mirror"), env=arcmirror_env(ctx, report_dir), cwd=ctx.workdir,
                              poll_tree=ctx.case.poll_tree)
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
                f"docker://{ctx.source.host}/{REPO}/{name}:{ctx.tag}",
                f"docker://{ctx.target.host}/{REPO}/{name}:{ctx.tag}",
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
        sync_yaml.write_text(yaml.safe_dump({ctx.source.host: {
            "tls-verify": False,
            "images": {f"{REPO}/{name}": [ctx.tag] for name in ctx.case.names},
        }}, sort_keys=False))
        result = run_measured(_skopeo(
            "sync", "--all", "--preserve-digests", "--src", "yaml", "--dest", "docker",
            "--dest-tls-verify=false", "--dest-no-creds", str(sync_yaml), f"{ctx.target.host}/{REPO}",
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
            source = f"{ctx.source.host}/{REPO}/{name}:{ctx.tag}"
            target = f"{ctx.target.host}/{REPO}/{name}:{ctx.tag}"
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


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class Measurement:
    scenario: str
    case: str
    tool: str
    run: int
    seconds: float | None
    ok: bool
    error: str | None = None
    peak_rss: int | None = None
    bytes_sent: int | None = None
    stored_bytes: int | None = None  # bytes of blobs new in the target's storage after the run
    inner_seconds: float | None = None
    cpu: float | None = None  # the tool's CPU seconds (docker: the engine's)
    cpu_source: float | None = None  # the source registry's CPU seconds during the run
    cpu_target: float | None = None  # the target registry's
    extra: dict = field(default_factory=dict)


@dataclass
class Row:
    scenario: str
    case: str
    tool: str
    measurements: list[Measurement]
    skipped: str | None = None

    @property
    def good(self) -> list[Measurement]:
        return [m for m in self.measurements if m.ok]

    @property
    def failed(self) -> list[Measurement]:
        return [m for m in self.measurements if not m.ok]

    def median(self, attr: str = "seconds") -> float | None:
        values = [getattr(m, attr) for m in self.good if getattr(m, attr) is not None]
        return statistics.median(values) if values else None

    def median_extra(self, key: str) -> float | None:
        values = [m.extra[key] for m in self.good if key in m.extra]
        return statistics.median(values) if values else None

    def peak(self) -> int | None:
        values = [m.peak_rss for m in self.good if m.peak_rss]
        return max(values) if values else None


@dataclass
class BenchReport:
    scale: float
    runs: int
    rows: list[Row]
    cases: list[dict]
    machine: dict[str, str]
    started: str
    elapsed: float
    command: str
    notes: list[str] = field(default_factory=list)
    noop_counts: tuple[int, int] = NOOP_COUNTS

    @property
    def ok(self) -> bool:
        return not any(row.failed for row in self.rows)

    def row(self, case: str, tool: str) -> Row | None:
        return next((r for r in self.rows if r.case == case and r.tool == tool), None)

    def median(self, case: str, tool: str) -> float | None:
        row = self.row(case, tool)
        return row.median() if row else None

    # -- rendering ---------------------------------------------------------------------------

    def results_table(self) -> str:
        lines = ["| case | tool | median s | runs (s) | × floor | × skopeo copy | CPU s: tool + source + target "
                 "| notes |",
                 "| --- | --- | ---: | --- | ---: | ---: | --- | --- |"]
        for row in self.rows:
            if row.skipped:
                lines.append(f"| {row.case} | {row.tool} | – | – | – | – | – | skipped: {row.skipped} |")
                continue
            median = row.median()
            floor, skopeo = self.median(row.case, "floor"), self.median(row.case, BASELINE)
            runs = ", ".join(f"{m.seconds:.2f}" if m.ok else "FAILED" for m in row.measurements)
            notes = []
            if row.failed:
                notes.append("FAILED: " + "; ".join(sorted({m.error or "?" for m in row.failed}))[:300])
            sent = row.median("bytes_sent")
            if sent is not None and not row.tool.startswith("floor"):
                notes.append(f"sent {_mb(sent)}")
            stored = row.median("stored_bytes")
            if stored is not None and row.case == "incremental":
                notes.append(f"new in target {_mb(stored)}")
            if row.peak() and (row.case == "memory" or row.tool in ("arcmirror", "pull-push")):
                notes.append(f"peak RSS {_mb(row.peak())}")
            inner = row.median("inner_seconds")
            if inner is not None and median:
                notes.append(f"in-process {inner:.2f} s")
            changed = next((m.extra["digests_changed"] for m in row.good if "digests_changed" in m.extra), None)
            if changed:
                notes.append(f"{changed} digests differ from the source")
            after = row.median_extra("noop_after")
            if after is not None:
                notes.append(f"then no-op {after:.2f} s")
            cpu = " + ".join(_s(row.median(a)) for a in ("cpu", "cpu_source", "cpu_target"))
            lines.append(f"| {row.case} | {row.tool} | {_s(median)} | {runs} | {_ratio(median, floor)} | "
                         f"{_ratio(median, skopeo)} | {cpu} | {'; '.join(notes)} |")
        return "\n".join(lines)

    def noop_table(self) -> str | None:
        few, many = self.noop_counts
        small, large = f"noop-{few}", f"noop-{many}"
        extra = many - few
        lines = [f"| tool | {few} images s | {many} images s | ms per extra image | × arcmirror at {few} |",
                 "| --- | ---: | ---: | ---: | ---: |"]
        arc16 = self.median(small, "arcmirror")
        found = False
        for tool in TOOLS:
            a, b = self.median(small, tool), self.median(large, tool)
            if a is None and b is None:
                continue
            found = True
            per = f"{(b - a) / extra * 1000:.1f}" if a is not None and b is not None else "–"
            lines.append(f"| {tool} | {_s(a)} | {_s(b)} | {per} | {_ratio(a, arc16)} |")
        return "\n".join(lines) if found else None

    def targets(self) -> list[tuple[str, str, bool | None]]:
        """The issue's goals: (goal, measured, met?)."""
        goals: list[tuple[str, str, bool | None]] = []
        cold_arc, cold_floor = self.median("cold", "arcmirror"), self.median("cold", "floor")
        if cold_arc is not None and cold_floor:
            goals.append(("cold ≤ 1.25× floor", f"{cold_arc / cold_floor:.2f}× ({cold_arc:.2f} s vs "
                          f"{cold_floor:.2f} s)", cold_arc / cold_floor <= 1.25))
        few, many = self.noop_counts
        relay = self.median("cold", "floor-relay")
        if cold_arc is not None and relay:
            goals.append(("(context) cold against floor-relay (curl GET piped into curl PUT, 4 at a time)",
                          f"{cold_arc / relay:.2f}× ({cold_arc:.2f} s vs {relay:.2f} s)", None))
        arc16 = self.median(f"noop-{few}", "arcmirror")
        for peer in (BASELINE, "skopeo-sync"):
            other = self.median(f"noop-{few}", peer)
            if arc16 and other is not None:
                goals.append((f"no-op at {few} images ≥ 2× faster than {peer.replace('-', ' ')}",
                              f"{other / arc16:.2f}× ({arc16:.2f} s vs {other:.2f} s)", other / arc16 >= 2))
        arc64 = self.median(f"noop-{many}", "arcmirror")
        if arc16 is not None and arc64 is not None:
            per = (arc64 - arc16) / (many - few) * 1000
            goals.append((f"no-op < 5 ms per extra image ({few} → {many})", f"{per:.1f} ms", per < 5))
        inc = self.row("incremental", "arcmirror")
        case = next((c for c in self.cases if c["label"] == "incremental"), None)
        if inc and inc.good and case:
            sent, new = inc.median("bytes_sent"), case["new_bytes"]
            goals.append(("incremental: bytes sent == new blobs' bytes",
                          f"{int(sent)} B sent, {new} B new", int(sent) == new))
            floor, noop = self.median("incremental", "floor"), inc.median_extra("noop_after")
            if floor is not None and noop is not None:
                bound = 1.25 * (floor + noop)
                goals.append(("incremental ≤ 1.25× (floor for new blobs + no-op)",
                              f"{inc.median():.2f} s vs bound {bound:.2f} s "
                              f"(floor {floor:.2f} s + no-op {noop:.2f} s)", inc.median() <= bound))
        mem = self.row("memory", "arcmirror")
        if mem and mem.peak():
            goals.append(("memory < 150 MB peak RSS copying the big layer",
                          f"{_mb(mem.peak())} (layer {_mb(self._memory_layer())})", mem.peak() < 150 * MB))
        pp, cold_arc = self.median("cold", "pull-push"), self.median("cold", "arcmirror")
        pp_row = self.row("cold", "pull-push")
        if pp is not None and cold_arc:
            goals.append(("pull + push ≤ 2× mirror (cold)", f"{pp / cold_arc:.2f}×", pp / cold_arc <= 2))
        elif pp_row and pp_row.skipped:
            goals.append(("pull + push ≤ 2× mirror (cold)", pp_row.skipped, None))
        return goals

    def _memory_layer(self) -> int:
        case = next((c for c in self.cases if c["label"] == "memory"), None)
        return case["largest_blob"] if case else 0

    def markdown(self) -> str:
        m = self.machine
        out = [
            "# arcmirror benchmarks",
            "",
            "Generated by `benchmarks/bench.py` (`invoke bench`); do not edit by hand: run it again.",
            f"Run {self.started} with `{self.command}` ({self.elapsed / 60:.1f} min). "
            f"Scale {self.scale:g}, {self.runs} run(s) per figure: the median, each run into a fresh "
            "target registry (new storage directory, new process).",
            "",
            "## Machine",
            "",
            "| | |",
            "| --- | --- |",
            *[f"| {k} | {v} |" for k, v in m.items()],
            "",
            "## Data",
            "",
            "| case | images | tag | distinct blob bytes (configs + layers) | what is measured |",
            "| --- | ---: | --- | ---: | --- |",
            *[f"| {c['label']} | {c['images']} | {c['tag']} | {_mb(c['bytes'])} | {c['description']} |"
              for c in self.cases],
            "",
            "Layers hold pseudo-random bytes in gzip level 0 (stored) tar files, so they do not "
            "compress further; every image: the shared base layer, one of two runtime layers, its own "
            "layer. The floor pushes each distinct blob (configs and layers; manifests are tiny) once, "
            f"largest first, {FLOOR_PARALLEL} at a time, from the source registry's files with curl.",
            "",
            "## Results",
            "",
            self.results_table(),
            "",
        ]
        noop = self.noop_table()
        if noop:
            out += ["## No-op: cost of one more image", "", noop, ""]
        goals = self.targets()
        if goals:
            out += ["## The issue's targets", "", "| target | measured | met |", "| --- | --- | --- |"]
            out += [f"| {g} | {v} | {'yes' if ok else ('no' if ok is False else '–')} |" for g, v, ok in goals]
            out.append("")
        out += ["## How to read this", "",
                "* `× floor`: the tool's median over the floor's in the same case (1.00× = as fast as the "
                "target can take the bytes in). `× skopeo copy`: over `skopeo copy` image after image. "
                "`floor-relay` streams each blob from the source registry instead (`curl GET | curl PUT`, "
                "4 at a time): what any registry-to-registry relay costs before its own work.",
                "* arcmirror and pull-push run as `python -m invoke …` subprocesses, so interpreter start-up "
                "and imports count; `in-process` is the elapsed time arcmirror writes in `mirror.json`.",
                "* `sent`: arcmirror's `bytes_sent` (reports/mirror.json totals); `new in target`: bytes of "
                "blobs that appeared in the target's storage during the run (docker's are re-compressed).",
                "* Peak RSS: the largest of `wait4`'s `ru_maxrss` and the polled RSS sum of the whole process "
                "tree (polled every 50 ms in the memory case).",
                "* docker (when measured) starts every run with an empty image store (`cold`) or with the "
                "images its untimed preparation pulled (`noop`: the same release, `incremental`: last "
                "month's), and its layers are re-compressed on push, so its target digests differ. Its engine "
                "uses the vfs storage driver (every layer unpacks into a full copy of its parent), which "
                "makes its pulls slower than with overlay2; its CPU column is the engine's.",
                "* pull-push is `invoke pull`, `invoke tag` and `invoke push` with one store; `pull` discovers "
                "the plan first when the report folder has none (cold, incremental); in `noop` the plan of "
                "its untimed preparation is reused.",
                "* skopeo sync reads the image list from a YAML file (`--src yaml`: registry, `tls-verify`, "
                "`images: {REPO/NAME: [TAG]}`) and writes `DEST/NAME:TAG` (the last path component), so it "
                "lands in the same repositories as the others. skopeo keeps a blob-info cache "
                "(/var/lib/containers/cache for root) across runs: every target is new (new port), so it "
                "only helps skopeo mount blobs between repositories of the same target.",
                "* CPU: user + system seconds of the tool's processes (wait4), and of the source and target "
                "registries during the run (/proc). With 2 cores, a relay (source → tool → target) competes "
                "with the target for CPU; the floor does not read through the source registry.",
                ""]
        if self.notes:
            out += ["## Notes", "", *[f"* {n}" for n in self.notes], ""]
        out += ["## Reproduce", "", "```sh",
                "scripts/bootstrap && apt-get install -y docker.io   # docker.io is optional",
                ".venv/bin/python -m benchmarks.bench --scale 1 --runs 3 --output docs/benchmarks.md",
                "```", ""]
        return "\n".join(out)


def _mb(n: float | None) -> str:
    if n is None:
        return "–"
    return f"{n / MB:.1f} MB" if n >= 100_000 else f"{n / 1000:.1f} KB"


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "–"
    return f"{value / base:.2f}×"


def code_version() -> str:
    """The commit of the work tree that runs (``+ uncommitted changes`` when tracked files differ);
    "unknown" in a tree without git (an unpacked archive, or no git installed)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=20,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown"
    return f"{commit}{' + uncommitted changes' if git('status', '--porcelain', '--untracked-files=no') else ''}"


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    os_name = platform.system()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    daemon = dockerd.dockerd_path()
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "OS": os_name,
        "kernel": platform.release(),
        "Python (arcmirror)": _version([arcmirror_python(), "-V"]),
        "arcmirror": code_version(),
        "registry": _version(["docker-registry", "--version"]).replace("docker-registry github.com/docker/", ""),
        "skopeo": _version(["skopeo", "--version"]).replace("skopeo version ", "skopeo "),
        "docker engine": _version([daemon, "--version"]).replace("Docker version ", "dockerd ") if daemon
        else "not installed",
        "curl": " ".join(_version(["curl", "--version"]).split()[:2]),
    }


# ---------------------------------------------------------------------------------------------
# Preparation


class Bench:
    """Builds the data, starts the registries and runs every tool; one instance per benchmark."""

    def __init__(self, workdir: Path, *, scale: float, runs: int, tools: Sequence[str],
                 scenarios: Sequence[str], keep: bool, drop_caches: bool,
                 noop_counts: tuple[int, int] = NOOP_COUNTS) -> None:
        self.workdir = workdir
        self.noop_counts = noop_counts
        self.scale = scale
        self.runs = runs
        self.scenarios = list(scenarios)
        self.keep = keep
        self.drop_caches = drop_caches
        self._tasks: set[str] | None = None
        registry = {
            "floor": lambda: FloorTool(),
            "floor-relay": lambda: RelayFloorTool(),
            "arcmirror": lambda: ArcmirrorTool(self.tasks),
            "pull-push": lambda: PullPushTool(self.tasks, workdir),
            "skopeo-copy": lambda: SkopeoCopyTool(),
            "skopeo-sync": lambda: SkopeoSyncTool(),
            "docker": lambda: DockerTool(workdir),
        }
        self.tools = {name: registry[name]() for name in TOOLS if name in tools}
        self.registries: list[Registry] = []
        self.sources: dict[str, tuple[Registry, Path, dict]] = {}
        self.rows: list[Row] = []
        self.case_info: list[dict] = []
        self.notes: list[str] = []
        self._counter = 0

    def tasks(self) -> set[str]:
        if self._tasks is None:
            self._tasks = invoke_tasks()
        return self._tasks

    # -- registries and releases ---------------------------------------------------------------

    def _registry(self, path: Path) -> Registry:
        registry = Registry(path)
        self.registries.append(registry)
        return registry

    def _source(self, key: str, names: Sequence[str], *, sizes: dict[str, int], multiarch: bool = False
                ) -> tuple[Registry, Path]:
        """A started source registry holding release ``key`` at TAG (built and loaded once)."""
        if key not in self.sources:
            layout = self.workdir / "layouts" / key
            started = time.monotonic()
            refs = build_release(layout, names, TAG, multiarch=names if multiarch else (),
                                 compresslevel=0, **sizes)
            built = time.monotonic()
            source = self._registry(self.workdir / "sources" / key).start()
            load_release(layout, refs, source, REPO, TAG, workers=8)
            log(f"[{key}] built the layout ({len(names)} images, "
                f"{_mb(release_blobs(layout, refs).data_bytes)}) in {built - started:.1f}s, "
                f"loaded it into the source {source.host} in {time.monotonic() - built:.1f}s")
            self.sources[key] = (source, layout, {TAG: refs})
        source, layout, _ = self.sources[key]
        return source, layout

    def _add_tag(self, key: str, names: Sequence[str], tag: str, *, sizes: dict[str, int],
                 changed: Sequence[str]) -> dict[str, str]:
        source, layout, releases = self.sources[key]
        if tag not in releases:
            releases[tag] = build_release(layout, names, tag, changed=changed, compresslevel=0, **sizes)
            load_release(layout, releases[tag], source, REPO, tag, workers=8)
        return releases[tag]

    def _seed(self, key: str) -> Path:
        """Registry storage holding exactly what source ``key`` holds now (a complete target).

        Copied from the source's storage (the source is idle), once; each fresh target gets a copy.
        """
        seed = self.workdir / "seeds" / key / "storage"
        if not seed.exists():
            shutil.copytree(self.sources[key][0].storage, seed)
        return seed

    def _digests(self, key: str, tag: str) -> dict[str, str]:
        _, layout, releases = self.sources[key]
        digests = layout_refs(layout)
        return {name: digests[ref] for name, ref in releases[tag].items()}

    def cases(self, scenario: str) -> list[Case]:
        names = arc_names()
        if scenario in ("cold", "cold-multiarch"):
            multi = scenario == "cold-multiarch"
            key = "arc-multiarch" if multi else "arc"
            sizes = release_sizes(self.scale, len(names), 2 if multi else 1)
            source, layout = self._source(key, names, sizes=sizes, multiarch=multi)
            refs = self.sources[key][2][TAG]
            what = "empty target" + (", every image linux/amd64 + linux/arm64" if multi else "")
            return [Case(scenario, scenario, source, names, TAG, self._digests(key, TAG),
                         release_blobs(layout, refs), description=what)]
        if scenario == "noop":
            all_names = noop_names(max(self.noop_counts))
            source, layout = self._source("noop", all_names, sizes=NOOP_SIZES)
            seed = self._seed("noop")
            digests = self._digests("noop", TAG)
            cases = []
            for count in self.noop_counts:
                subset = all_names[:count]
                cases.append(Case(scenario, f"noop-{count}", source, subset, TAG,
                                  {n: digests[n] for n in subset}, Blobs(), seed=seed, prep_tag=TAG,
                                  description="target already holds the release"))
            return cases
        if scenario == "incremental":
            sizes = release_sizes(self.scale, len(names))
            source, layout = self._source("arc", names, sizes=sizes)
            before = self.sources["arc"][2][TAG]
            if NEXT_TAG in self.sources["arc"][2]:
                raise RuntimeError("the incremental seed must be taken before the next release is loaded")
            seed = self._seed("arc")  # the source holds this month's release only
            changed = changed_names(names)
            after = self._add_tag("arc", names, NEXT_TAG, sizes=sizes, changed=changed)
            new = release_blobs(layout, after).minus(release_blobs(layout, before))
            return [Case(scenario, scenario, source, names, NEXT_TAG, self._digests("arc", NEXT_TAG), new,
                         seed=seed, prep_tag=TAG,
                         description=f"target holds {TAG}; {NEXT_TAG} changes the unique layer of "
                                     f"{len(changed)} of {len(names)} images ({', '.join(changed)}) "
                                     "and every config")]
        if scenario == "memory":
            name = ["arc-sqlmi"]
            layer = max(1024 * 1024, int(MEMORY_LAYER_BYTES * self.scale))
            sizes = {"unique_size": layer, "base_size": max(1024, int(4 * MB * self.scale)),
                     "shared_size": max(1024, int(2 * MB * self.scale))}
            source, layout = self._source("memory", name, sizes=sizes)
            refs = self.sources["memory"][2][TAG]
            return [Case(scenario, scenario, source, name, TAG, self._digests("memory", TAG),
                         release_blobs(layout, refs), poll_tree=True,
                         description=f"one image with a {_mb(layer)} layer: peak RSS of the process tree")]
        raise ValueError(f"unknown scenario {scenario!r}")

    # -- runs ------------------------------------------------------------------------------------

    def _fresh_target(self, case: Case) -> tuple[Registry, Path]:
        self._counter += 1
        run_dir = self.workdir / "runs" / f"{self._counter:03d}"
        target = Registry(run_dir / "target")
        if case.seed is not None:
            shutil.copytree(case.seed, target.storage, dirs_exist_ok=True)
        self.registries.append(target)
        return target.start(), run_dir

    def _drop_caches(self) -> None:
        if not self.drop_caches:
            return
        os.sync()
        try:
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
        except OSError as exc:
            self.notes.append(f"--drop-caches: could not drop the page cache ({exc.strerror}); runs were warm")
            self.drop_caches = False

    def _verify(self, case: Case, tool: Tool, target: Registry) -> int:
        """Check the target holds what the tool had to copy; return how many digests differ."""
        if isinstance(tool, FloorTool):
            missing = set(case.blobs.data) - target.blob_digests()
            if missing:
                raise ToolError(f"{len(missing)} blobs missing in the target after the floor run")
            return 0
        changed = 0
        for name in case.names:
            got = target.manifest_digest(f"{REPO}/{name}", case.tag)
            if got is None:
                raise ToolError(f"{REPO}/{name}:{case.tag} is missing in the target")
            if got != case.digests[name]:
                if tool.preserves_digests:
                    raise ToolError(f"{REPO}/{name}:{case.tag} is {got} in the target, not {case.digests[name]}")
                changed += 1
        return changed

    @staticmethod
    def _stored(target: Registry, before: set[str]) -> int:
        total = 0
        for digest in target.blob_digests() - before:
            path = target.blobs_dir / "sha256" / digest[7:9] / digest[7:] / "data"
            total += path.stat().st_size
        return total

    def measure(self, case: Case, tool: Tool, run: int) -> Measurement:
        target, run_dir = self._fresh_target(case)
        ctx = RunContext(case, target, run_dir, case.tag)
        try:
            if tool.stateful:
                tool.reset()
                if case.prep_tag:
                    tool.run(RunContext(case, target, run_dir, case.prep_tag))
            before = target.blob_digests()
            self._drop_caches()
            source_cpu, target_cpu = process_cpu(registry_pid(case.source)), process_cpu(registry_pid(target))
            outcome = tool.run(ctx)
            source_cpu = process_cpu(registry_pid(case.source)) - source_cpu
            target_cpu = process_cpu(registry_pid(target)) - target_cpu
            changed = self._verify(case, tool, target)
            if not tool.preserves_digests:
                outcome.extra["digests_changed"] = f"{changed}/{len(case.names)}"
            return Measurement(case.scenario, case.label, tool.name, run, outcome.seconds, True,
                               peak_rss=outcome.peak_rss, bytes_sent=outcome.bytes_sent,
                               stored_bytes=self._stored(target, before), inner_seconds=outcome.inner_seconds,
                               cpu=outcome.cpu, cpu_source=source_cpu, cpu_target=target_cpu, extra=outcome.extra)
        except (ToolError, dockerd.DockerEngineError, OSError, subprocess.SubprocessError) as exc:
            return Measurement(case.scenario, case.label, tool.name, run, None, False, error=str(exc)[:500])
        finally:
            target.stop()
            if self.registries and self.registries[-1] is target:
                self.registries.pop()
            if not self.keep:
                shutil.rmtree(run_dir, ignore_errors=True)

    def run_scenario(self, scenario: str) -> None:
        started = time.monotonic()
        cases = self.cases(scenario)
        for case in cases:
            self.case_info.append({
                "label": case.label, "images": len(case.names), "tag": case.tag,
                "bytes": case.blobs.data_bytes if case.blobs.data else self._release_bytes(case),
                "new_bytes": case.blobs.data_bytes, "description": case.description,
                "largest_blob": max(case.blobs.data.values(), default=0),
            })
        rows: dict[tuple[str, str], Row] = {}
        active: list[Tool] = []
        for name, tool in self.tools.items():
            reason = NOT_MEASURED.get(scenario, {}).get(name) or tool.unavailable()
            for case in cases:
                rows[(case.label, name)] = Row(scenario, case.label, name, [], skipped=reason)
            if reason:
                log(f"[{scenario}] {name}: skipped: {reason}")
            else:
                active.append(tool)
        for run in range(1, self.runs + 1):
            shift = (run - 1) % max(1, len(active))
            order = active[shift:] + active[:shift]
            for case in cases:
                for tool in order:
                    m = self.measure(case, tool, run)
                    rows[(case.label, tool.name)].measurements.append(m)
                    detail = f"{m.seconds:.2f}s" if m.ok else f"FAILED: {m.error}"
                    log(f"[{case.label}] run {run}/{self.runs} {tool.name}: {detail}")
        self.rows.extend(rows[(case.label, name)] for case in cases for name in self.tools)
        log(f"[{scenario}] done in {time.monotonic() - started:.0f}s")

    def _release_bytes(self, case: Case) -> int:
        key = next(k for k, (s, _, _) in self.sources.items() if s is case.source)
        _, layout, releases = self.sources[key]
        refs = {n: r for n, r in releases[case.tag].items() if n in case.names}
        return release_blobs(layout, refs).data_bytes

    def close(self) -> None:
        for tool in self.tools.values():
            try:
                tool.close()
            except Exception as exc:  # noqa: BLE001 - cleanup goes on
                log(f"closing {tool.name}: {exc}")
        for registry in self.registries:
            registry.stop()
        self.registries.clear()


def run_benchmark(
    *,
    scale: float = 1.0,
    runs: int = 3,
    tools: Iterable[str] = TOOLS,
    scenarios: Iterable[str] = SCENARIOS,
    workdir: os.PathLike | str | None = None,
    output: os.PathLike | str | None = None,
    keep: bool = False,
    drop_caches: bool = False,
    command: str | None = None,
    noop_counts: Sequence[int] = NOOP_COUNTS,
) -> BenchReport:
    """Run the benchmark; write the Markdown report to ``output`` (when given) and return it.

    ``tools`` / ``scenarios``: subsets of :data:`TOOLS` / :data:`SCENARIOS`. ``workdir``: where
    layouts, registries and the Docker engine live (a temporary directory, removed at the end,
    when not given; a given one is kept). Timing never raises: a failing tool run is recorded
    as failed (``report.ok`` is then False).
    """
    tools, scenarios = list(tools), list(scenarios)
    unknown = [t for t in tools if t not in TOOLS] + [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown tools or scenarios: {', '.join(unknown)}")
    if scale <= 0 or runs < 1:
        raise ValueError("scale must be > 0 and runs >= 1")
    few, many = (int(n) for n in noop_counts)
    if not 1 <= few < many:
        raise ValueError("noop_counts must be two image counts, the first smaller, e.g. (16, 64)")
    temporary = workdir is None
    work = Path(tempfile.mkdtemp(prefix="arcmirror-bench-") if temporary else workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    started_at = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg()
    machine = machine_info()  # before the runs: the versions that were measured
    started = time.monotonic()
    bench = Bench(work, scale=scale, runs=runs, tools=tools, scenarios=scenarios, keep=keep,
                  drop_caches=drop_caches, noop_counts=(few, many))
    try:
        for scenario in SCENARIOS:
            if scenario in scenarios:
                bench.run_scenario(scenario)
        load_after = os.getloadavg()
        code_after = code_version()
        if code_after != machine["arcmirror"]:
            bench.notes.append(f"arcmirror's work tree changed during the run ({machine['arcmirror']} at the "
                               f"start, {code_after} at the end): each run used the code on disk at that time.")
        machine["load average (1, 5, 15 min)"] = (
            f"{' '.join(f'{x:.2f}' for x in load_before)} at the start, "
            f"{' '.join(f'{x:.2f}' for x in load_after)} at the end")
        busiest = max(load_before[0], load_after[0], load_after[1])
        if busiest > 0.75 * (os.cpu_count() or 1):
            bench.notes.append(
                f"Other work shared the machine during this run (load average up to {busiest:.1f} on "
                f"{os.cpu_count()} cores): absolute times are noisy; compare ratios, and the runs column.")
    finally:
        bench.close()
        if temporary and not keep:
            shutil.rmtree(work, ignore_errors=True)
    report = BenchReport(
        scale=scale, runs=runs, rows=bench.rows, cases=bench.case_info, machine=machine,
        started=started_at, elapsed=time.monotonic() - started,
        command=command or f"python -m benchmarks.bench --scale {scale:g} --runs {runs}",
        notes=bench.notes, noop_counts=(few, many),
    )
    if output is not None:
        path = Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report.markdown())
    return report


def _names(text: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in items if t not in allowed]
    if unknown or not items:
        raise argparse.ArgumentTypeError(f"{what}: choose from {', '.join(allowed)} (got {text!r})")
    return items


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns 0, 1 when a tool run failed, 2 on a usage error."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description="Time arcmirror against skopeo, docker and the target's floor on a synthetic Arc release.",
    )
    parser.add_argument("--scale", type=float, default=1.0,
                        help="data size factor: 1 = about 400 MB of distinct blobs (and a 1 GB layer "
                             "in the memory case); 0.01 for a smoke run")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported (default 3)")
    parser.add_argument("--only", type=lambda t: _names(t, TOOLS, "--only"), default=list(TOOLS),
                        metavar="TOOLS", help=f"comma-separated tools (default all: {','.join(TOOLS)})")
    parser.add_argument("--scenarios", type=lambda t: _names(t, SCENARIOS, "--scenarios"), default=list(SCENARIOS),
                        metavar="LIST", help=f"comma-separated scenarios (default all: {','.join(SCENARIOS)})")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT),
                        help="Markdown report to write (default docs/benchmarks.md); '-' for none")
    parser.add_argument("--workdir", default=None,
                        help="where layouts, registries and the Docker engine live (kept; default: a "
                             "temporary directory, removed)")
    parser.add_argument("--keep", action="store_true", help="keep every run's target registry and the work dir")
    parser.add_argument("--noop-images", default=",".join(map(str, NOOP_COUNTS)), metavar="FEW,MANY",
                        help="image counts of the two no-op cases (default 16,64; the first 16 are Arc "
                             "names, then arc-extra-NN)")
    parser.add_argument("--drop-caches", action="store_true",
                        help="sync and drop the OS page cache before every timed run (root)")
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.runs < 1:
        parser.error("--scale must be > 0 and --runs >= 1")
    try:
        noop_counts = tuple(int(n) for n in args.noop_images.split(","))
        if len(noop_counts) != 2 or not 1 <= noop_counts[0] < noop_counts[1]:
            raise ValueError
    except ValueError:
        parser.error("--noop-images takes two image counts, the first smaller, e.g. 16,64")
    given = argv if argv is not None else sys.argv[1:]
    command = "python -m benchmarks.bench " + " ".join(shlex.quote(a) for a in given)
    report = run_benchmark(scale=args.scale, runs=args.runs, tools=args.only, scenarios=args.scenarios,
                           workdir=args.workdir, output=None if args.output == "-" else args.output,
                           keep=args.keep, drop_caches=args.drop_caches, command=command.strip(),
                           noop_counts=noop_counts)
    print(report.results_table())
    noop = report.noop_table()
    if noop:
        print("\n" + noop)
    for goal, value, met in report.targets():
        print(f"{'MET ' if met else ('MISS' if met is False else '----')} {goal}: {value}")
    if args.output != "-":
        print(f"\nwrote {args.output}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
