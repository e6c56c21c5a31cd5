"""Read a Hugging Face `datasets` detection set into concept samples, caching the decoded records.

Accepted layout (that of the Hub's object-detection sets such as ``cppe-5``): one row per image, with

- an image column (``datasets.Image``, default ``"image"``);
- an objects column (default ``"objects"``) holding, per object, ``bbox`` (``[x, y, w, h]`` in
  pixels by default; see ``bbox_format`` and ``normalized_boxes``) and ``category`` (a
  ``datasets.ClassLabel``, whose names are the phrases and whose integer labels are the category
  ids, or plain strings, numbered 1, 2, ... in sorted order), and optionally ``segmentation``
  (COCO polygons or RLE in pixels; absent or empty means box-only), ``area``, ``iscrowd`` and
  ``id`` (the annotation id; objects are numbered 1, 2, ... in row order otherwise). The objects
  column may be a list of structs or a struct of lists (the ``Sequence({...})`` form);
- optionally an ``image_id`` column; rows are numbered 1, 2, ... otherwise.

Every category is a phrase and labels are taken as exhaustive, as for a COCO file: a category absent
from an image is a negative query. The set can be a folder written by ``save_to_disk``, a folder of
data files that ``datasets.load_dataset`` reads, or a Hub name (``load_dataset`` downloads it once
into its own cache; with ``HF_HUB_OFFLINE=1`` only cached sets load).

The first read writes the image files (their stored bytes, not re-encoded) and the rows as COCO
records (an Arrow file, by ``Dataset.map``) into ``cache_dir``, under a folder keyed by the dataset's
fingerprint and the reading options; later reads load that Arrow file and decode nothing.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import datasets
from datasets.fingerprint import Hasher
from PIL import Image

from sam3_adapt.data_mix.readers.coco import CocoSet, OnError, coco_set_from_dict
from sam3_adapt.data_mix.readers.coco_checks import CocoFormatError, is_number
from sam3_adapt.data_mix.readers.saco import unit_box_to_pixels

BoxFormat = Literal["xywh", "xyxy"]


def default_cache_dir() -> Path:
    """``<datasets cache>/sam3_adapt`` (``HF_DATASETS_CACHE`` moves it with the rest of `datasets`)."""
    return Path(datasets.config.HF_DATASETS_CACHE) / "sam3_adapt"


def read_hf_set(
    name_or_path: str | Path,
    *,
    split: str | None = None,
    bbox_format: BoxFormat = "xywh",
    normalized_boxes: bool = False,
    image_column: str = "image",
    objects_column: str = "objects",
    cache_dir: str | Path | None = None,
    prompt_map: Mapping[Any, str] | str | Path | None = None,
    include_negatives: bool = True,
    on_error: OnError = "raise",
) -> CocoSet:
    """Read a Hugging Face detection dataset (see the module docstring) into samples and ground truth.

    Args:
        name_or_path: A ``save_to_disk`` folder, a folder of data files, or a Hub dataset name.
        split: The split to read; may be left out when the dataset has a single split.
        bbox_format: ``"xywh"`` (COCO) or ``"xyxy"`` (corners) boxes.
        normalized_boxes: Boxes (and areas) are fractions of the image size rather than pixels.
        image_column: Name of the image column.
        objects_column: Name of the objects column.
        cache_dir: Where the decoded records and image files go; defaults to `default_cache_dir`.
        prompt_map: Phrase overrides ``{category name: phrase}``, or a path to a JSON/YAML file with one.
        include_negatives: Add a negative query for every category absent from an image.
        on_error: ``"raise"`` stops at the first invalid record; ``"skip"`` drops invalid records
            with one warning that counts them.

    Returns:
        The samples (their images are the cached files), the ground truth as a COCO dict and the
        phrase of each category.

    Raises:
        CocoFormatError: If the dataset lacks the expected columns, or a record is invalid.
        ValueError: If the split is ambiguous or unknown.
    """
    if bbox_format not in ("xywh", "xyxy"):
        raise ValueError(f"bbox_format must be 'xywh' or 'xyxy', got {bbox_format!r}")
    name = str(name_or_path)
    dataset = _load(name, split)
    categories = _check_columns(dataset, name, image_column, objects_column)
    # `datasets` names its own cache files by this fingerprint (the data and every transform so far);
    # it has no public accessor.
    options = [dataset._fingerprint, image_column, objects_column, bbox_format, normalized_boxes]
    folder = Path(cache_dir or default_cache_dir()) / (
        f"{_slug(name)}-{split or dataset.split or 'all'}-{Hasher.hash(options)}"
    )
    image_dir = folder / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    exporter = _Exporter(name, image_dir, image_column, objects_column, bbox_format, normalized_boxes)
    records = dataset.cast_column(image_column, datasets.Image(decode=False)).map(
        exporter,
        with_indices=True,
        remove_columns=dataset.column_names,
        cache_file_name=str(folder / "records.arrow"),
        load_from_cache_file=True,
        desc=f"Exporting {name} images and objects",
    )
    coco = _coco_dict(records, categories)
    # Messages and `ConceptSample.source` name the dataset; image file names are row numbers.
    return coco_set_from_dict(
        coco,
        Path(name),
        image_dir,
        prompt_map=prompt_map,
        include_negatives=include_negatives,
        on_error=on_error,
    )


def _load(name: str, split: str | None) -> datasets.Dataset:
    """One split of a ``save_to_disk`` folder, a data folder or a Hub dataset."""
    path = Path(name)
    if path.is_dir() and any((path / f).is_file() for f in ("state.json", "dataset_dict.json")):
        loaded = datasets.load_from_disk(str(path))
    else:
        loaded = datasets.load_dataset(name, split=split)
    if isinstance(loaded, datasets.Dataset):
        if split is not None and loaded.split is not None and str(loaded.split) != split:
            raise ValueError(f"{name}: holds the split {loaded.split!r} only, not {split!r}")
        return loaded
    if split is None and len(loaded) == 1:
        return next(iter(loaded.values()))
    if split not in loaded:
        asked = "no split was given" if split is None else f"split {split!r} not found"
        raise ValueError(f"{name}: {asked}; its splits are {sorted(loaded)} (set split)")
    return loaded[split]


def _check_columns(
    dataset: datasets.Dataset, name: str, image_column: str, objects_column: str
) -> dict[Any, tuple[int, str]] | None:
    """Check the layout; ``{label: (category id, phrase)}`` for ClassLabel categories, else ``None``."""
    features = dataset.features
    found = f"its columns are {sorted(features)}"
    if not isinstance(features.get(image_column), datasets.Image):
        raise CocoFormatError(f"{name}: needs an image column {image_column!r} (datasets.Image); {found}")
    objects = features.get(objects_column)
    inner = getattr(objects, "feature", objects)  # list of structs, or a struct of lists
    if not isinstance(inner, dict):
        raise CocoFormatError(
            f"{name}: needs an objects column {objects_column!r} (a list of objects with 'bbox' and "
            f"'category'); {found}"
        )
    missing = [key for key in ("bbox", "category") if key not in inner]
    if missing:
        raise CocoFormatError(
            f"{name}: the objects column {objects_column!r} lacks {missing}; its fields are {sorted(inner)}"
        )
    category = getattr(inner["category"], "feature", inner["category"])
    if isinstance(category, datasets.ClassLabel):
        return {label: (label, phrase) for label, phrase in enumerate(category.names)}
    if isinstance(category, datasets.Value) and category.dtype in ("string", "large_string"):
        return None
    raise CocoFormatError(
        f"{name}: {objects_column}.category must be a datasets.ClassLabel (label names are the phrases) "
        f"or strings, got {category}; cast it with dataset.cast_column"
    )


class _Exporter:
    """The ``Dataset.map`` function: writes a row's image file and returns its COCO records."""

    def __init__(
        self,
        name: str,
        image_dir: Path,
        image_column: str,
        objects_column: str,
        bbox_format: BoxFormat,
        normalized: bool,
    ) -> None:
        self.name = name
        self.image_dir = image_dir
        self.image_column = image_column
        self.objects_column = objects_column
        self.bbox_format = bbox_format
        self.normalized = normalized

    def __call__(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        stored = row[self.image_column]
        data = stored["bytes"] if stored["bytes"] is not None else Path(stored["path"]).read_bytes()
        try:
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                suffix = "." + (im.format or "png").lower()
        except (OSError, ValueError, SyntaxError):
            # Written as it is: the image checks of the COCO rules then name it, and skip it on request.
            width = height = None
            suffix = ".unreadable"
        file_name = f"{index:08d}{suffix}"
        (self.image_dir / file_name).write_bytes(data)
        image_id = row.get("image_id")
        image = {"id": image_id if isinstance(image_id, int) else index + 1, "file_name": file_name}
        if width is None:
            return {"coco_image": json.dumps(image), "coco_annotations": json.dumps([])}
        image |= {"width": width, "height": height}
        objects = _rows(row[self.objects_column])
        annotations = [self._annotation(obj, width, height, index) for obj in objects]
        return {"coco_image": json.dumps(image), "coco_annotations": json.dumps(annotations)}

    def _annotation(self, obj: dict[str, Any], width: int, height: int, index: int) -> dict[str, Any]:
        ann = {k: obj[k] for k in ("id", "area", "iscrowd") if obj.get(k) is not None}
        box = obj["bbox"]
        if isinstance(box, list) and len(box) == 4 and all(is_number(v) for v in box):
            if self.bbox_format == "xyxy":
                box = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
            if self.normalized:
                try:
                    box = unit_box_to_pixels(box, width, height)
                except ValueError as err:
                    raise CocoFormatError(f"{self.name}: row {index}: {err} (normalized_boxes=True)") from err
                if is_number(ann.get("area")):
                    ann["area"] *= width * height
        ann["bbox"] = box
        ann["category"] = obj["category"]
        if obj.get("segmentation"):
            ann["segmentation"] = obj["segmentation"]
        return ann


def _rows(objects: Any) -> list[dict[str, Any]]:
    """A list of object dicts, from a list of structs or a struct of lists."""
    if isinstance(objects, dict):
        keys = list(objects)
        return [dict(zip(keys, values, strict=True)) for values in zip(*objects.values(), strict=True)]
    return list(objects or [])


def _coco_dict(records: datasets.Dataset, categories: dict[Any, tuple[int, str]] | None) -> dict[str, Any]:
    """The cached records as one COCO dict; string categories are numbered in sorted order."""
    images = [json.loads(text) for text in records["coco_image"]]
    per_image = [json.loads(text) for text in records["coco_annotations"]]
    if categories is None:
        names = sorted(
            {ann["category"] for anns in per_image for ann in anns if isinstance(ann["category"], str)}
        )
        categories = {phrase: (cat_id, phrase) for cat_id, phrase in enumerate(names, start=1)}
    annotations = []
    for image, anns in zip(images, per_image, strict=True):
        for ann in anns:
            category = categories.get(ann.pop("category"), (None, None))[0]
            annotations.append(
                {"id": len(annotations) + 1, **ann, "image_id": image["id"], "category_id": category}
            )
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cat_id, "name": phrase} for cat_id, phrase in categories.values()],
    }


def _slug(name: str) -> str:
    """A readable folder-name prefix for a dataset path or Hub name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name or name)[:60]
