"""Settings from task options, the environment and a ``.env`` file; every problem reported at once.

Precedence: task option > process environment (pipeline variables) > ``.env`` file > the default of
:data:`~.variables.VARIABLES`. Nothing here prompts or reads stdin. Every problem goes into one
:class:`ConfigError`, so a user fixes them all in one go. Passwords are held as
:class:`~arcmirror.secret.Secret`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..oci.platform import Platform
from ..oci.reference import NAME_TOTAL_MAX, join_repository
from ..secret import Secret
from . import envfile
from .imageset import ImageSetError, load_image_set
from .variables import BY_NAME, DEFAULT_IMAGE_SET

DEFAULT_ENV_FILE = ".env"
#: An Azure Pipelines variable that is not defined reaches a script as its own macro text.
_UNDEFINED_MACRO = re.compile(r"^\$\([A-Za-z0-9_.-]+\)$")
#: Characters a paste from a web portal or a document can carry around a value, besides white space.
_INVISIBLE = "\ufeff\u200b\u200c\u200d\u200e\u200f\u2060"


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


@dataclass(frozen=True)
class RegistrySettings:
    """Where images come from or go to: one registry and a path in it, as SOURCE_/TARGET_DOCKER_* say."""

    role: str  # "source" or "target"
    prefix: str  # "SOURCE_DOCKER" or "TARGET_DOCKER": names the variables in messages
    registry: str
    repository: str
    tag: str
    username: str | None
    password: Secret | None = field(repr=False)
    insecure: bool
    ca_bundle: str | None


@dataclass(frozen=True)
class Settings:
    source: RegistrySettings
    target: RegistrySettings
    images: tuple[str, ...]
    image_set: Path
    images_from: str  # "image set FILE" or "MIRROR_IMAGES" (or, once discovered, "catalog of ...")
    platforms: tuple[Platform, ...]
    concurrency: int
    report_dir: Path
    env_file: Path | None
    discover: str
    store: Path
    timeout: float
    retries: int
    shard: tuple[int, int] | None  # (index from 1, count)
    route: str  # MIRROR_ENGINE: "registry" or "docker"
    repair: bool
    referrers: bool
    referrer_types: tuple[str, ...]
    trust_dir: Path | None  # MIRROR_TRUST_DIR: verify Notary signatures against this notation folder
    cosign_keys: tuple[Path, ...]  # MIRROR_COSIGN_KEYS
    warnings: tuple[str, ...]  # things to say before a run (a .env value that lost an unset $VAR)

    @property
    def plan_path(self) -> Path:
        return self.report_dir / "plan.json"


def clean(value: str) -> str:
    """A value as meant: white space and invisible characters around it removed (not for passwords)."""
    return value.strip().strip(_INVISIBLE).strip()


def trim_line_break(value: str) -> str:
    """What ``docker login --password-stdin`` does to a password: one trailing ``\\n``, then one ``\\r``, go."""
    value = value[:-1] if value.endswith("\n") else value
    return value[:-1] if value.endswith("\r") else value


def full_name_problems(settings: Settings, names: Sequence[str]) -> list[str]:
    """Every image's source and target name against the distribution spec's length limit.

    A name is ``registry/repository/image``; each part is checked on its own when it is set, so what
    is left is the length of the whole (at most 255 characters).
    """
    problems = []
    for endpoint in (settings.source, settings.target):
        if not endpoint.registry or not names:
            continue
        lengths = {name: len(f"{endpoint.registry}/{join_repository(endpoint.repository, name)}") for name in names}
        too_long = {name: n for name, n in lengths.items() if n > NAME_TOTAL_MAX}
        if not too_long:
            continue
        room = NAME_TOTAL_MAX - len(endpoint.registry) - 2 - len(max(names, key=len))
        listed = ", ".join(f"{name} ({n})" for name, n in sorted(too_long.items(), key=lambda item: -item[1])[:8])
        more = f" and {len(too_long) - 8} more" if len(too_long) > 8 else ""
        shown = endpoint.repository[:40] + ("..." if len(endpoint.repository) > 40 else "")
        problems.append(
            f"{endpoint.prefix}_REPOSITORY={shown!r} ({len(endpoint.repository)} characters) makes {len(too_long)} "
            f"full image names longer than the {NAME_TOTAL_MAX} characters the distribution spec allows "
            f"(registry/repository/image): {listed}{more}; "
            + (f"shorten {endpoint.prefix}_REPOSITORY to at most {room} characters" if room > 0 else
               f"{endpoint.prefix}_REGISTRY and the image names leave no room: shorten them"))
    return problems


class _Reader:
    """The layers of values (options, environment, .env file) and the problems found reading them."""

    def __init__(self, layers: Sequence[Mapping[str, str]], cwd: Path) -> None:
        self.layers = layers
        self.cwd = cwd
        self.problems: list[str] = []

    def text(self, name: str) -> str | None:
        """The value given for ``name`` (trimmed, but a password only of a trailing line break), or None."""
        for layer in self.layers:
            if name in layer and not _UNDEFINED_MACRO.match(clean(layer[name] or "")):
                raw = layer[name] or ""
                return trim_line_break(raw) if BY_NAME[name].secret else clean(raw)
        return None

    def get(self, name: str, default: str | None = None) -> Any:
        """The parsed value of ``name``: the given text, else ``default``, else the table's default."""
        variable = BY_NAME[name]
        given = self.text(name)
        if given is None or (given == "" and not variable.keeps_empty):
            given = default if default is not None else variable.default
        if given is None or (given == "" and not variable.keeps_empty):
            return None
        try:
            return variable.parse(given)
        except ValueError as exc:
            self.problems.append(f"{name}={given!r} {exc}")
            return None

    def path(self, name: str, default: str | None = None) -> Path | None:
        found = self.get(name, default)
        return None if found is None else found if found.is_absolute() else self.cwd / found


def _registry(read: _Reader, role: str, prefix: str, *, repository_default: str | None = None,
              tag_default: str = "", required: bool, check_credentials: bool) -> RegistrySettings:
    problems = read.problems
    registry = read.get(f"{prefix}_REGISTRY") or ""
    if not registry and required and not read.text(f"{prefix}_REGISTRY"):
        problems.append(f"{prefix}_REGISTRY is not set: give the {role} registry as host[:port]")
    username = read.get(f"{prefix}_USERNAME")
    password = read.get(f"{prefix}_PASSWORD")
    if check_credentials and password and not username:
        problems.append(f"{prefix}_PASSWORD is set but {prefix}_USERNAME is not: set both or neither")
    if check_credentials and username and not password:
        problems.append(f"{prefix}_USERNAME is set but {prefix}_PASSWORD is not: set both or neither")
    ca_bundle = read.path(f"{prefix}_CA_BUNDLE")
    if ca_bundle is not None:
        shown = read.text(f"{prefix}_CA_BUNDLE")
        if not ca_bundle.is_file() or not os.access(ca_bundle, os.R_OK):
            problems.append(f"{prefix}_CA_BUNDLE={shown!r} is not a readable file")
        elif "BEGIN CERTIFICATE" not in ca_bundle.read_text(errors="replace"):
            problems.append(f"{prefix}_CA_BUNDLE={shown!r} holds no PEM certificate")
    repository = read.get(f"{prefix}_REPOSITORY", repository_default)
    return RegistrySettings(
        role=role, prefix=prefix, registry=registry, repository=repository or "",
        tag=read.get(f"{prefix}_TAG") or tag_default, username=username or None,
        password=Secret(password) if password else None, insecure=bool(read.get(f"{prefix}_INSECURE")),
        ca_bundle=str(ca_bundle) if ca_bundle else None,
    )


def _image_set_path(read: _Reader) -> Path:
    """MIRROR_IMAGE_SET relative to the working folder, else to arcmirror's own folder (where config/ lives)."""
    given = read.get("MIRROR_IMAGE_SET")
    if given is None:
        return DEFAULT_IMAGE_SET
    if given.is_absolute():
        return given
    local, shipped = read.cwd / given, DEFAULT_IMAGE_SET.parent.parent / given
    return local if local.exists() or not shipped.exists() else shipped


def load_settings(
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str | None] | None = None,
    *,
    cwd: Path | None = None,
    require_target: bool = True,
    check_credentials: bool = True,
) -> Settings:
    """Build :class:`Settings` or raise :class:`ConfigError` listing every problem.

    ``overrides`` are task options, keyed by variable name (``None`` means "not given").
    """
    environ = os.environ if environ is None else environ
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    cwd = cwd or Path.cwd()
    bootstrap = _Reader([overrides, environ], cwd)
    named = bootstrap.path("MIRROR_ENV_FILE")
    env_path = named or cwd / DEFAULT_ENV_FILE
    problems, warnings, file_values = bootstrap.problems, [], {}
    if env_path.is_file():
        read_file = envfile.read(env_path, environ)
        problems, warnings, file_values = problems + read_file.problems, read_file.warnings, read_file.values
    elif named is not None:
        problems.append(f"the .env file {env_path} does not exist (named by MIRROR_ENV_FILE or --env-file)")
    read = _Reader([overrides, environ, file_values], cwd)
    read.problems = problems

    source = _registry(read, "source", "SOURCE_DOCKER", required=True, check_credentials=check_credentials)
    target = _registry(read, "target", "TARGET_DOCKER", repository_default=source.repository,
                       tag_default=source.tag, required=require_target, check_credentials=check_credentials)
    image_set = _image_set_path(read)
    images = read.get("MIRROR_IMAGES")
    images_from = "MIRROR_IMAGES"
    if not images:
        images_from = f"image set {image_set}"
        try:
            images = load_image_set(image_set).images
        except ImageSetError as exc:
            problems.append(f"MIRROR_IMAGE_SET: {exc}")
            images = ()
    values = dict(
        platforms=read.get("MIRROR_PLATFORMS") or (), concurrency=read.get("MIRROR_CONCURRENCY"),
        report_dir=read.path("MIRROR_REPORT_DIR"), discover=read.get("MIRROR_DISCOVER"),
        store=read.path("MIRROR_STORE"), timeout=read.get("MIRROR_TIMEOUT"), retries=read.get("MIRROR_RETRIES"),
        shard=read.get("MIRROR_SHARD"), route=read.get("MIRROR_ENGINE"), repair=read.get("MIRROR_REPAIR"),
        referrers=read.get("MIRROR_REFERRERS"), referrer_types=read.get("MIRROR_REFERRER_TYPES") or (),
        trust_dir=read.path("MIRROR_TRUST_DIR"),
        cosign_keys=tuple(p if p.is_absolute() else read.cwd / p for p in read.get("MIRROR_COSIGN_KEYS") or ()),
    )
    if problems:
        raise ConfigError(problems)
    settings = Settings(source=source, target=target, images=images, image_set=image_set, images_from=images_from,
                        env_file=env_path if env_path.is_file() else None, warnings=tuple(warnings), **values)
    if settings.discover == "set" and (long_names := full_name_problems(settings, images)):
        raise ConfigError(long_names)
    return settings
