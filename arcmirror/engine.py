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

import hashlib
import json
import os
import threading
import time
import urllib.parse
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from . import cancel, reports
from .clients import open_client
from .config import Endpoint, Platform, Settings
from .endpoints.registry import RegistryEndpoint
from .manifests import FOREIGN_LAYER_TYPES, blobs_of, is_index, platform_name
from .plan import Plan, PlannedImage, target_tag_for
from .registry.client import Manifest, RegistryClient
from .registry.errors import Cancelled, DigestMismatchError, NotFoundError, ProtocolError, RegistryError
from .secret import Secret
from .steps import StepRun, cancelled_case, target_of, unplanned_case, unplanned_cases, write_step

if TYPE_CHECKING:
    import docker

Say = Callable[[str], None]

ROUTE = "docker"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
#: Seconds the engine may stay silent on a call (inspect, tag, push stream) before it counts as stuck.
#: Generous: with slow storage drivers the engine says nothing while it registers a large layer.
#: (docker-py sends pulls without a read timeout; the engine's own registry timeouts apply there.)
ENGINE_TIMEOUT = 900.0
#: Images handled at once; the engine parallelises layers itself (3 downloads, 5 uploads by default).
MAX_WORKERS = 3
MAX_CONFIG_BYTES = 4 * 1024 * 1024
HEARTBEAT = 30.0  # seconds between "still pulling/pushing" lines for one image
ENGINE_RECORDS = ("mirror", "push")  # the steps whose JSON records carry pushed digests

DEFAULT_HINT = ("see the Docker engine's log (e.g. journalctl -u docker) for details; run again: layers the "
                "engine already has are not fetched again")


class EngineError(RegistryError):
    """The Docker engine refused or failed an operation; ``message`` carries the engine's own words."""


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


@dataclass
class StreamSummary:
    """What one pull or push stream said: the last status of each layer, and the final ``aux``."""

    layers: dict[str, str] = field(default_factory=dict)  # layer id -> its last status
    statuses: list[str] = field(default_factory=list)  # statuses without a layer id, in order
    aux: dict | None = None
    messages: int = 0

    def count(self, *prefixes: str) -> int:
        return sum(any(s.startswith(p) for p in prefixes) for s in self.layers.values())


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


def read_stream(messages: Iterable[Any], on_message: Callable[[dict], None] | None = None) -> StreamSummary:
    """Read an engine JSON progress stream to its end; an ``error`` in it raises :class:`EngineError`.

    The error's text is the engine's (``errorDetail.message``, else ``error``). ``on_message`` sees
    every message (for progress).
    """
    summary = StreamSummary()
    for message in messages:
        cancel.check("this image")  # leaving the stream closes it: the engine then stops that pull or push
        if not isinstance(message, dict):
            continue
        summary.messages += 1
        if on_message:
            on_message(message)
        detail = message.get("errorDetail")
        if message.get("error") or detail:
            text = (detail.get("message") if isinstance(detail, dict) else None) or message.get("error")
            raise EngineError(str(text or "the engine reported an error without a message").strip())
        status = message.get("status")
        if isinstance(status, str):
            if message.get("id") and not status.startswith(("Pulling from", "The push refers to")):
                summary.layers[str(message["id"])] = status
            elif status not in summary.statuses[-1:]:
                summary.statuses.append(status)
        aux = message.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            summary.aux = aux
    return summary


def engine_hint(message: str, endpoint: Endpoint | None, action: str) -> str:
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

    def _failure(self, exc: BaseException, what: str, endpoint: Endpoint | None, action: str) -> EngineError:
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

    def _call(self, what: str, endpoint: Endpoint | None, action: str, fn: Callable[[], Any]) -> Any:
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

    def pull(self, repository: str, digest: str, auth: dict | None, endpoint: Endpoint,
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

    def push(self, repository: str, tag: str, auth: dict | None, endpoint: Endpoint,
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


def auth_config(endpoint: Endpoint) -> dict | None:
    """Credentials for one engine call; None lets the SDK use the Docker config's (read only), or none."""
    if endpoint.username and endpoint.password:
        return {"username": endpoint.username, "password": endpoint.password.reveal()}
    return None


def _secrets(settings: Settings) -> list[Secret | None]:
    return [settings.source.password, settings.target.password]


# -- the per-image work ------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageRefs:
    """Where one planned image comes from and goes to, as the engine names them."""

    source_repository: str  # host/repo/name
    digest: str
    target_repository: str  # host/repo/name
    target_tag: str

    @property
    def source(self) -> str:
        return f"{self.source_repository}@{self.digest}"

    @property
    def target(self) -> str:
        return f"{self.target_repository}:{self.target_tag}"


def image_refs(settings: Settings, plan: Plan, image: PlannedImage) -> ImageRefs:
    repo, tag = target_of(settings, plan, image)
    return ImageRefs(f"{plan.source_registry}/{image.source_repository}", str(image.digest),
                     f"{settings.target.registry}/{repo}", tag)


@dataclass
class _Run:
    """What every image of one engine step shares."""

    settings: Settings
    plan: Plan
    engine: Engine
    info: EngineInfo
    say: Say
    cleanup: bool
    in_engine_before: dict[str, bool] = field(default_factory=dict)  # from pull.json, for push --cleanup


def _entry(image: PlannedImage, refs: ImageRefs) -> dict:
    return {"name": image.name, "status": "failed", "source": refs.source, "target": refs.target,
            "source_digest": image.digest, "platform": None, "image_id": None, "digest": None, "size": None,
            "in_engine_before": None, "layers": {}, "cleanup": None, "duration": 0.0, "error": None, "hint": None}


def _heartbeat(say: Say, name: str, action: str, every: float = HEARTBEAT) -> Callable[[dict], None]:
    """An ``on_message`` that says, at most every ``every`` seconds, how far one image's layers are."""
    layers: dict[str, str] = {}
    last = [time.monotonic()]

    def on_message(message: dict) -> None:
        if message.get("id") and isinstance(message.get("status"), str):
            layers[str(message["id"])] = message["status"]
        now = time.monotonic()
        if now - last[0] >= every:
            last[0] = now
            done = sum(s in ("Pull complete", "Already exists", "Pushed", "Layer already exists")
                       or s.startswith("Mounted from") for s in layers.values())
            say(f"{name}: still {action}: {done} of {len(layers)} layers done")

    return on_message


def _pull(run: _Run, image: PlannedImage, refs: ImageRefs, entry: dict) -> None:
    before = run.engine.image_id(refs.source)
    entry["in_engine_before"] = before is not None
    run.say(f"{image.name}: pulling {refs.source}")
    summary = run.engine.pull(refs.source_repository, refs.digest, auth_config(run.settings.source),
                              run.settings.source, _heartbeat(run.say, image.name, "pulling"))
    entry["image_id"] = run.engine.image_id(refs.source)
    if entry["image_id"] is None:
        raise EngineError(f"the Docker engine at {run.info.host} reported pulling {refs.source} done, "
                          "but holds no image under that name", DEFAULT_HINT)
    entry["platform"] = str(run.info.platform)
    entry["layers"]["fetched"] = summary.count("Pull complete", "Download complete")
    entry["layers"]["already_in_engine"] = summary.count("Already exists")
    entry["status"] = "pulled"


def _tag(run: _Run, image: PlannedImage, refs: ImageRefs, entry: dict) -> None:
    image_id = entry["image_id"] or run.engine.image_id(refs.source)
    if image_id is None:
        raise EngineError(f"{refs.source} is not in the Docker engine at {run.info.host}",
                          "run 'invoke pull --engine docker' first (with the same plan)")
    run.engine.tag(refs.source, refs.target_repository, refs.target_tag)
    entry["image_id"] = image_id
    entry["status"] = "tagged"


def _check_tagged(run: _Run, refs: ImageRefs, entry: dict) -> None:
    """Before a push on its own: the target tag in the engine is the image pulled for the pinned digest."""
    tagged = run.engine.image_id(refs.target)
    if tagged is None:
        raise EngineError(f"{refs.target} is not in the Docker engine at {run.info.host}",
                          "run 'invoke pull --engine docker' and 'invoke tag --engine docker' first")
    pulled = run.engine.image_id(refs.source)
    if pulled != tagged:
        found = "is not in the engine" if pulled is None else f"is image {pulled}"
        raise EngineError(f"{refs.target} in the engine is image {tagged}, but the planned {refs.source} {found}",
                          "run 'invoke pull --engine docker' and 'invoke tag --engine docker' again")
    entry["image_id"] = tagged


def _push(run: _Run, image: PlannedImage, refs: ImageRefs, entry: dict) -> None:
    run.say(f"{image.name}: pushing {refs.target}")
    summary = run.engine.push(refs.target_repository, refs.target_tag, auth_config(run.settings.target),
                              run.settings.target, _heartbeat(run.say, image.name, "pushing"))
    assert summary.aux is not None
    entry["digest"], entry["size"] = str(summary.aux["Digest"]), summary.aux.get("Size")
    entry["platform"] = entry["platform"] or str(run.info.platform)
    entry["layers"].update(pushed=summary.count("Pushed"), mounted=summary.count("Mounted from"),
                           already_in_target=summary.count("Layer already exists"))
    entry["status"] = "pushed"
    run.say(f"{image.name}: pushed {refs.target} as {entry['digest']}")


def _cleanup(run: _Run, refs: ImageRefs, entry: dict, *, target: bool = True) -> None:
    """Untag what this run made: the target tag, and the source digest unless the engine had it before."""
    removed, problems = [], []
    names = [refs.target] if target else []
    keep_source = entry.get("in_engine_before")
    if keep_source is None:
        keep_source = run.in_engine_before.get(entry["name"], False)
    if not keep_source:
        names.append(refs.source)
    for name in names:
        present = run.engine.image_id(name) is not None
        problem = run.engine.remove(name) if present else None
        if problem:
            problems.append(problem)
        elif present:
            removed.append(name)
    text = f"removed {', '.join(removed)}" if removed else "nothing to remove"
    if keep_source:
        text += f"; kept {refs.source} (it was in the engine before this run)"
    if problems:
        text += "; " + "; ".join(problems)
        run.say(f"{entry['name']}: cleanup: {'; '.join(problems)}")
    entry["cleanup"] = text


def _details(run: _Run, entry: dict) -> list[str]:
    lines = [f"source: {entry['source']}", f"target: {entry['target']}", f"engine: {run.info.describe()}",
             f"status: {entry['status']}", f"source digest: {entry['source_digest']}"]
    if entry["image_id"]:
        lines.append(f"image ID (config digest): {entry['image_id']}")
    if entry["digest"]:
        lines.append(f"pushed digest: {entry['digest']} ({entry['size']} bytes)")
        if entry["digest"] != entry["source_digest"]:
            lines.append("note: the engine re-compresses layers and copies only its own platform, so the pushed "
                         "digest differs from the source's; 'invoke verify --engine docker' checks the config digest "
                         "and layer diff IDs")
    layers = entry["layers"]
    if "fetched" in layers:
        lines.append(f"layers pulled: {layers['fetched']} fetched, {layers['already_in_engine']} already in the engine")
    if "pushed" in layers:
        lines.append(f"layers pushed: {layers['pushed']} sent, {layers['mounted']} mounted, "
                     f"{layers['already_in_target']} already in the target")
    if entry["cleanup"]:
        lines.append(f"cleanup: {entry['cleanup']}")
    lines.append(f"duration: {entry['duration']:.2f}s")
    return lines


def _one(run: _Run, step: str, image: PlannedImage, actions: Sequence[Callable], cleanup: bool,
         blocked: EngineError | None) -> tuple[reports.Case, dict]:
    refs = image_refs(run.settings, run.plan, image)
    entry = _entry(image, refs)
    started = time.monotonic()
    try:
        cancel.check("this image")
        if blocked is not None:
            raise blocked
        for action in actions:
            action(run, image, refs, entry)
    except RegistryError as exc:
        entry["status"] = "cancelled" if isinstance(exc, Cancelled) else "failed"
        entry["error"], entry["hint"] = exc.message, exc.hint
    except Exception as exc:  # noqa: BLE001 - a bug must fail one image, not the run
        entry["status"] = "failed"
        entry["error"] = scrub(f"unexpected error: {exc.__class__.__name__}: {exc}", _secrets(run.settings))
        entry["hint"] = "this is a bug in arcmirror; please report it with the log"
    finally:
        if cleanup and blocked is None:
            try:
                _cleanup(run, refs, entry, target=step != "pull")
            except RegistryError as exc:
                entry["cleanup"] = f"failed: {exc.message}"
    if entry["error"]:
        run.say(f"{image.name}: FAILED: {entry['error']}")
    entry["duration"] = round(time.monotonic() - started, 3)
    case = reports.Case(image.name, step, entry["error"] is None, _details(run, entry), entry["duration"],
                        entry["error"], entry["hint"], cancelled=entry["status"] == "cancelled")
    return case, entry


def _abandoned(run: _Run, step: str, image: PlannedImage) -> tuple[reports.Case, dict]:
    """An image the engine was still busy with when a cancellation stopped waiting for it."""
    entry = _entry(image, image_refs(run.settings, run.plan, image))
    exc = cancel.error("this image")
    entry["status"], entry["error"], entry["hint"] = "cancelled", exc.message, exc.hint
    return reports.Case.failed(image.name, step, _details(run, entry), exc), entry


def _platform_problem(plan: Plan, info: EngineInfo) -> EngineError | None:
    """MIRROR_PLATFORMS (in the plan) that leaves out the one platform the engine can copy."""
    wanted = [Platform.parse(p) for p in plan.platforms]
    if not wanted or any(p.os == info.platform.os and p.architecture == info.platform.architecture for p in wanted):
        return None
    return EngineError(
        f"MIRROR_PLATFORMS asks for {', '.join(plan.platforms)}, but the {info.describe()} copies only its own "
        f"platform, {info.platform}",
        f"unset MIRROR_PLATFORMS (or set it to {info.platform}) for the engine route, or use the registry route "
        "(MIRROR_ENGINE=registry), which copies any platform",
    )


def _record(settings: Settings, run: _Run | None, plan: Plan, entries: list[dict],
            engine_error: EngineError | None = None) -> dict:
    return {
        "route": ROUTE,
        "engine": run.info.to_json() if run else {"error": engine_error.message if engine_error else None},
        "plan": {"tag": plan.tag, "created": plan.created, "shard": plan.shard},
        "release_tag": plan.tag,
        "target_tag": target_tag_for(settings, plan.tag),
        "images": entries,
        "totals": {"images": len(entries), "ok": sum(e["error"] is None for e in entries),
                   "failed": sum(e["error"] is not None for e in entries)},
    }


def _run_step(settings: Settings, plan: Plan, step: str, actions: Sequence[Callable], *, cleanup: bool, say: Say,
              environ: Mapping[str, str] | None, check_platform: bool = False) -> StepRun:
    started = time.monotonic()
    with Engine(environ, secrets=_secrets(settings)) as engine:
        try:
            info = engine.connect()
        except EngineError as exc:
            say(f"{step}: {exc.message}")
            cases = [reports.Case.failed(i.name, step, [f"source: {i.source}", f"engine: {engine.host}"], exc)
                     for i in plan.ok_images]
            entries = [{**_entry(i, image_refs(settings, plan, i)), "error": exc.message, "hint": exc.hint}
                       for i in plan.ok_images]
            return write_step(settings, step, cases + unplanned_cases(step, plan), started,
                              _record(settings, None, plan, entries, exc))
        run = _Run(settings, plan, engine, info, say, cleanup)
        if cleanup and step == "push":
            run.in_engine_before = _pulled_before(settings, plan)
        blocked = _platform_problem(plan, info) if check_platform else None
        say(f"{step}: {len(plan.ok_images)} images through the {info.describe()}")
        workers = max(1, min(settings.concurrency, MAX_WORKERS, len(plan.ok_images) or 1))
        done = cancel.run_all(lambda i: _one(run, step, i, actions, cleanup, blocked), plan.ok_images, workers,
                              lambda i: _abandoned(run, step, i), "engine")
    cases = [case for case, _ in done] + unplanned_cases(step, plan)
    return write_step(settings, step, cases, started, _record(settings, run, plan, [entry for _, entry in done]))


# -- the steps ---------------------------------------------------------------------------------

def run_engine_mirror(settings: Settings, plan: Plan, *, cleanup: bool = False, say: Say = lambda _: None,
                      environ: Mapping[str, str] | None = None) -> StepRun:
    """Pull (by the pinned digest), tag and push every planned image through the engine.

    Writes ``mirror.xml`` and ``mirror.json`` (with the pushed digest of each image). With
    ``cleanup`` the references this run made are removed afterwards, failed images too.
    """
    return _run_step(settings, plan, "mirror", (_pull, _tag, _push), cleanup=cleanup, say=say, environ=environ,
                     check_platform=True)


def run_engine_pull(settings: Settings, plan: Plan, cleanup: bool = False, *, say: Say = lambda _: None,
                    environ: Mapping[str, str] | None = None) -> StepRun:
    """Pull every planned image into the engine by its pinned digest; ``pull.xml`` and ``pull.json``.

    ``pull.json`` records which images the engine held before, so a later ``push --cleanup`` leaves
    those alone. ``cleanup`` removes what was pulled again (a check that the engine can fetch
    everything, leaving nothing behind).
    """
    return _run_step(settings, plan, "pull", (_pull,), cleanup=cleanup, say=say, environ=environ, check_platform=True)


def run_engine_tag(settings: Settings, plan: Plan, *, say: Say = lambda _: None,
                   environ: Mapping[str, str] | None = None) -> StepRun:
    """Tag every pulled image with its target reference in the engine; ``tag.xml`` and ``tag.json``."""
    return _run_step(settings, plan, "tag", (_tag,), cleanup=False, say=say, environ=environ)


def run_engine_push(settings: Settings, plan: Plan, cleanup: bool = False, *, say: Say = lambda _: None,
                    environ: Mapping[str, str] | None = None) -> StepRun:
    """Push every tagged image from the engine; ``push.xml`` and ``push.json`` (pushed digests).

    Each target tag is first checked to be the image pulled for the pinned digest. With
    ``cleanup`` the target tag and the source digest reference are removed afterwards (the latter
    only when ``pull.json`` does not say the engine had it before).
    """
    def push(run: _Run, image: PlannedImage, refs: ImageRefs, entry: dict) -> None:
        _check_tagged(run, refs, entry)
        _push(run, image, refs, entry)

    return _run_step(settings, plan, "push", (push,), cleanup=cleanup, say=say, environ=environ)


# -- records -----------------------------------------------------------------------------------

def _records(settings: Settings, plan: Plan, steps: Sequence[str]) -> list[dict]:
    """The engine route's JSON records of ``steps`` for this plan, newest first."""
    found = []
    for step in steps:
        path = settings.report_dir / f"{step}.json"
        try:
            data = json.loads(path.read_text())
            mtime = path.stat().st_mtime
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("route") == ROUTE and isinstance(data.get("images"), list) and \
                (data.get("plan") or {}).get("created") == plan.created and data["plan"].get("tag") == plan.tag:
            found.append((mtime, data))
    return [data for _, data in sorted(found, key=lambda pair: pair[0], reverse=True)]


def _pulled_before(settings: Settings, plan: Plan) -> dict[str, bool]:
    records = _records(settings, plan, ("pull",))
    return {e["name"]: bool(e.get("in_engine_before")) for e in records[0]["images"]
            if isinstance(e, dict) and "name" in e} if records else {}


def pushed_digests(settings: Settings, plan: Plan) -> tuple[dict[str, dict], str | None]:
    """Per image, the newest record of a push (``digest``, ``platform``) for this plan; and the engine's platform."""
    pushed: dict[str, dict] = {}
    platform = None
    for data in _records(settings, plan, ENGINE_RECORDS):
        platform = platform or (data.get("engine") or {}).get("platform")
        for entry in data["images"]:
            if isinstance(entry, dict) and entry.get("digest") and entry.get("name") not in pushed:
                pushed[entry["name"]] = entry
    return pushed, platform


# -- verify ------------------------------------------------------------------------------------

def _platform_manifest(client: RegistryClient, repo: str, reference: str, platform: Platform,
                       where: str) -> tuple[Manifest, Manifest]:
    """``(top, image)``: the manifest ``reference`` names, and its image manifest for ``platform``."""
    top = client.get_manifest(repo, reference)
    if not is_index(top):
        return top, top
    entries = [e for e in top.json().get("manifests") or [] if isinstance(e, dict)]
    chosen = next((e for e in entries if platform.matches(e.get("platform"))), None)
    if chosen is None:
        have = ", ".join(sorted({platform_name(e.get("platform")) for e in entries})) or "none"
        raise NotFoundError(f"{where} has no {platform} image (it has: {have})",
                            "the engine copies only its own platform")
    child = client.get_manifest(repo, str(chosen.get("digest")))
    if is_index(child):
        raise ProtocolError(f"{where}: the {platform} entry is itself an index")
    return top, child


def _config(client: RegistryClient, repo: str, manifest: Manifest, where: str) -> tuple[str, list[str]]:
    """The config digest of an image manifest and the config's ``rootfs.diff_ids`` (read and checked)."""
    config = manifest.json().get("config")
    if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
        raise ProtocolError(f"{where} is an image manifest without a config")
    digest, size = config["digest"], config.get("size")
    if not isinstance(size, int) or not 0 <= size <= MAX_CONFIG_BYTES:
        raise ProtocolError(f"{where} has a config of unusable size {size!r}")
    data = b"".join(RegistryEndpoint(client).iter_blob(repo, digest, size))
    got = "sha256:" + hashlib.sha256(data).hexdigest()
    if got != digest:
        raise DigestMismatchError(f"the config {digest} of {where} has content whose digest is {got}")
    try:
        diff_ids = json.loads(data)["rootfs"]["diff_ids"]
        if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ProtocolError(f"the config {digest} of {where} has no rootfs.diff_ids list") from None
    return digest, diff_ids


def verify_engine_image(source: RegistryClient, target: RegistryClient, image: PlannedImage, repo: str, tag: str,
                        platform: Platform | str, pushed_digest: str | None = None) -> reports.Case:
    """Check what the engine route promises for one image, as a ``verify`` case.

    The target tag's image (for an index, its ``platform`` child) has the same config digest and
    the same layer diff IDs (``rootfs.diff_ids``) as the source image the plan pinned (for an
    index, its ``platform`` child), one layer per diff ID, and every blob it references is present.
    ``pushed_digest`` (from the push record) is reported; a tag that moved since is noted.
    """
    started = time.monotonic()
    platform = Platform.parse(platform) if isinstance(platform, str) else platform
    source_ref = f"{source.registry}/{image.source_repository}@{image.digest}"
    target_ref = f"{target.registry}/{repo}:{tag}"
    details = [f"target: {target_ref}", f"source: {source_ref}", f"platform: {platform}",
               f"pushed digest (recorded): {pushed_digest or '-'}"]
    problems: list[str] = []
    hint = "run 'invoke mirror --engine docker' (or pull, tag and push with --engine docker) again"
    try:
        found = target.head_manifest(repo, tag)
        details.append(f"target digest: {found or '-'}")
        if found is None:
            raise NotFoundError(f"{target_ref} does not exist")
        if pushed_digest and found != pushed_digest:
            details.append(f"note: the tag points at {found}, not the digest the engine pushed: it moved since")
        _, source_image = _platform_manifest(source, image.source_repository, str(image.digest), platform, source_ref)
        source_config, source_diff_ids = _config(source, image.source_repository, source_image,
                                                 f"{source_ref} ({platform})")
        _, target_image = _platform_manifest(target, repo, found, platform, target_ref)
        target_config, target_diff_ids = _config(target, repo, target_image, f"{target_ref} ({platform})")
        details += [f"source config digest: {source_config}", f"target config digest: {target_config}",
                    f"layer diff IDs: {len(source_diff_ids)} in the source, {len(target_diff_ids)} in the target"]
        if target_config != source_config:
            problems.append(f"the target's config digest {target_config} is not the source's {source_config} "
                            "(another image is under that tag)")
        if target_diff_ids != source_diff_ids:
            differ = next((n for n, (a, b) in enumerate(zip(source_diff_ids, target_diff_ids)) if a != b),
                          min(len(source_diff_ids), len(target_diff_ids)))
            problems.append(f"the target's layer diff IDs differ from the source's from layer {differ + 1} on "
                            f"({len(target_diff_ids)} vs {len(source_diff_ids)} layers)")
        layers = [entry for entry in target_image.json().get("layers") or []
                  if isinstance(entry, dict) and entry.get("mediaType") not in FOREIGN_LAYER_TYPES]
        if len(layers) != len(target_diff_ids):
            problems.append(f"the target manifest has {len(layers)} layers for {len(target_diff_ids)} diff IDs")
        blobs = dict(blobs_of(target_image, target_ref))
        missing = [d for d in blobs if not target.has_blob(repo, d)]
        problems += [f"blob {d} ({blobs[d]} bytes) is missing in the target" for d in missing]
        details.append(f"blobs checked: {len(blobs)} (HEAD)")
    except Cancelled as exc:
        return reports.Case.failed(image.name, "verify", details, exc, time.monotonic() - started)
    except RegistryError as exc:
        problems.append(exc.message)
        if exc.hint and not isinstance(exc, NotFoundError):
            hint = exc.hint
    details += [f"problem: {p}" for p in problems]
    message = "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
    return reports.Case(image.name, "verify", not problems, details, time.monotonic() - started,
                        message or None, hint if problems else None)


def run_engine_verify(settings: Settings, plan: Plan, *, say: Say = lambda _: None,
                      environ: Mapping[str, str] | None = None, platform: Platform | str | None = None) -> StepRun:
    """Verify the engine route's promises for every planned image; ``verify.xml`` and ``verify.json``.

    The platform is ``platform``, else the one recorded by the engine push (``mirror.json`` /
    ``push.json`` of this plan), else the engine's own (asked at ``DOCKER_HOST``). The pushed
    digests of those records are reported per image.
    """
    started = time.monotonic()
    pushed, recorded = pushed_digests(settings, plan)
    chosen: Platform | None = None
    failure: EngineError | None = None
    if platform is not None:
        chosen = Platform.parse(platform) if isinstance(platform, str) else platform
    elif recorded:
        chosen = Platform.parse(recorded)
    else:
        try:
            with Engine(environ, secrets=_secrets(settings)) as engine:
                chosen = engine.connect().platform
        except EngineError as exc:
            failure = EngineError(
                f"no engine push of this plan is recorded under {settings.report_dir} and {exc.message}", exc.hint)
    say(f"verify: {len(plan.ok_images)} images, engine route, platform {chosen or 'unknown'}")
    with ExitStack() as stack:
        if failure is None:
            source = stack.enter_context(open_client(settings.source, settings))
            target = stack.enter_context(open_client(settings.target, settings))

        def one(image: PlannedImage) -> reports.Case:
            if not image.ok:
                return unplanned_case("verify", image)
            if failure is not None:
                return reports.Case(image.name, "verify", False, [f"source: {image.source}"],
                                    message=failure.message, hint=failure.hint)
            repo, tag = target_of(settings, plan, image)
            return verify_engine_image(source, target, image, repo, tag, chosen,
                                       (pushed.get(image.name) or {}).get("digest"))

        cases = cancel.run_all(one, plan.images, settings.concurrency, lambda image: cancelled_case("verify", image), "verify")
    images = []
    for case in cases:
        fields = dict(line.split(": ", 1) for line in case.details if ": " in line)
        images.append({"name": case.name, "ok": case.ok, "problem": case.message,
                       "pushed_digest": (pushed.get(case.name) or {}).get("digest"),
                       "target_digest": fields.get("target digest"),
                       "config_digest": fields.get("target config digest")})
    record = {"route": ROUTE, "platform": str(chosen) if chosen else None, "images": images,
              "plan": {"tag": plan.tag, "created": plan.created, "shard": plan.shard}}
    return write_step(settings, "verify", cases, started, record)
