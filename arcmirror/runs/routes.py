"""The two routes an image can take, behind one interface the tasks call the same way.

:class:`RegistryRoute`: registry to registry (or through the local layout store), digests kept,
the default. :class:`DockerRoute` (``MIRROR_ENGINE=docker``): pull, tag and push through a Docker
engine. :func:`route_for` picks one from the settings and refuses the options a route cannot honour.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable, Protocol

from ..copy.copier import Progress
from ..settings.load import Settings
from .plan import Plan
from .report import StepRun

Say = Callable[[str], None]
#: ``progress(total images, total bytes or None, quiet)``: bars or lines for a run, as a context manager.
ProgressFactory = Callable[[int, "int | None", bool], AbstractContextManager[Progress]]


class UsageError(Exception):
    """Options that do not go together (the front door exits 2 with this message)."""


class Route(Protocol):
    def mirror(self, settings: Settings, plan: Plan | None) -> StepRun: ...

    def pull(self, settings: Settings, plan: Plan) -> StepRun: ...

    def tag(self, settings: Settings, plan: Plan) -> StepRun: ...

    def push(self, settings: Settings, plan: Plan) -> StepRun: ...

    def verify(self, settings: Settings, plan: Plan) -> StepRun: ...


class RegistryRoute:
    """Registry to registry, digests kept; ``dry_run`` reads everything and writes nothing."""

    def __init__(self, say: Say, progress: ProgressFactory, *, dry_run: bool = False, deep: bool = False) -> None:
        self.say, self.progress, self.dry_run, self.deep = say, progress, dry_run, deep

    def mirror(self, settings: Settings, plan: Plan | None) -> StepRun:
        from .mirror import run_mirror

        count = len(plan.ok_images) if plan else 0 if settings.discover == "catalog" else len(settings.images)
        self.say(f"{'Dry run: ' if self.dry_run else ''}Mirroring {count or 'the catalog'} images: "
                 f"{settings.source.registry}/{settings.source.repository or '.'} -> "
                 f"{settings.target.registry}/{settings.target.repository or '.'}")
        with self.progress(count, plan.bytes_to_copy if plan else None, self.dry_run) as progress:
            return run_mirror(settings, progress, plan=plan, say=self.say, dry_run=self.dry_run)

    def pull(self, settings: Settings, plan: Plan) -> StepRun:
        from .steps import run_pull

        with self.progress(len(plan.ok_images), plan.bytes_to_copy, False) as progress:
            return run_pull(settings, plan, progress)

    def tag(self, settings: Settings, plan: Plan) -> StepRun:
        from .steps import run_tag

        return run_tag(settings, plan)

    def push(self, settings: Settings, plan: Plan) -> StepRun:
        from .steps import run_push

        with self.progress(len(plan.ok_images), plan.bytes_to_copy, self.dry_run) as progress:
            return run_push(settings, plan, progress, dry_run=self.dry_run)

    def verify(self, settings: Settings, plan: Plan) -> StepRun:
        from .verify import run_verify

        return run_verify(settings, plan, deep=self.deep)


class DockerRoute:
    """Through the Docker engine at DOCKER_HOST; ``cleanup`` removes what the run pulled and tagged."""

    def __init__(self, say: Say, *, cleanup: bool = False) -> None:
        self.say, self.cleanup = say, cleanup

    def mirror(self, settings: Settings, plan: Plan | None) -> StepRun:
        from .discover import run_discover
        from .engine import run_engine_mirror

        pinned = plan if plan is not None else run_discover(settings, self.say)[0]
        return run_engine_mirror(settings, pinned, cleanup=self.cleanup, say=self.say)

    def pull(self, settings: Settings, plan: Plan) -> StepRun:
        from .engine import run_engine_pull

        return run_engine_pull(settings, plan, self.cleanup, say=self.say)

    def tag(self, settings: Settings, plan: Plan) -> StepRun:
        from .engine import run_engine_tag

        return run_engine_tag(settings, plan, say=self.say)

    def push(self, settings: Settings, plan: Plan) -> StepRun:
        from .engine import run_engine_push

        return run_engine_push(settings, plan, self.cleanup, say=self.say)

    def verify(self, settings: Settings, plan: Plan) -> StepRun:
        from .engine_verify import run_engine_verify

        return run_engine_verify(settings, plan, say=self.say)


def route_for(settings: Settings, say: Say, progress: ProgressFactory, *, cleanup: bool = False,
              dry_run: bool = False, deep: bool = False) -> Route:
    """The route MIRROR_ENGINE names; :class:`UsageError` for options that route cannot honour."""
    if settings.route != "docker":
        if cleanup:
            raise UsageError("--cleanup applies only with --engine docker")
        return RegistryRoute(say, progress, dry_run=dry_run, deep=deep)
    if dry_run:
        raise UsageError("--dry-run is not available with --engine docker (the engine cannot tell without pulling)")
    if deep:
        raise UsageError("--deep is for the registry route; with --engine docker, verify checks config digests "
                         "and layer diff IDs")
    if settings.trust_dir is not None or settings.cosign_keys:
        raise UsageError("signature verification (MIRROR_TRUST_DIR, MIRROR_COSIGN_KEYS) needs the registry route: "
                         "the Docker engine re-pushes images under new digests, which no signature covers; unset "
                         "MIRROR_ENGINE=docker, or unset MIRROR_TRUST_DIR and MIRROR_COSIGN_KEYS")
    return DockerRoute(say, cleanup=cleanup)
