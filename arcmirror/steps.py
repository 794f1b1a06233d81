"""The pipeline steps: discover, pull, tag, push (and the shared bits of every step's run).

Each step reads the plan (``reports/plan.json``, written by discover), does its work for every
planned image, and writes its own JUnit report, one test case per image.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from . import cancel, reports
from .config import ConfigError, Platform, Settings, full_name_problems
from .copy import CopyEngine, ImageJob, ImageResult, Progress
from .endpoints.layout import LayoutEndpoint, LayoutStore
from .endpoints.registry import RegistryEndpoint
from .clients import make_engine, open_client
from .plan import AUTO_TAGS, Plan, PlanError, PlannedImage, discover, shard_plan, target_tag_for
from .reference import join_repository
from .registry.errors import RegistryError

if TYPE_CHECKING:
    from .archive import ExportResult

Say = Callable[[str], None]


@dataclass
class StepRun:
    step: str
    cases: list[reports.Case]
    junit: Path | None
    elapsed: float
    results: list[ImageResult] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return all(c.ok or c.skipped for c in self.cases)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def summary(self) -> str:
        if self.dry_run:
            return reports.dry_run_summary(self.step, self.results, self.cases)
        if self.results:
            text = reports.summary(self.results, self.elapsed, self.junit, self.cases)
            return text if self.step == "mirror" else f"{self.step}: {text}"
        failed = [c for c in self.cases if not c.ok and not c.skipped and not c.cancelled]
        cancelled = sum(c.cancelled for c in self.cases)
        lines = [f"{self.step}: {len(self.cases)} images, {len(failed)} failed"
                 + (f", {cancelled} cancelled" if cancelled else "") + f" ({self.elapsed:.1f}s)"]
        lines += reports.failure_lines(self.cases)
        lines.append(f"JUnit report: {self.junit}")
        return "\n".join(lines)


def write_step(settings: Settings, step: str, cases: list[reports.Case], started: float,
               record: dict | None = None, results: Sequence[ImageResult] = (), dry_run: bool = False) -> StepRun:
    """Write ``STEP.xml`` (and ``STEP.json``) unless this is a dry run, which writes nothing."""
    junit = None if dry_run else settings.report_dir / f"{step}.xml"
    record = dict(record or {})
    record["elapsed"] = round(time.monotonic() - started, 3)
    if junit is not None:
        reports.write_atomic(junit, reports.junit(f"arcmirror {step}", cases))
        reports.write_json(settings.report_dir / f"{step}.json", record)
    return StepRun(step, cases, junit, time.monotonic() - started, list(results), record, dry_run)


def whole_run_failed(settings: Settings, step: str, exc: RegistryError, started: float) -> StepRun:
    """A failure before any image could start (e.g. the release tag cannot be read): every image of the
    set becomes a failed case with that message, so a pipeline still shows each image's result."""
    cases = [reports.Case.failed(name, step, [f"image: {name}"], exc) for name in settings.images]
    return write_step(settings, step, cases, started, {"error": exc.message, "hint": exc.hint})


# -- plan --------------------------------------------------------------------------------------

def run_discover(settings: Settings, say: Say = lambda _: None) -> tuple[Plan, StepRun]:
    """Resolve the release into a plan; write ``plan.json`` and ``discover.xml``."""
    started = time.monotonic()
    with ExitStack() as stack:
        source_client = stack.enter_context(open_client(settings.source, settings))
        target = None
        if settings.target.registry:  # pull and export need no target: nothing to compare with
            target = RegistryEndpoint(stack.enter_context(open_client(settings.target, settings)))
        try:
            plan = discover(settings, RegistryEndpoint(source_client), source_client, target,
                            mode=settings.discover, say=say)
        except RegistryError as exc:
            whole_run_failed(settings, "discover", exc, started)
            raise
    reports.write_atomic(settings.plan_path, plan.to_json())
    cases = []
    for image in plan.images:
        details = [f"source: {image.source}", f"target: {image.target}", f"digest: {image.digest or '-'}"]
        if image.target_digest and image.target_digest != image.digest:
            details.append(f"target digest (index filtered to {', '.join(plan.platforms)}): {image.target_digest}")
        details += [f"media type: {image.media_type or '-'}", f"platforms: {', '.join(image.platforms) or '-'}",
                    f"blobs: {len(image.blobs)} ({reports.human_bytes(image.bytes)})",
                    f"in target: {'unknown' if image.in_target is None else 'yes' if image.in_target else 'no'}"]
        cases.append(reports.Case(image.name, "discover", image.ok, details, message=image.error, hint=image.hint))
    if settings.discover == "catalog":
        cases += [reports.Case(name, "discover", True, skipped=True,
                               message=f"in the image set but no repository in the source carries tag {plan.tag}")
                  for name in plan.missing]
    run = write_step(settings, "discover", cases, started)
    run.extra = {"plan": str(settings.plan_path)}
    return plan, run


def plan_summary(plan: Plan, path: Path) -> str:
    t = plan.totals()
    lines = [
        f"Release {plan.tag} ({plan.tag_reason}); images from {plan.image_source}",
        f"{t['images_ok']} of {t['images']} images found; {t['unique_blobs']} unique blobs, "
        f"{reports.human_bytes(t['unique_bytes'])}; the target already has {t['images_in_target']} images "
        f"and {reports.human_bytes(t['bytes_in_target'])}",
    ]
    if plan.extra:
        lines.append(f"Not in the image set but in the source with this tag: {', '.join(plan.extra)}")
    if plan.missing:
        lines.append(f"In the image set but not in the source with this tag: {', '.join(plan.missing)}")
    lines.append(f"Plan: {path}")
    return "\n".join(lines)


def load_plan(settings: Settings, path: Path | None, say: Say) -> Plan:
    """The plan a step works from: the given file, else ``reports/plan.json``, else a fresh discovery."""
    chosen = path or settings.plan_path
    if path is None and not chosen.exists():
        say(f"No plan at {chosen}: discovering first")
        plan, _ = run_discover(settings, say)
        return _shard(settings, plan, say)
    plan = Plan.load(chosen)
    if not plan.images:
        raise PlanError(f"the plan {chosen} holds no images of release {plan.tag}",
                        "run 'invoke discover' again (check SOURCE_DOCKER_TAG)")
    if problems := full_name_problems(settings, [i.name for i in plan.images]):
        raise ConfigError(problems)
    tag = settings.source.tag
    if tag not in AUTO_TAGS and tag != plan.tag:
        raise PlanError(f"the plan {chosen} is for release {plan.tag}, but SOURCE_DOCKER_TAG is {tag}",
                        "run 'invoke discover' for the new release, or unset SOURCE_DOCKER_TAG")
    if plan.source_registry != settings.source.registry:
        raise PlanError(f"the plan {chosen} is for source {plan.source_registry}, not {settings.source.registry}",
                        "run 'invoke discover' again")
    say(f"Plan {chosen}: release {plan.tag}, {len(plan.ok_images)} images (made {plan.created})")
    return _shard(settings, plan, say)


def _shard(settings: Settings, plan: Plan, say: Say) -> Plan:
    if not settings.shard:
        return plan
    part = shard_plan(plan, *settings.shard)
    to_copy = sum(max(i.bytes - i.bytes_in_target, 0) for i in part.images)
    say(f"Shard {part.shard}: {len(part.images)} of {len(plan.images)} images "
        f"({reports.human_bytes(to_copy)} to copy): {', '.join(i.name for i in part.images) or 'none'}")
    return part


def target_of(settings: Settings, plan: Plan, image: PlannedImage) -> tuple[str, str]:
    """Where an image goes, following the current TARGET_DOCKER_* settings."""
    return join_repository(settings.target.repository, image.name), target_tag_for(settings, plan.tag)


def unplanned_case(step: str, image: PlannedImage) -> reports.Case:
    """The failed case, in any step, of an image that discover could not plan."""
    return reports.Case(image.name, step, False, [f"source: {image.source}"], message=f"not planned: {image.error}",
                        hint=image.hint)


def cancelled_case(step: str, image: PlannedImage) -> reports.Case:
    """The failed case of an image a cancellation stopped before its step was done with it."""
    return reports.Case.failed(image.name, step, [f"source: {image.source}"], cancel.error("this image"))


def unplanned_cases(step: str, plan: Plan) -> list[reports.Case]:
    return [unplanned_case(step, i) for i in plan.images if not i.ok]


def copy_step(settings: Settings, plan: Plan | None, step: str, engine: CopyEngine, jobs: list[ImageJob],
              refs: dict[str, tuple[str, str]], started: float, preflight: Sequence[reports.Case] = ()) -> StepRun:
    """Run the engine over ``jobs`` and write the step's reports (none in a dry run)."""
    results = engine.copy_all(jobs)
    cases = [reports.copy_case(step, r, *refs[r.job.name]) for r in results] + list(preflight)
    if plan is not None:
        cases += unplanned_cases(step, plan)
    record = reports.record(results, refs)
    if plan is not None:
        record["plan"] = {"tag": plan.tag, "created": plan.created, "shard": plan.shard}
    return write_step(settings, step, cases, started, record, results, dry_run=engine.dry_run)


# -- pull / tag / push ---------------------------------------------------------------------------

def run_pull(settings: Settings, plan: Plan, progress: Progress | None = None) -> StepRun:
    """Copy every planned image, by its pinned digest, into the local OCI layout store."""
    started = time.monotonic()
    store = LayoutStore(settings.store)
    store.init()
    jobs = [ImageJob(i.name, i.source_repository, i.digest, i.source_repository, plan.tag) for i in plan.ok_images]
    refs = {i.name: (i.source, f"{settings.store}:{i.source}") for i in plan.ok_images}
    with open_client(settings.source, settings) as client:
        engine = make_engine(settings, RegistryEndpoint(client), LayoutEndpoint(store, plan.source_registry),
                             platforms=[Platform.parse(p) for p in plan.platforms], progress=progress)
        return copy_step(settings, plan, "pull", engine, jobs, refs, started, [])


def run_tag(settings: Settings, plan: Plan) -> StepRun:
    """Name every stored image with its target reference (``ref.name`` in the layout's index)."""
    started = time.monotonic()
    store = LayoutStore(settings.store)
    source_view = LayoutEndpoint(store, plan.source_registry)
    target_view = LayoutEndpoint(store, settings.target.registry)
    cases = []
    for image in plan.ok_images:
        repo, tag = target_of(settings, plan, image)
        target_ref = target_view.ref_name(repo, tag)
        details = [f"stored as: {source_view.ref_name(image.source_repository, plan.tag)}", f"target: {target_ref}"]
        try:
            cancel.check("this image")
            digest = source_view.resolve(image.source_repository, plan.tag)
            if digest is None:
                raise PlanError(f"{image.source} is not in the store {settings.store}", "run 'invoke pull' first")
            if digest != image.target_digest:
                raise PlanError(f"the store holds {digest} for {image.source}, but the plan pinned {image.target_digest}",
                                "run 'invoke pull' again")
            store.set_ref(target_ref, store.manifest(digest))
            # the referrers' tags (tag schema indexes, cosign) travel under the target name too
            referrer_tags = [t for t in source_view.list_tags(image.source_repository) if t.startswith("sha256-")]
            for referrer_tag in referrer_tags:
                found = source_view.resolve(image.source_repository, referrer_tag)
                store.set_ref(target_view.ref_name(repo, referrer_tag), store.manifest(found))
            cases.append(reports.Case(image.name, "tag", True, details + [f"digest: {digest}",
                                                                          f"referrer tags: {len(referrer_tags)}"]))
        except RegistryError as exc:
            cases.append(reports.Case.failed(image.name, "tag", details, exc))
    return write_step(settings, "tag", cases + unplanned_cases("tag", plan), started)


def run_push(settings: Settings, plan: Plan, progress: Progress | None = None, dry_run: bool = False) -> StepRun:
    """Push the tagged images from the store to the target: skip, mount or stream each blob."""
    started = time.monotonic()
    store = LayoutStore(settings.store)
    view = LayoutEndpoint(store, settings.target.registry)
    jobs, refs, preflight = [], {}, []
    for image in plan.ok_images:
        repo, tag = target_of(settings, plan, image)
        refs[image.name] = (f"{settings.store}:{view.ref_name(repo, tag)}", view.ref_name(repo, tag))
        digest = view.resolve(repo, tag)
        if digest is None or digest != image.target_digest:
            found = "is not in the store" if digest is None else f"points at {digest}, not the planned {image.target_digest}"
            preflight.append(reports.Case(image.name, "push", False, [f"target: {view.ref_name(repo, tag)}"],
                                          message=f"{view.ref_name(repo, tag)} {found}",
                                          hint="run 'invoke pull' and 'invoke tag' first"))
            continue
        jobs.append(ImageJob(image.name, repo, digest, repo, tag))
    with open_client(settings.target, settings) as client:
        engine = make_engine(settings, view, RegistryEndpoint(client), progress=progress, dry_run=dry_run)
        return copy_step(settings, plan, "push", engine, jobs, refs, started, preflight)


# -- the air-gap archive -------------------------------------------------------------------------

def run_export(settings: Settings, plan: Plan, archive: Path, since: Path | None = None,
               progress: Progress | None = None) -> tuple[StepRun, "ExportResult | None"]:
    """Pull what the store lacks, then write the planned images into ``archive``."""
    from .archive import export_archive, previous_blobs

    started = time.monotonic()
    pulled = run_pull(settings, plan, progress)
    result = None
    cases = [replace(c, step="export") for c in pulled.cases]
    if pulled.ok:
        try:
            result = export_archive(plan, LayoutStore(settings.store), archive, previous_blobs(since) if since else None)
        except RegistryError as exc:
            cases = [replace(c, ok=False, message=exc.message, hint=exc.hint) for c in cases]
        else:
            note = f"archive: {result.path} ({result.blobs} blobs, {reports.human_bytes(result.bytes)}" + \
                   (f", {result.omitted} blobs left out as already carried by {since})" if since else ")")
            cases = [replace(c, details=c.details + [note]) for c in cases]
    else:
        cases = [c if not c.ok else replace(c, ok=False, message="not exported: another image failed to pull",
                                            hint="fix the failed images and export again") for c in cases]
    return write_step(settings, "export", cases, started), result


def run_import(settings: Settings, archive: Path, progress: Progress | None = None,
               deep: bool = False, dry_run: bool = False) -> list[StepRun]:
    """Check the archive, push its images to the target, then verify them."""
    from .archive import ArchiveReader
    from .verify import run_verify

    started = time.monotonic()
    reader = ArchiveReader(archive)
    try:
        reader.check()
        plan = reader.plan()
    except RegistryError as exc:  # refused, damaged, or cancelled while checking
        return [write_step(settings, "import", [reports.Case.failed("archive", "import", [f"archive: {archive}"], exc)],
                           started, dry_run=dry_run)]
    jobs, refs = [], {}
    for image in plan.ok_images:
        repo, tag = target_of(settings, plan, image)
        jobs.append(ImageJob(image.name, image.name, image.target_digest, repo, tag))
        refs[image.name] = (f"{archive}:{image.name}@{image.target_digest}", f"{settings.target.registry}/{repo}:{tag}")
    with open_client(settings.target, settings) as client:
        engine = make_engine(settings, reader, RegistryEndpoint(client), progress=progress, dry_run=dry_run)
        pushed = copy_step(settings, plan, "import", engine, jobs, refs, started)
    return [pushed] if dry_run or cancel.requested() else [pushed, run_verify(settings, plan, deep=deep)]
