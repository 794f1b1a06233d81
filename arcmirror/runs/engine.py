"""The Docker engine route's runs: mirror, pull, tag and push through a Docker engine, one case per image.

Each image is pulled **by the digest the plan pinned**, tagged with its target reference and pushed
(``arcmirror.dockerengine``); credentials go to the engine with each call. One image failing never
stops the others; each step writes its JUnit report and a JSON record (an :class:`EngineImage` per
image) with the digest the engine pushed, which ``verify --engine docker`` reads back.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Sequence

from .. import cancel
from ..dockerengine.client import Engine, EngineInfo, auth_config
from ..dockerengine.hints import DEFAULT_HINT, scrub
from ..dockerengine.stream import EngineError
from ..oci.errors import Cancelled, HintedError, unexpected
from ..oci.platform import Platform
from ..secret import Secret
from ..settings.load import Settings
from . import report
from .plan import Plan, PlannedImage, target_of, target_tag_for
from .report import StepRun, unplanned_cases, write_step

Say = Callable[[str], None]

ROUTE = "docker"
#: Images handled at once; the engine parallelises layers itself (3 downloads, 5 uploads by default).
MAX_WORKERS = 3
HEARTBEAT = 30.0  # seconds between "still pulling/pushing" lines for one image
ENGINE_RECORDS = ("mirror", "push")  # the steps whose JSON records carry pushed digests


def secrets_of(settings: Settings) -> list[Secret | None]:
    return [settings.source.password, settings.target.password]


# -- the per-image work ------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageRefs:
    """Where one planned image comes from and goes to, as the engine names them."""

    source_repository: str  # host/repo/name
    digest: str
    target_repository: str  # host/repo/name
    target_tag: str

    @property
    def source(self) -> str:
        return f"{self.source_repository}@{self.digest}"

    @property
    def target(self) -> str:
        return f"{self.target_repository}:{self.target_tag}"


def image_refs(settings: Settings, plan: Plan, image: PlannedImage) -> ImageRefs:
    repo, tag = target_of(settings, plan, image)
    return ImageRefs(f"{plan.source_registry}/{image.source_repository}", str(image.digest),
                     f"{settings.target.registry}/{repo}", tag)


@dataclass
class _Run:
    """What every image of one engine step shares."""

    settings: Settings
    plan: Plan
    engine: Engine
    info: EngineInfo
    say: Say
    cleanup: bool
    in_engine_before: dict[str, bool] = field(default_factory=dict)  # from pull.json, for push --cleanup


@dataclass
class EngineImage:
    """What happened to one image in one engine step: its JUnit case's details and its JSON record."""

    name: str
    source: str  # host/repo/name@digest
    target: str  # host/repo/name:tag
    source_digest: str | None
    status: str = "failed"  # "pulled", "tagged", "pushed"; "failed" or "cancelled"
    platform: str | None = None
    image_id: str | None = None  # the config digest, as the engine names the image
    digest: str | None = None  # what the engine pushed
    size: int | None = None
    in_engine_before: bool | None = None  # the engine held the source image before this run
    layers: dict[str, int] = field(default_factory=dict)
    cleanup: str | None = None
    duration: float = 0.0
    error: str | None = None
    hint: str | None = None

    @classmethod
    def start(cls, image: PlannedImage, refs: ImageRefs) -> "EngineImage":
        return cls(image.name, refs.source, refs.target, image.digest)

    def fail(self, exc: HintedError) -> None:
        self.status = "cancelled" if isinstance(exc, Cancelled) else "failed"
        self.error, self.hint = exc.message, exc.hint


def _heartbeat(say: Say, name: str, action: str, every: float = HEARTBEAT) -> Callable[[dict], None]:
    """An ``on_message`` that says, at most every ``every`` seconds, how far one image's layers are."""
    layers: dict[str, str] = {}
    last = [time.monotonic()]

    def on_message(message: dict) -> None:
        if message.get("id") and isinstance(message.get("status"), str):
            layers[str(message["id"])] = message["status"]
        now = time.monotonic()
        if now - last[0] >= every:
            last[0] = now
            done = sum(s in ("Pull complete", "Already exists", "Pushed", "Layer already exists")
                       or s.startswith("Mounted from") for s in layers.values())
            say(f"{name}: still {action}: {done} of {len(layers)} layers done")

    return on_message


def _pull(run: _Run, image: PlannedImage, refs: ImageRefs, entry: EngineImage) -> None:
    before = run.engine.image_id(refs.source)
    entry.in_engine_before = before is not None
    run.say(f"{image.name}: pulling {refs.source}")
    summary = run.engine.pull(refs.source_repository, refs.digest, auth_config(run.settings.source),
                              run.settings.source, _heartbeat(run.say, image.name, "pulling"))
    entry.image_id = run.engine.image_id(refs.source)
    if entry.image_id is None:
        raise EngineError(f"the Docker engine at {run.info.host} reported pulling {refs.source} done, "
                          "but holds no image under that name", DEFAULT_HINT)
    entry.platform = str(run.info.platform)
    entry.layers["fetched"] = summary.count("Pull complete", "Download complete")
    entry.layers["already_in_engine"] = summary.count("Already exists")
    entry.status = "pulled"


def _tag(run: _Run, image: PlannedImage, refs: ImageRefs, entry: EngineImage) -> None:
    image_id = entry.image_id or run.engine.image_id(refs.source)
    if image_id is None:
        raise EngineError(f"{refs.source} is not in the Docker engine at {run.info.host}",
                          "run 'invoke pull --engine docker' first (with the same plan)")
    run.engine.tag(refs.source, refs.target_repository, refs.target_tag)
    entry.image_id = image_id
    entry.status = "tagged"


def _check_tagged(run: _Run, refs: ImageRefs, entry: EngineImage) -> None:
    """Before a push on its own: the target tag in the engine is the image pulled for the pinned digest."""
    tagged = run.engine.image_id(refs.target)
    if tagged is None:
        raise EngineError(f"{refs.target} is not in the Docker engine at {run.info.host}",
                          "run 'invoke pull --engine docker' and 'invoke tag --engine docker' first")
    pulled = run.engine.image_id(refs.source)
    if pulled != tagged:
        found = "is not in the engine" if pulled is None else f"is image {pulled}"
        raise EngineError(f"{refs.target} in the engine is image {tagged}, but the planned {refs.source} {found}",
                          "run 'invoke pull --engine docker' and 'invoke tag --engine docker' again")
    entry.image_id = tagged


def _push(run: _Run, image: PlannedImage, refs: ImageRefs, entry: EngineImage) -> None:
    run.say(f"{image.name}: pushing {refs.target}")
    summary = run.engine.push(refs.target_repository, refs.target_tag, auth_config(run.settings.target),
                              run.settings.target, _heartbeat(run.say, image.name, "pushing"))
    assert summary.aux is not None
    entry.digest, entry.size = str(summary.aux["Digest"]), summary.aux.get("Size")
    entry.platform = entry.platform or str(run.info.platform)
    entry.layers.update(pushed=summary.count("Pushed"), mounted=summary.count("Mounted from"),
                           already_in_target=summary.count("Layer already exists"))
    entry.status = "pushed"
    run.say(f"{image.name}: pushed {refs.target} as {entry.digest}")


def _cleanup(run: _Run, refs: ImageRefs, entry: EngineImage, *, target: bool = True) -> None:
    """Untag what this run made: the target tag, and the source digest unless the engine had it before."""
    removed, problems = [], []
    names = [refs.target] if target else []
    keep_source = entry.in_engine_before
    if keep_source is None:
        keep_source = run.in_engine_before.get(entry.name, False)
    if not keep_source:
        names.append(refs.source)
    for name in names:
        present = run.engine.image_id(name) is not None
        problem = run.engine.remove(name) if present else None
        if problem:
            problems.append(problem)
        elif present:
            removed.append(name)
    text = f"removed {', '.join(removed)}" if removed else "nothing to remove"
    if keep_source:
        text += f"; kept {refs.source} (it was in the engine before this run)"
    if problems:
        text += "; " + "; ".join(problems)
        run.say(f"{entry.name}: cleanup: {'; '.join(problems)}")
    entry.cleanup = text


def _details(run: _Run, entry: EngineImage) -> list[str]:
    lines = [f"source: {entry.source}", f"target: {entry.target}", f"engine: {run.info.describe()}",
             f"status: {entry.status}", f"source digest: {entry.source_digest}"]
    if entry.image_id:
        lines.append(f"image ID (config digest): {entry.image_id}")
    if entry.digest:
        lines.append(f"pushed digest: {entry.digest} ({entry.size} bytes)")
        if entry.digest != entry.source_digest:
            lines.append("note: the engine re-compresses layers and copies only its own platform, so the pushed "
                         "digest differs from the source's; 'invoke verify --engine docker' checks the config digest "
                         "and layer diff IDs")
    layers = entry.layers
    if "fetched" in layers:
        lines.append(f"layers pulled: {layers['fetched']} fetched, {layers['already_in_engine']} already in the engine")
    if "pushed" in layers:
        lines.append(f"layers pushed: {layers['pushed']} sent, {layers['mounted']} mounted, "
                     f"{layers['already_in_target']} already in the target")
    if entry.cleanup:
        lines.append(f"cleanup: {entry.cleanup}")
    lines.append(f"duration: {entry.duration:.2f}s")
    return lines


def _one(run: _Run, step: str, image: PlannedImage, actions: Sequence[Callable], cleanup: bool,
         blocked: EngineError | None) -> tuple[report.Case, EngineImage]:
    refs = image_refs(run.settings, run.plan, image)
    entry = EngineImage.start(image, refs)
    started = time.monotonic()
    try:
        cancel.check("this image")
        if blocked is not None:
            raise blocked
        for action in actions:
            action(run, image, refs, entry)
    except HintedError as exc:
        entry.fail(exc)
    except Exception as exc:  # noqa: BLE001 - a bug must fail one image, not the run
        bug = unexpected(exc)
        entry.fail(type(bug)(scrub(bug.message, secrets_of(run.settings)), bug.hint))
    finally:
        if cleanup and blocked is None:
            try:
                _cleanup(run, refs, entry, target=step != "pull")
            except HintedError as exc:
                entry.cleanup = f"failed: {exc.message}"
    if entry.error:
        run.say(f"{image.name}: FAILED: {entry.error}")
    entry.duration = round(time.monotonic() - started, 3)
    case = report.Case(image.name, step, entry.error is None, _details(run, entry), entry.duration,
                        entry.error, entry.hint, cancelled=entry.status == "cancelled")
    return case, entry


def _abandoned(run: _Run, step: str, image: PlannedImage) -> tuple[report.Case, EngineImage]:
    """An image the engine was still busy with when a cancellation stopped waiting for it."""
    entry = EngineImage.start(image, image_refs(run.settings, run.plan, image))
    entry.fail(cancel.error("this image"))
    return report.Case.failed(image.name, step, _details(run, entry), cancel.error("this image")), entry


def _platform_problem(plan: Plan, info: EngineInfo) -> EngineError | None:
    """MIRROR_PLATFORMS (in the plan) that leaves out the one platform the engine can copy."""
    wanted = [Platform.parse(p) for p in plan.platforms]
    if not wanted or any(p.os == info.platform.os and p.architecture == info.platform.architecture for p in wanted):
        return None
    return EngineError(
        f"MIRROR_PLATFORMS asks for {', '.join(plan.platforms)}, but the {info.describe()} copies only its own "
        f"platform, {info.platform}",
        f"unset MIRROR_PLATFORMS (or set it to {info.platform}) for the engine route, or use the registry route "
        "(MIRROR_ENGINE=registry), which copies any platform",
    )


def _record(settings: Settings, run: _Run | None, plan: Plan, entries: list[EngineImage],
            engine_error: EngineError | None = None) -> dict:
    return {
        "route": ROUTE,
        "engine": run.info.to_json() if run else {"error": engine_error.message if engine_error else None},
        "plan": plan.record(),
        "release_tag": plan.tag,
        "target_tag": target_tag_for(settings, plan.tag),
        "images": [asdict(e) for e in entries],
        "totals": {"images": len(entries), "ok": sum(e.error is None for e in entries),
                   "failed": sum(e.error is not None for e in entries)},
    }


def _run_step(settings: Settings, plan: Plan, step: str, actions: Sequence[Callable], *, cleanup: bool, say: Say,
              environ: Mapping[str, str] | None, check_platform: bool = False) -> StepRun:
    started = time.monotonic()
    with Engine(environ, secrets=secrets_of(settings)) as engine:
        try:
            info = engine.connect()
        except EngineError as exc:
            say(f"{step}: {exc.message}")
            cases = [report.Case.failed(i.name, step, [f"source: {i.source}", f"engine: {engine.host}"], exc)
                     for i in plan.ok_images]
            entries = [EngineImage.start(i, image_refs(settings, plan, i)) for i in plan.ok_images]
            for entry in entries:
                entry.fail(exc)
            return write_step(settings, step, cases + unplanned_cases(step, plan), started,
                              _record(settings, None, plan, entries, exc))
        run = _Run(settings, plan, engine, info, say, cleanup)
        if cleanup and step == "push":
            run.in_engine_before = _pulled_before(settings, plan)
        blocked = _platform_problem(plan, info) if check_platform else None
        say(f"{step}: {len(plan.ok_images)} images through the {info.describe()}")
        workers = max(1, min(settings.concurrency, MAX_WORKERS, len(plan.ok_images) or 1))
        done = cancel.run_all(lambda i: _one(run, step, i, actions, cleanup, blocked), plan.ok_images, workers,
                              lambda i: _abandoned(run, step, i), "engine")
    cases = [case for case, _ in done] + unplanned_cases(step, plan)
    return write_step(settings, step, cases, started, _record(settings, run, plan, [entry for _, entry in done]))


# -- the steps ---------------------------------------------------------------------------------

def run_engine_mirror(settings: Settings, plan: Plan, *, cleanup: bool = False, say: Say = lambda _: None,
                      environ: Mapping[str, str] | None = None) -> StepRun:
    """Pull (by the pinned digest), tag and push every planned image through the engine.

    Writes ``mirror.xml`` and ``mirror.json`` (with the pushed digest of each image). With
    ``cleanup`` the references this run made are removed afterwards, failed images too.
    """
    return _run_step(settings, plan, "mirror", (_pull, _tag, _push), cleanup=cleanup, say=say, environ=environ,
                     check_platform=True)


def run_engine_pull(settings: Settings, plan: Plan, cleanup: bool = False, *, say: Say = lambda _: None,
                    environ: Mapping[str, str] | None = None) -> StepRun:
    """Pull every planned image into the engine by its pinned digest; ``pull.xml`` and ``pull.json``.

    ``pull.json`` records which images the engine held before, so a later ``push --cleanup`` leaves
    those alone. ``cleanup`` removes what was pulled again (a check that the engine can fetch
    everything, leaving nothing behind).
    """
    return _run_step(settings, plan, "pull", (_pull,), cleanup=cleanup, say=say, environ=environ, check_platform=True)


def run_engine_tag(settings: Settings, plan: Plan, *, say: Say = lambda _: None,
                   environ: Mapping[str, str] | None = None) -> StepRun:
    """Tag every pulled image with its target reference in the engine; ``tag.xml`` and ``tag.json``."""
    return _run_step(settings, plan, "tag", (_tag,), cleanup=False, say=say, environ=environ)


def run_engine_push(settings: Settings, plan: Plan, cleanup: bool = False, *, say: Say = lambda _: None,
                    environ: Mapping[str, str] | None = None) -> StepRun:
    """Push every tagged image from the engine; ``push.xml`` and ``push.json`` (pushed digests).

    Each target tag is first checked to be the image pulled for the pinned digest. With
    ``cleanup`` the target tag and the source digest reference are removed afterwards (the latter
    only when ``pull.json`` does not say the engine had it before).
    """
    def push(run: _Run, image: PlannedImage, refs: ImageRefs, entry: EngineImage) -> None:
        _check_tagged(run, refs, entry)
        _push(run, image, refs, entry)

    return _run_step(settings, plan, "push", (push,), cleanup=cleanup, say=say, environ=environ)


# -- records -----------------------------------------------------------------------------------

def _records(settings: Settings, plan: Plan, steps: Sequence[str]) -> list[dict]:
    """The engine route's JSON records of ``steps`` for this plan, newest first."""
    found = []
    for step in steps:
        path = settings.report_dir / f"{step}.json"
        try:
            data = json.loads(path.read_text())
            mtime = path.stat().st_mtime
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("route") == ROUTE and isinstance(data.get("images"), list) and \
                (data.get("plan") or {}).get("created") == plan.created and data["plan"].get("tag") == plan.tag:
            found.append((mtime, data))
    return [data for _, data in sorted(found, key=lambda pair: pair[0], reverse=True)]


def _pulled_before(settings: Settings, plan: Plan) -> dict[str, bool]:
    records = _records(settings, plan, ("pull",))
    return {e["name"]: bool(e.get("in_engine_before")) for e in records[0]["images"]
            if isinstance(e, dict) and "name" in e} if records else {}


def pushed_digests(settings: Settings, plan: Plan) -> tuple[dict[str, dict], str | None]:
    """Per image, the newest record of a push (``digest``, ``platform``) for this plan; and the engine's platform."""
    pushed: dict[str, dict] = {}
    platform = None
    for data in _records(settings, plan, ENGINE_RECORDS):
        platform = platform or (data.get("engine") or {}).get("platform")
        for entry in data["images"]:
            if isinstance(entry, dict) and entry.get("digest") and entry.get("name") not in pushed:
                pushed[entry["name"]] = entry
    return pushed, platform
