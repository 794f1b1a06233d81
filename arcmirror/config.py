"""Settings: one source of truth, read from task options, the environment and a ``.env`` file.

Precedence: task option > process environment (pipeline variables) > ``.env`` file > default.
Nothing here prompts or reads stdin. Every problem is collected into one :class:`ConfigError`
so a user fixes them all in one go. Passwords are held as :class:`~arcmirror.secret.Secret`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence


from . import envfile
from .imageset import DEFAULT_IMAGE_SET, ImageSetError, load_image_set
from .reference import NAME_TOTAL_MAX, join_repository, registry_problem, repository_problem, tag_problem
from .secret import Secret

DEFAULT_SOURCE_REGISTRY = "mcr.microsoft.com"
DEFAULT_SOURCE_REPOSITORY = "arcdata"
DEFAULT_CONCURRENCY = 4
DEFAULT_ENV_FILE = ".env"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

#: Every variable arcmirror reads, with a one-line meaning (used by --help and .env.example).
VARIABLES: dict[str, str] = {
    "SOURCE_DOCKER_REGISTRY": f"source registry host[:port] (default {DEFAULT_SOURCE_REGISTRY})",
    "SOURCE_DOCKER_REPOSITORY": f"path under the source registry (default {DEFAULT_SOURCE_REPOSITORY}; may be empty)",
    "SOURCE_DOCKER_USERNAME": "source user (unset: Docker config credentials, else anonymous)",
    "SOURCE_DOCKER_PASSWORD": "source password or token",
    "SOURCE_DOCKER_TAG": "release tag to mirror, e.g. v1.41.0_2025-09-09 (unset or latest-release: the newest)",
    "SOURCE_DOCKER_INSECURE": "true: plain HTTP or unverified TLS allowed for the source",
    "SOURCE_DOCKER_CA_BUNDLE": "PEM file of CA certificates for the source",
    "TARGET_DOCKER_REGISTRY": "target registry host[:port] (required)",
    "TARGET_DOCKER_REPOSITORY": "path in the target (default: SOURCE_DOCKER_REPOSITORY)",
    "TARGET_DOCKER_USERNAME": "target user (unset: Docker config credentials, else anonymous)",
    "TARGET_DOCKER_PASSWORD": "target password or token",
    "TARGET_DOCKER_TAG": "tag written in the target (default: SOURCE_DOCKER_TAG)",
    "TARGET_DOCKER_INSECURE": "true: plain HTTP or unverified TLS allowed for the target",
    "TARGET_DOCKER_CA_BUNDLE": "PEM file of CA certificates for the target",
    "MIRROR_IMAGES": "comma-separated image names, overriding the image set",
    "MIRROR_IMAGE_SET": "image set file (default config/arc-data-services.yaml)",
    "MIRROR_PLATFORMS": "e.g. linux/amd64; empty copies every platform of an index unchanged",
    "MIRROR_CONCURRENCY": f"parallel transfers (default {DEFAULT_CONCURRENCY})",
    "MIRROR_REPORT_DIR": "where JUnit and other reports go (default reports)",
    "MIRROR_ENV_FILE": "the .env file to read (default ./.env; a named file must exist)",
    "MIRROR_DISCOVER": "set (default): images from the image set; catalog: every repository with the tag",
    "MIRROR_STORE": "the local OCI layout used by pull/tag/push/export (default .arcmirror/store)",
    "MIRROR_TIMEOUT": "seconds without a byte before a connection counts as stalled (default 60)",
    "MIRROR_RETRIES": "attempts for each request and each blob before giving up (default 5)",
    "MIRROR_SHARD": "I/N: work on the I-th of N shares of the plan's images (parallel pipeline jobs)",
    "MIRROR_ENGINE": "registry (default): registry to registry, digests kept; docker: through the Docker engine",
    "MIRROR_REPAIR": "true: check every blob under a tag already in place and send again what was lost",
    "MIRROR_REFERRERS": "true (default): copy signatures, SBOMs and attestations with each image; false: skip them",
    "MIRROR_REFERRER_TYPES": "comma-separated artifact types of referrers to copy (cosign: cosign's tags); empty: all",
}
ENGINES = ("registry", "docker")
#: An Azure Pipelines variable that is not defined reaches a script as its own macro text.
_UNDEFINED_MACRO = re.compile(r"^\$\([A-Za-z0-9_.-]+\)$")
DISCOVER_MODES = ("set", "catalog")


class ConfigError(Exception):
    """One or more settings are missing or invalid; ``problems`` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = ["arcmirror: the configuration has problems:"]
        lines += [f"  - {p}" for p in self.problems]
        lines.append("Set these as environment variables or in the .env file (see .env.example).")
        return "\n".join(lines)


def normalize_platform(os_name: str, architecture: str, variant: str | None) -> tuple[str, str, str]:
    """``(os, architecture, variant)`` in containerd's normal form (``platforms.Normalize``).

    Lower case; ``macos`` is ``darwin``; ``x86_64``/``x86-64`` are ``amd64`` and its ``v1`` is no
    variant; ``aarch64`` is ``arm64`` and its ``v8`` is no variant (``9`` is ``v9``); ``i386`` is ``386``;
    ``armhf`` is ``arm/v7``, ``armel`` ``arm/v6``, and ``arm`` without a variant ``arm/v7``.
    """
    os_name, arch, variant = os_name.lower(), architecture.lower(), (variant or "").lower()
    os_name = {"macos": "darwin"}.get(os_name, os_name)
    if arch == "i386":
        arch, variant = "386", ""
    elif arch in ("x86_64", "x86-64", "amd64"):
        arch, variant = "amd64", "" if variant == "v1" else variant
    elif arch in ("aarch64", "arm64"):
        arch = "arm64"
        variant = {"8": "", "v8": "", "v8.0": "", "9": "v9", "9.0": "v9", "v9.0": "v9"}.get(variant, variant)
    elif arch == "armhf":
        arch, variant = "arm", "v7"
    elif arch == "armel":
        arch, variant = "arm", "v6"
    elif arch == "arm":
        variant = {"": "v7", "7": "v7", "5": "v5", "6": "v6", "8": "v8"}.get(variant, variant)
    return os_name, arch, variant


@dataclass(frozen=True)
class Platform:
    """A platform of MIRROR_PLATFORMS, normalised as containerd does.

    ``variant`` None (none given) matches every variant; ``""`` is the base variant a given one
    normalises to (``arm64/v8``, ``amd64/v1``): it matches an entry with that variant or with none.
    """

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Platform":
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(p and p.replace("_", "").replace("-", "").replace(".", "").isalnum()
                                                for p in parts):
            raise ValueError(f"{text!r} is not os/architecture[/variant], e.g. linux/amd64")
        os_name, arch, variant = normalize_platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None)
        return cls(os_name, arch, variant if len(parts) == 3 else None)

    def matches(self, platform: Mapping[str, object] | None) -> bool:
        """Does an index entry's ``platform`` object match this one (both sides normalised)?"""
        if not isinstance(platform, Mapping):
            return False
        os_name, arch, variant = normalize_platform(str(platform.get("os") or ""), str(platform.get("architecture") or ""),
                                                    str(platform.get("variant") or ""))
        if os_name != self.os or arch != self.architecture:
            return False
        return self.variant is None or variant == self.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Endpoint:
    """Where images come from or go to: one registry and a path in it."""

    role: str  # "source" or "target"
    prefix: str  # "SOURCE_DOCKER" or "TARGET_DOCKER": names the variables in messages
    registry: str
    repository: str
    tag: str
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    insecure: bool = False
    ca_bundle: str | None = None


@dataclass(frozen=True)
class Settings:
    source: Endpoint
    target: Endpoint
    images: tuple[str, ...]
    image_set: Path
    platforms: tuple[Platform, ...]
    concurrency: int
    report_dir: Path
    env_file: Path | None
    images_from: str = "image set"
    discover: str = "set"
    store: Path = Path(".arcmirror/store")
    timeout: float = 60.0
    retries: int = 5
    shard: tuple[int, int] | None = None  # (index from 1, count)
    engine: str = "registry"
    repair: bool = False
    referrers: bool = True
    referrer_types: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # things to say before a run (a .env value that lost an unset $VAR)

    @property
    def plan_path(self) -> Path:
        return self.report_dir / "plan.json"


#: Characters a paste from a web portal or a document can carry around a value, besides white space.
_INVISIBLE = "\ufeff\u200b\u200c\u200d\u200e\u200f\u2060"


def clean(value: str) -> str:
    """A value as meant: white space and invisible characters around it removed (not for passwords)."""
    return value.strip().strip(_INVISIBLE).strip()


def trim_line_break(value: str) -> str:
    """What ``docker login --password-stdin`` does to a password: one trailing ``\\n``, then one ``\\r``, go."""
    value = value[:-1] if value.endswith("\n") else value
    return value[:-1] if value.endswith("\r") else value


def split_list(value: str | None) -> list[str]:
    """A list setting: items separated by commas, spaces or line breaks (a multi-line pipeline variable)."""
    return [item for item in re.split(r"[\s,]+", clean(value or "")) if item.strip(_INVISIBLE)]


def full_name_problems(settings: "Settings", names: Sequence[str]) -> list[str]:
    """Every image's source and target name against the distribution spec's length limit.

    A name is ``registry/repository/image``; each part is checked on its own when it is set, so what
    is left is the length of the whole (at most 255 characters).
    """
    problems = []
    for endpoint in (settings.source, settings.target):
        if not endpoint.registry:
            continue
        too_long = {name: len(f"{endpoint.registry}/{join_repository(endpoint.repository, name)}") for name in names}
        too_long = {name: n for name, n in too_long.items() if n > NAME_TOTAL_MAX}
        if not too_long:
            continue
        longest = max(names, key=len)
        room = NAME_TOTAL_MAX - len(endpoint.registry) - 2 - len(longest)
        listed = ", ".join(f"{name} ({n})" for name, n in sorted(too_long.items(), key=lambda item: -item[1])[:8])
        more = f" and {len(too_long) - 8} more" if len(too_long) > 8 else ""
        problems.append(
            f"{endpoint.prefix}_REPOSITORY={endpoint.repository[:40]!r}{'...' if len(endpoint.repository) > 40 else ''} "
            f"({len(endpoint.repository)} characters) makes {len(too_long)} full image names longer than the "
            f"{NAME_TOTAL_MAX} characters the distribution spec allows (registry/repository/image): {listed}{more}; "
            + (f"shorten {endpoint.prefix}_REPOSITORY to at most {room} characters" if room > 0 else
               f"{endpoint.prefix}_REGISTRY and the image names leave no room: shorten them"))
    return problems


def _read_env_file(path: Path | None, explicit: bool, environ: Mapping[str, str], problems: list[str],
                   warnings: list[str]) -> dict[str, str]:
    if path is None:
        return {}
    if not path.is_file():
        if explicit:
            problems.append(f"the .env file {path} does not exist (named by MIRROR_ENV_FILE or --env-file)")
        return {}
    read = envfile.read(path, environ)
    problems += read.problems
    warnings += read.warnings
    return read.values


def _flag(name: str, raw: str | None, problems: list[str]) -> bool:
    value = (raw or "").strip().lower()
    if value in _TRUE:
        return True
    if value not in _FALSE:
        problems.append(f"{name}={raw!r} must be true or false")
    return False


def load_settings(
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str | None] | None = None,
    *,
    cwd: Path | None = None,
    require_tag: bool = False,
    require_target: bool = True,
    check_credentials: bool = True,
) -> Settings:
    """Build :class:`Settings` or raise :class:`ConfigError` listing every problem.

    ``overrides`` are task options, keyed by variable name (``None`` means "not given").
    """
    environ = os.environ if environ is None else environ
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    cwd = cwd or Path.cwd()
    problems: list[str] = []
    warnings: list[str] = []

    env_file_name = clean(overrides.get("MIRROR_ENV_FILE") or environ.get("MIRROR_ENV_FILE") or "")
    explicit = bool(env_file_name)
    env_path = Path(env_file_name) if explicit else cwd / DEFAULT_ENV_FILE
    if not env_path.is_absolute():
        env_path = cwd / env_path
    file_values = _read_env_file(env_path, explicit, environ, problems, warnings)

    def raw(name: str) -> str | None:
        for layer in (overrides, environ, file_values):
            if name in layer and not _UNDEFINED_MACRO.match(clean(layer[name] or "")):
                return layer[name]
        return None

    def get(name: str, default: str | None = None) -> str | None:
        """A setting as meant: white space and invisible characters around it dropped (not for passwords)."""
        value = raw(name)
        return default if value is None else clean(value)

    def endpoint(role: str, prefix: str, registry_default: str | None, repo_default: str | None,
                 tag_default: str | None) -> Endpoint:
        registry = (get(f"{prefix}_REGISTRY") or registry_default or "").strip()
        if not registry:
            if role == "source" or require_target:
                problems.append(f"{prefix}_REGISTRY is not set: give the {role} registry as host[:port]")
        elif problem := registry_problem(registry):
            problems.append(f"{prefix}_REGISTRY={registry!r} {problem}")
        repository = get(f"{prefix}_REPOSITORY")
        repository = (repo_default if repository is None else repository).strip().strip("/")
        if problem := repository_problem(repository):
            problems.append(f"{prefix}_REPOSITORY={repository!r} {problem}")
        own_tag = (get(f"{prefix}_TAG") or "").strip()
        tag = own_tag or (tag_default or "")
        if not tag:
            if require_tag and role == "source":
                problems.append(f"{prefix}_TAG is not set: give the release tag to mirror, e.g. v1.41.0_2025-09-09")
        elif own_tag and (problem := tag_problem(own_tag)):
            problems.append(f"{prefix}_TAG={tag!r} {problem}")
        username = get(f"{prefix}_USERNAME") or None
        # a secret from a pipeline variable or a file often ends in a line break: drop it, as docker login does
        password_raw = trim_line_break(raw(f"{prefix}_PASSWORD") or "") or None
        if check_credentials and password_raw and not username:
            problems.append(f"{prefix}_PASSWORD is set but {prefix}_USERNAME is not: set both or neither")
        if check_credentials and username and not password_raw:
            problems.append(f"{prefix}_USERNAME is set but {prefix}_PASSWORD is not: set both or neither")
        ca_bundle = (get(f"{prefix}_CA_BUNDLE") or "").strip() or None
        if ca_bundle:
            ca_path = Path(ca_bundle) if Path(ca_bundle).is_absolute() else cwd / ca_bundle
            if not ca_path.is_file() or not os.access(ca_path, os.R_OK):
                problems.append(f"{prefix}_CA_BUNDLE={ca_bundle!r} is not a readable file")
            elif "BEGIN CERTIFICATE" not in ca_path.read_text(errors="replace"):
                problems.append(f"{prefix}_CA_BUNDLE={ca_bundle!r} holds no PEM certificate")
            ca_bundle = str(ca_path)
        return Endpoint(
            role=role,
            prefix=prefix,
            registry=registry,
            repository=repository,
            tag=tag,
            username=username,
            password=Secret(password_raw) if password_raw else None,
            insecure=_flag(f"{prefix}_INSECURE", get(f"{prefix}_INSECURE"), problems),
            ca_bundle=ca_bundle,
        )

    source = endpoint("source", "SOURCE_DOCKER", DEFAULT_SOURCE_REGISTRY, DEFAULT_SOURCE_REPOSITORY, None)
    target = endpoint("target", "TARGET_DOCKER", None, source.repository, source.tag)

    image_set_name = get("MIRROR_IMAGE_SET")
    image_set_path = Path(image_set_name) if image_set_name else DEFAULT_IMAGE_SET
    if not image_set_path.is_absolute():
        # relative to the working folder, else to arcmirror's own folder (where config/ lives)
        local, shipped = cwd / image_set_path, DEFAULT_IMAGE_SET.parent.parent / image_set_path
        image_set_path = local if local.exists() or not shipped.exists() else shipped
    images: tuple[str, ...] = ()
    images_raw = split_list(get("MIRROR_IMAGES"))
    images_from = f"image set {image_set_path}"
    if images_raw:
        images_from = "MIRROR_IMAGES"
        images = tuple(dict.fromkeys(images_raw))
        for name in images:
            if problem := repository_problem(name, allow_empty=False):
                problems.append(f"MIRROR_IMAGES: image name {name!r} {problem}")
    else:
        try:
            images = load_image_set(image_set_path).images
        except ImageSetError as exc:
            problems.append(f"MIRROR_IMAGE_SET: {exc}")

    platforms: list[Platform] = []
    for item in split_list(get("MIRROR_PLATFORMS")):
        try:
            platforms.append(Platform.parse(item))
        except ValueError as exc:
            problems.append(f"MIRROR_PLATFORMS: {exc}")

    def number(name: str, default: float, low: float, high: float, *, whole: bool = True) -> float:
        raw = (get(name) or "").strip()
        if not raw:
            return default
        pattern = r"[0-9]{1,6}" if whole else r"[0-9]{1,6}(\.[0-9]{1,3})?"
        if not re.fullmatch(pattern, raw) or not low <= float(raw) <= high:
            kind = "a whole number" if whole else "a number of seconds"
            problems.append(f"{name}={raw!r} must be {kind} from {low:g} to {high:g}")
            return default
        return int(raw) if whole else float(raw)

    concurrency = int(number("MIRROR_CONCURRENCY", DEFAULT_CONCURRENCY, 1, 64))
    timeout = number("MIRROR_TIMEOUT", 60.0, 0.1, 3600, whole=False)
    retries = int(number("MIRROR_RETRIES", 5, 1, 20))

    def folder(name: str, default: str) -> Path:
        path = Path(get(name) or default)
        return path if path.is_absolute() else cwd / path

    report_dir = folder("MIRROR_REPORT_DIR", "reports")
    store = folder("MIRROR_STORE", ".arcmirror/store")
    shard = None
    shard_raw = (get("MIRROR_SHARD") or "").strip()
    if shard_raw:
        match = re.fullmatch(r"([0-9]{1,2})/([0-9]{1,2})", shard_raw)
        if not match or not 1 <= int(match[1]) <= int(match[2]):
            problems.append(f"MIRROR_SHARD={shard_raw!r} must be I/N with 1 <= I <= N, e.g. 2/4")
        else:
            shard = (int(match[1]), int(match[2]))
    engine = (get("MIRROR_ENGINE") or "registry").strip().lower()
    if engine not in ENGINES:
        problems.append(f"MIRROR_ENGINE={engine!r} must be one of: {', '.join(ENGINES)}")
    referrers = _flag("MIRROR_REFERRERS", get("MIRROR_REFERRERS", "true"), problems)
    repair = _flag("MIRROR_REPAIR", get("MIRROR_REPAIR"), problems)
    referrer_types = tuple(split_list(get("MIRROR_REFERRER_TYPES")))
    discover = (get("MIRROR_DISCOVER") or "set").strip().lower()
    if discover not in DISCOVER_MODES:
        problems.append(f"MIRROR_DISCOVER={discover!r} must be one of: {', '.join(DISCOVER_MODES)}")

    if problems:
        raise ConfigError(problems)
    settings = Settings(
        source=source,
        target=target,
        images=images,
        image_set=image_set_path,
        platforms=tuple(platforms),
        concurrency=concurrency,
        report_dir=report_dir,
        env_file=env_path if env_path.is_file() else None,
        images_from=images_from,
        discover=discover,
        store=store,
        timeout=timeout,
        retries=retries,
        shard=shard,
        engine=engine,
        repair=repair,
        referrers=referrers,
        referrer_types=referrer_types,
        warnings=tuple(warnings),
    )
    if discover == "set" and (problems := full_name_problems(settings, images)):
        raise ConfigError(problems)
    return settings
