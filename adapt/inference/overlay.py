"""Overlay pictures: a `Prediction`, or a labelled sample, drawn on its image.

Drawn with matplotlib's object API on the Agg canvas, never pyplot's global state, so it works the
same in a notebook, a script and a test. Masks are tinted and outlined, boxes are drawn for every
object (the only mark of box-only data or a box-only model), one colour per phrase.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from scipy.ndimage import binary_erosion

from sam3_adapt.data_mix.images import read_rgb
from sam3_adapt.data_mix.samples import ConceptSample
from sam3_adapt.inference.loop import QueryResult
from sam3_adapt.inference.prediction import Prediction

PALETTE = colormaps["tab10"].colors


class Picture(Figure):
    """A matplotlib figure that shows itself in Jupyter as a PNG, with or without pyplot imported."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def _draw(
    ax: Axes,
    image: np.ndarray,
    boxes: np.ndarray,
    class_ids: np.ndarray,
    masks: Sequence[np.ndarray | None],
    legend: Sequence[str],
) -> None:
    """Draw objects of phrases ``0..len(legend)-1`` on ``image``; ``masks[i]`` may be ``None``."""
    canvas = image.astype(np.float64) / 255
    width = max(1, round(max(image.shape[:2]) / 250))
    for mask, k in zip(masks, class_ids):
        if mask is not None:
            colour = np.asarray(PALETTE[k % len(PALETTE)])
            canvas[mask] = 0.55 * canvas[mask] + 0.45 * colour
            canvas[mask & ~binary_erosion(mask, iterations=width, border_value=0)] = colour
    ax.imshow(canvas, interpolation="nearest")
    for (x0, y0, x1, y1), k in zip(boxes, class_ids):
        colour = PALETTE[k % len(PALETTE)]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.2))
    handles = [Patch(color=PALETTE[k % len(PALETTE)], label=label) for k, label in enumerate(legend)]
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1), frameon=False, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def overlay_figure(image: np.ndarray, prediction: Prediction, title: str | None = None) -> Figure:
    """Draw the detections of ``prediction`` on ``image``, one colour per phrase.

    The legend gives each phrase's number of detections and its presence probability.

    Args:
        image: ``(H, W, 3)`` uint8 image the prediction was made on.
        prediction: The detections.
        title: Caption under the picture.

    Returns:
        The figure (Jupyter shows it when it is a cell's last value; ``fig.savefig(path)`` writes it).
    """
    height, width = image.shape[:2]
    fig = Picture(figsize=(5.0, 5.0 * height / width + 0.6), layout="constrained")
    ax = fig.add_subplot()
    masks = list(prediction.masks) if prediction.masks is not None else [None] * len(prediction)
    legend = [
        f"{phrase}: {int((prediction.class_ids == k).sum())} (present {prediction.presence[phrase]:.2f})"
        for k, phrase in enumerate(prediction.phrases)
    ]
    _draw(ax, image, prediction.boxes, prediction.class_ids, masks, legend)
    if title:
        ax.set_xlabel(title, fontsize=8)
    return fig


def truth_figure(samples: Sequence[ConceptSample], negatives: int = 4) -> Figure:
    """Draw labelled samples side by side: their objects (masks when labelled, boxes always) and negatives.

    Args:
        samples: Samples, e.g. ``data_mix.read_coco(json, images)[:3]``.
        negatives: Most negative phrases named under each image.

    Returns:
        The figure.
    """
    fig = Picture(figsize=(3.4 * len(samples), 4.0), layout="constrained")
    for slot, sample in enumerate(samples):
        ax = fig.add_subplot(1, len(samples), slot + 1)
        image = read_rgb(sample.image_path, where=f"{sample.source}: image id {sample.image_id}")
        positives = [q for q in sample.queries if not q.is_negative]
        instances = [(k, inst) for k, q in enumerate(positives) for inst in q.instances]
        _draw(
            ax,
            image,
            np.array([inst.box_xyxy for _, inst in instances]).reshape(-1, 4),
            np.array([k for k, _ in instances], dtype=int),
            [inst.mask_array() for _, inst in instances],
            [f"{q.phrase} \u00d7{len(q.instances)}" for q in positives],
        )
        absent = [q.phrase for q in sample.queries if q.is_negative][:negatives]
        ax.set_xlabel(f"{sample.image_path.name}\nnot: " + (", ".join(absent) or "-"), fontsize=8)
    return fig


def comparison_figure(
    samples: Sequence[ConceptSample],
    runs: Mapping[str, Sequence[QueryResult]],
    score_threshold: float = 0.5,
) -> Figure:
    """Draw, for each sample, its labelled objects and what each model found, side by side.

    One row per sample: the truth, then one panel per model (``runs``, e.g. ``{"before": ...,
    "after": ...}`` from `sam3_adapt.inference.loop.predict_samples`). A phrase keeps its colour
    across the row, so a detection of an absent phrase (a false positive) shows in its own colour.

    Args:
        samples: The labelled samples, in row order.
        runs: Each model's query results on (at least) these samples.
        score_threshold: Score a detection needs to be drawn.

    Returns:
        The figure.
    """
    fig = Picture(figsize=(3.3 * (1 + len(runs)), 3.6 * len(samples)), layout="constrained")
    axes = fig.subplots(len(samples), 1 + len(runs), squeeze=False)
    for row, sample in zip(axes, samples):
        image = read_rgb(sample.image_path, where=f"{sample.source}: image id {sample.image_id}")
        found = {label: [r for r in rs if r.sample.image_id == sample.image_id] for label, rs in runs.items()}
        phrases = [q.phrase for q in sample.positives]
        for result in (r for results in found.values() for r in results):
            if result.phrase not in phrases and len(_kept(result, score_threshold)):
                phrases.append(result.phrase)
        instances = [(phrases.index(q.phrase), inst) for q in sample.positives for inst in q.instances]
        _draw(
            row[0],
            image,
            np.array([inst.box_xyxy for _, inst in instances]).reshape(-1, 4),
            np.array([k for k, _ in instances], dtype=int),
            [inst.mask_array() if inst.has_mask else None for _, inst in instances],
            [f"{q.phrase} \u00d7{len(q.instances)}" for q in sample.positives],
        )
        row[0].set_xlabel(f"truth: {sample.image_path.name}", fontsize=8)
        for ax, (label, results) in zip(row[1:], found.items()):
            boxes, class_ids, masks = [], [], []
            for result in results:
                keep = _kept(result, score_threshold)
                if not len(keep):
                    continue
                found_masks = result.detections.masks
                boxes += result.detections.boxes[keep].tolist()
                class_ids += [phrases.index(result.phrase)] * len(keep)
                masks += [None] * len(keep) if found_masks is None else list(found_masks[keep].numpy())
            counts = {p: class_ids.count(k) for k, p in enumerate(phrases)}
            legend = [f"{p} \u00d7{n}" for p, n in counts.items()]
            _draw(ax, image, np.array(boxes).reshape(-1, 4), np.array(class_ids, dtype=int), masks, legend)
            ax.set_xlabel(f"{label}: {len(boxes)} found, score >= {score_threshold:g}", fontsize=8)
    return fig


def _kept(result: QueryResult, score_threshold: float) -> np.ndarray:
    """Indices of a query's detections that reach the threshold."""
    return np.flatnonzero(result.detections.scores.cpu().numpy() >= score_threshold)


def save_figure(fig: Figure, out_png: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG, creating missing folders; returns the path."""
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=dpi)
    return out_png
