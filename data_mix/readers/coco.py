"""Read a COCO detection/segmentation file into concept samples (one image, many phrases).

Each category is a noun phrase. With exhaustive labels (the COCO convention) a category that has
no object in an image is a negative query for that image, as in the SAM 3 reference loader.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Literal

import yaml
from pycocotools import mask as mask_utils

from sam3_adapt.data_mix.images import ImageReadError, probe_image
from sam3_adapt.data_mix.readers.coco_checks import (
    BadRecord,
    CocoFormatError,
    Problems,
    check_structure,
    is_int,
    parse_area,
    parse_box,
    parse_crowd,
    parse_segmentation,
)
from sam3_adapt.data_mix.samples import ConceptSample, Instance, Query

OnError = Literal["raise", "skip"]


@dataclass
class CocoSet:
    """A COCO file as concept samples, with its cleaned ground truth for evaluation.

    Attributes:
        json_path: The annotation file.
        samples: One sample per usable image, in file order.
        gt: The COCO dict restricted to the images and annotations that were kept (crowd annotations
            included, as pycocotools expects), with ``area`` and ``iscrowd`` filled where missing.
            Boxes and masks are in original image coordinates.
        phrases: For each category id, ``(phrase, origin)``; origin names the record the phrase came from.
    """

    json_path: Path
    samples: list[ConceptSample]
    gt: dict[str, Any]
    phrases: dict[int, tuple[str, str]]


def load_prompt_map(prompt_map: Mapping[Any, str] | str | Path | None) -> dict[Any, str] | None:
    """Load a phrase override map given inline or as a path to a JSON or YAML file.

    Args:
        prompt_map: ``{category name or id: phrase}``, a path to a ``.json``/``.yaml``/``.yml`` file
            holding such a mapping, or ``None``.

    Returns:
        The mapping, or ``None``.

    Raises:
        ValueError: If the file cannot be read as a mapping of strings.
    """
    if prompt_map is None or isinstance(prompt_map, Mapping):
        return None if prompt_map is None else dict(prompt_map)
    path = Path(prompt_map)
    if not path.is_file():
        raise ValueError(f"prompt_map file not found: {path}")
    text = path.read_text()
    loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(loaded, Mapping) or not all(isinstance(v, str) for v in loaded.values()):
        raise ValueError(f"{path}: prompt_map must map category names (or ids) to phrase strings")
    return dict(loaded)


def read_coco(
    json_path: str | Path,
    image_dir: str | Path,
    *,
    prompt_map: Mapping[Any, str] | str | Path | None = None,
    include_negatives: bool = True,
    on_error: OnError = "raise",
    allow_outside_image_dir: bool = False,
) -> list[ConceptSample]:
    """Read a COCO file into concept samples. See `read_coco_set` for the rules."""
    return read_coco_set(
        json_path,
        image_dir,
        prompt_map=prompt_map,
        include_negatives=include_negatives,
        on_error=on_error,
        allow_outside_image_dir=allow_outside_image_dir,
    ).samples


def read_coco_set(
    json_path: str | Path,
    image_dir: str | Path,
    *,
    prompt_map: Mapping[Any, str] | str | Path | None = None,
    include_negatives: bool = True,
    on_error: OnError = "raise",
    allow_outside_image_dir: bool = False,
) -> CocoSet:
    """Read a COCO file into concept samples, with validation that names the record at fault.

    Boxes come from ``bbox`` (``[x, y, w, h]``, clipped to the image). Masks come from polygons,
    uncompressed or compressed RLE, and are kept as compressed RLE and decoded when the dataset needs
    them; an annotation without ``segmentation`` (or with an empty one) is box-only.

    Crowd annotations (``iscrowd: 1``) never become training targets: they cover several objects
    with one region. A query of that image and category is kept with its other objects but marked
    ``exhaustive=False``, and dropped when it has no other object; it never becomes a negative,
    since the concept is present. (The reference's ``FilterCrowds`` removes the crowd objects and so
    can turn such a query into a negative.) They stay in `CocoSet.gt` where pycocotools treats them as
    ignore regions. Annotations skipped as invalid (``on_error="skip"``) taint their query the same way.

    Args:
        json_path: COCO annotation file.
        image_dir: Folder that the images' ``file_name`` values are relative to.
        prompt_map: Phrase overrides, ``{category name: phrase}`` (integer keys are category ids), or a
            path to a JSON/YAML file holding one. Other categories use their name.
        include_negatives: Add a negative query for every category absent from an image.
        on_error: ``"raise"`` stops at the first invalid record; ``"skip"`` drops invalid records and
            emits one warning counting them by reason. Image files are checked cheaply when read
            (see `sam3_adapt.data_mix.images.probe_image`): an empty, unidentifiable, cut-short or
            too large file is an invalid image record; corruption inside the pixel data is found
            only when the image is decoded, and raises `ImageReadError` naming file and image id.
        allow_outside_image_dir: Accept ``file_name`` values that are absolute or lead out of
            ``image_dir`` through ``..``; by default such records are invalid, so that a shared
            annotation file cannot make the kit read files elsewhere.

    Returns:
        The samples, the cleaned ground truth and the phrase of each category.

    Raises:
        CocoFormatError: On an invalid file or record (records only when ``on_error="raise"``).
    """
    json_path = Path(json_path)
    try:
        coco = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CocoFormatError(f"{json_path}: cannot read COCO JSON: {err}") from err
    return coco_set_from_dict(
        coco,
        json_path,
        image_dir,
        prompt_map=prompt_map,
        include_negatives=include_negatives,
        on_error=on_error,
        allow_outside_image_dir=allow_outside_image_dir,
    )


def coco_set_from_dict(
    coco: Any,
    json_path: str | Path,
    image_dir: str | Path,
    *,
    prompt_map: Mapping[Any, str] | str | Path | None = None,
    include_negatives: bool = True,
    on_error: OnError = "raise",
    allow_outside_image_dir: bool = False,
) -> CocoSet:
    """Read a parsed COCO dict into concept samples; `read_coco_set` without the file reading.

    Other sources (SA-Co, Hugging Face datasets) convert their records to a COCO dict and come here,
    so that every format is validated by the same rules.

    Args:
        coco: The parsed COCO JSON.
        json_path: The file the records come from, named in messages and in `ConceptSample.source`.
        image_dir: Folder that the images' ``file_name`` values are relative to.
        prompt_map: As in `read_coco_set`.
        include_negatives: As in `read_coco_set`.
        on_error: As in `read_coco_set`.
        allow_outside_image_dir: As in `read_coco_set`.

    Returns:
        The samples, the cleaned ground truth and the phrase of each category.

    Raises:
        CocoFormatError: On an invalid structure or record (records only when ``on_error="raise"``).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    json_path, image_dir = Path(json_path), Path(image_dir)
    check_structure(coco, json_path)
    problems = Problems(json_path, on_error)
    phrases = _phrases(coco["categories"], json_path, load_prompt_map(prompt_map))
    images = _images(coco["images"], image_dir, problems, allow_outside_image_dir)
    kept, tainted, valid = _annotations(coco["annotations"], images, phrases, problems)
    problems.finish()

    samples = []
    for image_id, image in images.items():
        queries = []
        for cat_id, (phrase, _) in sorted(phrases.items()):
            instances = kept.get((image_id, cat_id), [])
            key = (image_id, cat_id)
            if not instances and (key in tainted or not include_negatives):
                continue
            origin = f"{json_path.name}: image id {image_id} ({image['file_name']}), category {cat_id}"
            queries.append(Query(phrase, cat_id, instances, exhaustive=key not in tainted, origin=origin))
        samples.append(
            ConceptSample(
                image_id=image_id,
                image_path=image_dir / image["file_name"],
                height=image["height"],
                width=image["width"],
                queries=queries,
                source=json_path.name,
            )
        )
    gt = {
        **coco,
        "images": list(images.values()),
        "annotations": valid,
        "categories": list(coco["categories"]),
    }
    return CocoSet(json_path=json_path, samples=samples, gt=gt, phrases=phrases)


def _phrases(
    categories: list[dict[str, Any]], json_path: Path, prompt_map: dict[Any, str] | None
) -> dict[int, tuple[str, str]]:
    """Phrase and origin of each category id, after the prompt map; phrases must be distinct."""
    by_name = {c["name"]: c["id"] for c in categories}
    overrides: dict[int, str] = {}
    for key, phrase in (prompt_map or {}).items():
        cat_id = key if isinstance(key, int) and key in {c["id"] for c in categories} else by_name.get(key)
        if cat_id is None:
            raise CocoFormatError(
                f"{json_path}: prompt_map key {key!r} names no category (categories: {sorted(by_name)})"
            )
        overrides[cat_id] = phrase
    phrases: dict[int, tuple[str, str]] = {}
    seen: dict[str, int] = {}
    for cat in categories:
        cat_id, name = cat["id"], cat["name"]
        phrase = overrides.get(cat_id, name).strip()
        origin = f"{json_path.name}: category {cat_id} ({name!r})" + (
            " via prompt_map" if cat_id in overrides else ""
        )
        if not phrase:
            raise CocoFormatError(f"{origin}: empty phrase")
        if phrase in seen:
            raise CocoFormatError(
                f"{json_path}: categories {seen[phrase]} and {cat_id} share the phrase {phrase!r}; one would "
                "be a negative where the other is present. Give them distinct phrases with prompt_map."
            )
        seen[phrase] = cat_id
        phrases[cat_id] = (phrase, origin)
    return phrases


def _images(
    records: list[Any], image_dir: Path, problems: Problems, allow_outside: bool
) -> dict[int, dict[str, Any]]:
    """Valid image records by id; height and width are filled from the file when absent."""
    images: dict[int, dict[str, Any]] = {}
    for rec in records:
        if (
            not isinstance(rec, dict)
            or not is_int(rec.get("id"))
            or not isinstance(rec.get("file_name"), str)
        ):
            problems.add(
                "malformed image record", f"image record {_short(rec)} needs an int 'id' and a 'file_name'"
            )
            continue
        where = f"image id {rec['id']} ({rec['file_name']})"
        if rec["id"] in images:
            problems.add("duplicate image id", f"{where}: the id is used by another image")
            continue
        sizes = {key: rec[key] for key in ("width", "height") if key in rec}
        if not all(is_int(v) and v > 0 for v in sizes.values()):
            problems.add(
                "malformed image record", f"{where}: 'width' and 'height' must be positive ints, got {sizes}"
            )
            continue
        if not allow_outside and escapes(rec["file_name"]):
            problems.add(
                "file outside image_dir",
                f"{where}: file_name must be a path inside image_dir, without '..' or a leading '/' "
                "(allow_outside_image_dir=True allows it)",
                rec["id"],
            )
            continue
        path = image_dir / rec["file_name"]
        if not path.is_file():
            problems.add("missing image file", f"{where}: image file not found: {path}", rec["id"])
            continue
        try:
            width, height = probe_image(path)
        except ImageReadError as err:
            problems.add("unreadable image", f"{where}: {err}", rec["id"])
            continue
        if rec.get("width", width) != width or rec.get("height", height) != height:
            problems.add(
                "image size differs from file",
                f"{where}: JSON says {rec.get('width')}x{rec.get('height')} (w x h), "
                f"the file is {width}x{height}",
                rec["id"],
            )
            continue
        images[rec["id"]] = {**rec, "width": width, "height": height}
    return images


def escapes(file_name: str) -> bool:
    """Whether a ``file_name`` leads out of its image folder (absolute, or up through ``..``)."""
    path = PurePath(file_name)
    return path.is_absolute() or bool(path.drive) or ".." in path.parts


def _annotations(
    records: list[Any],
    images: dict[int, dict[str, Any]],
    phrases: dict[int, tuple[str, str]],
    problems: Problems,
) -> tuple[dict[tuple[int, int], list[Instance]], set[tuple[int, int]], list[dict[str, Any]]]:
    """Validate annotations and group them into instances.

    Returns:
        Instances by (image id, category id); the (image, category) pairs with unlabelled objects
        (crowds, skipped records); the valid records (crowds included) for the ground truth.
    """
    kept: dict[tuple[int, int], list[Instance]] = {}
    tainted: set[tuple[int, int]] = set()
    valid: list[dict[str, Any]] = []
    seen_ids: set[int] = set()
    for rec in records:
        if not isinstance(rec, dict) or not is_int(rec.get("id")):
            problems.add("malformed annotation", f"annotation {_short(rec)} needs an int 'id'")
            continue
        where = f"annotation id {rec['id']}"
        image_id, cat_id = rec.get("image_id"), rec.get("category_id")
        if rec["id"] in seen_ids:
            problems.add("duplicate annotation id", f"{where}: the id is used by another annotation")
            continue
        seen_ids.add(rec["id"])
        if not is_int(image_id) or image_id not in images:
            if not problems.drop_with_image(image_id):
                problems.add("unknown image id", f"{where}: image_id {image_id!r} is not in 'images'")
            continue
        where += f" (image id {image_id}, {images[image_id]['file_name']})"
        if not is_int(cat_id) or cat_id not in phrases:
            problems.add("unknown category id", f"{where}: category_id {cat_id!r} is not in 'categories'")
            continue
        image = images[image_id]
        try:
            box = parse_box(rec.get("bbox"), image)
            rle = parse_segmentation(rec.get("segmentation"), image)
            crowd = parse_crowd(rec.get("iscrowd", 0))
            area = parse_area(rec.get("area"))
        except BadRecord as bad:
            problems.add(bad.reason, f"{where}: {bad}")
            tainted.add((image_id, cat_id))
            continue
        x0, y0, x1, y1 = box
        if area is None:
            area = float(mask_utils.area(rle)) if rle is not None else (x1 - x0) * (y1 - y0)
        valid.append({**rec, "iscrowd": int(crowd), "area": area})
        if crowd:
            tainted.add((image_id, cat_id))
            continue
        kept.setdefault((image_id, cat_id), []).append(Instance(box, rle, area, rec["id"]))
    return kept, tainted, valid


def _short(record: Any, limit: int = 80) -> str:
    text = json.dumps(record, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
