"""Registry errors: each says what went wrong and what to do about it."""

from __future__ import annotations


class RegistryError(Exception):
    """A registry operation failed.

    ``message`` says what happened, ``hint`` what to do next; ``transient`` marks errors
    worth retrying (connection trouble, 5xx, 429).
    """

    transient = False

    def __init__(self, message: str, hint: str | None = None, *, status: int | None = None) -> None:
        self.message = message
        self.hint = hint
        self.status = status
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class TransientError(RegistryError):
    """Worth retrying: a dropped connection, a timeout, 5xx, 429 (``retry_after``: the server's wish, seconds)."""

    transient = True

    def __init__(self, message: str, hint: str | None = None, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, hint, status=status)
        self.retry_after = retry_after


class AuthError(RegistryError):
    """Credentials were refused or are needed."""


class NotFoundError(RegistryError):
    """The manifest, blob or repository does not exist."""


class TLSError(RegistryError):
    """The TLS handshake failed (unknown CA, wrong host name, plain HTTP server)."""


class ConnectError(TransientError):
    """The registry could not be reached."""


class DigestMismatchError(RegistryError):
    """Content does not match its digest: a corrupt or malicious source."""


class ProtocolError(RegistryError):
    """The registry answered something that breaks the distribution API."""
