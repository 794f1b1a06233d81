"""The ``mirror`` run: settings in, every image of the release copied, reports out."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable, Sequence

from ..copy.copier import ImageJob, Progress
from ..endpoints.registry import RegistryEndpoint
from ..oci.errors import HintedError
from ..oci.platform import Platform
from ..oci.reference import ImageRef, join_repository
from ..settings.load import Settings
from . import report
from .plan import AUTO_TAGS, Plan, target_of, target_tag_for
from .release import release_images, resolve_release_tag
from .report import StepRun, copy_step, whole_run_failed
from .wiring import admission, make_copier, open_client


def jobs_for(settings: Settings) -> list[ImageJob]:
    """One job per image of the set: ``SRC_REPO/name:SRC_TAG`` -> ``TGT_REPO/name:TGT_TAG``."""
    return [
        ImageJob(
            name=name,
            source_repo=join_repository(settings.source.repository, name),
            source_ref=settings.source.tag,
            target_repo=join_repository(settings.target.repository, name),
            target_tag=settings.target.tag,
        )
        for name in settings.images
    ]


def refs_for(settings: Settings, jobs: Sequence[ImageJob]) -> dict[str, tuple[str, str]]:
    return {
        job.name: (
            str(ImageRef(settings.source.registry, job.source_repo, job.source_ref)),
            str(ImageRef(settings.target.registry, job.target_repo, job.target_tag)),
        )
        for job in jobs
    }


def run_mirror(settings: Settings, progress: Progress | None = None, plan: Plan | None = None,
               say: Callable[[str], None] = lambda _: None, dry_run: bool = False) -> StepRun:
    """Copy every image registry to registry and write ``mirror.xml`` and ``mirror.json``.

    Without a plan the release tag is SOURCE_DOCKER_TAG, or the newest release when it is unset;
    with a plan every image is copied at the digest the plan pinned. A dry run reads everything,
    writes nothing (no report either) and says what would be sent.
    """
    started = time.monotonic()
    preflight: list[report.Case] = []
    with open_client(settings.source, settings) as source, open_client(settings.target, settings) as target:
        if plan is not None:
            # an image whose blobs the plan did not all find in the target (a new image, or a blob lost under
            # a tag in place) has every blob checked; one whose blobs are all there may only need its tag
            jobs = [ImageJob(i.name, i.source_repository, i.digest, *target_of(settings, plan, i),
                             repair=i.in_target is False and i.bytes_in_target < sum(i.blobs.values()))
                    for i in plan.ok_images]
            platforms = [Platform.parse(p) for p in plan.platforms]
            settings = with_release_tag(settings, plan.tag)
        else:
            try:
                if settings.source.tag in AUTO_TAGS:
                    tag, reason = resolve_release_tag(settings, source)
                    say(f"Release tag: {tag} ({reason})")
                    settings = with_release_tag(settings, tag)
                found = release_images(settings, RegistryEndpoint(source), source, settings.source.tag, say)
            except HintedError as exc:
                return whole_run_failed(settings, "mirror", exc, started)
            settings = replace(settings, images=tuple(found.names), images_from=found.source)
            preflight = [report.Case(name, "mirror", True, skipped=True,
                                      message=f"in the image set but no repository in the source carries tag "
                                              f"{settings.source.tag}") for name in found.missing]
            jobs = jobs_for(settings)
            platforms = list(settings.platforms)
        source_endpoint = RegistryEndpoint(source)
        copier = make_copier(settings, source_endpoint, RegistryEndpoint(target), platforms=platforms,
                             progress=progress, dry_run=dry_run,
                             admit=admission(settings, source_endpoint, settings.source.registry))
        run = copy_step(settings, plan, "mirror", copier, jobs, refs_for(settings, jobs), started, preflight)
    run.extra["release_tag"] = settings.source.tag
    run.extra["target_tag"] = settings.target.tag
    return run


def with_release_tag(settings: Settings, tag: str) -> Settings:
    """Settings with the release tag filled in (chosen automatically, or from a plan)."""
    return replace(settings, source=replace(settings.source, tag=tag),
                   target=replace(settings.target, tag=target_tag_for(settings, tag)))


def arc_deployment_hint(registry: str, repository: str, tag: str, username: str | None) -> str:
    """What to put in the Arc data controller's deployment profile, and the pull secret command."""
    user = username or "<user>"
    return "\n".join([
        "",
        "To deploy Azure Arc data services from this registry:",
        "  data controller deployment profile (control.json), spec.docker:",
        f'    "registry": "{registry}",',
        f'    "repository": "{repository}",',
        f'    "imageTag": "{tag}",',
        '    "imagePullPolicy": "IfNotPresent"',
        "  or: az arcdata dc config replace --path ./custom/control.json \\",
        f'        --json-values "spec.docker.registry={registry}" --json-values "spec.docker.repository={repository}" \\',
        f'        --json-values "spec.docker.imageTag={tag}"',
        "  the pull secret the data controller uses (spec.credentials.dockerRegistry):",
        "    kubectl create secret docker-registry arc-private-registry --namespace <arc-namespace> \\",
        f"      --docker-server={registry} --docker-username={user} --docker-password=<password>",
    ])
