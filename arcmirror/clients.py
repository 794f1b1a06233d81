"""Registry clients for the configured source and target."""

from __future__ import annotations

from .config import Endpoint
from .registry.auth import Credentials, docker_config_credentials
from .registry.client import RegistryClient


def open_client(endpoint: Endpoint, *, pool_size: int = 16) -> RegistryClient:
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
        pool_size=pool_size,
    )
