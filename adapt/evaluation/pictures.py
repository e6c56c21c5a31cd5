"""Overlays of predicted and true instances for the pairs a person should look at.

Every panel shows one (image, phrase) pair with the predictions above the score threshold, matched
to the truth at IoU 0.5: matched predictions in blue, false positives in red, true instances outlined
in green when found and in yellow when missed. Masks are drawn when the data has them, boxes
otherwise. Figures use matplotlib's object API on the Agg canvas, never pyplot's global state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from scipy.ndimage import binary_erosion

from sam3_adapt.data_mix.images import read_rgb
from sam3_adapt.evaluation.pairs import PairResult, PairTable

MATCHED = (0.15, 0.45, 1.0)
FALSE_POSITIVE = (1.0, 0.15, 0.15)
FOUND = (0.1, 0.85, 0.1)
MISSED = (1.0, 0.85, 0.0)
#: Above this many predictions in a panel their scores are not written on it.
MAX_SCORE_LABELS = 12

#: What each picture shows, in report order: key, heading.
PICTURES = (
    ("worst", "Worst image-phrase pairs (lowest F1 at the threshold)"),
    ("best", "Best image-phrase pairs (highest F1 at the threshold)"),
    ("false_positives_on_negatives", "False positives on negative phrases (the phrase is absent)"),
    ("missed_instances", "Missed instances (true instances no prediction found)"),
)


def select_pairs(
    pairs: Sequence[PairResult], threshold: float, count: int = 6
) -> dict[str, list[PairResult]]:
    """Pick the pairs each picture shows.

    Positive pairs are ranked by F1 at IoU 0.5; the best half (at most ``count``) is shown as best and
    the worst of the rest as worst, so no pair appears in both. Negative pairs with a prediction above
    the threshold are false positives, highest score first; positive pairs with unmatched instances are
    misses, most missed first.

    Args:
        pairs: Every evaluated pair.
        threshold: Score a prediction needs to count.
        count: Most pairs per picture.

    Returns:
        ``{key: pairs}`` for every key of :data:`PICTURES` (lists may be empty).
    """

    def order(pair: PairResult) -> tuple[int, int]:
        return pair.image_id, pair.category_id

    positives = [p for p in pairs if p.is_positive]
    ranked = sorted(positives, key=lambda p: (-p.f1(threshold), -len(p.truth), order(p)))
    best = ranked[: min(count, (len(ranked) + 1) // 2)]
    rest = ranked[len(best) :]
    worst = sorted(rest, key=lambda p: (p.f1(threshold), -sum(p.outcome(threshold)[1:]), order(p)))
    negatives = [p for p in pairs if not p.is_positive and p.kept(threshold)]
    missed = [p for p in positives if p.outcome(threshold)[2]]
    return {
        "worst": worst[:count],
        "best": best,
        "false_positives_on_negatives": sorted(negatives, key=lambda p: (-p.scores[0], order(p)))[:count],
        "missed_instances": sorted(missed, key=lambda p: (-p.outcome(threshold)[2], order(p)))[:count],
    }


def _tint(canvas: np.ndarray, mask: np.ndarray, colour: tuple[float, float, float]) -> None:
    canvas[mask] = 0.55 * canvas[mask] + 0.45 * np.asarray(colour)


def _outline(canvas: np.ndarray, mask: np.ndarray, colour: tuple[float, float, float], width: int) -> None:
    # Painted into the pixels: much faster than matplotlib contours, and as sharp at this size.
    canvas[mask & ~binary_erosion(mask, iterations=width, border_value=0)] = colour


def _box(ax: Axes, xywh: Sequence[float], colour: tuple[float, float, float], width: float) -> None:
    x, y, w, h = xywh
    ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=colour, linewidth=width))


def draw_pair(
    ax: Axes, image: np.ndarray, pair: PairResult, table: PairTable, threshold: float, name: str | None = None
) -> None:
    """Draw one pair on ``ax``: predictions above ``threshold`` and the truth, coloured by match.

    Args:
        ax: Axes to draw on.
        image: ``(H, W, 3)`` uint8 original image.
        pair: The pair.
        table: The table that made ``pair`` (decodes true masks).
        threshold: Score a prediction needs to be drawn.
        name: How the title names the image (its file and id); default ``image <id>``.
    """
    kept = pair.kept(threshold)
    pred_hit, truth_hit = (set(idx.tolist()) for idx in pair.matches(threshold))
    canvas = image.astype(np.float64) / 255
    line = max(1, round(max(image.shape[:2]) / 250))
    for i, record in enumerate(pair.records[:kept]):
        if "segmentation" in record:
            mask = mask_utils.decode(record["segmentation"]).astype(bool)
            _tint(canvas, mask, MATCHED if i in pred_hit else FALSE_POSITIVE)
    boxes = []
    for j, ann in enumerate(pair.truth):
        colour, width = (FOUND, line) if j in truth_hit else (MISSED, 2 * line)
        mask = table.truth_mask(ann)
        if mask is None:
            boxes.append((ann["bbox"], colour, width))
        else:
            _outline(canvas, mask, colour, width)
    ax.imshow(canvas, interpolation="nearest")
    for i, record in enumerate(pair.records[:kept]):
        colour = MATCHED if i in pred_hit else FALSE_POSITIVE
        if "segmentation" not in record:
            _box(ax, record["bbox"], colour, 1.2)
        if kept <= MAX_SCORE_LABELS:
            x, y = record["bbox"][:2]
            ax.text(x, y, f"{record['score']:.2f}", color="white", fontsize=6, backgroundcolor=colour)
    for xywh, colour, width in boxes:
        _box(ax, xywh, colour, width)
    status = f"F1 {pair.f1(threshold):.2f}" if pair.is_positive else "absent"
    image_name = name or f"image {pair.image_id}"
    ax.set_title(
        f"{pair.phrase!r} on {image_name}\npredicted {kept} / true {len(pair.truth)}, {status}",
        fontsize=8,
    )
    ax.set_xticks([])
    ax.set_yticks([])


def pairs_figure(
    pairs: Sequence[PairResult],
    table: PairTable,
    image_paths: Mapping[int, Path],
    threshold: float,
    cols: int = 3,
    names: Mapping[int, str] | None = None,
) -> Figure:
    """A grid of :func:`draw_pair` panels with a colour legend.

    Args:
        pairs: Pairs to show (at least one).
        table: The table that made them.
        image_paths: Image file of each image id.
        threshold: Score a prediction needs to be drawn.
        cols: Panels per row at most.
        names: How each image is named in its panel's title (see `draw_pair`).

    Returns:
        The figure.
    """
    cols = min(cols, len(pairs))
    rows = -(-len(pairs) // cols)
    height = 3.4 * rows + 0.4
    fig = Figure(figsize=(3.0 * cols, height))
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.4 / height, top=1 - 0.45 / height, hspace=0.25)
    for slot, pair in enumerate(pairs):
        image = read_rgb(image_paths[pair.image_id], where=f"image id {pair.image_id}")
        name = None if names is None else names.get(pair.image_id)
        draw_pair(fig.add_subplot(rows, cols, slot + 1), image, pair, table, threshold, name)
    legend = [
        Patch(color=MATCHED, label="prediction, matched"),
        Patch(color=FALSE_POSITIVE, label="prediction, false positive"),
        Patch(facecolor="none", edgecolor=FOUND, label="true instance, found"),
        Patch(facecolor="none", edgecolor=MISSED, label="true instance, missed"),
    ]
    fig.legend(handles=legend, loc="lower center", ncols=4 if cols > 1 else 2, fontsize=7, frameon=False)
    return fig
