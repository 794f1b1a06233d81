"""Discover: which release, which images, what each is made of, and what the target already has.

The plan (``reports/plan.json``) pins every image to a manifest digest: later steps copy exactly
that digest even if the source tag moves in the meantime.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from . import cancel
from .config import ConfigError, Platform, Settings, full_name_problems
from .endpoints.base import Source, Target
from .manifests import filter_index, is_index, platforms_of, walk
from .reference import ImageRef, join_repository, nearest_tags, tag_problem
from .referrers import find as find_referrers
from .registry.client import RegistryClient
from .registry.errors import NotFoundError, RegistryError

PLAN_VERSION = 1
AUTO_TAGS = ("", "latest-release")
DEFAULT_RELEASE_PATTERN = re.compile(r"^v(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)_(?P<date>\d{4}-\d{2}-\d{2})$")


@dataclass
class PlannedImage:
    name: str
    source: str  # full reference, for people
    source_repository: str
    target: str
    target_repository: str
    target_tag: str
    digest: str | None = None  # the source manifest digest, pinned
    target_digest: str | None = None  # what the target tag will point at (differs when an index is filtered)
    media_type: str | None = None
    platforms: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)  # every manifest digest of the (filtered) tree
    blobs: dict[str, int] = field(default_factory=dict)  # digest -> size
    in_target: bool | None = None  # None: the target could not be asked
    bytes_in_target: int = 0
    #: signatures, SBOMs, attestations: {"digest", "subject", "artifact_type"} or {"digest", "tag"} (cosign)
    referrers: list[dict] = field(default_factory=list)
    referrer_manifests: list[str] = field(default_factory=list)  # every manifest under the referrers
    referrer_blobs: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    hint: str | None = None
    missing: bool = False  # the source has no such image with the release tag

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def bytes(self) -> int:
        return sum(self.blobs.values())


@dataclass
class Plan:
    source_registry: str
    source_repository: str
    target_registry: str
    target_repository: str
    tag: str
    target_tag: str
    tag_reason: str
    image_source: str  # "image set FILE" or "catalog"
    platforms: list[str]
    images: list[PlannedImage]
    missing: list[str] = field(default_factory=list)  # in the set, not in the source with the tag
    extra: list[str] = field(default_factory=list)  # in the source catalog with the tag, not in the set
    created: str = ""
    shard: str = ""  # "I/N" when this is one share of a plan
    version: int = PLAN_VERSION

    @property
    def ok_images(self) -> list[PlannedImage]:
        return [i for i in self.images if i.ok]

    def totals(self) -> dict:
        unique: dict[str, int] = {}
        present: dict[str, int] = {}
        for image in self.ok_images:
            unique.update(image.blobs)
        for image in self.ok_images:
            if image.in_target:
                present.update(image.blobs)
        return {
            "images": len(self.images),
            "images_ok": len(self.ok_images),
            "images_in_target": sum(bool(i.in_target) for i in self.ok_images),
            "unique_blobs": len(unique),
            "unique_bytes": sum(unique.values()),
            "bytes_in_target": max(sum(present.values()), sum(i.bytes_in_target for i in self.ok_images)),
        }

    def to_json(self) -> str:
        data = asdict(self)
        data["totals"] = self.totals()
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def load(cls, path: Path) -> "Plan":
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise PlanError(f"the plan {path} does not exist", "run 'invoke discover' first") from None
        except (OSError, ValueError) as exc:
            raise PlanError(f"the plan {path} cannot be read: {exc}", "run 'invoke discover' again") from None
        return cls.from_dict(data, f"the plan {path}")

    @classmethod
    def from_dict(cls, data: object, where: str) -> "Plan":
        """A plan from its JSON form (a plan file, or the copy an archive carries)."""
        if not isinstance(data, dict) or data.get("version") != PLAN_VERSION:
            raise PlanError(f"{where} is not an arcmirror plan of version {PLAN_VERSION}",
                            "run 'invoke discover' again")
        data = {k: v for k, v in data.items() if k != "totals"}
        try:
            images = [PlannedImage(**i) for i in data.pop("images")]
            return cls(images=images, **data)
        except (TypeError, AttributeError) as exc:
            raise PlanError(f"{where} is malformed: {exc}", "run 'invoke discover' again") from None


def shard_plan(plan: Plan, index: int, count: int) -> Plan:
    """The ``index``-th (from 1) of ``count`` shares of a plan's images.

    Deterministic and balanced by the bytes each image still has to copy (largest first, each to
    the lightest share so far, ties to the lowest share), so parallel jobs finish together and every
    image is in exactly one share.
    """
    loads = [0] * count
    chosen: list[list[PlannedImage]] = [[] for _ in range(count)]
    for image in sorted(plan.images, key=lambda i: (-(i.bytes - i.bytes_in_target), i.name)):
        lightest = min(range(count), key=lambda k: (loads[k], k))
        chosen[lightest].append(image)
        loads[lightest] += max(image.bytes - image.bytes_in_target, 0) + 1  # +1: an up-to-date image costs a little too
    keep = {i.name for i in chosen[index - 1]}
    return replace(plan, images=[i for i in plan.images if i.name in keep], shard=f"{index}/{count}")


class PlanError(RegistryError):
    """The plan file is missing or unusable."""


class ReleaseNotFound(PlanError):
    """No image of the release carries its tag: a mistyped SOURCE_DOCKER_TAG, most likely."""


def release_not_found(settings: Settings, client: RegistryClient, tag: str, repositories: Sequence[str],
                      how: str) -> ReleaseNotFound:
    """The error for a release with no image, naming the tag and the nearest tags that do exist.

    The nearest tags are looked for in the set's reference image, else in the first repository checked.
    """
    src = settings.source
    reference = next((n for n in (_reference_image(settings), *repositories) if n), None)
    tags = client.tags_or_none(join_repository(src.repository, reference)) if reference else []
    nearest = nearest_tags(tag, tags)
    where = f"{src.registry}/{src.repository or '.'}"
    return ReleaseNotFound(
        f"release {tag} has no images: {how} under {where} carries tag {tag}"
        + (f"; the nearest tags that exist ({reference}): {', '.join(nearest)}" if nearest else
           f"; {reference or 'the first image'} has no tags at all" if reference else ""),
        "check SOURCE_DOCKER_TAG (unset it, or set it to latest-release, to take the newest release)",
    )


def _reference_image(settings: Settings) -> str | None:
    from .imageset import load_image_set

    try:
        image_set = load_image_set(settings.image_set) if settings.image_set.is_file() else None
    except ValueError:
        image_set = None
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


def target_tag_for(settings: Settings, release_tag: str) -> str:
    """TARGET_DOCKER_TAG when it was set on its own, else the release tag."""
    own = settings.target.tag
    return own if own not in AUTO_TAGS and own != settings.source.tag else release_tag


def resolve_release_tag(settings: Settings, client: RegistryClient, reference_image: str | None = None,
                        pattern: re.Pattern[str] | None = None) -> tuple[str, str]:
    """SOURCE_DOCKER_TAG, or the newest release tag of the set's reference image; with the reason."""
    from .imageset import load_image_set

    tag = settings.source.tag
    if tag not in AUTO_TAGS:
        return tag, "given by SOURCE_DOCKER_TAG"
    image_set = load_image_set(settings.image_set) if settings.image_set.is_file() else None
    pattern = pattern or (image_set.release_tag_pattern if image_set else DEFAULT_RELEASE_PATTERN)
    ref_image = reference_image or (image_set.reference_image if image_set and image_set.reference_image in settings.images
                                    else settings.images[0])
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


def plan_referrers(image: PlannedImage, source: Source, types: Sequence[str]) -> None:
    """List the referrers of every manifest of the image (and theirs), with what they are made of."""
    found = find_referrers(source, image.source_repository, image.manifests, types)
    image.referrers = [{"digest": r.digest, "subject": r.subject, "artifact_type": r.artifact_type}
                       for r in found.referrers]
    image.referrers += [{"digest": digest, "tag": tag} for tag, digest in found.cosign.items()]
    for entry in image.referrers:
        manifests, blobs = walk(lambda d: source.get_manifest(image.source_repository, d), entry["digest"],
                                image.source_repository)
        image.referrer_manifests += [m.digest for m in manifests if m.digest not in image.referrer_manifests]
        image.referrer_blobs.update(blobs)


def plan_image(image: PlannedImage, tag: str, source: Source, target: Target | None,
               platforms: Sequence[Platform], referrer_types: Sequence[str] | None = ()) -> PlannedImage:
    """Fill in one image: pinned digest, tree, blobs, and what the target has. Errors land on the image."""
    try:
        cancel.check()
        digest = source.resolve(image.source_repository, tag)
        if digest is None:
            image.missing = True
            raise NotFoundError(f"{image.source} does not exist on the {source.label}",
                                "check SOURCE_DOCKER_TAG and the image name (is this image part of that release?)")
        top = source.get_manifest(image.source_repository, digest)
        image.digest, image.media_type = digest, top.media_type
        rewritten: dict = {}
        if is_index(top) and platforms:
            top, rewritten = filter_index(top, platforms, image.source,
                                          lambda d: source.get_manifest(image.source_repository, d))
        image.target_digest = top.digest
        image.platforms = platforms_of(top)
        # indexes filtered here are in no registry under their new digests: hand them over as they are
        rewritten[top.digest] = top
        manifests, image.blobs = walk(
            lambda d: rewritten.get(d) or source.get_manifest(image.source_repository, d),
            top.digest, image.source_repository)
        image.manifests = [m.digest for m in manifests]
        if referrer_types is not None:
            plan_referrers(image, source, referrer_types)
    except RegistryError as exc:
        image.error, image.hint = exc.message, exc.hint
        return image
    if target is not None:
        try:
            tagged = target.resolve(image.target_repository, image.target_tag) == image.target_digest
            present = {d: size for d, size in image.blobs.items() if target.has_blob(image.target_repository, d)}
            image.bytes_in_target = sum(present.values())
            # "in the target" means complete: the tag in place and every blob there (none lost since)
            image.in_target = tagged and len(present) == len(image.blobs) and all(
                target.resolve(image.target_repository, r["digest"]) == r["digest"] for r in image.referrers)
        except RegistryError:
            image.in_target = None
    return image


def discover(
    settings: Settings,
    source: Source,
    source_client: RegistryClient,
    target: Target | None,
    *,
    mode: str = "set",
    image_set_pattern: re.Pattern[str] | None = None,
    reference_image: str | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> Plan:
    """Resolve the tag, the image list and every image's content into a :class:`Plan`."""
    src = settings.source
    tag, reason = resolve_release_tag(settings, source_client, reference_image, image_set_pattern)
    if src.tag in AUTO_TAGS:
        say(f"Release tag: {tag} ({reason})")
    target_tag = target_tag_for(settings, tag)
    if problem := tag_problem(tag):
        raise NotFoundError(f"the chosen release tag {tag!r} {problem}")

    found = release_images(replace(settings, discover=mode), source, source_client, tag, say)
    names, missing, extra, image_source = found.names, found.missing, found.extra, found.source

    images = [
        PlannedImage(
            name=name,
            source=str(ImageRef(src.registry, join_repository(src.repository, name), tag)),
            source_repository=join_repository(src.repository, name),
            target=str(ImageRef(settings.target.registry, join_repository(settings.target.repository, name), target_tag)),
            target_repository=join_repository(settings.target.repository, name),
            target_tag=target_tag,
        )
        for name in names
    ]
    with ThreadPoolExecutor(settings.concurrency) as pool:
        referrer_types = settings.referrer_types if settings.referrers else None
        images = list(pool.map(lambda i: plan_image(i, tag, source, target, settings.platforms, referrer_types),
                               images))
    if mode != "catalog":
        missing = [i.name for i in images if i.missing]
        if images and len(missing) == len(images):
            raise release_not_found(settings, source_client, tag, names,
                                    f"none of the {len(images)} images of the {image_source}")
    return Plan(
        source_registry=src.registry,
        source_repository=src.repository,
        target_registry=settings.target.registry,
        target_repository=settings.target.repository,
        tag=tag,
        target_tag=target_tag,
        tag_reason=reason,
        image_source=image_source,
        platforms=[str(p) for p in settings.platforms],
        images=images,
        missing=missing,
        extra=extra,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
