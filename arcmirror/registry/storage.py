"""Blob downloads that a registry redirects to object storage (MCR, ACR, ECR, GCR, Docker Hub all do).

The registry answers a blob GET with ``307 Location: https://<storage host>/...?<signed query>``. The
link carries a short-lived credential (an Azure SAS ``sig=``, an S3 ``X-Amz-Signature=``), so:

* it is followed here by hand, never by ``requests``: no ``Authorization`` goes to another host, and
  no text about it leaves this module but its **origin** (scheme, host, port): not its path, not its
  query, whatever fails (exception texts are cleaned of the URL before they are used);
* a failure at the storage host says so, names that host and what to do (the firewall or proxy,
  the clock for a refused signature, ``*_CA_BUNDLE`` for TLS), and is raised so that the caller asks
  the *registry* again, for a fresh link, rather than retrying a link that may have expired;
* a ``Location`` that is not an absolute or relative http(s) URL is a protocol error of the
  registry, not a transient failure.
"""

from __future__ import annotations

import urllib.parse
from typing import Callable

import requests

from .. import cancel
from ..oci.errors import HintedError, NotFoundError, ProtocolError
from .errors import RegistryError, TransientError, short_reason, unresolvable

REDIRECTS = (301, 302, 303, 307, 308)
MAX_HOPS = 5


class StorageUnreachable(TransientError):
    """The storage host a registry redirected to could not be reached (worth a fresh link, later)."""


class StorageRefused(TransientError):
    """The storage host refused the signed link (expired, or this machine's clock is off)."""


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: all of it that may be shown."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def malformed_location(label: str, what: str, prefix: str) -> ProtocolError:
    """A redirect whose ``Location`` is not an http(s) URL: the registry's error; the text is never shown."""
    return ProtocolError(
        f"the {label} answered {what} with a redirect that is not an http(s) URL (not shown: it may hold a "
        "signed credential)",
        f"the registry at {prefix}_REGISTRY sent a malformed Location; report it to its operator",
    )


def firewall_hint(registry: str, storage_host: str) -> str:
    """Which hosts to allow, for the registries whose storage hosts are known."""
    if registry.endswith("mcr.microsoft.com") or storage_host.endswith(".data.mcr.microsoft.com"):
        return " (MCR needs *.data.mcr.microsoft.com)"
    if registry.endswith(".azurecr.io"):
        return (f" (ACR needs {registry.split('.')[0]}.<region>.data.azurecr.io, or its storage account "
                "*.blob.core.windows.net when it has no dedicated data endpoint)")
    return ""


class Redirects:
    """Follows a registry's blob redirect for one client: ``get(response, ...)`` -> the storage's response."""

    def __init__(self, session: requests.Session, *, label: str, prefix: str, registry: str,
                 ca_bundle: str | None, timeout: tuple[float, float]) -> None:
        self._session = session
        self.label, self.prefix, self.registry = label, prefix, registry
        self._verify: bool | str = ca_bundle or True  # *_INSECURE is about the registry, not its storage
        self._timeout = timeout

    def follow(self, response: requests.Response, digest: str, headers: dict[str, str],
               keep_auth: Callable[[str], dict[str, str]]) -> requests.Response:
        """The final response of a redirected blob download (200 or 206), read by the caller."""
        what = f"the download of blob {digest}"
        for _ in range(MAX_HOPS):
            if response.status_code not in REDIRECTS:
                return response
            location = response.headers.get("Location") or ""
            base = response.url
            response.close()
            target = self._target(location, base, what)
            response = self._get(target, what, {**headers, **keep_auth(target)})
        raise ProtocolError(f"the {self.label} sent {what} through more than {MAX_HOPS} redirects: refused")

    def _target(self, location: str, base: str, what: str) -> str:
        try:
            target = urllib.parse.urljoin(base, location) if location else ""
            parts = urllib.parse.urlsplit(target)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
        except ValueError:  # a malformed host or port
            valid = False
        if not valid:
            raise malformed_location(self.label, what, self.prefix)
        return target

    def _get(self, url: str, what: str, headers: dict[str, str]) -> requests.Response:
        where = origin(url)
        lead = f"the {self.label} redirected {what} to {where}"
        cancel.check()
        try:
            response = self._session.request("GET", url, headers=headers, stream=True, timeout=self._timeout,
                                             verify=self._verify, allow_redirects=False)
        except requests.exceptions.RequestException as exc:
            cancel.check()
            raise self._failure(exc, url, lead) from None
        if response.status_code in (200, 206) or response.status_code in REDIRECTS:
            return response
        status = response.status_code
        response.close()
        if status in (401, 403):
            raise StorageRefused(
                f"{lead}, which refused the signed link (HTTP {status}): it expired, or this machine's clock is off",
                "check this machine's clock (NTP); a rerun asks the registry for a new link", status=status)
        if status == 404:
            raise NotFoundError(f"{lead}, which has no such blob (HTTP 404)",
                                "the registry's storage is inconsistent; report it to its operator", status=status)
        if status == 429 or status >= 500:
            raise StorageUnreachable(f"{lead}, which answered HTTP {status}", "run again later", status=status)
        raise ProtocolError(f"{lead}, which answered HTTP {status}", status=status)

    def _failure(self, exc: requests.exceptions.RequestException, url: str, lead: str) -> HintedError:
        reason = short_reason(exc, url)
        host = urllib.parse.urlsplit(url).hostname or ""
        allow = f"allow {origin(url)} in the firewall or proxy of this machine{firewall_hint(self.registry, host)}"
        if isinstance(exc, requests.exceptions.SSLError):
            return RegistryError(
                f"{lead}, and TLS with that host failed: {reason}",
                f"if a proxy inspects TLS, or that host has a private CA, set {self.prefix}_CA_BUNDLE to a PEM file "
                f"with that CA (it is used for the storage host too; {self.prefix}_INSECURE covers the registry only)")
        if unresolvable(reason):
            return RegistryError(f"{lead}, whose name does not resolve on this machine",
                                 f"{allow}, and its name in DNS")
        if isinstance(exc, requests.exceptions.Timeout):
            return StorageUnreachable(f"{lead}, which did not answer in time ({reason})", allow)
        return StorageUnreachable(f"{lead}, which could not be reached ({reason})", allow)
