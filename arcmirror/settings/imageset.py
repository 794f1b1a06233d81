"""Image sets: which images make up a release (``config/*.yaml``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..oci.reference import repository_problem

#: Azure Arc data services' release tags: v1.41.0_2025-09-09 (compared by version, then date).
DEFAULT_RELEASE_PATTERN = re.compile(r"^v(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)_(?P<date>\d{4}-\d{2}-\d{2})$")


class ImageSetError(ValueError):
    """The image set file is missing or malformed."""


@dataclass(frozen=True)
class ImageSet:
    name: str
    images: tuple[str, ...]
    reference_image: str
    release_tag_pattern: re.Pattern[str]
    path: Path


def load_image_set(path: Path) -> ImageSet:
    """Read and check an image set file; raise :class:`ImageSetError` naming the problem."""
    import yaml  # here: runs given MIRROR_IMAGES never read a set file

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImageSetError(f"image set file {path} does not exist") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ImageSetError(f"image set file {path} cannot be read: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not data["images"]:
        raise ImageSetError(f"image set file {path} must be a mapping with a non-empty 'images' list")
    images = tuple(str(name) for name in data["images"])
    bad = [f"{name!r} {problem}" for name in images if (problem := repository_problem(name, allow_empty=False))]
    if bad:
        raise ImageSetError(f"image set file {path} has invalid image names: " + "; ".join(bad))
    if len(set(images)) != len(images):
        raise ImageSetError(f"image set file {path} lists an image twice")
    try:
        pattern = re.compile(str(data.get("release_tag_pattern", DEFAULT_RELEASE_PATTERN.pattern)))
    except re.error as exc:
        raise ImageSetError(f"image set file {path}: release_tag_pattern is not a valid regex: {exc}") from None
    reference = str(data.get("reference_image", images[0]))
    return ImageSet(
        name=str(data.get("name", path.stem)),
        images=images,
        reference_image=reference,
        release_tag_pattern=pattern,
        path=path,
    )
