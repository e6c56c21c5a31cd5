"""Figures of a finished run for its model card: training curves and sample predictions.

Drawn on matplotlib's Agg canvas through ``Figure`` objects, without pyplot's global state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from adapt.predictions import detections_per_query
from adapt.run_files import read_metrics_csv
from data_mix.coco import read_coco
from data_mix.collate import ConceptCollator
from data_mix.dataset import ConceptDataset
from data_mix.transforms import eval_transform
from model.forward import ConceptSegmenter

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


@torch.no_grad()
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
    segmenter.eval()
    device = next(segmenter.parameters()).device
    dataset = ConceptDataset(samples, eval_transform(image_size))
    collate = ConceptCollator()
    palette = colormaps["tab10"].colors
    cols = min(4, len(samples))
    rows = -(-len(samples) // cols)
    fig = Figure(figsize=(3.2 * cols, 3.6 * rows), layout="constrained")
    for slot, sample in enumerate(samples):
        batch = collate([dataset[slot]])
        pixels, image_index = batch["pixel_values"].to(device), batch["query_image_index"].to(device)
        outputs = segmenter(pixels, batch["phrases"], image_index)
        found = detections_per_query(
            outputs, batch["orig_sizes"], batch["query_image_index"], min_score=score_threshold
        )
        image = np.asarray(Image.open(sample.image_path).convert("RGB"), dtype=float) / 255
        ax = fig.add_subplot(rows, cols, slot + 1)
        handles = []
        for k, (phrase, target, detections) in enumerate(zip(batch["phrases"], batch["targets"], found)):
            colour = np.asarray(palette[k % len(palette)])
            masks = detections.masks.cpu().numpy() if detections.masks is not None else []
            for mask in masks:
                image[mask] = 0.55 * image[mask] + 0.45 * colour
            label = f"{phrase}: {len(detections.scores)} found / {len(target['boxes'])} true"
            handles.append(Patch(color=colour, label=label))
        ax.imshow(image, interpolation="nearest")
        for k, detections in enumerate(found):
            for mask in detections.masks.cpu().numpy() if detections.masks is not None else []:
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
