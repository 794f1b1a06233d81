"""Wiring from settings: registry clients for the source and target, and a copy engine."""

from __future__ import annotations

from typing import Sequence

from .config import Endpoint, Platform, Settings
from .copy import CopyEngine, Progress
from .endpoints.base import Source, Target
from .registry.auth import Credentials, docker_config_credentials
from .registry.client import RegistryClient, RetryPolicy


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(attempts=settings.retries)


def open_client(endpoint: Endpoint, settings: Settings) -> RegistryClient:
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
        pool_size=settings.concurrency * 2 + 4,
        retry=retry_policy(settings),
        timeout=(10.0, settings.timeout),
    )


def make_engine(settings: Settings, source: Source, target: Target, *, platforms: Sequence[Platform] = (),
                progress: Progress | None = None, dry_run: bool = False) -> CopyEngine:
    return CopyEngine(source, target, concurrency=settings.concurrency, platforms=platforms, progress=progress,
                      retry=retry_policy(settings), dry_run=dry_run, repair=settings.repair,
                      referrers=settings.referrers,
                      referrer_types=settings.referrer_types)
