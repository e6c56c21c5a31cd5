"""k-fold splits of a few-shot COCO set, so no image both trains and judges a trial."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def _write_json(data: dict[str, Any], path: Path) -> Path:
    # Workers of one study may write the same fold at once; a rename is atomic.
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(data))
    partial.replace(path)
    return path


def write_folds(
    train_json: str | Path, out: str | Path, folds: int, seed: int = 0
) -> list[tuple[Path, Path]]:
    """Split the images of a COCO file into ``folds`` parts and write one train/val pair per part.

    Fold ``i`` validates on part ``i`` and trains on the others; every image is validated on in
    exactly one fold. The split depends only on the file's image ids and ``seed``.

    Args:
        train_json: The few-shot COCO file.
        out: Folder that gets ``fold<i>/train.json`` and ``fold<i>/val.json``.
        folds: Number of folds, at least 2 and at most the number of images.
        seed: Seed of the shuffle before splitting.

    Returns:
        ``[(train_json, val_json), ...]``, one pair per fold.

    Raises:
        ValueError: If the file has fewer images than ``folds``.
    """
    coco = json.loads(Path(train_json).read_text())
    image_ids = sorted(image["id"] for image in coco["images"])
    if not 2 <= folds <= len(image_ids):
        raise ValueError(f"folds={folds} needs 2 <= folds <= the {len(image_ids)} images of {train_json}")
    order = np.random.default_rng(seed).permutation(len(image_ids))
    parts = [{image_ids[i] for i in order[k::folds]} for k in range(folds)]
    pairs = []
    for index, held_out in enumerate(parts):
        folder = Path(out) / f"fold{index}"
        folder.mkdir(parents=True, exist_ok=True)
        train = _write_json(_subset(coco, set(image_ids) - held_out), folder / "train.json")
        pairs.append((train, _write_json(_subset(coco, held_out), folder / "val.json")))
    return pairs


def _subset(coco: dict[str, Any], image_ids: set[int]) -> dict[str, Any]:
    subset = dict(coco)
    subset["images"] = [image for image in coco["images"] if image["id"] in image_ids]
    subset["annotations"] = [a for a in coco.get("annotations", []) if a["image_id"] in image_ids]
    return subset
