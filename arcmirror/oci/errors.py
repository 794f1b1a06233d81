"""The error every failure in arcmirror is: what happened, and what to do about it.

``message`` says what went wrong, naming the registry, image or file; ``hint`` says what to do,
naming the variable to change where there is one. Reports show both; a run never shows a traceback
for a failure it understands. The kinds here are the ones the leaf types raise themselves; the
registry client adds its own (``arcmirror.registry.errors``).
"""

from __future__ import annotations


class HintedError(Exception):
    """A failure with a message and a hint (``status``: the HTTP status behind it, if any)."""

    def __init__(self, message: str, hint: str | None = None, *, status: int | None = None) -> None:
        self.message = message
        self.hint = hint
        self.status = status
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class NotFoundError(HintedError):
    """The manifest, blob, repository or platform does not exist."""


class ProtocolError(HintedError):
    """Something breaks the distribution API or the OCI formats: malformed, oversized, self-referencing."""


class DigestMismatchError(HintedError):
    """Content does not match its digest: a corrupt or tampered source."""


class Cancelled(HintedError):
    """The run was cancelled (SIGINT or SIGTERM) before this work was done."""


def unexpected(exc: BaseException) -> HintedError:
    """A failure arcmirror did not foresee (a bug): it fails one image, never the whole run."""
    return HintedError(f"unexpected error: {exc.__class__.__name__}: {exc}",
                       "this is a bug in arcmirror; please report it with the log")
