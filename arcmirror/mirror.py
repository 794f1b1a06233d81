"""The ``mirror`` run: settings in, every image of the release copied, reports out."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from . import reports
from .config import Platform, Settings
from .copy import ImageJob, ImageResult, Progress
from .endpoints.registry import RegistryEndpoint
from .plan import AUTO_TAGS, resolve_release_tag, target_tag_for
from .reference import ImageRef, join_repository

if TYPE_CHECKING:
    from .plan import Plan
from .clients import make_engine, open_client


def jobs_for(settings: Settings, images: Sequence[str] | None = None) -> list[ImageJob]:
    """One job per image of the set: ``SRC_REPO/name:SRC_TAG`` -> ``TGT_REPO/name:TGT_TAG``."""
    return [
        ImageJob(
            name=name,
            source_repo=join_repository(settings.source.repository, name),
            source_ref=settings.source.tag,
            target_repo=join_repository(settings.target.repository, name),
            target_tag=settings.target.tag,
        )
        for name in (images or settings.images)
    ]


def refs_for(settings: Settings, jobs: Sequence[ImageJob]) -> dict[str, tuple[str, str]]:
    return {
        job.name: (
            str(ImageRef(settings.source.registry, job.source_repo, job.source_ref)),
            str(ImageRef(settings.target.registry, job.target_repo, job.target_tag)),
        )
        for job in jobs
    }


@dataclass
class MirrorRun:
    results: list[ImageResult]
    elapsed: float
    junit: Path
    record: Path

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


def run_mirror(settings: Settings, progress: Progress | None = None, plan: "Plan | None" = None,
               say: Callable[[str], None] = lambda _: None) -> MirrorRun:
    """Copy every image registry to registry and write ``mirror.xml`` and ``mirror.json``.

    Without a plan the release tag is SOURCE_DOCKER_TAG, or the newest release when it is unset;
    with a plan every image is copied at the digest the plan pinned.
    """
    started = time.monotonic()
    with open_client(settings.source, settings) as source, open_client(settings.target, settings) as target:
        if plan is not None:
            jobs = [ImageJob(i.name, i.source_repository, i.digest, join_repository(settings.target.repository, i.name),
                             target_tag_for(settings, plan.tag)) for i in plan.ok_images]
            platforms = [Platform.parse(p) for p in plan.platforms]
        else:
            if settings.source.tag in AUTO_TAGS:
                tag, reason = resolve_release_tag(settings, source)
                say(f"Release tag: {tag} ({reason})")
                settings = replace(settings, source=replace(settings.source, tag=tag),
                                   target=replace(settings.target, tag=target_tag_for(settings, tag)))
            jobs = jobs_for(settings)
            platforms = list(settings.platforms)
        engine = make_engine(settings, RegistryEndpoint(source), RegistryEndpoint(target), platforms=platforms,
                             progress=progress)
        results = engine.copy_all(jobs)
    elapsed = time.monotonic() - started
    refs = refs_for(settings, jobs)
    junit = settings.report_dir / "mirror.xml"
    record = settings.report_dir / "mirror.json"
    reports.write_atomic(junit, reports.junit_for_copy("arcmirror mirror", "mirror", results, refs))
    data = reports.record(results, refs)
    data["elapsed"] = round(elapsed, 3)
    reports.write_json(record, data)
    return MirrorRun(results, elapsed, junit, record)
