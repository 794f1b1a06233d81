"""sha256 digests of bytes and of streams."""

from __future__ import annotations

import hashlib
import re
from typing import Iterable

#: The size of the pieces a blob is read, hashed and sent in.
CHUNK = 1024 * 1024
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(value: str) -> bool:
    return bool(_DIGEST_RE.match(value))


class Sha256:
    """A running sha256 of a stream, with the byte count (``size``) and the ``digest`` so far."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def digest_of(chunks: Iterable[bytes]) -> str:
    """The digest of a stream of chunks, read to its end."""
    hasher = Sha256()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.digest
