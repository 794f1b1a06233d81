"""Blobs: making one present in a target repository, once, checked as it streams.

A blob already in the target repository is skipped (HEAD); one that another target repository
holds is mounted; else it streams from the source to the target through :class:`VerifyingBody`,
which refuses content that does not match its digest before the upload can complete. A blob
wanted by several images at once moves once: the :class:`BlobPlacer`'s ledger makes the others wait,
then skip or mount it.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future
from typing import Callable, Iterator, Sequence

from .. import cancel
from ..endpoints.base import CrossRepositoryMount, Source, Target
from ..oci.digest import Sha256
from ..oci.errors import DigestMismatchError
from ..registry.errors import TransientError
from ..registry.retry import RetryPolicy

#: A dry run looks for blobs at least this big in sibling repositories of the target (for its estimate).
PROBE_MIN_SIZE = 32 * 1024
PROBE_NEIGHBOURS = 2
#: A blob smaller than this takes no body slot (``streams``): its upload is two round trips, not bandwidth, and
#: 17 configs of next month's release waiting behind 16 slots were a round trip of their own at 25 ms
SMALL_BODY = 1024 * 1024


class VerifyingBody:
    """Forwards a blob's chunks while checking its size and sha256.

    The last chunk is held back until the whole digest is known: when the content does not match,
    the body raises before the upload can complete, so the target never stores it under that digest.
    """

    def __init__(self, chunks: Iterator[bytes], digest: str, size: int, on_chunk: Callable[[int], None]) -> None:
        self._chunks = chunks
        self._digest = digest
        self._size = size
        self._on_chunk = on_chunk
        self.sent = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        hasher = Sha256()
        held: bytes | None = None
        for chunk in self._chunks:
            cancel.check()  # raised before the last chunk is sent: the upload never completes
            if held is not None:
                yield held
                self._sent(len(held))
            hasher.update(chunk)
            if hasher.size > self._size:
                raise DigestMismatchError(f"blob {self._digest} is longer than its declared {self._size} bytes: refused")
            held = chunk
        if hasher.size != self._size:
            raise DigestMismatchError(f"blob {self._digest} ended after {hasher.size} of its {self._size} bytes")
        got = hasher.digest
        if got != self._digest:
            raise DigestMismatchError(
                f"blob {self._digest} from the source has content whose digest is {got}: refused",
                "the source is corrupt or tampered with; nothing was written to the target under that digest",
            )
        if held is not None:
            yield held
            self._sent(len(held))

    def _sent(self, n: int) -> None:
        self.sent += n
        self._on_chunk(n)


class BlobPlacer:
    """Puts blobs into target repositories for one run; shared by every image of the run.

    ``located`` remembers which target repositories hold which blobs (for mounts and skips);
    ``inflight`` holds the transfers under way, so a blob several images need moves once; ``fresh``
    are the blobs this run streamed into the target (new to it). ``repositories`` are the run's target
    repositories, where a missing layer is looked for first.

    Round trips per blob, as few as the protocol allows: a blob already placed in this run as new
    to the target is mounted from where it went, without asking first whether this repository has it
    (it cannot, being new; a mount answers "created" either way). Any other blob is asked for (HEAD);
    when missing, one POST both tries to mount it from a sibling repository of the run (a layer an
    earlier month put there) and, when that sibling has none, opens the upload that the PUT fills.
    """

    def __init__(self, source: Source, target: Target, *, retry: RetryPolicy, dry_run: bool,
                 repositories: Sequence[str] = (), on_sent: Callable[[object, int], None] = lambda job, n: None,
                 sleep: Callable[[float], None] = cancel.sleep) -> None:
        self.source = source
        self.target = target
        self.retry = retry
        self.dry_run = dry_run
        self.repositories = list(repositories)
        self._on_sent = on_sent
        self._sleep = sleep
        self._lock = threading.Lock()
        self.located: dict[str, set[str]] = {}
        self.inflight: dict[str, Future] = {}  # a blob's first placement in the target, by digest
        self.placing: dict[tuple[str, str], Future] = {}  # every placement under way, by digest and repository
        self.fresh: set[str] = set()
        self.streams = threading.BoundedSemaphore(1 << 16)  # blob bodies (not small) in flight at once, set by the copier

    def ensure(self, job, digest: str, size: int) -> str:
        """Make ``digest`` present in the target repository; returns "skipped", "mounted" or "copied"."""
        repo = job.target_repo
        while True:
            cancel.check("this image")
            with self._lock:
                holders = self.located.setdefault(digest, set())
                if repo in holders:
                    return "skipped"
                # wait for the same blob going into the same repository (another tag of the image), and for its
                # first placement anywhere (what it reads is not read twice); once one repository holds it, the
                # others place it at once, each in its own round trips (16 mounts of a base layer together)
                waiting_for = self.placing.get((digest, repo)) or (None if holders else self.inflight.get(digest))
                if waiting_for is None:
                    mine: Future = Future()
                    self.placing[(digest, repo)] = mine
                    first = not holders and digest not in self.inflight
                    if first:
                        self.inflight[digest] = mine
            if waiting_for is None:
                break
            try:
                waiting_for.result()
            except BaseException:  # noqa: BLE001 - the other transfer failed: try it ourselves
                pass
        try:
            outcome = self._place(job, digest, size, holders)
            with self._lock:
                holders.add(repo)
                if outcome == "copied":
                    self.fresh.add(digest)
            mine.set_result(outcome)
            return outcome
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        finally:
            with self._lock:
                self.placing.pop((digest, repo), None)
                if first:
                    self.inflight.pop(digest, None)

    def forget(self, repository: str, digest: str) -> None:
        """Stop taking ``digest`` for present in ``repository`` (the registry said it is not there)."""
        with self._lock:
            self.located.get(digest, set()).discard(repository)
            self.fresh.discard(digest)

    def _place(self, job, digest: str, size: int, holders: set[str]) -> str:
        repo = job.target_repo
        elsewhere = sorted(holders - {repo})
        mountable = isinstance(self.target, CrossRepositoryMount)
        if mountable and elsewhere and digest in self.fresh and not self.dry_run:
            return "mounted" if self._stream(job, digest, size, mount_from=elsewhere[0]) else "copied"
        if self.target.has_blob(repo, digest):
            return "skipped"
        if self.dry_run:
            return "mounted" if elsewhere or self._probe_neighbours(repo, digest, size) else "copied"
        candidate = (elsewhere or [r for r in self.repositories if r != repo] or [None])[0] if mountable else None
        return "mounted" if self._stream(job, digest, size, mount_from=candidate) else "copied"

    def _probe_neighbours(self, repo: str, digest: str, size: int) -> list[str]:
        """For a dry run's estimate: target repositories of this run's other images that hold the blob."""
        if size < PROBE_MIN_SIZE:
            return []
        neighbours = [r for r in self.repositories if r != repo][:PROBE_NEIGHBOURS]
        return [r for r in neighbours if self.target.has_blob(r, digest)][:1]

    def _stream(self, job, digest: str, size: int, mount_from: str | None = None) -> bool:
        """Upload the blob from the source (verified as it flows), or mount it from ``mount_from`` when the
        target can; True when it was mounted (the source was not read)."""
        attempts = self.retry.attempts
        for attempt in range(1, attempts + 1):
            body = VerifyingBody(
                self.source.iter_blob(job.source_repo, digest, size), digest, size,
                lambda n: self._on_sent(job, n),
            )
            try:
                with self.streams if size >= SMALL_BODY else contextlib.nullcontext():
                    if mount_from is not None and isinstance(self.target, CrossRepositoryMount):
                        return self.target.mount_or_put_blob(job.target_repo, digest, size, body, mount_from)
                    self.target.put_blob(job.target_repo, digest, size, body)
                    return False
            except TransientError as exc:
                if attempt == attempts:
                    raise TransientError(
                        f"copying blob {digest} ({size} bytes) failed {attempts} times; last: {exc.message}",
                        exc.hint or "run again: blobs already copied are not sent again",
                    ) from None
                self._sleep(self.retry.delay(attempt, exc.retry_after))
        raise AssertionError("unreachable")
