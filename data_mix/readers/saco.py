"""Read an SA-Co-style file (one record per image-phrase pair) into concept samples.

The layout is that of Meta's SA-Co/Gold and SA-Co/Silver annotations (``scripts/eval/gold/README.md``
in ``facebookresearch/sam3``), a COCO file whose ``images`` entries are image-phrase pairs:

- ``images``: one record per pair: ``id`` (int, the pair id), ``file_name`` (relative to the image
  folder), ``text_input`` (the noun phrase), ``width`` and ``height`` (read from the file when
  absent), optionally ``is_instance_exhaustive`` (0/1, default 1). Other keys (``queried_category``,
  ``is_pixel_exhaustive``) are ignored. Several pairs share one image file.
- ``annotations``: COCO objects whose ``image_id`` is a pair id. ``bbox`` is ``[x, y, w, h]`` as
  fractions of the image size and ``area`` a fraction of the image area, as in the released files
  (``normalized_boxes=False`` reads pixel boxes); ``segmentation`` is an RLE or polygons in pixels.
  Their ``category_id`` is ignored: the pair's phrase is the category.
- ``categories``: ignored (SA-Co lists a single placeholder category).

A pair without annotations is a negative. Pairs of one file become one `ConceptSample` (the image
is encoded once for all its phrases), with image ids numbered 1, 2, ... in order of first appearance
and one category per distinct phrase, numbered the same way. Only the listed pairs become queries:
a phrase listed for other images is not a negative here, unlike in an exhaustive COCO file. A pair
with ``is_instance_exhaustive: 0`` keeps its objects with ``exhaustive=False`` and, when it has none,
is dropped, as a crowd-only query of a COCO file is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sam3_adapt.data_mix.images import ImageReadError, probe_image
from sam3_adapt.data_mix.readers.coco import CocoSet, OnError, coco_set_from_dict, escapes
from sam3_adapt.data_mix.readers.coco_checks import CocoFormatError, Problems, is_int, is_number

#: Slack on normalised coordinates, for boxes written as float32 fractions.
_SLACK = 1e-4


def read_saco_set(
    json_path: str | Path,
    image_dir: str | Path,
    *,
    normalized_boxes: bool = True,
    prompt_map: Mapping[Any, str] | str | Path | None = None,
    include_negatives: bool = True,
    on_error: OnError = "raise",
    allow_outside_image_dir: bool = False,
) -> CocoSet:
    """Read an SA-Co-style file (see the module docstring) into samples and COCO ground truth.

    Records are checked by the rules of `sam3_adapt.data_mix.readers.coco.read_coco_set` after conversion; a
    pair
    record without a phrase, a repeated pair or an annotation of an unknown pair is reported with
    its pair id.

    Args:
        json_path: The SA-Co-style annotation file.
        image_dir: Folder that the pairs' ``file_name`` values are relative to.
        normalized_boxes: Boxes and areas are fractions of the image size (the SA-Co release);
            ``False`` for pixels.
        prompt_map: Phrase overrides ``{phrase: new phrase}``, or a path to a JSON/YAML file with one.
        include_negatives: Keep the negative pairs.
        on_error: ``"raise"`` stops at the first invalid record; ``"skip"`` drops invalid records
            with a warning that counts them.
        allow_outside_image_dir: Accept ``file_name`` values outside ``image_dir`` (see `read_coco_set`).

    Returns:
        The samples, the ground truth as a COCO dict (one image record per file, one category per
        phrase, boxes in pixels) and the phrase of each category.

    Raises:
        CocoFormatError: On an invalid file or record (records only when ``on_error="raise"``).
    """
    json_path = Path(json_path)
    try:
        saco = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CocoFormatError(f"{json_path}: cannot read SA-Co JSON: {err}") from err
    return saco_set_from_dict(
        saco,
        json_path,
        image_dir,
        normalized_boxes=normalized_boxes,
        prompt_map=prompt_map,
        include_negatives=include_negatives,
        on_error=on_error,
        allow_outside_image_dir=allow_outside_image_dir,
    )


def saco_set_from_dict(
    saco: Any,
    json_path: str | Path,
    image_dir: str | Path,
    *,
    normalized_boxes: bool = True,
    prompt_map: Mapping[Any, str] | str | Path | None = None,
    include_negatives: bool = True,
    on_error: OnError = "raise",
    allow_outside_image_dir: bool = False,
) -> CocoSet:
    """`read_saco_set` on an already parsed file; ``json_path`` names it in messages.

    Raises:
        CocoFormatError: As `read_saco_set`, and whatever ``on_error`` says when image records
            exist but none has a ``text_input`` phrase (the file is not SA-Co, or lost its phrases).
    """
    json_path, image_dir = Path(json_path), Path(image_dir)
    for key in ("images", "annotations"):
        if not isinstance(saco, dict) or not isinstance(saco.get(key), list):
            raise CocoFormatError(f"{json_path}: an SA-Co file needs a list {key!r}")
    if saco["images"] and not any(
        isinstance(r, dict) and isinstance(r.get("text_input"), str) and r["text_input"].strip()
        for r in saco["images"]
    ):
        raise CocoFormatError(
            f"{json_path}: an SA-Co file, but none of its {len(saco['images'])} image records has a "
            "'text_input' phrase; give each image-phrase pair its phrase (for a COCO file, set format: coco)"
        )
    problems = Problems(json_path, on_error)
    pairs = _Pairs(image_dir, problems, allow_outside_image_dir)
    for record in saco["images"]:
        pairs.add(record)
    annotations = [
        ann for rec in saco["annotations"] if (ann := pairs.annotation(rec, normalized_boxes)) is not None
    ]
    problems.finish()

    coco = {
        "images": list(pairs.images.values()),
        "annotations": annotations,
        "categories": [{"id": cat_id, "name": phrase} for phrase, cat_id in pairs.categories.items()],
    }
    coco_set = coco_set_from_dict(
        coco,
        json_path,
        image_dir,
        prompt_map=prompt_map,
        include_negatives=True,
        on_error=on_error,
        allow_outside_image_dir=allow_outside_image_dir,
    )
    return _listed_pairs_only(coco_set, pairs, include_negatives)


class _Pairs:
    """Pair records grouped by image file, with a category per phrase."""

    def __init__(self, image_dir: Path, problems: Problems, allow_outside: bool) -> None:
        self.image_dir = image_dir
        self.problems = problems
        self.allow_outside = allow_outside
        self.images: dict[str, dict[str, Any]] = {}
        self.by_id: dict[int, dict[str, Any]] = {}
        self.categories: dict[str, int] = {}
        #: category id -> (first pair id, the phrase as written)
        self.first_pair: dict[int, tuple[int, str]] = {}
        #: pair id -> (image id, category id)
        self.by_pair: dict[int, tuple[int, int]] = {}
        #: (image id, category id) -> (pair id, exhaustive)
        self.listed: dict[tuple[int, int], tuple[int, bool]] = {}

    def add(self, rec: Any) -> None:
        if (
            not isinstance(rec, dict)
            or not is_int(rec.get("id"))
            or not isinstance(rec.get("file_name"), str)
        ):
            self.problems.add(
                "malformed image record", f"image record {rec!r:.80} needs an int 'id' and a 'file_name'"
            )
            return
        where = f"image record id {rec['id']} ({rec['file_name']})"
        phrase = rec.get("text_input")
        if not isinstance(phrase, str) or not phrase.strip():
            self.problems.add(
                "record without a phrase",
                f"{where}: no noun phrase: 'text_input' is missing or empty",
                rec["id"],
            )
            return
        if rec["id"] in self.by_pair:
            self.problems.add("duplicate image id", f"{where}: the id is used by another image-phrase pair")
            return
        raw, phrase = phrase, phrase.strip()
        image = self.images.get(rec["file_name"])
        if image is None:
            image = {"id": len(self.images) + 1, "file_name": rec["file_name"]}
            image |= {k: rec[k] for k in ("width", "height") if k in rec}
            if ("width" not in image or "height" not in image) and (
                self.allow_outside or not escapes(rec["file_name"])
            ):
                try:
                    image["width"], image["height"] = probe_image(self.image_dir / rec["file_name"])
                except ImageReadError:
                    pass  # reported with the record when the images are checked
            self.images[rec["file_name"]] = self.by_id[image["id"]] = image
        elif any(k in rec and rec[k] != image.get(k) for k in ("width", "height")):
            self.problems.add(
                "image size differs between pairs",
                f"{where}: says {rec.get('width')}x{rec.get('height')} (w x h), an earlier pair of the file "
                f"says {image.get('width')}x{image.get('height')}",
            )
            return
        cat_id = self.categories.setdefault(phrase, len(self.categories) + 1)
        self.first_pair.setdefault(cat_id, (rec["id"], raw))
        key = (image["id"], cat_id)
        if key in self.listed:
            self.problems.add(
                "duplicate image-phrase pair",
                f"{where}: the pair ({rec['file_name']}, {phrase!r}) is also image record id "
                f"{self.listed[key][0]}",
            )
            return
        self.by_pair[rec["id"]] = key
        self.listed[key] = (rec["id"], bool(rec.get("is_instance_exhaustive", 1)))

    def annotation(self, rec: Any, normalized: bool) -> dict[str, Any] | None:
        """The annotation in COCO terms (pixels, grouped image id, phrase category), or ``None`` if bad."""
        if not isinstance(rec, dict) or not is_int(rec.get("id")):
            self.problems.add("malformed annotation", f"annotation {rec!r:.80} needs an int 'id'")
            return None
        pair = rec.get("image_id")
        if not is_int(pair) or pair not in self.by_pair:
            if not self.problems.drop_with_image(pair):
                self.problems.add(
                    "unknown image id",
                    f"annotation id {rec['id']}: image_id {pair!r} is no image-phrase pair",
                )
            return None
        image_id, cat_id = self.by_pair[pair]
        ann = {**rec, "image_id": image_id, "category_id": cat_id}
        if not normalized:
            return ann
        image = self.by_id[image_id]
        if "width" not in image:
            return ann  # its image file is missing, which the image checks report
        width, height = image["width"], image["height"]
        box = rec.get("bbox")
        if isinstance(box, list) and len(box) == 4 and all(is_number(v) for v in box):
            try:
                ann["bbox"] = unit_box_to_pixels(box, width, height)
            except ValueError as err:
                self.problems.add(
                    "box not normalised",
                    f"annotation id {rec['id']} (image record id {pair}): {err}, as SA-Co boxes are "
                    "(normalized_boxes=False reads boxes in pixels)",
                )
                return None
        if is_number(rec.get("area")):
            ann["area"] = rec["area"] * width * height
        return ann


def unit_box_to_pixels(box: list[float], width: int, height: int) -> list[float]:
    """Scale an ``[x, y, w, h]`` box given as fractions of the image size to pixels.

    Raises:
        ValueError: If the box reaches beyond the unit square (it is likely in pixels already).
    """
    if not all(math.isfinite(v) for v in box) or max(box[0] + box[2], box[1] + box[3]) > 1 + _SLACK:
        raise ValueError(f"box {box} is not a fraction of the image size")
    return [box[0] * width, box[1] * height, box[2] * width, box[3] * height]


def _listed_pairs_only(coco_set: CocoSet, pairs: _Pairs, include_negatives: bool) -> CocoSet:
    """Keep only the queries of listed pairs, with their exhaustive flag and an origin naming the pair."""
    name = coco_set.json_path.name
    files = {image["id"]: file_name for file_name, image in pairs.images.items()}
    for sample in coco_set.samples:
        kept = []
        for query in sample.queries:
            listed = pairs.listed.get((sample.image_id, query.category_id))
            if listed is None:
                continue
            pair_id, exhaustive = listed
            query.exhaustive = query.exhaustive and exhaustive
            if query.is_negative and not (query.exhaustive and include_negatives):
                continue
            query.origin = f"{name}: image record id {pair_id} ({files[sample.image_id]}), {query.phrase!r}"
            kept.append(query)
        sample.queries = kept
    for cat_id, (phrase, origin) in coco_set.phrases.items():
        pair_id, raw = pairs.first_pair[cat_id]
        via = " via prompt_map" if origin.endswith(" via prompt_map") else ""
        coco_set.phrases[cat_id] = (phrase, f"{name}: image record id {pair_id} (text_input {raw!r}){via}")
    return coco_set
