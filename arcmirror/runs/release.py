"""Which release and which images: the release tag (given, or the newest) and the image list (the image
set, or every repository of the source's catalog carrying the tag); a release with no images is an error."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..endpoints.base import Source
from ..oci.errors import NotFoundError
from ..oci.reference import join_repository, nearest_tags
from ..registry.client import RegistryClient
from ..settings.imageset import (
    DEFAULT_RELEASE_PATTERN,
    ImageSet,
    ImageSetError,
    load_image_set,
)
from ..settings.load import ConfigError, Settings, full_name_problems
from .plan import AUTO_TAGS, PlanError


class ReleaseNotFound(PlanError):
    """No image of the release carries its tag: a mistyped SOURCE_DOCKER_TAG, most likely."""


def release_not_found(settings: Settings, client: RegistryClient, tag: str, repositories: Sequence[str],
                      how: str) -> ReleaseNotFound:
    """The error for a release with no image, naming the tag and the nearest tags that do exist.

    The nearest tags are looked for in the set's reference image, else in the first repository checked.
    """
    src = settings.source
    reference = next((n for n in (_reference_image(settings), *repositories) if n), None)
    tags = client.list_tags(join_repository(src.repository, reference), missing_ok=True) if reference else []
    nearest = nearest_tags(tag, tags)
    where = f"{src.registry}/{src.repository or '.'}"
    return ReleaseNotFound(
        f"release {tag} has no images: {how} under {where} carries tag {tag}"
        + (f"; the nearest tags that exist ({reference}): {', '.join(nearest)}" if nearest else
           f"; {reference or 'the first image'} has no tags at all" if reference else ""),
        "check SOURCE_DOCKER_TAG (unset it, or set it to latest-release, to take the newest release)",
    )


def _image_set(settings: Settings) -> ImageSet | None:
    try:
        return load_image_set(settings.image_set) if settings.image_set.is_file() else None
    except ImageSetError:
        return None


def _reference_image(settings: Settings, image_set: ImageSet | None = None) -> str | None:
    """The image whose tags say which releases exist: the set's reference image, else the first image."""
    image_set = image_set or _image_set(settings)
    if image_set and image_set.reference_image in settings.images:
        return image_set.reference_image
    return settings.images[0] if settings.images else None


# -- the release tag ---------------------------------------------------------------------------

def release_key(tag: str, pattern: re.Pattern[str]) -> tuple | None:
    """A sort key for a release tag (version numbers, then date), or None when it is not a release."""
    match = pattern.match(tag)
    if not match:
        return None
    groups = match.groupdict()
    if {"major", "minor", "patch"} <= groups.keys():
        return (int(groups["major"]), int(groups["minor"]), int(groups["patch"]), groups.get("date") or "")
    return tuple(int(n) if n[0] in "0123456789" else n for n in re.findall(r"[0-9]+|[A-Za-z]+", tag))


def choose_release_tag(tags: Sequence[str], pattern: re.Pattern[str], where: str = "") -> tuple[str, str]:
    """The newest release tag and a sentence saying why it was chosen."""
    releases = sorted(((release_key(t, pattern), t) for t in tags if release_key(t, pattern)), reverse=True)
    if not releases:
        raise NotFoundError(
            f"none of the {len(tags)} tags matches the release-tag pattern {pattern.pattern}",
            "set SOURCE_DOCKER_TAG to the release to mirror",
        )
    newest = releases[0][1]
    others = [t for _, t in releases[1:4]]
    reason = (f"newest of {len(releases)} release tags{' of ' + where if where else ''} (by version, then date)"
              + (f"; next: {', '.join(others)}" if others else "")
              + (f"; {len(tags) - len(releases)} other tags ignored" if len(tags) > len(releases) else ""))
    return newest, reason


def resolve_release_tag(settings: Settings, client: RegistryClient, reference_image: str | None = None,
                        pattern: re.Pattern[str] | None = None) -> tuple[str, str]:
    """SOURCE_DOCKER_TAG, or the newest release tag of the set's reference image; with the reason."""
    tag = settings.source.tag
    if tag not in AUTO_TAGS:
        return tag, "given by SOURCE_DOCKER_TAG"
    image_set = _image_set(settings)
    pattern = pattern or (image_set.release_tag_pattern if image_set else DEFAULT_RELEASE_PATTERN)
    ref_image = reference_image or _reference_image(settings, image_set)
    repo = join_repository(settings.source.repository, ref_image)
    return choose_release_tag(client.list_tags(repo), pattern, f"{settings.source.registry}/{repo}")


# -- discovery ---------------------------------------------------------------------------------

def _catalog_images(client: RegistryClient, repository: str) -> list[str]:
    prefix = f"{repository}/" if repository else ""
    return sorted(r[len(prefix):] for r in client.catalog() if r.startswith(prefix) and len(r) > len(prefix))


@dataclass
class ReleaseImages:
    """Which images make up the release, and where that list came from."""

    names: list[str]
    source: str  # "image set FILE", "MIRROR_IMAGES", "catalog of HOST/REPO"
    missing: list[str] = field(default_factory=list)  # in the set, not in the catalog with the tag
    extra: list[str] = field(default_factory=list)  # in the catalog with the tag, not in the set


def release_images(settings: Settings, source: Source, client: RegistryClient, tag: str,
                   say: Callable[[str], None] = lambda _: None) -> ReleaseImages:
    """The image set (MIRROR_DISCOVER=set), or every repository of the catalog that carries ``tag``.

    With the catalog, no repository carrying the tag is :class:`ReleaseNotFound`, and a full name
    that the distribution spec does not allow is a :class:`ConfigError`, before anything is copied.
    """
    if settings.discover != "catalog":
        return ReleaseImages(list(settings.images), settings.images_from)
    src = settings.source
    candidates = _catalog_images(client, src.repository)
    with ThreadPoolExecutor(settings.concurrency) as pool:
        has_tag = list(pool.map(lambda n: source.resolve(join_repository(src.repository, n), tag) is not None,
                                candidates))
    tagged = [n for n, ok in zip(candidates, has_tag) if ok]
    if not tagged:
        raise release_not_found(settings, client, tag, candidates,
                                f"none of the {len(candidates)} repositories of the catalog (MIRROR_DISCOVER=catalog)")
    if problems := full_name_problems(settings, tagged):
        raise ConfigError(problems)
    found = ReleaseImages(tagged, f"catalog of {src.registry}/{src.repository or '.'}",
                          missing=[n for n in settings.images if n not in tagged],
                          extra=[n for n in tagged if n not in settings.images])
    if found.extra:
        say(f"In the catalog with tag {tag} but not in the image set: {', '.join(found.extra)}")
    if found.missing:
        say(f"In the image set but not in the catalog with tag {tag}: {', '.join(found.missing)}")
    return found
