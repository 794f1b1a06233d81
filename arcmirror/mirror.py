"""The ``mirror`` run: settings in, every image of the release copied, reports out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from . import reports
from .config import Endpoint, Settings
from .copy import CopyEngine, ImageJob, ImageResult, Progress
from .endpoints.registry import RegistryEndpoint
from .reference import ImageRef, join_repository
from .registry.auth import Credentials, docker_config_credentials
from .registry.client import RegistryClient


def open_client(endpoint: Endpoint, *, pool_size: int = 16) -> RegistryClient:
    """A client for the source or target registry, with the credentials the settings imply."""
    if endpoint.username and endpoint.password:
        credentials = Credentials(endpoint.username, endpoint.password, f"{endpoint.prefix}_USERNAME/_PASSWORD")
    else:
        credentials = docker_config_credentials(endpoint.registry)
    return RegistryClient(
        endpoint.registry,
        credentials=credentials,
        insecure=endpoint.insecure,
        ca_bundle=endpoint.ca_bundle,
        label=f"{endpoint.role} registry {endpoint.registry}",
        prefix=endpoint.prefix,
        pool_size=pool_size,
    )


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


def run_mirror(settings: Settings, progress: Progress | None = None) -> MirrorRun:
    """Copy every image registry to registry and write ``mirror.xml`` and ``mirror.json``."""
    jobs = jobs_for(settings)
    started = time.monotonic()
    pool = settings.concurrency * 2 + 4
    with open_client(settings.source, pool_size=pool) as source, open_client(settings.target, pool_size=pool) as target:
        engine = CopyEngine(
            RegistryEndpoint(source), RegistryEndpoint(target),
            concurrency=settings.concurrency, platforms=settings.platforms, progress=progress,
        )
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
