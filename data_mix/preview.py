"""A picture of a few samples of a COCO set: masks overlaid, positive and negative phrases named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from sam3_adapt.data_mix.images import read_rgb
from sam3_adapt.data_mix.readers.coco import read_coco


def preview_grid(
    json_path: str | Path,
    image_dir: str | Path,
    out_png: str | Path,
    num: int = 6,
    seed: int = 0,
    negatives: int = 3,
) -> Path:
    """Save a grid of ``num`` random samples with their instance masks overlaid.

    Each positive phrase's masks are tinted and outlined in one colour (box-only objects get a dashed
    box), named above the image with the
    number of instances; a few of the image's negative phrases are named below it. The figure is drawn
    on matplotlib's Agg canvas without touching pyplot's global state.

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
    fig = Figure(figsize=(3.2 * cols, 4.0 * rows), layout="constrained")
    palette = colormaps["tab10"].colors
    for slot, index in enumerate(picked):
        sample = samples[index]
        ax = fig.add_subplot(rows, cols, slot + 1)
        image = read_rgb(sample.image_path, where=f"{sample.source}: image id {sample.image_id}") / 255.0
        positives = [q for q in sample.queries if not q.is_negative]
        absent = [q.phrase for q in sample.queries if q.is_negative]
        masks = [[instance.mask_array() for instance in query.instances] for query in positives]
        for k, query_masks in enumerate(masks):
            for mask in query_masks:
                if mask is not None:
                    image[mask] = 0.75 * image[mask] + 0.25 * np.asarray(palette[k % len(palette)])
        ax.imshow(image, interpolation="nearest")
        for k, query in enumerate(positives):
            colour = palette[k % len(palette)]
            for instance, mask in zip(query.instances, masks[k]):
                if mask is not None:
                    ax.contour(mask, levels=[0.5], colors=[colour], linewidths=1.0)
                else:  # a box-only object: its box, dashed
                    x0, y0, x1, y1 = instance.box_xyxy
                    box = Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linestyle="--")
                    ax.add_patch(box)
        handles = [
            Patch(color=palette[k % len(palette)], label=f"{query.phrase} \u00d7{len(query.instances)}")
            for k, query in enumerate(positives)
        ]
        ax.legend(
            handles=handles,
            loc="lower left",
            bbox_to_anchor=(0, 1),
            frameon=False,
            fontsize=8,
            borderaxespad=0.2,
        )
        shown = [
            absent[i] for i in sorted(rng.choice(len(absent), min(negatives, len(absent)), replace=False))
        ]
        ax.set_xlabel("not: " + ", ".join(shown) if shown else "", fontsize=8, color="dimgray")
        ax.set_xticks([])
        ax.set_yticks([])
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    return out_png
