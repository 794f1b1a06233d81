"""Verify for the Docker engine route: what that route can promise (the same config digest and layer
diff IDs as the source image, every blob present), for every planned image."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from typing import Callable, Mapping

from .. import cancel
from ..dockerengine.client import Engine
from ..dockerengine.stream import EngineError
from ..endpoints.registry import RegistryEndpoint
from ..oci.digest import sha256_digest
from ..oci.errors import (
    Cancelled,
    DigestMismatchError,
    HintedError,
    NotFoundError,
    ProtocolError,
)
from ..oci.manifest import Manifest, blobs_of, is_index, platform_name
from ..oci.mediatypes import FOREIGN_LAYER_TYPES
from ..oci.platform import Platform
from ..registry.client import RegistryClient
from ..settings.load import Settings
from . import report
from .engine import ROUTE, pushed_digests, secrets_of
from .plan import Plan, PlannedImage, target_of
from .report import StepRun, cancelled_case, unplanned_case, write_step
from .wiring import open_client

Say = Callable[[str], None]
MAX_CONFIG_BYTES = 4 * 1024 * 1024


def _platform_manifest(client: RegistryClient, repo: str, reference: str, platform: Platform,
                       where: str) -> tuple[Manifest, Manifest]:
    """``(top, image)``: the manifest ``reference`` names, and its image manifest for ``platform``."""
    top = client.get_manifest(repo, reference)
    if not is_index(top):
        return top, top
    entries = [e for e in top.json().get("manifests") or [] if isinstance(e, dict)]
    chosen = next((e for e in entries if platform.matches(e.get("platform"))), None)
    if chosen is None:
        have = ", ".join(sorted({platform_name(e.get("platform")) for e in entries})) or "none"
        raise NotFoundError(f"{where} has no {platform} image (it has: {have})",
                            "the engine copies only its own platform")
    child = client.get_manifest(repo, str(chosen.get("digest")))
    if is_index(child):
        raise ProtocolError(f"{where}: the {platform} entry is itself an index")
    return top, child


def _config(client: RegistryClient, repo: str, manifest: Manifest, where: str) -> tuple[str, list[str]]:
    """The config digest of an image manifest and the config's ``rootfs.diff_ids`` (read and checked)."""
    config = manifest.json().get("config")
    if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
        raise ProtocolError(f"{where} is an image manifest without a config")
    digest, size = config["digest"], config.get("size")
    if not isinstance(size, int) or not 0 <= size <= MAX_CONFIG_BYTES:
        raise ProtocolError(f"{where} has a config of unusable size {size!r}")
    data = b"".join(RegistryEndpoint(client).iter_blob(repo, digest, size))
    got = sha256_digest(data)
    if got != digest:
        raise DigestMismatchError(f"the config {digest} of {where} has content whose digest is {got}")
    try:
        diff_ids = json.loads(data)["rootfs"]["diff_ids"]
        if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ProtocolError(f"the config {digest} of {where} has no rootfs.diff_ids list") from None
    return digest, diff_ids


def verify_engine_image(source: RegistryClient, target: RegistryClient, image: PlannedImage, repo: str, tag: str,
                        platform: Platform | str, pushed_digest: str | None = None) -> report.Case:
    """Check what the engine route promises for one image, as a ``verify`` case.

    The target tag's image (for an index, its ``platform`` child) has the same config digest and
    the same layer diff IDs (``rootfs.diff_ids``) as the source image the plan pinned (for an
    index, its ``platform`` child), one layer per diff ID, and every blob it references is present.
    ``pushed_digest`` (from the push record) is reported; a tag that moved since is noted.
    """
    started = time.monotonic()
    platform = Platform.parse(platform) if isinstance(platform, str) else platform
    source_ref = f"{source.registry}/{image.source_repository}@{image.digest}"
    target_ref = f"{target.registry}/{repo}:{tag}"
    details = [f"target: {target_ref}", f"source: {source_ref}", f"platform: {platform}",
               f"pushed digest (recorded): {pushed_digest or '-'}"]
    problems: list[str] = []
    facts: dict[str, str | None] = {"target_digest": None, "config_digest": None}  # for verify.json
    hint = "run 'invoke mirror --engine docker' (or pull, tag and push with --engine docker) again"
    try:
        found = facts["target_digest"] = target.head_manifest(repo, tag)
        details.append(f"target digest: {found or '-'}")
        if found is None:
            raise NotFoundError(f"{target_ref} does not exist")
        if pushed_digest and found != pushed_digest:
            details.append(f"note: the tag points at {found}, not the digest the engine pushed: it moved since")
        _, source_image = _platform_manifest(source, image.source_repository, str(image.digest), platform, source_ref)
        source_config, source_diff_ids = _config(source, image.source_repository, source_image,
                                                 f"{source_ref} ({platform})")
        _, target_image = _platform_manifest(target, repo, found, platform, target_ref)
        target_config, target_diff_ids = _config(target, repo, target_image, f"{target_ref} ({platform})")
        facts["config_digest"] = target_config
        details += [f"source config digest: {source_config}", f"target config digest: {target_config}",
                    f"layer diff IDs: {len(source_diff_ids)} in the source, {len(target_diff_ids)} in the target"]
        if target_config != source_config:
            problems.append(f"the target's config digest {target_config} is not the source's {source_config} "
                            "(another image is under that tag)")
        if target_diff_ids != source_diff_ids:
            differ = next((n for n, (a, b) in enumerate(zip(source_diff_ids, target_diff_ids)) if a != b),
                          min(len(source_diff_ids), len(target_diff_ids)))
            problems.append(f"the target's layer diff IDs differ from the source's from layer {differ + 1} on "
                            f"({len(target_diff_ids)} vs {len(source_diff_ids)} layers)")
        layers = [entry for entry in target_image.json().get("layers") or []
                  if isinstance(entry, dict) and entry.get("mediaType") not in FOREIGN_LAYER_TYPES]
        if len(layers) != len(target_diff_ids):
            problems.append(f"the target manifest has {len(layers)} layers for {len(target_diff_ids)} diff IDs")
        blobs = dict(blobs_of(target_image, target_ref))
        missing = [d for d in blobs if not target.has_blob(repo, d)]
        problems += [f"blob {d} ({blobs[d]} bytes) is missing in the target" for d in missing]
        details.append(f"blobs checked: {len(blobs)} (HEAD)")
    except Cancelled as exc:
        return report.Case.failed(image.name, "verify", details, exc, time.monotonic() - started)
    except HintedError as exc:
        problems.append(exc.message)
        if exc.hint and not isinstance(exc, NotFoundError):
            hint = exc.hint
    details += [f"problem: {p}" for p in problems]
    message = "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
    return report.Case(image.name, "verify", not problems, details, time.monotonic() - started,
                       message or None, hint if problems else None, facts=facts)


def run_engine_verify(settings: Settings, plan: Plan, *, say: Say = lambda _: None,
                      environ: Mapping[str, str] | None = None, platform: Platform | str | None = None) -> StepRun:
    """Verify the engine route's promises for every planned image; ``verify.xml`` and ``verify.json``.

    The platform is ``platform``, else the one recorded by the engine push (``mirror.json`` /
    ``push.json`` of this plan), else the engine's own (asked at ``DOCKER_HOST``). The pushed
    digests of those records are reported per image.
    """
    started = time.monotonic()
    pushed, recorded = pushed_digests(settings, plan)
    chosen: Platform | None = None
    failure: EngineError | None = None
    if platform is not None:
        chosen = Platform.parse(platform) if isinstance(platform, str) else platform
    elif recorded:
        chosen = Platform.parse(recorded)
    else:
        try:
            with Engine(environ, secrets=secrets_of(settings)) as engine:
                chosen = engine.connect().platform
        except EngineError as exc:
            failure = EngineError(
                f"no engine push of this plan is recorded under {settings.report_dir} and {exc.message}", exc.hint)
    say(f"verify: {len(plan.ok_images)} images, engine route, platform {chosen or 'unknown'}")
    with ExitStack() as stack:
        if failure is None:
            source = stack.enter_context(open_client(settings.source, settings))
            target = stack.enter_context(open_client(settings.target, settings))

        def one(image: PlannedImage) -> report.Case:
            if not image.ok:
                return unplanned_case("verify", image)
            if failure is not None:
                return report.Case.failed(image.name, "verify", [f"source: {image.source}"], failure)
            repo, tag = target_of(settings, plan, image)
            return verify_engine_image(source, target, image, repo, tag, chosen,
                                       (pushed.get(image.name) or {}).get("digest"))

        cases = cancel.run_all(one, plan.images, settings.concurrency,
                               lambda image: cancelled_case("verify", image), "verify")
    images = [{"name": case.name, "ok": case.ok, "problem": case.message,
               "pushed_digest": (pushed.get(case.name) or {}).get("digest"),
               "target_digest": case.facts.get("target_digest"), "config_digest": case.facts.get("config_digest")}
              for case in cases]
    record = {"route": ROUTE, "platform": str(chosen) if chosen else None, "images": images, "plan": plan.record()}
    return write_step(settings, "verify", cases, started, record)
