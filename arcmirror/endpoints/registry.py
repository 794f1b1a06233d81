"""A registry as a copy endpoint (source and target, with every optional capability), over :class:`RegistryClient`."""

from __future__ import annotations

import threading
from typing import Iterable, Iterator

import requests
import urllib3

from .. import cancel
from ..oci.digest import CHUNK
from ..oci.manifest import Manifest
from ..oci.reference import DOCKER_HUB_ALIASES
from ..registry.client import RegistryClient
from ..registry.errors import TransientError, short_reason

#: How many times one blob download may be resumed with a Range request after a dropped connection.
RESUMES = 5


class SourceReadError(TransientError):
    """Reading the source blob failed mid-stream (kept apart from target errors)."""


class RegistryEndpoint:
    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self.label = client.label
        self.has_referrers_api: bool | None = None  # unknown until the first answer
        self._probe = threading.Lock()

    def resolve(self, repository: str, reference: str) -> str | None:
        return self.client.head_manifest(repository, reference)

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        return self.client.get_manifest(repository, reference)

    def meters_manifest_reads(self) -> bool:
        """Docker Hub: "a pull is defined as ... a GET request to the registry URL path /v2/*/manifests/*";
        "HEAD requests aren't counted" (docs.docker.com/docker-hub/usage/pulls); regclient's regsync HEADs first
        for it. Known from the host too: the choice is made before the registry has answered anything."""
        return self.client.product == "Docker Hub" or self.client.host in DOCKER_HUB_ALIASES.values()

    def iter_blob(self, repository: str, digest: str, size: int) -> Iterator[bytes]:
        """Stream a blob; a connection dropped mid-way is resumed with ``Range`` from where it stopped.

        Each resume asks the registry again: a storage redirect gets a fresh signed link.
        """
        offset = 0
        served_by = f"the {self.label}"
        for resume in range(RESUMES + 1):
            response = self.client.open_blob(repository, digest, offset)
            if response.storage:
                served_by = f"{response.storage} (where the {self.label} sends its downloads)"
            try:
                if offset and (response.status_code != 206 or not
                               response.headers.get("Content-Range", "").startswith(f"bytes {offset}-")):
                    raise SourceReadError(
                        f"the {self.label} cannot resume blob {digest} at byte {offset} (no Range support)",
                        "the blob is sent again from its start",
                    )
                failure = None
                start = offset
                try:
                    # read1: whatever has arrived, up to CHUNK; a dropped connection then loses nothing
                    # already received (read(CHUNK) would discard a partly filled chunk)
                    while chunk := response.raw.read1(CHUNK, decode_content=False):
                        offset += len(chunk)
                        yield chunk
                except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                    failure = short_reason(exc, response.url)
                if offset >= size:
                    return  # complete (or longer than declared: the verifying body refuses that)
                failure = failure or f"the connection closed after {offset} of {size} bytes"
                if offset == start and resume:
                    break  # two reads in a row without a byte: resuming again would only wait again
            finally:
                response.close()
        raise SourceReadError(f"reading blob {digest} from {served_by} failed {resume + 1} times; last: {failure}")

    def list_tags(self, repository: str) -> list[str]:
        return self.client.list_tags(repository, missing_ok=True)

    def referrers(self, repository: str, digest: str) -> list[dict] | None:
        if self.has_referrers_api is None:
            with self._probe:  # one request finds out whether the API exists; the others wait for it
                if self.has_referrers_api is None:
                    entries = self.client.referrers(repository, digest)
                    self.has_referrers_api = entries is not None
                    return entries
        return self.client.referrers(repository, digest) if self.has_referrers_api else None

    def keeps_referrers(self, repository: str, subject: str) -> bool:
        """Whether the registry lists referrers itself: it answered a manifest with a ``subject`` with
        ``OCI-Subject``, or (asked once a run, about a subject it holds) its referrers API answers.

        Not every registry with the API sends the header (Harbor 2.8, Quay 3.12), and a rerun pushes nothing
        that would bring it: without the question, the tag-schema index would be written beside the API.
        """
        return self.client.subject_indexed or self.referrers(repository, subject) is not None

    def has_blob(self, repository: str, digest: str) -> bool:
        return self.client.has_blob(repository, digest)

    def mount_or_put_blob(self, repository: str, digest: str, size: int, body: Iterable[bytes],
                          from_repository: str) -> bool:
        """One POST asks to mount; when the registry cannot, the upload it opened instead takes the PUT."""
        location = self.client.start_upload(repository, mount=digest, mount_from=from_repository)
        if location is None:
            return True
        self._upload(repository, location, digest, size, body)
        return False

    def put_blob(self, repository: str, digest: str, size: int, body: Iterable[bytes]) -> None:
        location = self.client.start_upload(repository)
        assert location is not None
        self._upload(repository, location, digest, size, body)

    def _upload(self, repository: str, location: str, digest: str, size: int, body: Iterable[bytes]) -> None:
        try:
            self.client.finish_upload(repository, location, digest, size, body if size else b"")
        except BaseException:
            if not cancel.requested():  # a cancelled run does not wait for more requests; the registry expires it
                self.client.cancel_upload(location, repository)
            raise

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        self.client.put_manifest(repository, reference, manifest)

