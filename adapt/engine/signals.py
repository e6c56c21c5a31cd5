"""Verifier signals the model itself gives: per instance (MV) and per image-phrase pair (EV).

MV asks whether a mask is good and matches its phrase; EV whether every instance was found, or the
phrase is absent. Both are read from two passes of the model over the image, plain and mirrored
(`sam3_adapt.inference.loop.predict_samples` with ``hflip``), and from the labelled set's sizes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torchvision.ops import nms

from sam3_adapt.model.detections import QueryDetections

#: MV signals, in the order the learned verifier reads them.
MV_SIGNALS = ("score", "stability", "flip_iou", "box_mask_iou", "log_size_ratio")
#: EV signals, in the order the learned verifier reads them.
EV_SIGNALS = ("presence", "count", "near_count", "near_max", "flip_count_diff")


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks of one size (0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """The tight ``(x0, y0, x1, y1)`` box of a mask's pixels, or ``None`` for an empty mask."""
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    if not len(rows):
        return None
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def box_iou(a: tuple[float, ...] | list[float], b: tuple[float, ...] | list[float]) -> float:
    """IoU of two ``(x0, y0, x1, y1)`` boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


#: Box IoU from which two detections are taken for one object.
DUPLICATE_IOU = 0.5


def _distinct(boxes: torch.Tensor, scores: torch.Tensor, min_score: float) -> list[int]:
    """Indices of the detections scoring at least ``min_score`` that survive non-maximum suppression."""
    keep = (scores >= min_score).nonzero().flatten()
    if not len(keep):
        return []
    return keep[nms(boxes[keep].float(), scores[keep].float(), DUPLICATE_IOU)].tolist()


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """A boolean mask as compressed COCO RLE with a ``str`` counts field (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def pair_record(
    plain: QueryDetections,
    flipped: QueryDetections,
    threshold: float,
    near_low: float,
    typical_area: float | None,
) -> dict[str, Any]:
    """The proposal of one (image, phrase) pair: presence, instances with MV signals, EV signals.

    Args:
        plain: Detections of the plain pass, best first.
        flipped: Detections of the mirrored pass, mirrored back.
        threshold: Score from which a detection is a proposed instance.
        near_low: Score from which a detection below ``threshold`` counts as a near-threshold leftover
            (where it overlaps no detection above ``threshold``).
        typical_area: Median mask area of the phrase in the labelled set (pixels), or ``None``.

    Returns:
        ``{"presence", "instances": [{"box", "score", "area", "segmentation", "signals"}], "signals"}``.
    """
    scores = plain.scores.cpu().numpy()
    masks = np.asarray(plain.masks) if plain.masks is not None else None
    flip_scores = flipped.scores.cpu().numpy()
    flip_masks = np.asarray(flipped.masks) if flipped.masks is not None else None
    flip_kept = [k for k in range(len(flip_scores)) if flip_scores[k] >= near_low]
    stability = plain.stability.cpu().numpy() if plain.stability is not None else np.ones(len(scores))
    instances = []
    for k in np.nonzero(scores >= threshold)[0]:
        box = [float(v) for v in plain.boxes[k].tolist()]
        mask = masks[k] if masks is not None else None
        area = float(mask.sum()) if mask is not None else (box[2] - box[0]) * (box[3] - box[1])
        if mask is not None and flip_masks is not None:
            flip_iou = max((mask_iou(mask, flip_masks[j]) for j in flip_kept), default=0.0)
        else:
            flip_iou = max((box_iou(box, flipped.boxes[j].tolist()) for j in flip_kept), default=0.0)
        tight = mask_box(mask) if mask is not None else None
        signals = {
            "score": float(scores[k]),
            "stability": float(stability[k]),
            "flip_iou": flip_iou,
            "box_mask_iou": box_iou(box, tight) if tight is not None else 0.0,
            "log_size_ratio": math.log(max(area, 1.0) / typical_area) if typical_area else 0.0,
        }
        instance = {"box": box, "score": float(scores[k]), "area": area, "signals": signals}
        if mask is not None:
            instance["segmentation"] = encode_rle(mask)
        instances.append(instance)
    # Several slots often find one object: count distinct objects (boxes overlapping less than
    # DUPLICATE_IOU), and call a near-threshold detection left over only where nothing was found.
    found = _distinct(plain.boxes, plain.scores, threshold)
    leftovers = [
        k
        for k in _distinct(plain.boxes, plain.scores, near_low)
        if scores[k] < threshold
        and all(box_iou(plain.boxes[k].tolist(), plain.boxes[j].tolist()) < DUPLICATE_IOU for j in found)
    ]
    near = scores[leftovers]
    count = len(instances)
    signals = {
        "presence": float(plain.presence),
        "count": float(count),
        "near_count": float(len(near)),
        "near_max": float(near.max()) if len(near) else 0.0,
        "flip_count_diff": float(abs(len(found) - len(_distinct(flipped.boxes, flipped.scores, threshold)))),
    }
    return {"presence": float(plain.presence), "instances": instances, "signals": signals}
