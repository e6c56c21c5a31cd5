"""Validation helpers for COCO files: error types, structure checks, record parsing, skip bookkeeping."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pycocotools import mask as mask_utils


class CocoFormatError(ValueError):
    """An annotation file or one of its records is invalid; the message names the file and record."""


class CocoSkipWarning(UserWarning):
    """Invalid records were skipped (``on_error="skip"``); the message counts them by reason."""


def check_structure(coco: Any, json_path: Path) -> None:
    """Check the top-level layout and the categories, which cannot be skipped record by record.

    Args:
        coco: The parsed JSON.
        json_path: The file it came from, for messages.

    Raises:
        CocoFormatError: If a top-level key is missing or not a list, or a category is malformed
            or repeats an id.
    """
    if not isinstance(coco, dict):
        raise CocoFormatError(f"{json_path}: the top level must be an object, got {type(coco).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            hint = ' (use "annotations": [] for an unlabelled set)' if key == "annotations" else ""
            raise CocoFormatError(f"{json_path}: missing list {key!r}{hint}")
    seen: set[int] = set()
    for cat in coco["categories"]:
        if (
            not isinstance(cat, dict)
            or not isinstance(cat.get("id"), int)
            or not isinstance(cat.get("name"), str)
        ):
            raise CocoFormatError(f"{json_path}: category {cat!r} needs an int 'id' and a str 'name'")
        if cat["id"] in seen:
            raise CocoFormatError(f"{json_path}: category id {cat['id']} appears twice")
        seen.add(cat["id"])


class Problems:
    """Collects invalid records: raises on the first one, or counts them and warns once at the end.

    Args:
        json_path: The file being read, named in every message.
        on_error: ``"raise"`` or ``"skip"``.
    """

    def __init__(self, json_path: Path, on_error: Literal["raise", "skip"]) -> None:
        self.json_path = json_path
        self.on_error = on_error
        self.counts: Counter[str] = Counter()
        self.first: dict[str, str] = {}
        self.skipped_images: set[Any] = set()
        self.dropped_with_images = 0

    def add(self, reason: str, message: str, image_id: Any = None) -> None:
        """Report an invalid record; ``image_id`` marks an image record, whose annotations go with it.

        Raises:
            CocoFormatError: When ``on_error="raise"``.
        """
        full = f"{self.json_path}: {message}"
        if self.on_error == "raise":
            raise CocoFormatError(f"{full} (on_error='skip' drops such records with a warning)")
        self.counts[reason] += 1
        self.first.setdefault(reason, full)
        if image_id is not None:
            self.skipped_images.add(image_id)

    def drop_with_image(self, image_id: Any) -> bool:
        """Whether ``image_id`` belongs to a skipped image; counts the annotation dropped with it."""
        if isinstance(image_id, int) and image_id in self.skipped_images:
            self.dropped_with_images += 1
            return True
        return False

    def finish(self) -> None:
        """Emit the one warning that counts what was skipped, if anything was."""
        if not self.counts:
            return
        by_reason = ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))
        extra = (
            f"; with them {self.dropped_with_images} annotation(s) of skipped images"
            if self.dropped_with_images
            else ""
        )
        examples = "\n".join(f"  first {reason}: {msg}" for reason, msg in sorted(self.first.items()))
        total = self.counts.total()
        warnings.warn(
            f"{self.json_path}: skipped {total} invalid record(s): {by_reason}{extra}\n{examples}",
            CocoSkipWarning,
            stacklevel=3,
        )


class BadRecord(ValueError):
    """One record is invalid; ``reason`` names the kind of problem for the skip summary."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_box(bbox: Any, image: dict[str, Any]) -> tuple[float, float, float, float]:
    """``[x, y, w, h]`` to an xyxy box clipped to the image."""
    if (
        not isinstance(bbox, (list, tuple))
        or len(bbox) != 4
        or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)
    ):
        raise BadRecord("malformed box", f"'bbox' must be 4 finite numbers [x, y, w, h], got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise BadRecord("non-positive box size", f"box {list(bbox)} has non-positive width or height")
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(image["width"])), min(y + h, float(image["height"]))
    if x1 <= x0 or y1 <= y0:
        raise BadRecord(
            "box outside the image",
            f"box {list(bbox)} lies outside the {image['width']}x{image['height']} image",
        )
    return (x0, y0, x1, y1)


def parse_segmentation(segm: Any, image: dict[str, Any]) -> dict[str, Any] | None:
    """Polygons or RLE to one compressed RLE; ``None`` when the annotation has no mask."""
    h, w = image["height"], image["width"]
    if segm is None or segm == [] or segm == [""]:
        return None
    if isinstance(segm, list):
        for poly in segm:
            if (
                not isinstance(poly, list)
                or not all(isinstance(v, (int, float)) for v in poly)
                or len(poly) % 2
            ):
                raise BadRecord(
                    "malformed segmentation", "each polygon must be a flat list [x1, y1, x2, y2, ...]"
                )
            if len(poly) < 6:
                raise BadRecord(
                    "polygon with fewer than 3 points",
                    f"a polygon has {len(poly) // 2} point(s); it needs 3 or more",
                )
        return mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
    if not isinstance(segm, dict) or "counts" not in segm or "size" not in segm:
        raise BadRecord(
            "malformed segmentation", "'segmentation' must be polygons or an RLE with 'size' and 'counts'"
        )
    if not isinstance(segm["size"], (list, tuple)) or list(segm["size"]) != [h, w]:
        raise BadRecord(
            "malformed segmentation", f"RLE size {segm['size']} differs from the image's [h, w] = [{h}, {w}]"
        )
    if isinstance(segm["counts"], list):
        return mask_utils.frPyObjects(segm, h, w)
    counts = segm["counts"].encode() if isinstance(segm["counts"], str) else segm["counts"]
    rle = {"size": [h, w], "counts": counts}
    if not 0 <= int(mask_utils.area(rle)) <= h * w:
        raise BadRecord("malformed segmentation", "compressed RLE 'counts' does not decode to the image size")
    return rle
