"""Credentials from the Docker client configuration, as ``docker login`` left them (read only)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Mapping

from ..secret import Secret
from .auth import Credentials


def docker_config_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path(environ.get("HOME", str(Path.home()))) / ".docker" / "config.json"


def _config_keys(registry: str) -> list[str]:
    keys = [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/", f"https://{registry}/v2/"]
    if registry in ("registry-1.docker.io", "docker.io", "index.docker.io"):
        keys.insert(0, "https://index.docker.io/v1/")
    return keys


def docker_config_credentials(registry: str, environ: Mapping[str, str] | None = None) -> Credentials | None:
    """Credentials for ``registry`` from the Docker client config, as ``docker login`` left them.

    Reads ``auths`` (``auth`` = base64 user:password), ``credHelpers`` and ``credsStore``
    (runs ``docker-credential-NAME get`` with the server name on stdin, never in its arguments).
    A broken config or helper is treated as "no credentials": the registry then says whether
    it needs some, which is the clearer message.
    """
    environ = os.environ if environ is None else environ
    path = docker_config_path(environ)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    keys = _config_keys(registry)
    helpers = config.get("credHelpers") or {}
    helper = next((helpers[k] for k in keys if k in helpers), None) or config.get("credsStore")
    if helper:
        found = _from_helper(str(helper), registry, keys)
        if found:
            return found
    auths = config.get("auths") or {}
    for key in keys:
        entry = auths.get(key)
        if isinstance(entry, dict) and entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            if user and password:
                return Credentials(user, Secret(password), f"docker config {path}")
    return None


def _from_helper(helper: str, registry: str, keys: list[str]) -> Credentials | None:
    for key in keys[:2]:
        try:
            done = subprocess.run(
                [f"docker-credential-{helper}", "get"], input=key.encode(), capture_output=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode == 0:
            try:
                data = json.loads(done.stdout)
            except ValueError:
                return None
            user, secret = data.get("Username"), data.get("Secret")
            if user and secret:
                return Credentials(user, Secret(secret), f"docker credential helper {helper}")
    return None
