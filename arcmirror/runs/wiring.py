"""Wiring from settings: registry clients for the source and target, and a copier."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..copy.copier import Admit, Copier, ImageJob, Progress, requests_in_flight
from ..endpoints.base import Source, Target
from ..oci.errors import HintedError
from ..oci.platform import Platform
from ..registry.auth import Credentials
from ..registry.client import RegistryClient
from ..registry.credentials import docker_config_credentials
from ..registry.retry import RetryPolicy
from ..settings.load import RegistrySettings, Settings

if TYPE_CHECKING:
    from ..trust.verify import TrustVerifier

#: Seconds to wait for a TCP connection (a read waits MIRROR_TIMEOUT).
CONNECT_TIMEOUT = 10.0


def open_client(endpoint: RegistrySettings, settings: Settings) -> RegistryClient:
    """A client for the source or target registry, with the credentials the settings imply."""
    if endpoint.username and endpoint.password:
        credentials = Credentials(endpoint.username, endpoint.password, f"{endpoint.prefix}_USERNAME/_PASSWORD")
    else:
        credentials = docker_config_credentials(endpoint.registry)
    return RegistryClient(
        endpoint.registry,
        credentials=credentials,
        insecure=endpoint.insecure,
        ca_bundle=endpoint.ca_bundle,
        label=f"{endpoint.role} registry {endpoint.registry}",
        prefix=endpoint.prefix,
        pool_size=requests_in_flight(settings.concurrency) + 4,
        retry=RetryPolicy(attempts=settings.retries),
        timeout=(CONNECT_TIMEOUT, settings.timeout),
    )


def make_copier(settings: Settings, source: Source, target: Target, *, platforms: Sequence[Platform] = (),
                progress: Progress | None = None, dry_run: bool = False, admit: Admit | None = None) -> Copier:
    return Copier(source, target, concurrency=settings.concurrency, retry=RetryPolicy(attempts=settings.retries),
                  platforms=platforms, progress=progress, dry_run=dry_run, repair=settings.repair,
                  referrers=settings.referrers, referrer_types=settings.referrer_types, admit=admit)


def admission(settings: Settings, source: Source, registry: str) -> Admit | None:
    """The copier's signature check at the source (``registry`` names the scope), when MIRROR_TRUST_DIR or
    MIRROR_COSIGN_KEYS asks for one: every image verified before anything of it is written."""
    verifier = trust_verifier(settings, registry)
    if verifier is None:
        return None

    def admit(job: ImageJob, manifest, kept):
        return verifier.admit(source, job.source_repo, manifest, kept)

    return admit


def trust_verifier(settings: Settings, registry: str) -> TrustVerifier | None:
    """The verifier MIRROR_TRUST_DIR and MIRROR_COSIGN_KEYS call for (None: neither is set), for scopes on
    ``registry``; a trust folder or key that cannot be used is a TrustError (a configuration problem)."""
    if settings.trust_dir is None and not settings.cosign_keys:
        return None
    # imported only when asked for: cryptography and its friends cost a run that verifies nothing ~0.1 s
    from ..trust.store import TrustFolder, TrustFolderError, load_cosign_keys
    from ..trust.verify import TrustVerifier

    try:
        folder = TrustFolder.open(settings.trust_dir) if settings.trust_dir is not None else None
        keys = load_cosign_keys(list(settings.cosign_keys)) if settings.cosign_keys else None
    except TrustFolderError as exc:
        raise TrustError(str(exc), "fix MIRROR_TRUST_DIR or MIRROR_COSIGN_KEYS (notation's layout: "
                                   "trustpolicy.oci.json and truststore/x509/{ca,signingAuthority,tsa}/<name>/)") from None
    return TrustVerifier(folder, keys, registry)


class TrustError(HintedError):
    """MIRROR_TRUST_DIR or MIRROR_COSIGN_KEYS cannot be used: a configuration error (exit 2)."""
