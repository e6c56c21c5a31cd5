"""One entry point for every data source: COCO JSON, SA-Co JSON and Hugging Face datasets.

Each format becomes the same `CocoSet` (concept samples plus COCO ground truth), so any split of
`ConceptDataModule` (train, val, test, predict, anchor, mixed sources) can point at any format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sam3_adapt.data_mix.readers.coco import CocoSet, OnError, coco_set_from_dict
from sam3_adapt.data_mix.readers.coco_checks import CocoFormatError
from sam3_adapt.data_mix.readers.saco import saco_set_from_dict

SourceFormat = Literal["auto", "coco", "saco", "hf"]
BoxFormat = Literal["xywh", "xyxy"]

#: Keys of an image record that only SA-Co's image-phrase pairs have.
SACO_KEYS = frozenset({"text_input", "is_instance_exhaustive", "is_pixel_exhaustive", "queried_category"})

#: A Hub dataset name: ``name`` or ``owner/name``.
_HUB_NAME = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


@dataclass
class Source:
    """Where one set of concept data comes from, as a recipe names it.

    Attributes:
        path: A COCO or SA-Co JSON file, a Hugging Face dataset folder (``save_to_disk`` or data
            files) or a Hub dataset name.
        image_dir: Folder that a JSON file's ``file_name`` values are relative to; unused for
            Hugging Face datasets, whose images are exported to the cache.
        format: ``"coco"``, ``"saco"``, ``"hf"``, or ``"auto"`` (see `detect_format`).
        split: Split of a Hugging Face dataset; may be left out when it has a single split.
        bbox_format: Hugging Face boxes: ``"xywh"`` (COCO) or ``"xyxy"``.
        normalized_boxes: Boxes are fractions of the image size; ``None`` takes the format's
            convention (SA-Co: fractions; COCO and Hugging Face: pixels).
        negatives: Whether this source's negative queries are kept (categories absent from an
            image, SA-Co's negative pairs); ``False`` for data that is not exhaustively labelled (an
            absent category may be there, unlabelled) or to train on positives only. ``None`` takes
            the reader's ``include_negatives`` (the DataModule's).
    """

    path: str
    image_dir: str | None = None
    format: SourceFormat = "auto"
    split: str | None = None
    bbox_format: BoxFormat = "xywh"
    normalized_boxes: bool | None = None
    negatives: bool | None = None

    def read(self, **options: Any) -> CocoSet:
        """Read the source with `read_source`; ``options`` are its keyword-only reading options."""
        if self.negatives is not None:
            options["include_negatives"] = self.negatives
        return read_source(
            self.path,
            self.image_dir,
            format=self.format,
            split=self.split,
            bbox_format=self.bbox_format,
            normalized_boxes=self.normalized_boxes,
            **options,
        )


@dataclass
class MixSource(Source):
    """A training source with its share of each epoch (see `sam3_adapt.data_mix.mixing.WeightedMixSampler`).

    Attributes:
        weight: Relative share of the epoch's draws (``domain: 1, anchor: 1`` is the paper's 1:1 mix).
    """

    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"source {self.path}: weight must be >= 0, got {self.weight}")


def detect_format(path_or_name: str | Path, parsed: Any = None) -> Literal["coco", "saco", "hf"]:
    """Tell a source's format.

    A folder or a Hub name is a Hugging Face dataset; a JSON file whose ``images`` records carry a
    key of SA-Co's image-phrase pairs (`SACO_KEYS`: ``text_input``, ``is_instance_exhaustive``, ...)
    is SA-Co, so that a pair file that lost its phrases is refused by the SA-Co reader rather than
    read as COCO with its placeholder category as the phrase; any other JSON file is COCO.

    Args:
        path_or_name: The source.
        parsed: The file's parsed JSON, when already read.

    Raises:
        CocoFormatError: If the path is neither a JSON file, a folder nor a Hub name.
    """
    path = Path(path_or_name)
    if path.is_dir():
        return "hf"
    if path.is_file() and path.suffix.lower() == ".json":
        data = _parse_json(path) if parsed is None else parsed
        images = data.get("images") if isinstance(data, dict) else None
        saco = isinstance(images, list) and any(isinstance(r, dict) and SACO_KEYS & r.keys() for r in images)
        return "saco" if saco else "coco"
    if not path.exists() and path.suffix.lower() != ".json" and _HUB_NAME.match(str(path_or_name)):
        return "hf"
    raise CocoFormatError(
        f"{path_or_name}: cannot tell its format: expected a .json file (COCO or SA-Co), a Hugging Face "
        "dataset folder or a Hub dataset name" + (" (the file does not exist)" if not path.exists() else "")
    )


def read_source(
    path_or_name: str | Path,
    image_dir: str | Path | None = None,
    *,
    format: SourceFormat = "auto",  # noqa: A002 - the name recipes use
    split: str | None = None,
    bbox_format: BoxFormat = "xywh",
    normalized_boxes: bool | None = None,
    prompt_map: Mapping[Any, str] | str | Path | None = None,
    include_negatives: bool = True,
    on_error: OnError = "raise",
    cache_dir: str | Path | None = None,
    allow_outside_image_dir: bool = False,
) -> CocoSet:
    """Read any supported source into concept samples and COCO ground truth.

    See `sam3_adapt.data_mix.readers.coco.read_coco_set`,
    `sam3_adapt.data_mix.readers.saco.read_saco_set` and `sam3_adapt.data_mix.readers.hf.read_hf_set`
    for what each format accepts; all apply the same record checks.

    Args:
        path_or_name: A COCO/SA-Co JSON file, a Hugging Face dataset folder or a Hub name.
        image_dir: Image folder of a JSON file (required for COCO and SA-Co; unused for ``hf``).
        format: The source's format, or ``"auto"`` to detect it (see `detect_format`).
        split: Split of a Hugging Face dataset.
        bbox_format: Box layout of a Hugging Face dataset (``"xywh"`` or ``"xyxy"``).
        normalized_boxes: Boxes are fractions of the image size; ``None`` takes the format's convention.
        prompt_map: Phrase overrides ``{category name or phrase: phrase}``, or a JSON/YAML file with one.
        include_negatives: Keep negative queries (absent categories; SA-Co's negative pairs).
        on_error: ``"raise"`` stops at the first invalid record; ``"skip"`` drops invalid records
            with a warning that counts them.
        cache_dir: Cache of decoded Hugging Face datasets (default
            `sam3_adapt.data_mix.readers.hf.default_cache_dir`).
        allow_outside_image_dir: Accept JSON ``file_name`` values that are absolute or lead out of
            ``image_dir`` (refused by default; see `sam3_adapt.data_mix.readers.coco.read_coco_set`).

    Returns:
        The set.

    Raises:
        CocoFormatError: On an unreadable source, a missing image folder or an invalid record.
    """
    if format not in ("auto", "coco", "saco", "hf"):
        raise ValueError(f"format must be 'auto', 'coco', 'saco' or 'hf', got {format!r}")
    path = Path(path_or_name)
    parsed = None
    if format in ("coco", "saco") or (format == "auto" and path.is_file()):
        parsed = _parse_json(path)
    kind = detect_format(path, parsed) if format == "auto" else format
    common = {"prompt_map": prompt_map, "include_negatives": include_negatives, "on_error": on_error}
    if kind == "hf":
        from sam3_adapt.data_mix.readers.hf import (
            read_hf_set,  # `datasets` takes seconds to import; only hf sources need it
        )

        return read_hf_set(
            str(path_or_name),
            split=split,
            bbox_format=bbox_format,
            normalized_boxes=bool(normalized_boxes),
            cache_dir=cache_dir,
            **common,
        )
    if image_dir is None:
        raise CocoFormatError(
            f"{path}: a {kind} file needs image_dir, the folder its file_name values are in"
        )
    common["allow_outside_image_dir"] = allow_outside_image_dir
    if kind == "saco":
        normalized = True if normalized_boxes is None else normalized_boxes
        return saco_set_from_dict(parsed, path, image_dir, normalized_boxes=normalized, **common)
    if normalized_boxes:
        raise CocoFormatError(f"{path}: COCO boxes are in pixels; normalized_boxes applies to SA-Co and hf")
    return coco_set_from_dict(parsed, path, image_dir, **common)


def _parse_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CocoFormatError(f"{path}: cannot read JSON: {err}") from err
