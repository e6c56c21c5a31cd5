"""Precision-recall curves from pycocotools' COCOeval, overall and per phrase."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from pycocotools.cocoeval import COCOeval

#: Phrases drawn one by one in the per-phrase panel at most (more would be unreadable).
MAX_PHRASE_CURVES = 12


def _mean_over_categories(precision: np.ndarray) -> np.ndarray | None:
    """Average ``(R, K)`` precision over the categories that have ground truth (COCO marks others -1)."""
    valid = (precision > -1).any(axis=0)
    return precision[:, valid].mean(axis=1) if valid.any() else None


def pr_curves(cocoeval: COCOeval) -> dict[str, Any]:
    """The interpolated precision at COCO's 101 recall points, over all object sizes and top detections.

    The mean of a curve is the matching AP: ``mean(overall["0.50"])`` is COCOeval's AP50.

    Args:
        cocoeval: An evaluated and accumulated COCOeval.

    Returns:
        ``{"recall": (101,), "overall": {"0.50": (101,), "0.75": ..., "0.50:0.95": ...},
        "per_category": {category_id: (101,) at IoU 0.5}}``; categories without ground truth are left out.
    """
    precision = cocoeval.eval["precision"][:, :, :, 0, -1]  # IoU x recall x category, area all, max dets
    ious = np.asarray(cocoeval.params.iouThrs)
    at_50, at_75 = int(np.argmin(np.abs(ious - 0.5))), int(np.argmin(np.abs(ious - 0.75)))
    overall = {
        "0.50": _mean_over_categories(precision[at_50]),
        "0.75": _mean_over_categories(precision[at_75]),
    }
    per_iou = [_mean_over_categories(precision[t]) for t in range(len(ious))]
    overall["0.50:0.95"] = None if per_iou[0] is None else np.mean(per_iou, axis=0)
    per_category = {
        int(cat_id): precision[at_50, :, k]
        for k, cat_id in enumerate(cocoeval.params.catIds)
        if (precision[at_50, :, k] > -1).any()
    }
    return {
        "recall": np.asarray(cocoeval.params.recThrs),
        "overall": {k: v for k, v in overall.items() if v is not None},
        "per_category": per_category,
    }


def pr_figure(cocoeval: COCOeval, phrases: dict[int, str], title: str = "") -> Figure:
    """Plot the overall PR curves (IoU 0.5, 0.75 and their 0.50:0.95 mean) and one per phrase at IoU 0.5.

    Args:
        cocoeval: An evaluated and accumulated COCOeval.
        phrases: Phrase of each category id.
        title: Figure title.

    Returns:
        The figure (matplotlib's object API; nothing is registered with pyplot).
    """
    curves = pr_curves(cocoeval)
    recall = curves["recall"]
    fig = Figure(figsize=(9.0, 3.8))
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.13, top=0.85, wspace=0.2)
    left, right = fig.subplots(1, 2)
    for label, curve in curves["overall"].items():
        left.plot(recall, curve, label=f"IoU {label} (AP {curve.mean():.3f})")
    left.set_title("all phrases", fontsize=10)
    shown = sorted(curves["per_category"].items(), key=lambda item: phrases.get(item[0], str(item[0])))
    for cat_id, curve in shown[:MAX_PHRASE_CURVES]:
        right.plot(recall, curve, label=f"{phrases.get(cat_id, cat_id)} (AP50 {curve.mean():.3f})")
    extra = len(shown) - MAX_PHRASE_CURVES
    right.set_title(
        "per phrase, IoU 0.50" + (f" (first {MAX_PHRASE_CURVES})" if extra > 0 else ""), fontsize=10
    )
    for ax in (left, right):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
