"""Discover: resolve the release into a plan (every image pinned, with its tree, blobs, referrers and
what the target already has), write ``plan.json`` and ``discover.xml``; and load the plan a step works from."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

from .. import cancel
from ..copy.referrers import find as find_referrers
from ..endpoints.base import Source, Target
from ..endpoints.registry import RegistryEndpoint
from ..oci.errors import HintedError, NotFoundError
from ..oci.manifest import is_index, platforms_of, walk
from ..oci.platform import Platform, filter_index
from ..oci.reference import ImageRef, join_repository, tag_problem
from ..registry.client import RegistryClient
from ..settings.load import ConfigError, Settings, full_name_problems
from . import report
from .plan import AUTO_TAGS, Plan, PlanError, PlannedImage, shard_plan, target_tag_for
from .release import release_images, release_not_found, resolve_release_tag
from .wiring import open_client, trust_verifier

Say = Callable[[str], None]


def plan_referrers(image: PlannedImage, source: Source, types: Sequence[str]) -> None:
    """List the referrers of every manifest of the image (and theirs), with what they are made of."""
    found = find_referrers(source, image.source_repository, image.manifests, types)
    image.referrers = [{"digest": r.digest, "subject": r.subject, "artifact_type": r.artifact_type}
                       for r in found.referrers]
    image.referrers += [{"digest": digest, "tag": tag} for tag, digest in found.cosign.items()]
    for entry in image.referrers:
        manifests, blobs = walk(lambda d: source.get_manifest(image.source_repository, d), entry["digest"],
                                image.source_repository)
        image.referrer_manifests += [m.digest for m in manifests if m.digest not in image.referrer_manifests]
        image.referrer_blobs.update(blobs)


def _signature_lines(signatures: list[dict]) -> list[str]:
    if not signatures:
        return ["signatures: none (no Notary signature, no cosign signature)"]
    from ..trust.verify import survey_lines

    return survey_lines(signatures)


def plan_image(image: PlannedImage, tag: str, source: Source, target: Target | None,
               platforms: Sequence[Platform], referrer_types: Sequence[str] | None = (),
               cosign_keys: Sequence | None = None) -> PlannedImage:
    """Fill in one image: pinned digest, tree, blobs, and what the target has. Errors land on the image."""
    try:
        cancel.check()
        digest = source.resolve(image.source_repository, tag)
        if digest is None:
            image.missing = True
            raise NotFoundError(f"{image.source} does not exist on the {source.label}",
                                "check SOURCE_DOCKER_TAG and the image name (is this image part of that release?)")
        top = source.get_manifest(image.source_repository, digest)
        image.digest, image.media_type = digest, top.media_type
        rewritten: dict = {}
        if is_index(top) and platforms:
            top, rewritten = filter_index(top, platforms, image.source,
                                          lambda d: source.get_manifest(image.source_repository, d))
        image.target_digest = top.digest
        image.platforms = platforms_of(top)
        # indexes filtered here are in no registry under their new digests: hand them over as they are
        rewritten[top.digest] = top
        manifests, image.blobs = walk(
            lambda d: rewritten.get(d) or source.get_manifest(image.source_repository, d),
            top.digest, image.source_repository)
        image.manifests = [m.digest for m in manifests]
        if referrer_types is not None:
            plan_referrers(image, source, referrer_types)
            if image.referrers:
                from ..trust.verify import survey  # cryptography is imported only where there are signatures

                image.signatures = survey(source, image.source_repository, image.referrers, cosign_keys)
    except HintedError as exc:
        image.error, image.hint = exc.message, exc.hint
        return image
    if target is not None:
        try:
            tagged = target.resolve(image.target_repository, image.target_tag) == image.target_digest
            present = {d: size for d, size in image.blobs.items() if target.has_blob(image.target_repository, d)}
            image.bytes_in_target = sum(present.values())
            # "in the target" means complete: the tag in place and every blob there (none lost since)
            image.in_target = tagged and len(present) == len(image.blobs) and all(
                target.resolve(image.target_repository, r["digest"]) == r["digest"] for r in image.referrers)
        except HintedError:
            image.in_target = None
    return image


def discover(
    settings: Settings,
    source: Source,
    source_client: RegistryClient,
    target: Target | None,
    *,
    mode: str = "set",
    image_set_pattern: re.Pattern[str] | None = None,
    reference_image: str | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> Plan:
    """Resolve the tag, the image list and every image's content into a :class:`Plan`."""
    src = settings.source
    tag, reason = resolve_release_tag(settings, source_client, reference_image, image_set_pattern)
    if src.tag in AUTO_TAGS:
        say(f"Release tag: {tag} ({reason})")
    target_tag = target_tag_for(settings, tag)
    if problem := tag_problem(tag):
        raise NotFoundError(f"the chosen release tag {tag!r} {problem}")

    found = release_images(replace(settings, discover=mode), source, source_client, tag, say)
    names, missing, extra, image_source = found.names, found.missing, found.extra, found.source

    images = [
        PlannedImage(
            name=name,
            source=str(ImageRef(src.registry, join_repository(src.repository, name), tag)),
            source_repository=join_repository(src.repository, name),
            target=str(ImageRef(settings.target.registry, join_repository(settings.target.repository, name), target_tag)),
            target_repository=join_repository(settings.target.repository, name),
            target_tag=target_tag,
        )
        for name in names
    ]
    with ThreadPoolExecutor(settings.concurrency) as pool:
        referrer_types = settings.referrer_types if settings.referrers else None
        keys = trust_verifier(settings, src.registry).cosign_keys if settings.cosign_keys else None
        images = list(pool.map(lambda i: plan_image(i, tag, source, target, settings.platforms, referrer_types, keys),
                               images))
    if mode != "catalog":
        missing = [i.name for i in images if i.missing]
        if images and len(missing) == len(images):
            raise release_not_found(settings, source_client, tag, names,
                                    f"none of the {len(images)} images of the {image_source}")
    return Plan(
        source_registry=src.registry,
        source_repository=src.repository,
        target_registry=settings.target.registry,
        target_repository=settings.target.repository,
        tag=tag,
        target_tag=target_tag,
        tag_reason=reason,
        image_source=image_source,
        platforms=[str(p) for p in settings.platforms],
        images=images,
        missing=missing,
        extra=extra,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def run_discover(settings: Settings, say: Say = lambda _: None) -> tuple[Plan, report.StepRun]:
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
        except HintedError as exc:
            report.whole_run_failed(settings, "discover", exc, started)
            raise
    report.write_atomic(settings.plan_path, plan.to_json())
    cases = []
    for image in plan.images:
        details = [f"source: {image.source}", f"target: {image.target}", f"digest: {image.digest or '-'}"]
        if image.target_digest and image.target_digest != image.digest:
            details.append(f"target digest (index filtered to {', '.join(plan.platforms)}): {image.target_digest}")
        details += [f"media type: {image.media_type or '-'}", f"platforms: {', '.join(image.platforms) or '-'}",
                    f"blobs: {len(image.blobs)} ({report.human_bytes(image.bytes)})",
                    f"in target: {'unknown' if image.in_target is None else 'yes' if image.in_target else 'no'}"]
        if image.ok:
            details += _signature_lines(image.signatures)
        cases.append(report.Case(image.name, "discover", image.ok, details, message=image.error, hint=image.hint))
    if settings.discover == "catalog":
        cases += [report.Case(name, "discover", True, skipped=True,
                               message=f"in the image set but no repository in the source carries tag {plan.tag}")
                  for name in plan.missing]
    run = report.write_step(settings, "discover", cases, started)
    run.extra = {"plan": str(settings.plan_path)}
    return plan, run


def plan_summary(plan: Plan, path: Path) -> str:
    t = plan.totals()
    lines = [
        f"Release {plan.tag} ({plan.tag_reason}); images from {plan.image_source}",
        f"{t['images_ok']} of {t['images']} images found; {t['unique_blobs']} unique blobs, "
        f"{report.human_bytes(t['unique_bytes'])}; the target already has {t['images_in_target']} images "
        f"and {report.human_bytes(t['bytes_in_target'])}",
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
    say(f"Shard {part.shard}: {len(part.images)} of {len(plan.images)} images "
        f"({report.human_bytes(sum(i.to_copy for i in part.images))} to copy): {', '.join(i.name for i in part.images) or 'none'}")
    return part
