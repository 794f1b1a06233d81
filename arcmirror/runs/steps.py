"""The pipeline steps through the local OCI layout store: pull, tag, push."""

from __future__ import annotations

import time

from .. import cancel
from ..copy.copier import ImageJob, Progress
from ..endpoints.layout import LayoutEndpoint, LayoutStore
from ..endpoints.registry import RegistryEndpoint
from ..oci.errors import HintedError
from ..oci.platform import Platform
from ..settings.load import Settings
from . import report
from .plan import Plan, PlanError, target_of
from .report import StepRun, copy_step, unplanned_cases, write_step
from .wiring import admission, make_copier, open_client


def run_pull(settings: Settings, plan: Plan, progress: Progress | None = None) -> StepRun:
    """Copy every planned image, by its pinned digest, into the local OCI layout store."""
    started = time.monotonic()
    store = LayoutStore(settings.store)
    store.init()
    jobs = [ImageJob(i.name, i.source_repository, i.digest, i.source_repository, plan.tag) for i in plan.ok_images]
    refs = {i.name: (i.source, f"{settings.store}:{i.source}") for i in plan.ok_images}
    with open_client(settings.source, settings) as client:
        source = RegistryEndpoint(client)
        copier = make_copier(settings, source, LayoutEndpoint(store, plan.source_registry),
                             platforms=[Platform.parse(p) for p in plan.platforms], progress=progress,
                             admit=admission(settings, source, settings.source.registry))
        return copy_step(settings, plan, "pull", copier, jobs, refs, started, [])


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
            cases.append(report.Case(image.name, "tag", True, details + [f"digest: {digest}",
                                                                          f"referrer tags: {len(referrer_tags)}"]))
        except HintedError as exc:
            cases.append(report.Case.failed(image.name, "tag", details, exc))
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
            preflight.append(report.Case(image.name, "push", False, [f"target: {view.ref_name(repo, tag)}"],
                                          message=f"{view.ref_name(repo, tag)} {found}",
                                          hint="run 'invoke pull' and 'invoke tag' first"))
            continue
        jobs.append(ImageJob(image.name, repo, digest, repo, tag))
    with open_client(settings.target, settings) as client:
        copier = make_copier(settings, view, RegistryEndpoint(client), progress=progress, dry_run=dry_run)
        return copy_step(settings, plan, "push", copier, jobs, refs, started, preflight)
