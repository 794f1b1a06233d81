"""Wiring from settings: registry clients for the source and target, and a copier."""

from __future__ import annotations

from typing import Sequence

from ..copy.copier import Copier, Progress, requests_in_flight
from ..endpoints.base import Source, Target
from ..oci.platform import Platform
from ..registry.auth import Credentials
from ..registry.client import RegistryClient
from ..registry.credentials import docker_config_credentials
from ..registry.retry import RetryPolicy
from ..settings.load import RegistrySettings, Settings

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
                progress: Progress | None = None, dry_run: bool = False) -> Copier:
    return Copier(source, target, concurrency=settings.concurrency, retry=RetryPolicy(attempts=settings.retries),
                  platforms=platforms, progress=progress, dry_run=dry_run, repair=settings.repair,
                  referrers=settings.referrers, referrer_types=settings.referrer_types)
