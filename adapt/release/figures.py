"""Figures of a finished run for its model card: training curves and sample predictions.

Drawn on matplotlib's Agg canvas through ``Figure`` objects, without pyplot's global state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from sam3_adapt.data_mix.images import read_rgb
from sam3_adapt.data_mix.readers.coco import read_coco
from sam3_adapt.fitting.run_files import read_metrics_csv
from sam3_adapt.inference.loop import QueryResult, predict_samples
from sam3_adapt.model.forward import ConceptSegmenter

#: Validation metrics drawn in the curves, when the run logged them.
HEADLINE = ("val/segm/AP", "val/bbox/AP", "val/cgF1")


def plot_training_curves(metrics_csv: str | Path, out_png: str | Path) -> Path:
    """Draw the training loss and the headline validation metrics against the optimizer step.

    Args:
        metrics_csv: ``metrics.csv`` of the run's CSV logger.
        out_png: Where to write the PNG.

    Returns:
        The path of the PNG.

    Raises:
        ValueError: If the file holds no training loss.
    """
    rows = read_metrics_csv(Path(metrics_csv))
    loss = [(row["step"], row["train/loss"]) for row in rows if "train/loss" in row]
    if not loss:
        raise ValueError(f"{metrics_csv} logged no train/loss")
    curves = {
        name: [(row["step"], row[name]) for row in rows if name in row]
        for name in HEADLINE
        if any(name in row for row in rows)
    }
    fig = Figure(figsize=(10 if curves else 5, 3.6), layout="constrained")
    axes = fig.subplots(1, 2 if curves else 1, squeeze=False)[0]
    axes[0].plot(*zip(*loss), color="tab:blue")
    axes[0].set(title="training loss", xlabel="step", ylabel="loss")
    if curves:
        for name, points in curves.items():
            axes[1].plot(*zip(*points), marker="o", label=name.removeprefix("val/"))
        axes[1].set(title="validation", xlabel="step", ylim=(0, 1))
        axes[1].legend(frameon=False)
    return _save(fig, out_png)


def plot_predictions(
    segmenter: ConceptSegmenter,
    json_path: str | Path,
    image_dir: str | Path,
    out_png: str | Path,
    image_size: int,
    num: int = 4,
    score_threshold: float = 0.5,
    prompt_map: dict[str, str] | str | None = None,
) -> Path:
    """Draw the model's masks on the first ``num`` images of a COCO set, for the phrases present in each.

    Every phrase of an image gets one colour; the legend gives its detections above the threshold
    against its ground-truth count.

    Args:
        segmenter: The network to run (eval mode is set here).
        json_path: COCO file of the images.
        image_dir: Folder its ``file_name`` values are relative to.
        out_png: Where to write the PNG.
        image_size: Network input side (the run's ``data.image_size``).
        num: Images drawn (fewer if the set is smaller).
        score_threshold: Score above which a detection is drawn.
        prompt_map: Phrase overrides the run trained with (``data.prompt_map``).

    Returns:
        The path of the PNG.

    Raises:
        ValueError: If no image of the set has an annotated object.
    """
    coco = read_coco(json_path, image_dir, prompt_map=prompt_map, include_negatives=False)
    samples = [sample for sample in coco if sample.queries][:num]
    if not samples:
        raise ValueError(f"{json_path} has no image with an annotated object to draw")
    by_image: dict[int, list[QueryResult]] = {sample.image_id: [] for sample in samples}
    for result in predict_samples(
        segmenter, samples, image_size=image_size, batch_size=1, min_score=score_threshold
    ):
        by_image[result.sample.image_id].append(result)
    palette = colormaps["tab10"].colors
    cols = min(4, len(samples))
    rows = -(-len(samples) // cols)
    fig = Figure(figsize=(3.2 * cols, 3.6 * rows), layout="constrained")
    for slot, sample in enumerate(samples):
        image = read_rgb(sample.image_path, where=f"{sample.source}: image id {sample.image_id}") / 255.0
        ax = fig.add_subplot(rows, cols, slot + 1)
        handles = []
        results = by_image[sample.image_id]
        for k, result in enumerate(results):
            colour = np.asarray(palette[k % len(palette)])
            found = result.detections
            for mask in found.masks.cpu().numpy() if found.masks is not None else []:
                image[mask] = 0.55 * image[mask] + 0.45 * colour
            label = f"{result.phrase}: {len(found.scores)} found / {len(result.target['boxes'])} true"
            handles.append(Patch(color=colour, label=label))
        ax.imshow(image, interpolation="nearest")
        for k, result in enumerate(results):
            found = result.detections
            for mask in found.masks.cpu().numpy() if found.masks is not None else []:
                if mask.any():
                    ax.contour(mask, levels=[0.5], colors=[palette[k % len(palette)]], linewidths=1.0)
        ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1), frameon=False, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"predicted masks, score >= {score_threshold:g}", fontsize=9)
    return _save(fig, out_png)


def _save(fig: Figure, out_png: str | Path) -> Path:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    return out_png
