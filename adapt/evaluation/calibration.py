"""Where to put the score threshold: precision, recall, F1 and IL_MCC over a sweep of thresholds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from sam3_adapt.evaluation.pairs import PairResult
from sam3_adapt.training.metrics import matthews_corrcoef

#: Score thresholds of the sweep: 0.01 to 0.04, then 0.05, 0.10, ..., 0.95. The low end is there for
#: models whose best operating point lies below 0.05 (a base on a domain it does not know).
THRESHOLDS = (0.01, 0.02, 0.03, 0.04) + tuple(round(0.05 * k, 2) for k in range(1, 20))
_AT_50 = 0


def sweep_row(pairs: Sequence[PairResult], threshold: float) -> dict[str, float]:
    """Detection quality when predictions scoring at least ``threshold`` are kept.

    Instances are matched at IoU 0.5. Precision counts every kept prediction, false positives on
    negative pairs included (what a user of the threshold sees); it is 0 when nothing is kept.
    ``pmF1`` and ``cgF1`` follow :class:`sam3_adapt.training.metrics.ConceptEvaluator`: pmF1 over positive
    pairs only,
    averaged over IoU 0.50:0.95, and ``cgF1 = pmF1 x IL_MCC``; ``@50`` variants use IoU 0.5 alone.

    Args:
        pairs: Every evaluated pair.
        threshold: Score threshold.

    Returns:
        ``threshold``, ``TP``, ``FP``, ``FN``, ``precision``, ``recall``, ``F1``, ``IL_MCC``, ``pmF1``,
        ``pmF1@50``, ``cgF1``, ``cgF1@50``.
    """
    tp_iou = np.zeros(10, dtype=np.int64)
    fp_iou = np.zeros(10, dtype=np.int64)
    fn_iou = np.zeros(10, dtype=np.int64)
    fp_negatives = 0
    image_level = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for pair in pairs:
        kept = pair.kept(threshold)
        if pair.is_positive:
            tp = pair.true_positives(threshold)
            tp_iou += tp
            fp_iou += kept - tp
            fn_iou += len(pair.truth) - tp
        else:
            fp_negatives += kept
        key = ("tp" if kept else "fn") if pair.is_positive else ("fp" if kept else "tn")
        image_level[key] += 1
    tp, fn = int(tp_iou[_AT_50]), int(fn_iou[_AT_50])
    fp = int(fp_iou[_AT_50]) + fp_negatives
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    pm_f1 = 2 * tp_iou / np.maximum(2 * tp_iou + fp_iou + fn_iou, 1)
    il_mcc = matthews_corrcoef(**image_level)
    return {
        "threshold": float(threshold),
        "TP": tp,
        "FP": fp,
        "FN": fn,
        "precision": precision,
        "recall": recall,
        "F1": f1,
        "IL_MCC": il_mcc,
        "pmF1": float(pm_f1.mean()),
        "pmF1@50": float(pm_f1[_AT_50]),
        "cgF1": float(pm_f1.mean() * il_mcc),
        "cgF1@50": float(pm_f1[_AT_50] * il_mcc),
    }


def calibration(pairs: Sequence[PairResult], thresholds: Sequence[float] = THRESHOLDS) -> dict[str, Any]:
    """The threshold sweep and its best operating points.

    Args:
        pairs: Every evaluated pair.
        thresholds: Score thresholds to try, ascending.

    Returns:
        ``{"sweep": [row per threshold], "best_F1": row, "best_cgF1": row}`` (rows of :func:`sweep_row`);
        ties go to the lowest threshold.
    """
    rows = [sweep_row(pairs, t) for t in thresholds]
    return {
        "sweep": rows,
        "best_F1": max(rows, key=lambda r: r["F1"]),
        "best_cgF1": max(rows, key=lambda r: r["cgF1"]),
    }


def calibration_figure(result: dict[str, Any], threshold: float, title: str = "") -> Figure:
    """Plot precision, recall, F1 and IL_MCC against the score threshold.

    Args:
        result: Output of :func:`calibration`.
        threshold: The threshold the headline metrics use (drawn as a dotted line).
        title: Figure title.

    Returns:
        The figure (matplotlib's object API; nothing is registered with pyplot).
    """
    rows = result["sweep"]
    x = [r["threshold"] for r in rows]
    fig = Figure(figsize=(6.0, 3.8))
    fig.subplots_adjust(left=0.09, right=0.97, bottom=0.13, top=0.91)
    ax = fig.add_subplot()
    for key, style in (("precision", "-"), ("recall", "-"), ("F1", "-"), ("IL_MCC", "--"), ("cgF1", ":")):
        ax.plot(x, [r[key] for r in rows], style, marker=".", label=key)
    best = result["best_F1"]
    ax.axvline(best["threshold"], color="black", linewidth=1.0)
    ax.annotate(
        f"best F1 {best['F1']:.3f} @ {best['threshold']:.2f}",
        (best["threshold"], 1.0),
        xytext=(4, -12),
        textcoords="offset points",
        fontsize=8,
    )
    ax.axvline(threshold, color="gray", linestyle=":", linewidth=1.0)
    ax.set_xlim(0, 1)
    ax.set_ylim(min(0.0, *(r["IL_MCC"] for r in rows)) - 0.02, 1.02)
    ax.set_xlabel("score threshold")
    ax.set_title(title or "threshold sweep (IoU 0.5)", fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    return fig
