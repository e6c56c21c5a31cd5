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
        if not isinstance(cat, dict) or not is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
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


#: How far outside the image a coordinate may lie, in image sides; further is a broken record (and
#: rasterising a polygon with a vertex at 1e12 exhausts memory).
COORDINATE_SLACK = 4


def is_number(value: Any) -> bool:
    """Whether ``value`` is a JSON number (``True``/``False`` are not, though Python counts them as ints)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    """Whether ``value`` is a JSON integer (not a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool)


def parse_box(bbox: Any, image: dict[str, Any]) -> tuple[float, float, float, float]:
    """``[x, y, w, h]`` to an xyxy box clipped to the image."""
    if (
        not isinstance(bbox, (list, tuple))
        or len(bbox) != 4
        or not all(is_number(v) and math.isfinite(v) for v in bbox)
    ):
        raise BadRecord("malformed box", f"'bbox' must be 4 finite numbers [x, y, w, h], got {bbox!r}")
    _check_bound(bbox, image, "box")
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


def parse_crowd(value: Any) -> bool:
    """``iscrowd`` as a bool: 0, 1, false or true (absent is 0)."""
    if value in (0, 1) and (is_int(value) or isinstance(value, bool)):
        return bool(value)
    raise BadRecord("malformed iscrowd", f"'iscrowd' must be 0 or 1, got {value!r}")


def parse_area(value: Any) -> float | None:
    """A given ``area`` as a float (``None`` when absent: it is computed); must be finite and >= 0."""
    if value is None:
        return None
    if not is_number(value) or not math.isfinite(value) or value < 0:
        raise BadRecord("malformed area", f"'area' must be a finite number >= 0, got {value!r}")
    return float(value)


def parse_segmentation(segm: Any, image: dict[str, Any]) -> dict[str, Any] | None:
    """Polygons or RLE to one compressed RLE; ``None`` when the annotation has no mask.

    Everything is checked before pycocotools sees it: its rasteriser and RLE decoder trust their
    input (a huge coordinate exhausts memory, a garbage RLE string is read past its end).
    """
    h, w = image["height"], image["width"]
    if segm is None or segm == [] or segm == [""]:
        return None
    if isinstance(segm, list):
        for poly in segm:
            if not isinstance(poly, list) or not all(is_number(v) for v in poly) or len(poly) % 2:
                raise BadRecord(
                    "malformed segmentation",
                    "each polygon must be a flat list of numbers [x1, y1, x2, y2, ...]",
                )
            if len(poly) < 6:
                raise BadRecord(
                    "polygon with fewer than 3 points",
                    f"a polygon has {len(poly) // 2} point(s); it needs 3 or more",
                )
            if not all(math.isfinite(v) for v in poly):
                raise BadRecord("malformed segmentation", "a polygon has a NaN or infinite coordinate")
            _check_bound(poly, image, "polygon")
        xs = [v for poly in segm for v in poly[0::2]]
        ys = [v for poly in segm for v in poly[1::2]]
        if max(xs) <= 0 or min(xs) >= w or max(ys) <= 0 or min(ys) >= h:
            raise BadRecord("polygon outside the image", f"the polygons lie outside the {w}x{h} image")
        return mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
    if not isinstance(segm, dict) or "counts" not in segm or "size" not in segm:
        raise BadRecord(
            "malformed segmentation", "'segmentation' must be polygons or an RLE with 'size' and 'counts'"
        )
    size = segm["size"]
    if not isinstance(size, (list, tuple)) or not all(is_int(v) for v in size) or list(size) != [h, w]:
        raise BadRecord(
            "malformed segmentation", f"RLE size {size!r} differs from the image's [h, w] = [{h}, {w}]"
        )
    counts = segm["counts"]
    if isinstance(counts, list):
        if not counts or not all(is_int(v) and v >= 0 for v in counts):
            raise BadRecord(
                "malformed RLE", "uncompressed RLE 'counts' must be a non-empty list of ints >= 0"
            )
        runs = counts
    elif isinstance(counts, (str, bytes)):
        runs = decode_rle_counts(counts.encode() if isinstance(counts, str) else counts)
    else:
        raise BadRecord(
            "malformed RLE", f"RLE 'counts' must be a list or a string, got {type(counts).__name__}"
        )
    if sum(runs) != h * w:
        raise BadRecord(
            "malformed RLE", f"RLE counts add up to {sum(runs)} pixels, the image has h*w = {h}*{w} = {h * w}"
        )
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": counts.encode() if isinstance(counts, str) else counts}


def decode_rle_counts(counts: bytes) -> list[int]:
    """The run lengths of a compressed COCO RLE string (the LEB128-like code of pycocotools' ``rleFrString``).

    Raises:
        BadRecord: If the string is empty, holds a character outside the code, ends inside a
            number or gives a negative run.
    """
    if not counts:
        raise BadRecord("malformed RLE", "compressed RLE 'counts' is empty")
    runs: list[int] = []
    value = shift = 0
    for pos, char in enumerate(counts):
        code = char - 48
        if not 0 <= code < 64:
            raise BadRecord("malformed RLE", f"compressed RLE 'counts' has a foreign character at {pos}")
        value |= (code & 0x1F) << shift
        shift += 5
        if code & 0x20:
            continue
        if code & 0x10:
            value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise BadRecord("malformed RLE", f"compressed RLE 'counts' gives a negative run at {pos}")
        runs.append(value)
        value = shift = 0
    if shift:
        raise BadRecord("malformed RLE", "compressed RLE 'counts' ends inside a number")
    return runs


def _check_bound(values: list[Any], image: dict[str, Any], what: str) -> None:
    limit = COORDINATE_SLACK * max(image["width"], image["height"])
    worst = max(abs(v) for v in values)
    if worst > limit:
        raise BadRecord(
            f"{what} far outside the image",
            f"{what} coordinate {worst:g} is far outside the {image['width']}x{image['height']} image "
            f"(at most {limit} in magnitude)",
        )
