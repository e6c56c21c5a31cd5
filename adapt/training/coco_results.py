"""Detections of one (image, phrase) pair as COCO result records, and writing them to a results file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
import torch

from sam3_adapt.model.detections import CroppedMasks

ArrayLike = np.ndarray | torch.Tensor


def as_numpy(values: ArrayLike) -> np.ndarray:
    """Return ``values`` as a NumPy array on the CPU (float tensors, bfloat16 included, become float32)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.is_floating_point():
            values = values.float()
        return values.numpy()
    return np.asarray(values)


def encode_masks(masks: ArrayLike | CroppedMasks) -> list[dict[str, Any]]:
    """Encode boolean masks as COCO compressed RLE with ``counts`` as ``str`` (JSON-serialisable).

    Masks are encoded one at a time, so that a large image's masks never exist at full size all at
    once (the detections hold them as `CroppedMasks`).

    Args:
        masks: ``(N, H, W)`` boolean masks.

    Returns:
        ``N`` dicts ``{"size": [H, W], "counts": str}``.
    """
    if len(masks.shape) != 3:
        raise ValueError(f"masks must have shape (N, H, W), got {tuple(masks.shape)}")
    encoded = []
    for mask in masks:
        plane = np.asfortranarray(as_numpy(mask).astype(np.uint8)[:, :, None])
        rle = mask_utils.encode(plane)[0]
        encoded.append({"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")})
    return encoded


def to_coco_results(
    image_id: int,
    category_id: int,
    boxes_xyxy: ArrayLike,
    scores: ArrayLike,
    masks: ArrayLike | CroppedMasks | None = None,
) -> list[dict[str, Any]]:
    """Turn the detections of one (image, phrase) pair into COCO result records.

    Args:
        image_id: COCO image id.
        category_id: COCO category id of the phrase.
        boxes_xyxy: ``(N, 4)`` boxes ``(x0, y0, x1, y1)`` in absolute pixels of the original image.
        scores: ``(N,)`` confidence scores.
        masks: ``(N, H, W)`` boolean masks at the original image size, or ``None``.

    Returns:
        ``N`` records ``{"image_id", "category_id", "bbox" (xywh), "score"}``, plus ``"segmentation"``
        (compressed RLE, ``counts`` as ``str``) when masks are given.

    Raises:
        ValueError: If the shapes disagree.
    """
    boxes = as_numpy(boxes_xyxy).astype(np.float64)
    scores = as_numpy(scores).astype(np.float64)
    where = f"image {image_id}, category {category_id}"
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.ndim != 1:
        raise ValueError(
            f"{where}: boxes must be (N, 4) and scores (N,), got {boxes.shape} and {scores.shape}"
        )
    if len(boxes) != len(scores):
        raise ValueError(f"{where}: {len(boxes)} boxes but {len(scores)} scores")
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    records = [
        {"image_id": int(image_id), "category_id": int(category_id), "bbox": box.tolist(), "score": float(s)}
        for box, s in zip(xywh, scores, strict=True)
    ]
    if masks is not None:
        rles = encode_masks(masks)
        if len(rles) != len(records):
            raise ValueError(f"{where}: {len(rles)} masks but {len(records)} boxes")
        for record, rle in zip(records, rles, strict=True):
            record["segmentation"] = rle
    return records


def write_coco_results(path: str | Path, results: list[dict[str, Any]]) -> Path:
    """Write COCO result records to a JSON file (the format ``COCO.loadRes`` reads).

    Args:
        path: Output file; missing parent folders are created.
        results: Records from :func:`to_coco_results`.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results))
    return path
