"""Verify: the target holds exactly what the plan says, for every image."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .. import cancel
from ..endpoints.registry import RegistryEndpoint
from ..oci.digest import digest_of
from ..oci.errors import Cancelled, HintedError
from ..oci.manifest import blobs_of, children_of, is_index
from ..oci.referrers import schema_tag
from ..registry.client import RegistryClient
from ..settings.load import Settings
from . import report
from .plan import Plan, PlannedImage, target_of
from .report import StepRun, cancelled_case, unplanned_case, write_step
from .wiring import open_client, trust_verifier

if TYPE_CHECKING:
    from ..trust.verify import TrustVerifier


def _rehash(client: RegistryClient, repo: str, digest: str, size: int) -> str:
    return digest_of(RegistryEndpoint(client).iter_blob(repo, digest, size))


def _referrer_problems(client: RegistryClient, repo: str, image: PlannedImage) -> list[str]:
    """Every planned referrer is in the target and can be found again (tag schema or referrers API)."""
    problems = []
    listed: dict[str, set[str]] = {}
    tags: set[str] | None = None
    for entry in image.referrers:
        digest = entry["digest"]
        if "tag" in entry:  # cosign
            if client.head_manifest(repo, entry["tag"]) != digest:
                problems.append(f"cosign tag {entry['tag']} does not point at {digest}")
            continue
        what = f"referrer {digest} ({entry.get('artifact_type') or 'no artifact type'}) of {entry['subject']}"
        if client.head_manifest(repo, digest) != digest:
            problems.append(f"{what} is missing")
            continue
        subject = entry["subject"]
        if subject not in listed:
            names = {e["digest"] for e in client.referrers(repo, subject) or []}
            tags = set(client.list_tags(repo, missing_ok=True)) if tags is None else tags
            if schema_tag(subject) in tags:
                index = client.get_manifest(repo, schema_tag(subject)).json()
                names |= {e.get("digest") for e in index.get("manifests") or [] if isinstance(e, dict)}
            listed[subject] = names
        if digest not in listed[subject]:
            problems.append(f"{what} is in the target but not listed for its subject (tag {schema_tag(subject)})")
    return problems


def verify_image(client: RegistryClient, image: PlannedImage, repo: str, tag: str, deep: bool,
                 verifier: TrustVerifier | None = None) -> report.Case:
    """Check one image: its tag, every manifest (GET) and every blob (HEAD, or re-hashed with ``deep``), and, with
    a trust folder or cosign keys, its signatures in the target."""
    started = time.monotonic()
    ref = f"{client.registry}/{repo}:{tag}"
    details = [f"target: {ref}", f"expected digest: {image.target_digest}"]
    problems: list[str] = []
    facts: dict = {}
    try:
        cancel.check("this image's verification")
        found = client.head_manifest(repo, tag)
        details.append(f"target digest: {found or '-'}")
        if found is None:
            problems.append(f"{ref} does not exist")
        elif found != image.target_digest:
            problems.append(f"{ref} points at {found}, not the planned {image.target_digest}")
        manifests_seen, blobs_seen = [], {}
        pending = [image.target_digest]
        while pending:
            digest = pending.pop()
            manifests_seen.append(digest)
            try:
                manifest = client.get_manifest(repo, digest)
            except Cancelled:
                raise
            except HintedError as exc:
                problems.append(f"manifest {digest} is missing or unreadable: {exc.message}")
                continue
            where = f"{repo}@{digest}"
            if is_index(manifest):
                pending += [d for d in children_of(manifest, where) if d not in manifests_seen]
            else:
                blobs_seen.update(blobs_of(manifest, where))
        missing = [d for d in blobs_seen if not client.has_blob(repo, d)]
        problems += [f"blob {d} ({blobs_seen[d]} bytes) is missing" for d in missing]
        if deep:
            for digest in sorted(set(blobs_seen) - set(missing)):
                got = _rehash(client, repo, digest, blobs_seen[digest])
                if got != digest:
                    problems.append(f"blob {digest} has content whose digest is {got}")
        if image.blobs and set(blobs_seen) != set(image.blobs) and not problems:
            problems.append("the target's image has other blobs than planned")
        problems += _referrer_problems(client, repo, image)
        if verifier is not None and not problems:
            trust = _signatures(client, verifier, image, repo)
            details += trust.lines()
            if not trust.ok:
                problems.append(f"signature verification failed for {trust.failure()}")
                hint = "the image in the target does not meet the trust policy (MIRROR_TRUST_DIR): see each check " \
                       "in the report; an image altered in the target, or a trust folder without its signer"
                details.append("problem: " + problems[-1])
                message = problems[-1]
                return report.Case(image.name, "verify", False, details, time.monotonic() - started, message, hint,
                                   facts={"signatures": trust.record()})
            facts = {"signatures": trust.record()}
        details += [f"manifests checked: {len(manifests_seen)}", f"blobs checked: {len(blobs_seen)}"
                    + (" (re-hashed)" if deep else " (HEAD)"), f"referrers checked: {len(image.referrers)}"]
    except Cancelled as exc:
        return report.Case.failed(image.name, "verify", details, exc, time.monotonic() - started)
    except HintedError as exc:
        problems.append(exc.message)
        hint = exc.hint
    else:
        hint = "run 'invoke mirror --repair' (or pull, tag and push): only what is missing is sent"
    details += [f"problem: {p}" for p in problems]
    message = "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
    return report.Case(image.name, "verify", not problems, details, time.monotonic() - started,
                        message or None, hint if problems else None, facts=facts)


def _signatures(client: RegistryClient, verifier: TrustVerifier, image: PlannedImage, repo: str):
    """The image's signatures verified in the target (the target's repository is the trust policy's scope)."""
    endpoint = RegistryEndpoint(client)
    manifest = client.get_manifest(repo, image.target_digest)
    kept = [client.get_manifest(repo, d) for d in children_of(manifest, repo)] \
        if image.target_digest != image.digest else None
    return verifier.verify_image(endpoint, repo, manifest, kept)


def run_verify(settings: Settings, plan: Plan, deep: bool = False) -> StepRun:
    started = time.monotonic()
    verifier = trust_verifier(settings, settings.target.registry)
    with open_client(settings.target, settings) as client:
        def one(image: PlannedImage) -> report.Case:
            if not image.ok:
                return unplanned_case("verify", image)
            repo, tag = target_of(settings, plan, image)
            return verify_image(client, image, repo, tag, deep, verifier)

        cases = cancel.run_all(one, plan.images, settings.concurrency, lambda image: cancelled_case("verify", image), "verify")
    record = {"images": [{"name": c.name, "ok": c.ok, "problem": c.message, **c.facts} for c in cases],
              "deep": deep, "plan": plan.record()}
    return write_step(settings, "verify", cases, started, record)
