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


class RefusedError(RegistryError):
    """The registry refused a request with an error code that says a retry would get the same answer.

    ``codes`` are the distribution API error codes of the answer (``MANIFEST_BLOB_UNKNOWN``, ...).
    """

    def __init__(self, message: str, hint: str | None = None, *, status: int | None = None,
                 codes: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint, status=status)
        self.codes = codes


class Cancelled(RegistryError):
    """The run was cancelled (SIGINT or SIGTERM) before this work was done."""


#: Error codes of the distribution API whose answer will not change on a retry, whatever the HTTP status
#: (distribution answers 500 with MANIFEST_BLOB_UNKNOWN for foreign layers whose URLs it does not allow).
#: UNKNOWN, UNAVAILABLE, TOOMANYREQUESTS and BLOB_UPLOAD_UNKNOWN (an upload to start again) may change.
PERMANENT_CODES = frozenset({
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN", "MANIFEST_UNVERIFIED", "NAME_INVALID", "NAME_UNKNOWN", "SIZE_INVALID", "TAG_INVALID",
    "UNAUTHORIZED", "DENIED", "UNSUPPORTED",
})

#: What to do about a refusal, by error code; ``{prefix}`` names the variables of that registry.
CODE_HINTS = {
    "MANIFEST_BLOB_UNKNOWN": "the registry does not find a blob the manifest refers to: run again (only what is "
                             "missing is sent); if it persists, the registry refuses that blob",
    "MANIFEST_INVALID": "the registry refuses this manifest as it is (its media type or its content): "
                        "use a registry that accepts OCI and Docker schema 2 manifests",
    "MANIFEST_UNVERIFIED": "the registry refuses this manifest as it is: use a registry that accepts it",
    "NAME_INVALID": "the registry refuses the repository name: check {prefix}_REPOSITORY",
    "NAME_UNKNOWN": "the repository does not exist there: check {prefix}_REPOSITORY and the image names",
    "TAG_INVALID": "the registry refuses the tag: check {prefix}_TAG",
    "DENIED": "check {prefix}_USERNAME and {prefix}_PASSWORD and that this user has the rights it needs there",
    "UNAUTHORIZED": "check {prefix}_USERNAME and {prefix}_PASSWORD",
    "UNSUPPORTED": "the registry does not support this operation",
    "DIGEST_INVALID": "the registry computed another digest for what was sent: run again; if it persists, "
                      "something between here and the registry changes the data",
    "SIZE_INVALID": "the registry received another size than was sent: run again; if it persists, "
                    "something between here and the registry changes the data",
}
