"""The OCI distribution API of one registry: manifests, blobs, uploads, mounts, listings, referrers.

:class:`RegistryClient` adds the API's operations to a :class:`~.session.RegistrySession` (which
finds the scheme and auth, retries, and explains failures).
"""

from __future__ import annotations

import functools
import json
import re
import threading
import urllib.parse
from typing import Iterable, Iterator

import requests
import urllib3

from ..oci.digest import sha256_digest
from ..oci.errors import Cancelled, DigestMismatchError, HintedError, NotFoundError, ProtocolError
from ..oci.manifest import MAX_MANIFEST_BYTES, Manifest, foreign_layer_hosts
from ..oci.mediatypes import MANIFEST_MEDIA_TYPES, OCI_INDEX
from ..oci.reference import is_tag, repository_problem
from .auth import repository_scope
from .errors import RefusedError, RepositoryMissing, TransientError, short_reason
from .session import RegistrySession
from .storage import REDIRECTS, Redirects, origin


#: The answers to a HEAD of a manifest that are read further (anything but a retried 429 or 5xx)
_HEAD_ANSWERS = tuple(range(200, 500))


class RegistryClient(RegistrySession):
    """The distribution API of one registry.

    ``label`` ("source registry 127.0.0.1:5000") and ``prefix`` ("SOURCE_DOCKER") make error
    messages name the registry and the variables to change.
    """

    # -- manifests ---------------------------------------------------------------------------

    def head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest ``reference`` resolves to, or None when it does not exist (HEAD: not rate-limited).

        A HEAD has no body to say why it was refused: a refusal is asked again with a GET, whose answer decides
        and explains (Artifactory answers a HEAD of a manifest that does not exist 403, RTFACT-13797, which
        go-containerregistry's pusher takes for "absent"; Harbor's 400 or 401 say what is wrong in the body).
        So does a missing ``Docker-Content-Digest``.
        """
        response = self.request(
            "HEAD", f"/v2/{repository}/manifests/{reference}",
            scopes=[repository_scope(repository, "pull")], what=f"manifest {repository}:{reference}",
            ok=_HEAD_ANSWERS, headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)},
        )
        response.close()
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        if response.status_code != 200 or not digest:
            try:
                return self.get_manifest(repository, reference).digest
            except NotFoundError:
                return None
        return digest

    def get_manifest(self, repository: str, reference: str, *, scopes: Iterable[str] | None = None) -> Manifest:
        """Fetch a manifest byte for byte, checked against its digest, at most 4 MiB."""
        what = f"manifest {repository}{'@' if reference.startswith('sha256:') else ':'}{reference}"
        response = self.request(
            "GET", f"/v2/{repository}/manifests/{reference}",
            scopes=scopes or [repository_scope(repository, "pull")], what=what,
            headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}, stream=True,
        )
        with response:
            data = _read_capped(response, MAX_MANIFEST_BYTES, f"{what} on the {self.label}")
        content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        # by digest: the content must hash to it; by tag: to the digest the registry says it serves, if it does
        claimed = response.headers.get("Docker-Content-Digest", "")
        digest = reference if reference.startswith("sha256:") else \
            claimed if claimed.startswith("sha256:") else sha256_digest(data)
        return Manifest.parse(data, digest, f"{what} on the {self.label}", content_type)

    def referrers(self, repository: str, digest: str) -> list[dict] | None:
        """The OCI referrers API's list for ``digest``, or None when the registry has no such API.

        Any refusal of a registry that could read the image is "no API": 404 (distribution), 400 and 405, and
        401/403, which Harbor <= 2.7 answers for a route it does not know (regclient#384); Quay answers 400 for
        a subject it never saw (``endpoints/v2/referrers.py``), which is an empty list there, and no list here.
        """
        response = self.request(
            "GET", f"/v2/{repository}/referrers/{digest}", scopes=[repository_scope(repository, "pull")],
            what=f"referrers of {repository}@{digest}", ok=(200, 400, 401, 403, 404, 405),
            headers={"Accept": OCI_INDEX}, stream=True,
        )
        with response:
            content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
            if response.status_code != 200 or content_type != OCI_INDEX:
                return None
            try:
                body = json.loads(_read_capped(response, MAX_MANIFEST_BYTES, f"referrers of {repository}@{digest}"))
                entries = body.get("manifests") or []
            except (ValueError, AttributeError):
                raise ProtocolError(f"the {self.label} answered an unreadable referrers list for {digest}") from None
        if not all(isinstance(e, dict) and isinstance(e.get("digest"), str) for e in entries):
            raise ProtocolError(f"the {self.label} answered an invalid referrers list for {digest}")
        return entries

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> str:
        what = f"manifest {repository}{'@' if reference.startswith('sha256:') else ':'}{reference}"
        try:
            response = self.request(
                "PUT", f"/v2/{repository}/manifests/{reference}",
                scopes=[repository_scope(repository, "pull", "push")], what=what, ok=(200, 201, 202),
                data=manifest.data, headers={"Content-Type": manifest.media_type},
            )
        except RefusedError as exc:
            hosts = foreign_layer_hosts(manifest)
            if "MANIFEST_BLOB_UNKNOWN" in exc.codes and hosts:
                exc.hint = (f"the image has foreign (non-distributable) layers, kept at {', '.join(hosts)}, and the "
                            f"{self.label} does not allow their URLs: the target must allow them (distribution: "
                            "validation.manifests.urls.allow), or the image cannot be mirrored as is")
            raise
        response.close()
        self.subject_indexed = self.subject_indexed or bool(response.headers.get("OCI-Subject"))
        returned = response.headers.get("Docker-Content-Digest")
        if returned and returned != manifest.digest:
            raise DigestMismatchError(
                f"the {self.label} stored {what} under digest {returned}, not {manifest.digest}",
                "the registry rewrote the manifest; use a registry that stores manifests unchanged",
            )
        return manifest.digest

    # -- blobs -------------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        response = self.request(
            "HEAD", f"/v2/{repository}/blobs/{digest}", scopes=[repository_scope(repository, "pull")],
            what=f"blob {digest} in {repository}", ok=(200, 404),
        )
        response.close()
        return response.status_code == 200

    def open_blob(self, repository: str, digest: str, offset: int = 0) -> requests.Response:
        """A streaming GET of a blob; the caller closes it.

        A redirect to object storage is followed by :class:`~.storage.Redirects`: without our
        credentials, and so that a failure there names the storage host, never the signed link.
        ``response.storage`` is that host's origin (None when the registry served the blob itself).
        """
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        scope = repository_scope(repository, "pull")
        response = self.request(
            "GET", f"/v2/{repository}/blobs/{digest}", scopes=[scope], what=f"blob {digest} in {repository}",
            ok=(200, 206, *REDIRECTS), stream=True, headers=dict(headers), allow_redirects=False,
        )
        response.storage = None  # type: ignore[attr-defined]
        if response.status_code in REDIRECTS:
            def same_origin_auth(url: str) -> dict[str, str]:
                if origin(url) != origin(self.base_url):
                    return {}  # another host: no credentials of ours go there
                auth = self._authorization(frozenset([scope]))
                return {"Authorization": auth} if auth else {}

            response = self._redirects.follow(response, digest, headers, same_origin_auth)
            response.storage = origin(response.url)  # type: ignore[attr-defined]
        return response

    @functools.cached_property
    def _redirects(self) -> Redirects:
        return Redirects(self._session, label=self.label, prefix=self.prefix, registry=self.host,
                         ca_bundle=self._ca_bundle, timeout=self.timeout)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # made here, not on first use: the first mounts come from many threads at once, and
        # functools.cached_property takes no lock on Python 3.12+
        self._mounts = MountSources()

    def start_upload(self, repository: str, *, mount: str | None = None, mount_from: str | None = None) -> str | None:
        """Start a blob upload, or mount ``mount`` from ``mount_from``. Returns the upload URL, or None if mounted.

        A mount the registry refuses outright (Harbor answers 401 or 400 when it will not read ``from``,
        go-containerregistry#1404, #1609) is asked again as a plain upload, as go-containerregistry's
        ``initiateUpload`` does, and mounts from that repository are not asked for again in this run.
        A POST that gets no answer at all makes the client ask why (:meth:`_why_no_upload`).
        """
        scopes = [repository_scope(repository, "pull", "push")]
        params = {}
        first = mount and mount_from and self._mounts.ask(mount_from)
        if mount and mount_from and not self._mounts.refused(mount_from):
            scopes.append(repository_scope(mount_from, "pull"))
            params = {"mount": mount, "from": mount_from}
        try:
            response = self.request(
                "POST", f"/v2/{repository}/blobs/uploads/", scopes=scopes, what=f"a blob upload to {repository}",
                ok=(201, 202), params=params, data=b"", diagnose=lambda: self._why_no_upload(repository),
            )
        except (TransientError, Cancelled, RepositoryMissing):
            raise  # not about the mount: the upload would meet the same
        except HintedError:
            if not params:
                raise
            self._mounts.refuse(mount_from)
            response = None
        finally:
            if first:  # whatever the answer, the mounts waiting for it go on (a refused one as an upload)
                self._mounts.answered(mount_from)
        if response is None:
            return self.start_upload(repository)
        response.close()
        if response.status_code == 201 and params:
            return None
        location = response.headers.get("Location")
        if not location:
            raise ProtocolError(f"the {self.label} started an upload to {repository} without a Location")
        return urllib.parse.urljoin(response.url, location)

    def _why_no_upload(self, repository: str) -> None:
        """The registry dropped an upload POST without an answer: ask it about the repository.

        Amazon ECR does that for a repository that does not exist, and answers anything else with 404
        NAME_UNKNOWN "The repository with name ... does not exist" (aws/containers-roadmap#1970): that answer says
        what to do, and no retry can help. A bare NAME_UNKNOWN is not enough (distribution says it of every
        repository not pushed yet, and a drop may be the network's): the upload is retried as before.
        """
        try:
            response = self.request("GET", f"/v2/{repository}/tags/list", scopes=[repository_scope(repository, "pull")],
                                    what=f"tags of {repository}", ok=(200, 404), retry=False)
        except HintedError:
            return  # the registry cannot be asked either: keep retrying the upload
        if response.status_code != 404:
            response.close()
            return
        explained = self._explain(response, "POST", f"a blob upload to {repository}",
                                  [repository_scope(repository, "pull", "push")])
        response.close()
        if isinstance(explained, RepositoryMissing) and explained.certain:
            raise RepositoryMissing(f"{explained.message}; it closed the connection of an upload into it without "
                                    "an answer", explained.hint, status=explained.status, certain=explained.certain)

    def finish_upload(self, repository: str, location: str, digest: str, size: int, body: Iterable[bytes] | bytes) -> None:
        """PUT the whole blob (monolithic upload) to ``location``; the body is streamed, not retried here."""
        parts = urllib.parse.urlsplit(location)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + [("digest", digest)]
        url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
        response = self.request(
            "PUT", url, scopes=[repository_scope(repository, "pull", "push")],
            what=f"{'empty blob' if size == 0 else 'blob'} {digest} upload to {repository}", ok=(201, 204), retry=False,
            data=body, headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        response.close()

    def cancel_upload(self, location: str, repository: str) -> None:
        try:
            self.request("DELETE", location, scopes=[repository_scope(repository, "pull", "push")],
                         what="an upload cancel", ok=(200, 202, 204, 404), retry=False).close()
        except HintedError:
            pass  # the registry expires abandoned uploads itself

    # -- listings ----------------------------------------------------------------------------

    def _paginate(self, path: str, key: str, scopes: list[str], what: str) -> Iterator[str]:
        url: str | None = path
        seen: set[str] = set()
        while url:
            if url in seen:
                raise ProtocolError(f"the {self.label} sent a pagination loop while listing {what}")
            seen.add(url)
            response = self.request("GET", url, scopes=scopes, what=what)
            try:
                items = response.json().get(key) or []
            except (ValueError, AttributeError):
                raise ProtocolError(f"the {self.label} sent an unreadable list of {what}") from None
            if not isinstance(items, list):
                raise ProtocolError(f"the {self.label} sent a list of {what} that is not a list")
            yield from items
            url = _next_link(response, self.base_url, self.label)

    def list_tags(self, repository: str, *, missing_ok: bool = False) -> list[str]:
        """The tags of a repository; with ``missing_ok``, none for a repository that does not exist.

        What is listed but is not a tag is left out, as containers/image does: JSON ``null`` (Nexus 3.58,
        containers/skopeo#2409) and digests (Artifactory lists its images' child manifests,
        containers/skopeo#2346). Pages are followed through ``Link`` as given (Quay's opaque ``next_page``).
        """
        try:
            listed = self._paginate(f"/v2/{repository}/tags/list", "tags", [repository_scope(repository, "pull")],
                                    f"tags of {repository}")
            return list(dict.fromkeys(tag for tag in listed if is_tag(tag)))
        except NotFoundError:
            if missing_ok:
                return []
            raise

    def catalog(self) -> list[str]:
        listed = self._paginate("/v2/_catalog", "repositories", ["registry:catalog:*"], "repositories")
        return list(dict.fromkeys(name for name in listed if isinstance(name, str) and name
                                  and repository_problem(name) is None))


def _next_link(response: requests.Response, base_url: str, label: str) -> str | None:
    link = response.links.get("next", {}).get("url")
    if not link:
        return None
    absolute = urllib.parse.urljoin(response.url, link)
    if urllib.parse.urlsplit(absolute).netloc != urllib.parse.urlsplit(base_url).netloc:
        raise ProtocolError(f"the {label} sent a pagination link to another host ({absolute}); refusing to follow it")
    return absolute


def _read_capped(response: requests.Response, cap: int, what: str) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and re.fullmatch(r"[0-9]{1,18}", declared) and int(declared) > cap:
        raise ProtocolError(f"{what} is {int(declared)} bytes, more than the {cap}-byte limit for a manifest")
    buf = bytearray()
    try:
        for chunk in response.iter_content(64 * 1024):
            buf += chunk
            if len(buf) > cap:
                raise ProtocolError(f"{what} is more than the {cap}-byte limit for a manifest")
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
        raise TransientError(f"reading {what} failed: {short_reason(exc)}") from None
    return bytes(buf)


class MountSources:
    """The repositories a registry was asked to mount blobs from, in this run: the first mount from each is
    asked alone and the others wait for its answer, so a refusal (Harbor's 401 for a repository it will not
    read) is met once, not by every mount already under way; a refused one is not asked again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._asked: dict[str, threading.Event] = {}
        self._refused: set[str] = set()

    def ask(self, source: str) -> bool:
        """True for the first mount from ``source`` (its caller must call :meth:`answered`); later callers
        wait here until that first one was answered."""
        with self._lock:
            event = self._asked.get(source)
            if event is None:
                self._asked[source] = threading.Event()
                return True
        event.wait()
        return False

    def answered(self, source: str) -> None:
        self._asked[source].set()

    def refuse(self, source: str) -> None:
        with self._lock:
            self._refused.add(source)

    def refused(self, source: str) -> bool:
        with self._lock:
            return source in self._refused
