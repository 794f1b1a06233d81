"""The air-gap runs: ``export`` (pull what the store lacks, write the archive) and ``import`` (check the
archive, push its images straight out of the tar, verify them). The format is ``endpoints.archive``."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from .. import cancel
from ..copy.copier import ImageJob, Progress
from ..endpoints.archive import ArchiveReader, ExportResult, write_archive
from ..endpoints.layout import LayoutStore
from ..endpoints.registry import RegistryEndpoint
from ..oci.errors import HintedError
from ..oci.manifest import children_of
from ..settings.load import Settings
from . import report
from .plan import Plan, target_of
from .report import StepRun, copy_step, write_step
from .steps import run_pull
from .verify import run_verify
from .wiring import make_copier, open_client, trust_verifier


def run_export(settings: Settings, plan: Plan, archive: Path, since: Path | None = None,
               progress: Progress | None = None) -> tuple[StepRun, ExportResult | None]:
    """Pull what the store lacks, then write the planned images into ``archive``."""
    started = time.monotonic()
    pulled = run_pull(settings, plan, progress)
    result = None
    cases = [replace(c, step="export") for c in pulled.cases]
    if pulled.ok:
        try:
            result = write_archive(plan.ok_images, plan.tag, plan.source_registry, plan.to_dict(),
                                   LayoutStore(settings.store), archive, previous_blobs(since) if since else None)
        except HintedError as exc:
            cases = [replace(c, ok=False, message=exc.message, hint=exc.hint) for c in cases]
        else:
            note = f"archive: {result.path} ({result.blobs} blobs, {report.human_bytes(result.bytes)}" + \
                   (f", {result.omitted} blobs left out as already carried by {since})" if since else ")")
            cases = [replace(c, details=c.details + [note]) for c in cases]
    else:
        cases = [c if not c.ok else replace(c, ok=False, message="not exported: another image failed to pull",
                                            hint="fix the failed images and export again") for c in cases]
    return write_step(settings, "export", cases, started), result


def previous_blobs(plan_path: Path) -> set[str]:
    """The blobs an earlier plan's archive carried (its images' config and layer blobs)."""
    return {d for image in Plan.load(plan_path).ok_images for d in image.blobs}


def run_import(settings: Settings, archive: Path, progress: Progress | None = None,
               deep: bool = False, dry_run: bool = False) -> list[StepRun]:
    """Check the archive, push its images to the target, then verify them."""
    started = time.monotonic()
    reader = ArchiveReader(archive)
    try:
        reader.check()
        plan = Plan.from_dict(reader.plan_record, f"the plan inside {archive}")
    except HintedError as exc:  # refused, damaged, or cancelled while checking
        return [write_step(settings, "import", [report.Case.failed("archive", "import", [f"archive: {archive}"], exc)],
                           started, dry_run=dry_run)]
    jobs, refs = [], {}
    for image in plan.ok_images:
        repo, tag = target_of(settings, plan, image)
        jobs.append(ImageJob(image.name, image.name, image.target_digest, repo, tag))
        refs[image.name] = (f"{archive}:{image.name}@{image.target_digest}", f"{settings.target.registry}/{repo}:{tag}")
    verdicts, refused = _verify_archive(settings, plan, reader, jobs, refs)
    with open_client(settings.target, settings) as client:
        copier = make_copier(settings, reader, RegistryEndpoint(client), progress=progress, dry_run=dry_run,
                             admit=(lambda job, manifest, kept: verdicts[job.name]) if verdicts else None)
        pushed = copy_step(settings, plan, "import", copier, [j for j in jobs if j.name not in refused], refs,
                           started, list(refused.values()))
    return [pushed] if dry_run or cancel.requested() else [pushed, run_verify(settings, plan, deep=deep)]


def _verify_archive(settings: Settings, plan: Plan, reader: ArchiveReader, jobs: list[ImageJob],
                    refs: dict) -> tuple[dict, dict]:
    """Every image of the archive verified against this side's own trust folder (its scope: the target's
    repository) before any is pushed; an image that fails is a failed case and is not pushed. ({name: verdict},
    {name: failed case})."""
    verifier = trust_verifier(settings, settings.target.registry)
    if verifier is None:
        return {}, {}
    rewritten = {i.name for i in plan.ok_images if i.target_digest != i.digest}

    def one(job: ImageJob):
        try:
            manifest = reader.get_manifest(job.source_repo, job.source_ref)
            kept = [reader.get_manifest(job.source_repo, d) for d in children_of(manifest, job.source_repo)] \
                if job.name in rewritten else None
            return job, verifier.verify_image(reader, job.source_repo, manifest, kept, scope=job.target_repo)
        except HintedError as exc:
            return job, exc

    verdicts, refused = {}, {}
    for job, verdict in cancel.run_all(one, jobs, settings.concurrency, lambda job: (job, None), "verify"):
        if verdict is not None and not isinstance(verdict, HintedError) and verdict.ok:
            verdicts[job.name] = verdict
            continue
        message = verdict.failure() if hasattr(verdict, "failure") else \
            f"{refs[job.name][0]}: {verdict.message}" if verdict is not None else \
            "cancelled before its signatures were verified"
        refused[job.name] = report.Case(job.name, "import", False, [f"source: {refs[job.name][0]}"] +
                                        (verdict.lines() if hasattr(verdict, "lines") else []),
                                        message=f"not imported: signature verification failed for {message}",
                                        hint="the archive's image does not meet this side's trust policy "
                                             "(MIRROR_TRUST_DIR): it was altered, or the trust folder lacks its signer")
    return verdicts, refused
