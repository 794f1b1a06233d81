"""The plan: every image of a release pinned to its digest, with what it is made of (``plan.json``).

Later steps copy exactly the pinned digests, even if the source tag moves in the meantime.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..oci.errors import HintedError
from ..oci.reference import join_repository
from ..settings.load import Settings

PLAN_VERSION = 1
#: A SOURCE_DOCKER_TAG that asks for the newest release.
AUTO_TAGS = ("", "latest-release")


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
    #: the Notary and cosign signatures among the referrers, and who signed (as claimed: discover trusts nothing)
    signatures: list[dict] = field(default_factory=list)
    error: str | None = None
    hint: str | None = None
    missing: bool = False  # the source has no such image with the release tag

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def bytes(self) -> int:
        return sum(self.blobs.values())

    @property
    def to_copy(self) -> int:
        """The bytes the target still lacks (as discover found it)."""
        return max(self.bytes - self.bytes_in_target, 0)


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

    @property
    def bytes_to_copy(self) -> int:
        return sum(i.to_copy for i in self.ok_images)

    def record(self) -> dict:
        """Which plan a report was made from (a run's JSON record carries it)."""
        return {"tag": self.tag, "created": self.created, "shard": self.shard}

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

    def to_dict(self) -> dict:
        data = asdict(self)
        data["totals"] = self.totals()
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

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
    for image in sorted(plan.images, key=lambda i: (-i.to_copy, i.name)):
        lightest = min(range(count), key=lambda k: (loads[k], k))
        chosen[lightest].append(image)
        loads[lightest] += image.to_copy + 1  # +1: an up-to-date image costs a little too
    keep = {i.name for i in chosen[index - 1]}
    return replace(plan, images=[i for i in plan.images if i.name in keep], shard=f"{index}/{count}")


class PlanError(HintedError):
    """The plan file is missing or unusable."""


def target_tag_for(settings: Settings, release_tag: str) -> str:
    """TARGET_DOCKER_TAG when it was set on its own, else the release tag."""
    own = settings.target.tag
    return own if own not in AUTO_TAGS and own != settings.source.tag else release_tag


def target_of(settings: Settings, plan: Plan, image: PlannedImage) -> tuple[str, str]:
    """Where an image goes, following the current TARGET_DOCKER_* settings."""
    return join_repository(settings.target.repository, image.name), target_tag_for(settings, plan.tag)
