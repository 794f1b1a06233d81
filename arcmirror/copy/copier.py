"""The copy algorithm: one image tree at a time, blobs deduplicated across every image in flight.

For each image: resolve the source tag to a digest (pinned from then on) and the target tag; when
they already match there is nothing to do. Otherwise fetch the manifest tree, and copy it children
first, the tag last, so a tag never points at something incomplete. Blobs go through the run's
:class:`~.blobs.BlobPlacer` (skip, mount, or a verified stream). Signatures, SBOMs and attestations
of the image follow it (:mod:`.referrers`). One failing image never stops the others.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence, TypeVar

from .. import cancel
from ..endpoints.base import IndexesSubjects, MetersManifestReads, Source, Target
from ..oci.digest import is_digest
from ..oci.errors import (
    Cancelled,
    HintedError,
    NotFoundError,
    ProtocolError,
    unexpected,
)
from ..oci.manifest import (
    Manifest,
    blobs_of,
    children_of,
    foreign_layer_hosts,
    is_index,
    platforms_of,
    walk,
)
from ..oci.platform import Platform, filter_index
from ..oci.reference import nearest_tags
from ..oci.referrers import merged_index, schema_tag
from ..registry.errors import RefusedError
from ..registry.retry import RetryPolicy
from .blobs import BlobPlacer
from .referrers import find as find_referrers
from .referrers import has_referrers_api

T = TypeVar("T")

#: How deep a manifest tree may go (an index, a nested index, an image, its referrers).
MAX_DEPTH = 4
#: Blob tasks (HEAD, mount, upload) that may be under way per blob body streaming: an image's blobs are looked
#: at together, while at most ``concurrency`` blob bodies stream at once (``BlobPlacer.streams``).
BLOB_TASKS_PER_IMAGE = 4
#: Images in flight per blob body streaming: while ``concurrency`` bodies stream, as many more images read their
#: manifests and queue their blobs, so the link never waits for an image to start (the 17th of 17 at 16 began
#: only when one ended: a gap of a few round trips before its blobs, measured at the relays of ``invoke bench``).
IMAGES_PER_STREAM = 2


def images_in_flight(concurrency: int, jobs: int) -> int:
    """How many images a copy with ``concurrency`` works on at once."""
    return max(1, min(jobs, concurrency * IMAGES_PER_STREAM))


def requests_in_flight(concurrency: int) -> int:
    """How many requests a copy with ``concurrency`` may have open at once on one registry (images, blobs)."""
    return concurrency * (BLOB_TASKS_PER_IMAGE + IMAGES_PER_STREAM)


@dataclass(frozen=True)
class ImageJob:
    """One image to copy: ``source_repo:source_ref`` -> ``target_repo:target_tag``."""

    name: str
    source_repo: str
    source_ref: str
    target_repo: str
    target_tag: str
    repair: bool = False  # check the whole tree even when the target tag is already in place


@dataclass
class ImageResult:
    job: ImageJob
    status: str = "pending"  # "copied", "up-to-date", "failed"; "would-copy" in a dry run
    source_digest: str | None = None
    digest: str | None = None  # what the target tag points at now
    media_type: str | None = None
    platforms: list[str] = field(default_factory=list)
    rewritten: bool = False  # an index filtered by MIRROR_PLATFORMS: digest differs from the source
    blobs_copied: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    bytes_sent: int = 0
    manifests_pushed: int = 0
    duration: float = 0.0
    error: str | None = None
    hint: str | None = None
    referrers: int = 0  # signatures, SBOMs, attestations found for the image
    referrers_copied: int = 0
    tree: list[str] = field(default_factory=list)  # the manifest digests of the image (index first)
    trust: object | None = None  # the signature verdict (arcmirror.trust.verify.ImageTrust), when verified

    @property
    def ok(self) -> bool:
        return self.status in ("copied", "up-to-date", "would-copy")

    def fail(self, exc: HintedError) -> None:
        if isinstance(exc, Cancelled):
            self.status, exc = "cancelled", cancel.error("this image")  # whichever step of it was stopped
        else:
            self.status = "failed"
        self.error, self.hint = exc.message, exc.hint

    def _count(self, outcome: str, size: int) -> None:
        if outcome == "copied":
            self.blobs_copied += 1
            self.bytes_sent += size
        elif outcome == "mounted":
            self.blobs_mounted += 1
        else:
            self.blobs_skipped += 1


class Progress:
    """What the engine tells the outside world; the default says nothing."""

    def image_started(self, job: ImageJob) -> None: ...

    def image_finished(self, result: ImageResult) -> None: ...

    def bytes_sent(self, job: ImageJob, count: int) -> None: ...


#: ``admit(job, manifest, kept)``: called before anything of an image is written, with the manifest to copy and, for
#: an index rewritten by MIRROR_PLATFORMS, the platform manifests kept (else None); returns the verdict to report,
#: or raises a HintedError (with the verdict as ``trust``) to keep the image out
Admit = Callable[[ImageJob, Manifest, "list[Manifest] | None"], object]


class Copier:
    """Copies images from one endpoint to another; one copier serves a whole run."""

    def __init__(
        self,
        source: Source,
        target: Target,
        *,
        concurrency: int,
        retry: RetryPolicy,
        platforms: Sequence[Platform] = (),
        progress: Progress | None = None,
        sleep: Callable[[float], None] = cancel.sleep,
        dry_run: bool = False,
        repair: bool = False,
        referrers: bool = True,
        referrer_types: Sequence[str] = (),
        admit: Admit | None = None,
    ) -> None:
        self.source = source
        self.target = target
        self.concurrency = concurrency
        self.platforms = tuple(platforms)
        self.progress = progress or Progress()
        self.retry = retry
        self._sleep = sleep
        self.dry_run = dry_run  # read everything, write nothing: count what would be sent
        self.repair = repair  # check every blob under a tag already in place, and send what was lost
        self.referrers = referrers  # copy signatures, SBOMs and attestations too
        self.referrer_types = tuple(referrer_types)
        self.admit = admit  # verifies an image's signatures before anything of it is written
        self._blobs = BlobPlacer(source, target, retry=retry, dry_run=dry_run, sleep=sleep,
                                 on_sent=lambda job, n: self.progress.bytes_sent(job, n))
        self._blob_pool: ThreadPoolExecutor | None = None

    # -- public --------------------------------------------------------------------------------

    def copy_all(self, jobs: Iterable[ImageJob]) -> list[ImageResult]:
        """Copy every job; one failing image never stops the others. Results keep the jobs' order."""
        jobs = list(jobs)
        self._blobs.repositories = sorted({job.target_repo for job in jobs})
        self._blobs.streams = threading.BoundedSemaphore(self.concurrency)
        self._blob_pool = ThreadPoolExecutor(self.concurrency * BLOB_TASKS_PER_IMAGE, thread_name_prefix="blob")
        try:
            return cancel.run_all(self.copy_image, jobs, images_in_flight(self.concurrency, len(jobs)),
                                  self._abandoned, "image")
        finally:
            self._blob_pool.shutdown(wait=not cancel.requested(), cancel_futures=True)
            self._blob_pool = None

    def _abandoned(self, job: ImageJob) -> ImageResult:
        """The result of an image still in flight when a cancellation stopped waiting for it."""
        result = ImageResult(job)
        result.fail(cancel.error("this image"))
        return result

    def copy_image(self, job: ImageJob) -> ImageResult:
        result = ImageResult(job)
        started = time.monotonic()
        self.progress.image_started(job)
        try:
            cancel.check("this image")
            self._copy_image(job, result)
        except HintedError as exc:
            result.fail(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must fail one image, not the run
            result.fail(unexpected(exc))
        result.duration = time.monotonic() - started
        self.progress.image_finished(result)
        return result

    # -- one image -----------------------------------------------------------------------------

    def _copy_image(self, job: ImageJob, result: ImageResult) -> None:
        source_ref = f"{job.source_repo}{'@' if is_digest(job.source_ref) else ':'}{job.source_ref}"
        tags = self._prefetch_tags(job)  # the referrer check's tag list, read while the rest goes on
        manifest: Manifest | None = None
        if is_digest(job.source_ref):
            current = self.target.resolve(job.target_repo, job.target_tag)
            digest = job.source_ref
        elif not (isinstance(self.source, MetersManifestReads) and self.source.meters_manifest_reads()):
            # the target's tag and the source's manifest asked at once (one round trip, not two): the
            # manifest read by tag (GET) whatever the target holds, one request as a HEAD would be; its
            # digest is its own sha256, pinned from here on
            target_tag = self._ahead(self.target.resolve, job.target_repo, job.target_tag)
            manifest = self._source_manifest(job, source_ref)
            digest = manifest.digest
            current = target_tag.result()
        else:
            current = self.target.resolve(job.target_repo, job.target_tag)
            if current is None:  # nothing under that tag in the target: the manifest is read at once
                manifest = self._source_manifest(job, source_ref)
                digest = manifest.digest
            else:  # HEAD: a no-op reads no manifest, so counts no pull
                digest = self.source.resolve(job.source_repo, job.source_ref)
                if digest is None:
                    raise self._not_found(job, source_ref)
        result.source_digest = digest
        if current == digest and not self.platforms and not (self.repair or job.repair):
            # the tag is in place, and a registry takes a manifest only when everything it references is
            # there: the image is complete (a lost blob is what --repair and verify are for)
            if self.admit is not None:
                self._admit(job, result, manifest or self.source.get_manifest(job.source_repo, digest), None)
            result.status, result.digest = "up-to-date", digest
            if self.referrers:
                self._copy_referrers(job, result, lambda: self._tree_digests(job, digest), digest, tags)
                if result.manifests_pushed or result.referrers_copied:
                    result.status = "would-copy" if self.dry_run else "copied"
            return
        if current == digest and not self.platforms:
            # --repair: check the tree from the target itself (no rate-limited GET on the source) and
            # send again whatever was lost since, e.g. a blob deleted by garbage collection
            manifest = self.target.get_manifest(job.target_repo, digest)
        elif manifest is None:
            manifest = self.source.get_manifest(job.source_repo, digest)
        result.media_type = manifest.media_type
        rewritten: dict[str, Manifest] = {}  # nested indexes filtered by MIRROR_PLATFORMS: in no registry yet
        if is_index(manifest) and self.platforms:
            manifest, rewritten = filter_index(manifest, self.platforms, source_ref,
                                               lambda d: self.source.get_manifest(job.source_repo, d))
            result.rewritten = manifest.digest != digest
        result.platforms = platforms_of(manifest)
        result.digest = manifest.digest
        if self.admit is not None:
            kept = [rewritten.get(d) or self.source.get_manifest(job.source_repo, d)
                    for d in children_of(manifest, source_ref)] if result.rewritten else None
            self._admit(job, result, manifest, kept)
        repairing = self.repair or job.repair
        if current != manifest.digest and not repairing and \
                self.target.resolve(job.target_repo, manifest.digest) == manifest.digest:
            # the image is in the target already (next month's tag on an unchanged image, a tag deleted):
            # a registry holds a manifest only with all it references, so the tag is all there is to write
            self._put_tag(job, manifest, result)
            if self.referrers:
                self._copy_referrers(job, result, lambda: self._tree_digests(job, manifest.digest), manifest.digest,
                                     tags)
            result.status = "would-copy" if self.dry_run else "copied"
            return
        self._copy_tree(job, manifest, job.target_tag, result, present=current == manifest.digest, depth=0, path=(),
                        rewritten=rewritten, repairing=repairing)
        if self.referrers:
            subjects = list(result.tree)
            self._copy_referrers(job, result, lambda: subjects, result.tree[0], tags)
        changed = result.manifests_pushed or result.blobs_copied or result.blobs_mounted
        result.status = ("would-copy" if self.dry_run else "copied") if changed else "up-to-date"

    def _admit(self, job: ImageJob, result: ImageResult, manifest: Manifest, kept: list[Manifest] | None) -> None:
        """The signature check before any write; its verdict goes to the report either way."""
        try:
            result.trust = self.admit(job, manifest, kept)
        except HintedError as exc:
            result.trust = getattr(exc, "trust", None)
            raise

    def _put_tag(self, job: ImageJob, manifest: Manifest, result: ImageResult) -> None:
        """Point the target tag at a manifest the target repository holds."""
        cancel.check("this image")
        if not self.dry_run:
            self._put_manifest(job, job.target_tag, manifest, f"{job.source_repo}@{manifest.digest}")
        result.manifests_pushed += 1

    def _source_manifest(self, job: ImageJob, source_ref: str) -> Manifest:
        try:
            return self.source.get_manifest(job.source_repo, job.source_ref)
        except NotFoundError as exc:
            raise self._not_found(job, source_ref, exc) from None

    def _not_found(self, job: ImageJob, source_ref: str, cause: NotFoundError | None = None) -> NotFoundError:
        """The source lacks the image: the nearest tags it has, and what the registry itself said of it, if
        it said more than "not found" (Docker Hub's 401 for a repository that does not exist or is private)."""
        nearest = nearest_tags(job.source_ref, self.source.list_tags(job.source_repo))
        hint = "check SOURCE_DOCKER_TAG and the image name (is this image part of that release?)"
        return NotFoundError(
            (cause.message if cause is not None and cause.hint else f"{source_ref} does not exist on the "
                                                                    f"{self.source.label}")
            + (f" (the nearest tags of {job.source_repo}: {', '.join(nearest)})" if nearest else
               f" ({job.source_repo} has no tags there)"),
            f"{hint}; {cause.hint}" if cause is not None and cause.hint else hint,
        )

    def _tree_digests(self, job: ImageJob, digest: str) -> list[str]:
        """The manifest digests of an image already in the target (read from the target)."""
        manifests, _ = walk(lambda d: self.target.get_manifest(job.target_repo, d), digest, job.target_repo)
        return [m.digest for m in manifests]

    def _copy_tree(self, job: ImageJob, manifest: Manifest, reference: str, result: ImageResult, *,
                   present: bool, depth: int, path: tuple[str, ...], rewritten: Mapping[str, Manifest] = {},
                   repairing: bool = False) -> None:
        """Copy a manifest's blobs and children, then the manifest itself unless the target has it (``present``).

        A child the target holds is complete (a registry takes a manifest only with all it references), and is
        not looked into unless ``repairing``.
        """
        where = f"{job.source_repo}@{manifest.digest}"
        result.tree.append(manifest.digest)
        if manifest.digest in path or depth > MAX_DEPTH:
            raise ProtocolError(f"{where} refers to itself or nests deeper than {MAX_DEPTH} levels")
        if is_index(manifest):
            for child_digest in children_of(manifest, where):
                child_present = self.target.resolve(job.target_repo, child_digest) == child_digest
                if child_present and not repairing and child_digest not in rewritten:
                    result.tree.extend(self._tree_digests(job, child_digest))
                    continue
                child = rewritten.get(child_digest) or (self.target if child_present else self.source).get_manifest(
                    job.target_repo if child_present else job.source_repo, child_digest)
                self._copy_tree(job, child, child_digest, result, present=child_present, depth=depth + 1,
                                path=path + (manifest.digest,), rewritten=rewritten, repairing=repairing)
        else:
            self._copy_blobs(job, blobs_of(manifest, where), result)
        if not present:
            cancel.check("this image")  # the tag, written last, never lands for an unfinished image
            if not self.dry_run:
                self._put_manifest(job, reference, manifest, where)
            result.manifests_pushed += 1

    def _put_manifest(self, job: ImageJob, reference: str, manifest: Manifest, where: str) -> None:
        """Push a manifest whose blobs (or children) are in place; when the registry does not find one of
        them, check them and try once more.

        Another writer linking the same blob into the same repository at that moment (a second run into the
        same target, a CI job pushing the same base layers) can make distribution 2.x, which rewrites the
        link file in place, miss a blob that is there. After a pause, each blob is asked for again (one
        really missing is placed again), then the manifest is pushed a second time; a second refusal is
        reported as it is.
        """
        try:
            self.target.put_manifest(job.target_repo, reference, manifest)
            return
        except RefusedError as exc:
            if "MANIFEST_BLOB_UNKNOWN" not in exc.codes or foreign_layer_hosts(manifest):
                raise  # foreign layers the target does not allow: the answer will not change
        self._sleep(self.retry.delay(1))
        if not is_index(manifest):
            for digest, size in blobs_of(manifest, where):
                if not self.target.has_blob(job.target_repo, digest):
                    self._blobs.forget(job.target_repo, digest)
                    self._blobs.ensure(job, digest, size)
        self.target.put_manifest(job.target_repo, reference, manifest)

    def _ahead(self, read: Callable[..., T], *args) -> Future:
        """``read(*args)`` on the blob pool while this thread goes on (at once, here, when there is no pool)."""
        if self._blob_pool is not None:
            return self._blob_pool.submit(read, *args)
        done: Future = Future()
        try:
            done.set_result(read(*args))
        except BaseException as exc:  # noqa: BLE001 - raised where the result is asked for, as a pool's is
            done.set_exception(exc)
        return done

    def _prefetch_tags(self, job: ImageJob) -> Future | None:
        """Start reading the source repository's tag list (the referrers tag schema, cosign's tags) now, in
        parallel with the image's other requests: one round trip less on the image's path."""
        pool = self._blob_pool
        if not self.referrers or pool is None or has_referrers_api(self.source):
            return None
        return pool.submit(self.source.list_tags, job.source_repo)

    def _copy_referrers(self, job: ImageJob, result: ImageResult, subjects: Callable[[], list[str]],
                        top: str, tags: Future | None) -> None:
        """Copy the referrers of every manifest of the image (and theirs), then list them in the target."""
        found = find_referrers(self.source, job.source_repo, subjects, self.referrer_types,
                               tags=None if tags is None else tags.result(), top=top)
        result.referrers = len(found.referrers) + len(found.cosign)
        for referrer in found.referrers:
            if self.target.resolve(job.target_repo, referrer.digest) != referrer.digest:
                manifest = self.source.get_manifest(job.source_repo, referrer.digest)
                self._copy_tree(job, manifest, referrer.digest, result, present=False, depth=0, path=())
                result.referrers_copied += 1
        by_subject = found.by_subject()
        listed_by_api = by_subject and isinstance(self.target, IndexesSubjects) and \
            self.target.keeps_referrers(job.target_repo, next(iter(by_subject)))
        if not listed_by_api:
            for subject, referrers in by_subject.items():
                tag = schema_tag(subject)
                existing = self.target.get_manifest(job.target_repo, tag) \
                    if self.target.resolve(job.target_repo, tag) else None
                index = merged_index(existing, found.source_indexes.get(subject), referrers)
                if index is not None:
                    cancel.check("this image")
                    if not self.dry_run:
                        self.target.put_manifest(job.target_repo, tag, index)
                    result.manifests_pushed += 1
        for tag, digest in found.cosign.items():
            if self.target.resolve(job.target_repo, tag) != digest:
                manifest = self.source.get_manifest(job.source_repo, digest)
                self._copy_tree(job, manifest, tag, result, present=False, depth=0, path=())
                result.referrers_copied += 1

    def _copy_blobs(self, job: ImageJob, blobs: list[tuple[str, int]], result: ImageResult) -> None:
        pool = self._blob_pool
        if pool is None:  # copy_image called on its own
            outcomes = [self._blobs.ensure(job, d, s) for d, s in blobs]
        else:
            futures = [pool.submit(self._blobs.ensure, job, d, s) for d, s in blobs]
            errors: list[BaseException] = []
            outcomes = []
            for future in futures:
                try:
                    outcomes.append(future.result())
                except BaseException as exc:  # noqa: BLE001 - wait for all, then report the first
                    errors.append(exc)
            if errors:
                raise errors[0]
        for (_, size), outcome in zip(blobs, outcomes):
            result._count(outcome, size)
