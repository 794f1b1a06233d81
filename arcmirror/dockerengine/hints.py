"""What to do about a Docker engine error, and engine text made safe to show (no secret, no password in DOCKER_HOST)."""

from __future__ import annotations

import urllib.parse
from typing import Iterable

from ..secret import Secret
from ..settings.load import RegistrySettings

DEFAULT_HINT = ("see the Docker engine's log (e.g. journalctl -u docker) for details; run again: layers the "
                "engine already has are not fetched again")


def display_host(host: str) -> str:
    """DOCKER_HOST for messages: a password in the URL (``tcp://u:p@h``) is dropped."""
    try:
        parts = urllib.parse.urlsplit(host)
        if parts.password is None:
            return host
        netloc = parts.netloc.rsplit("@", 1)[1]
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}@{netloc}"))
    except ValueError:
        return "(an unparseable DOCKER_HOST)"


def scrub(text: str, secrets: Iterable[Secret | str | None]) -> str:
    """``text`` with every secret value replaced by ``****`` (engine messages are not trusted to omit them)."""
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value and len(value) >= 3:
            text = text.replace(value, "****")
    return text


def engine_hint(message: str, endpoint: RegistrySettings | None, action: str) -> str:
    """What to do about an engine error message (the engine's words are matched, lowercased)."""
    low = message.lower()
    registry = endpoint.registry if endpoint else "the registry"
    prefix = endpoint.prefix if endpoint else "*_DOCKER"
    if any(s in low for s in ("unauthorized", "authentication required", "denied", "forbidden",
                              "no basic auth credentials", "incorrect username or password")):
        if endpoint is not None and endpoint.username:
            return (f"check {prefix}_USERNAME and {prefix}_PASSWORD (arcmirror hands them to the engine with each "
                    f"call; 'docker login' is not needed) and that this user may {action} there")
        return (f"set {prefix}_USERNAME and {prefix}_PASSWORD for {registry} (handed to the engine with each call), "
                f"or log in to {registry} in the Docker config of the user running arcmirror")
    if "http response to https client" in low:
        return (f"the engine does not treat {registry} as a plain-HTTP registry: add it to \"insecure-registries\" "
                "in the engine's daemon.json (/etc/docker/daemon.json) and restart the engine "
                "(the engine's settings apply, not *_INSECURE)")
    if "x509" in low or "certificate" in low or "tls:" in low:
        return (f"the engine does not trust {registry}'s certificate: put the CA in "
                f"/etc/docker/certs.d/{registry}/ca.crt on the engine's host (the engine does not read *_CA_BUNDLE)")
    if "no matching manifest" in low:
        return "the image has no variant for the engine's platform; use the registry route (MIRROR_ENGINE=registry)"
    if "manifest unknown" in low or ("manifest for" in low and "not found" in low):
        return ("the pinned digest is not in the source (any more): run 'invoke discover' again, "
                "and check the image name and SOURCE_DOCKER_TAG")
    if "blob unknown" in low or "unknown blob" in low or "not found" in low:
        return f"{registry} lacks part of the image (a layer or the config): repair that registry, then run again"
    if any(s in low for s in ("no such host", "connection refused", "i/o timeout", "dial tcp", "proxyconnect",
                              "timeout exceeded", "network is unreachable", "connection reset")):
        return (f"the engine cannot reach {registry}: check the engine's network and proxy settings (HTTP(S)_PROXY "
                "in the engine's own environment, e.g. a systemd drop-in) and that the name resolves on its host")
    if "no space left" in low:
        return "free disk space in the engine's data root ('docker system df'), or use --cleanup"
    return DEFAULT_HINT
