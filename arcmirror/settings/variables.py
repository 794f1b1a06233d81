"""Every setting arcmirror reads, declared once: name, default, parser, help, and the task option that sets it.

Everything else derives from :data:`VARIABLES`: the loader (``load.py``) parses and checks each one
with its parser, tasks' ``--help`` texts come from :func:`option_help`, and a test checks that
README.md and .env.example list every variable. A parser takes the text (white space and invisible
characters already trimmed, except for passwords) and returns the value, or raises ``ValueError``
with the reason, which becomes ``NAME='value' reason`` in the list of problems.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..oci.platform import Platform
from ..oci.reference import registry_problem, repository_problem, tag_problem

#: The image set shipped with arcmirror (the top-level config/ of a checkout links to the same folder).
DEFAULT_IMAGE_SET = Path(__file__).resolve().parent.parent / "config" / "arc-data-services.yaml"
ROUTES = ("registry", "docker")
DISCOVER_MODES = ("set", "catalog")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Variable:
    name: str
    help: str  # one line: what it means (and its default, in words, when that is not a plain value)
    parse: Callable[[str], Any]
    default: str | None = None  # the text used when the variable is unset or empty; None: no value
    option: str | None = None  # the task option (``--concurrency``) that sets it, if any
    secret: bool = False  # a password: never trimmed but for a trailing line break, never shown
    keeps_empty: bool = False  # set but empty is a value of its own (a repository: the registry root)


# -- parsers -----------------------------------------------------------------------------------

def text(value: str) -> str:
    return value


def flag(value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() not in _FALSE:
        raise ValueError("must be true or false")
    return False


def whole(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if not re.fullmatch(r"[0-9]{1,6}", value) or not low <= int(value) <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return int(value)
    return parse


def seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        if not re.fullmatch(r"[0-9]{1,6}(\.[0-9]{1,3})?", value) or not low <= float(value) <= high:
            raise ValueError(f"must be a number of seconds from {low:g} to {high:g}")
        return float(value)
    return parse


def choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value.lower() not in choices:
            raise ValueError(f"must be one of: {', '.join(choices)}")
        return value.lower()
    return parse


def checked(problem: Callable[[str], str | None]) -> Callable[[str], str]:
    """A parser from a grammar check that returns the problem (or None)."""
    def parse(value: str) -> str:
        if reason := problem(value):
            raise ValueError(reason)
        return value
    return parse


def repository(value: str) -> str:
    return checked(repository_problem)(value.strip("/"))


def names(value: str) -> tuple[str, ...]:
    """Items separated by commas, spaces or line breaks (a multi-line pipeline variable works)."""
    return tuple(dict.fromkeys(item for item in re.split(r"[\s,]+", value) if item))


def image_names(value: str) -> tuple[str, ...]:
    found = names(value)
    bad = [f"image name {n!r} {p}" for n in found if (p := repository_problem(n, allow_empty=False))]
    if bad:
        raise ValueError("has an invalid " + "; ".join(bad))
    return found


def platforms(value: str) -> tuple[Platform, ...]:
    try:
        return tuple(Platform.parse(item) for item in names(value))
    except ValueError as exc:
        raise ValueError(f"has a platform that {exc}") from None


def shard(value: str) -> tuple[int, int]:
    match = re.fullmatch(r"([0-9]{1,2})/([0-9]{1,2})", value)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ValueError("must be I/N with 1 <= I <= N, e.g. 2/4")
    return int(match[1]), int(match[2])


def path(value: str) -> Path:
    return Path(value)


def paths(value: str) -> tuple[Path, ...]:
    return tuple(Path(item) for item in names(value))


# -- the table ---------------------------------------------------------------------------------

def _registry(role: str, prefix: str, default: str | None, repository_default: str | None, tag_help: str,
              tag_option: str) -> list[Variable]:
    return [
        Variable(f"{prefix}_REGISTRY", f"{role} registry host[:port]" + ("" if default else " (required)"),
                 checked(registry_problem), default),
        Variable(f"{prefix}_REPOSITORY", f"path under the {role} registry (set but empty: the registry root)"
                 + ("" if repository_default else "; default: SOURCE_DOCKER_REPOSITORY"),
                 repository, repository_default, keeps_empty=True),
        Variable(f"{prefix}_USERNAME", f"{role} user (unset: Docker config credentials, else anonymous)", text),
        Variable(f"{prefix}_PASSWORD", f"{role} password or token", text, secret=True),
        Variable(f"{prefix}_TAG", tag_help, checked(tag_problem), option=tag_option),
        Variable(f"{prefix}_INSECURE", f"true: plain HTTP or unverified TLS allowed for the {role}", flag, "false"),
        Variable(f"{prefix}_CA_BUNDLE", f"PEM file of CA certificates for the {role}", path),
    ]


VARIABLES: tuple[Variable, ...] = (
    *_registry("source", "SOURCE_DOCKER", "mcr.microsoft.com", "arcdata",
               "the source release tag, e.g. v1.41.0_2025-09-09 (unset or latest-release: the newest release)", "tag"),
    *_registry("target", "TARGET_DOCKER", None, None,
               "the tag to write in the target (default: the release tag)", "target-tag"),
    Variable("MIRROR_IMAGES", "image names (commas, spaces or line breaks) instead of the image set", image_names,
             option="images"),
    Variable("MIRROR_IMAGE_SET", "image set file (default config/arc-data-services.yaml)", path),
    Variable("MIRROR_PLATFORMS", "copy only these platforms of multi-platform images, e.g. linux/amd64 "
             "(empty: every platform, the index unchanged)", platforms, option="platforms"),
    Variable("MIRROR_CONCURRENCY", "blob bodies streaming at once; twice as many images under way, so the "
             "next is ready when one ends", whole(1, 64), "16", option="concurrency"),
    Variable("MIRROR_REPORT_DIR", "where JUnit and other reports go", path, "reports", option="report-dir"),
    Variable("MIRROR_ENV_FILE", "the .env file to read (default ./.env; a named file must exist)", path,
             option="env-file"),
    Variable("MIRROR_DISCOVER", "set: the images of the image set; catalog: every repository of the source's "
             "_catalog with the release tag", choice(*DISCOVER_MODES), "set", option="discover"),
    Variable("MIRROR_STORE", "the local OCI layout store of pull, tag, push and export", path, ".arcmirror/store",
             option="store"),
    Variable("MIRROR_TIMEOUT", "seconds without a byte before a connection counts as stalled", seconds(0.1, 3600),
             "60"),
    Variable("MIRROR_RETRIES", "attempts for each request and each blob before giving up", whole(1, 20), "5"),
    Variable("MIRROR_SHARD", "I/N: only the I-th of N shares of the plan's images, balanced by bytes", shard,
             option="shard"),
    Variable("MIRROR_ENGINE", "registry: registry to registry, digests kept; docker: through the Docker engine "
             "at DOCKER_HOST", choice(*ROUTES), "registry", option="engine"),
    Variable("MIRROR_REPAIR", "true: check every blob under a tag already in place and send again what was lost",
             flag, "false", option="repair"),
    Variable("MIRROR_REFERRERS", "true: copy signatures, SBOMs and attestations with each image; false: skip them",
             flag, "true"),
    Variable("MIRROR_REFERRER_TYPES", "artifact types of referrers to copy (cosign: cosign's tags); empty: all",
             names),
    Variable("MIRROR_TRUST_DIR", "a notation configuration folder (trustpolicy.oci.json, truststore/x509/...): "
             "Notary signatures are verified against it at the source, on import and in verify; empty: no "
             "verification", path, option="trust-dir"),
    Variable("MIRROR_COSIGN_KEYS", "PEM public keys (files or folders; commas, spaces or line breaks) that a cosign "
             "signature of each image must verify with; empty: cosign signatures are not verified", paths,
             option="cosign-keys"),
)
BY_NAME = {variable.name: variable for variable in VARIABLES}
BY_OPTION = {variable.option: variable for variable in VARIABLES if variable.option}


def option_help(option: str) -> str:
    """The ``--help`` text of a task option that sets a variable: its meaning, name and default."""
    variable = BY_OPTION[option]
    default = f", default {variable.default}" if variable.default else ""
    return f"{variable.help} ({variable.name}{default})"
