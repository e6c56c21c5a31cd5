"""A picture of a few samples of a COCO set: masks overlaid, positive and negative phrases named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from data_mix.coco import read_coco


def preview_grid(
    json_path: str | Path,
    image_dir: str | Path,
    out_png: str | Path,
    num: int = 6,
    seed: int = 0,
    negatives: int = 3,
) -> Path:
    """Save a grid of ``num`` random samples with their instance masks overlaid.

    Above each image its positive phrases are listed in the colour of their masks, with the number of
    instances; below it, a few of its negative phrases. The figure is drawn on matplotlib's Agg canvas
    without touching pyplot's global state.

    Args:
        json_path: COCO annotation file.
        image_dir: Folder that the images' ``file_name`` values are relative to.
        out_png: Where to write the PNG.
        num: Number of samples shown (fewer if the set is smaller).
        seed: Seed choosing the samples and the negative phrases shown.
        negatives: Most negative phrases named per image.

    Returns:
        The path of the PNG.
    """
    samples = read_coco(json_path, image_dir)
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(samples), size=min(num, len(samples)), replace=False))
    cols = min(3, len(picked))
    rows = -(-len(picked) // cols)
    fig = Figure(figsize=(3.4 * cols, 4.2 * rows), layout="constrained")
    palette = colormaps["tab10"].colors
    for slot, index in enumerate(picked):
        sample = samples[index]
        ax = fig.add_subplot(rows, cols, slot + 1)
        image = np.asarray(Image.open(sample.image_path).convert("RGB"), dtype=float) / 255
        positives = [q for q in sample.queries if not q.is_negative]
        absent = [q.phrase for q in sample.queries if q.is_negative]
        for k, query in enumerate(positives):
            colour = np.asarray(palette[k % len(palette)])
            for instance in query.instances:
                mask = instance.mask_array()
                image[mask] = 0.55 * image[mask] + 0.45 * colour
            ax.text(
                0,
                1.02 + 0.09 * (len(positives) - 1 - k),
                f"{query.phrase} \u00d7{len(query.instances)}",
                color=colour,
                transform=ax.transAxes,
                fontsize=9,
                fontweight="bold",
            )
        ax.imshow(image, interpolation="nearest")
        for k, query in enumerate(positives):
            for instance in query.instances:
                ax.contour(instance.mask_array(), levels=[0.5], colors=[palette[k % len(palette)]], linewidths=0.8)
        shown = [absent[i] for i in sorted(rng.choice(len(absent), min(negatives, len(absent)), replace=False))]
        ax.set_xlabel("not: " + ", ".join(shown) if shown else "", fontsize=8, color="dimgray")
        ax.set_xticks([])
        ax.set_yticks([])
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    return out_png
