"""The Docker engine route: pull by digest, tag and push through a Docker engine (the Docker SDK).

For sites where only a Docker engine reaches the registries (its proxy, its registry mirrors), or
where the images should land in the local engine as well. This is Microsoft's sample script's
route (``docker pull/tag/push``), done right:

* every image is pulled **by the digest the plan pinned** (``SRC/REPO/NAME@sha256:...``), tagged
  with its target reference, then pushed;
* credentials go to the engine with each call (``X-Registry-Auth``), never through ``docker
  login``: nothing is written to the Docker config and no secret is on a command line;
* the engine's JSON progress stream is read to its end: an ``error`` inside it fails that image
  with the engine's own message (the sample script ignored those), and the digest actually pushed
  is taken from the push stream's final ``aux`` message;
* one image failing never stops the others; each step writes its JUnit report, one case per image,
  and a JSON record with the pushed digest of every image.

What this route can promise is less than the registry route's: the engine re-compresses layers,
so the pushed manifest digest can differ from the source's, and it copies only the platform it
runs on (from a multi-platform index, the child for that platform). What it keeps is the image
itself: the config blob (hence the image ID) and the layers' uncompressed content (the config's
``rootfs.diff_ids``). :func:`verify_engine_image` checks exactly that, plus that every blob the
target manifest references is present.

The engine is found like the ``docker`` CLI finds it: ``DOCKER_HOST`` (default
``unix:///var/run/docker.sock``), ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH``. The engine's own
settings decide how it reaches registries (``insecure-registries``, ``/etc/docker/certs.d``, its
proxy): ``*_INSECURE`` and ``*_CA_BUNDLE`` apply only to arcmirror's own requests (verify).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..oci.platform import Platform
from ..secret import Secret
from ..settings.load import RegistrySettings
from .hints import display_host, engine_hint, scrub
from .stream import EngineError, StreamSummary, read_stream

if TYPE_CHECKING:
    import docker

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
#: Seconds the engine may stay silent on a call (inspect, tag, push stream) before it counts as stuck.
#: Generous: with slow storage drivers the engine says nothing while it registers a large layer.
#: (docker-py sends pulls without a read timeout; the engine's own registry timeouts apply there.)
ENGINE_TIMEOUT = 900.0
#: Images handled at once; the engine parallelises layers itself (3 downloads, 5 uploads by default).
class EngineUnavailable(EngineError):
    """The Docker engine cannot be reached (or the Docker SDK is missing)."""


@dataclass(frozen=True)
class EngineInfo:
    host: str  # for people: DOCKER_HOST without any password
    version: str
    api_version: str
    platform: Platform

    def describe(self) -> str:
        return f"Docker engine {self.version} at {self.host} ({self.platform})"

    def to_json(self) -> dict:
        return {"host": self.host, "version": self.version, "api_version": self.api_version,
                "platform": str(self.platform)}


class Engine:
    """One Docker engine, reached like the ``docker`` CLI reaches it, through the low-level Docker SDK.

    ``environ`` (default: the process environment) supplies ``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``,
    ``DOCKER_CERT_PATH`` and ``DOCKER_CONFIG`` (read only: the Docker config is never written).
    ``secrets`` are scrubbed from every message this class raises.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, *, timeout: float = ENGINE_TIMEOUT,
                 secrets: Sequence[Secret | None] = ()) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        raw_host = self.environ.get("DOCKER_HOST") or ""
        self.host = display_host(raw_host) if raw_host else f"{DEFAULT_DOCKER_HOST} (DOCKER_HOST is not set)"
        self.timeout = timeout
        self._secrets = [s for s in secrets if s]
        self._local = threading.local()
        self._clients: list[docker.APIClient] = []
        self._lock = threading.Lock()
        self._api_version: str | None = None
        self.info: EngineInfo | None = None

    # -- connection ----------------------------------------------------------------------------

    def _unavailable(self, detail: str) -> EngineUnavailable:
        detail = scrub(detail, self._secrets).removeprefix("Error while fetching server API version: ")
        return EngineUnavailable(
            f"cannot reach the Docker engine at {self.host}: {detail}",
            "start the Docker engine (e.g. 'systemctl start docker'), or set DOCKER_HOST to its address "
            "(unix:///var/run/docker.sock, or tcp://HOST:2376 with DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH); "
            "the user running arcmirror must be allowed to use it (e.g. the docker group)",
        )

    def _new_client(self) -> "docker.APIClient":
        try:
            import docker
            from docker.utils import kwargs_from_env
        except ImportError:
            raise EngineUnavailable("the Docker SDK for Python (package 'docker') is not installed",
                                    "run scripts/bootstrap (requirements.txt has it)") from None
        try:
            client = docker.APIClient(version=self._api_version or "auto", timeout=self.timeout,
                                      **kwargs_from_env(environment=self.environ))
        except docker.errors.DockerException as exc:
            raise self._unavailable(str(exc)) from None
        config_dir = self.environ.get("DOCKER_CONFIG")
        if config_dir and config_dir != os.environ.get("DOCKER_CONFIG"):
            client.reload_config(os.path.join(config_dir, "config.json"))  # read only, like the CLI
        with self._lock:
            self._clients.append(client)
        return client

    @property
    def api(self) -> "docker.APIClient":
        """This thread's API client (a requests session: one per thread)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._new_client()
        return client

    def connect(self) -> EngineInfo:
        """Reach the engine and learn its version and platform; :class:`EngineUnavailable` if it cannot be."""
        if self.info is not None:
            return self.info
        client = self.api  # EngineUnavailable when the SDK is missing or DOCKER_HOST is unusable
        import docker
        import requests

        try:
            version = client.version()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise self._unavailable(str(exc)) from None
        self._api_version = str(version.get("ApiVersion") or self.api.api_version)
        os_name, arch = str(version.get("Os") or "linux"), str(version.get("Arch") or "amd64")
        self.info = EngineInfo(self.host, str(version.get("Version") or "unknown"), self._api_version,
                               Platform(os_name.lower(), arch.lower()))
        return self.info

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- operations ----------------------------------------------------------------------------

    def _failure(self, exc: BaseException, what: str, endpoint: RegistrySettings | None, action: str) -> EngineError:
        """An SDK or stream failure as an :class:`EngineError` naming the engine, with what to do."""
        import docker
        import requests

        if isinstance(exc, EngineError):
            text = exc.message
        elif isinstance(exc, docker.errors.APIError):
            text = str(exc.explanation or exc)
        elif isinstance(exc, requests.exceptions.ReadTimeout):
            text = f"the engine said nothing for {self.timeout:.0f}s"
        elif isinstance(exc, requests.exceptions.ConnectionError):
            return self._unavailable(f"the connection broke while asking it to {what}: {exc}")
        else:
            text = f"{exc.__class__.__name__}: {exc}"
        text = scrub(text, self._secrets)
        return EngineError(f"the Docker engine at {self.host} failed to {what}: {text}",
                           engine_hint(text, endpoint, action))

    def _call(self, what: str, endpoint: RegistrySettings | None, action: str, fn: Callable[[], Any]) -> Any:
        import docker
        import requests

        try:
            return fn()
        except (EngineError, docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise self._failure(exc, what, endpoint, action) from None

    def image_id(self, reference: str) -> str | None:
        """The ID (config digest) of the image ``reference`` names in the engine, or None."""
        import docker

        def inspect() -> str | None:
            try:
                return str(self.api.inspect_image(reference)["Id"])
            except docker.errors.ImageNotFound:
                return None

        return self._call(f"inspect {reference}", None, "read", inspect)

    def pull(self, repository: str, digest: str, auth: dict | None, endpoint: RegistrySettings,
             on_message: Callable[[dict], None] | None = None) -> StreamSummary:
        """``docker pull REPOSITORY@DIGEST`` with ``auth`` for this call only; the stream read to its end."""
        return self._call(
            f"pull {repository}@{digest}", endpoint, "pull",
            lambda: read_stream(self.api.pull(repository, tag=digest, stream=True, decode=True, auth_config=auth),
                                on_message))

    def tag(self, image: str, repository: str, tag: str) -> None:
        def do() -> None:
            if not self.api.tag(image, repository, tag, force=True):
                raise EngineError(f"the engine did not tag {image} as {repository}:{tag}")

        self._call(f"tag {image} as {repository}:{tag}", None, "tag", do)

    def push(self, repository: str, tag: str, auth: dict | None, endpoint: RegistrySettings,
             on_message: Callable[[dict], None] | None = None) -> StreamSummary:
        """``docker push REPOSITORY:TAG`` with ``auth`` for this call only; the stream read to its end."""
        def do() -> StreamSummary:
            summary = read_stream(self.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth),
                                  on_message)
            if summary.aux is None:
                last = summary.statuses[-1] if summary.statuses else "nothing"
                raise EngineError(f"the push ended without reporting the pushed digest (last status: {last})")
            return summary

        return self._call(f"push {repository}:{tag}", endpoint, "push", do)

    def remove(self, reference: str) -> str | None:
        """Untag ``reference`` (the engine deletes the image once nothing refers to it); a problem, or None."""
        import docker

        try:
            self.api.remove_image(reference)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            return f"could not remove {reference}: {scrub(str(exc.explanation or exc), self._secrets)}"
        except Exception as exc:  # noqa: BLE001 - cleanup never fails the image
            return f"could not remove {reference}: {exc.__class__.__name__}: {scrub(str(exc), self._secrets)}"
        return None


def auth_config(endpoint: RegistrySettings) -> dict | None:
    """Credentials for one engine call; None lets the SDK use the Docker config's (read only), or none."""
    if endpoint.username and endpoint.password:
        return {"username": endpoint.username, "password": endpoint.password.reveal()}
    return None
