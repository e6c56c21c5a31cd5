"""A tiny synthetic COCO twin: coloured shapes on grey noise, for tests and the demo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 80, 230),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")


def shape_categories() -> list[dict[str, object]]:
    """The COCO categories of the shapes world: ids 1..9, names like ``"red circle"``."""
    names = [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]
    return [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(names)]


def _shape_mask(shape: str, side: int) -> np.ndarray:
    """Exact raster of a shape filling a ``side x side`` cell (pixel centres inside the outline)."""
    y, x = np.mgrid[0:side, 0:side] + 0.5
    half = side / 2
    if shape == "circle":
        return (x - half) ** 2 + (y - half) ** 2 <= half**2
    if shape == "square":
        return np.ones((side, side), dtype=bool)
    return 2 * np.abs(x - half) <= y  # triangle, apex up


def write_shapes_coco(
    folder: str | Path, num_images: int = 8, image_size: int = 96, seed: int = 0, masks: bool = True
) -> tuple[Path, Path]:
    """Write a seeded synthetic COCO set of 1-4 non-overlapping coloured shapes per image.

    Images are PNGs of red/green/blue circles, squares and triangles on grey noise; the nine
    ``"<colour> <shape>"`` names are the categories. Masks are exact (compressed RLE of the painted
    pixels) and boxes are the masks' tight boxes. The same arguments give byte-identical files.

    Args:
        folder: Output folder; gets ``annotations.json`` and ``images/``.
        num_images: Number of images.
        image_size: Side of the square images in pixels (at least 32).
        seed: Seed; image ``i`` depends only on ``(seed, i)``.
        masks: Write segmentations; ``False`` writes a box-only set (no ``segmentation`` key).

    Returns:
        ``(json_path, image_dir)``.
    """
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32, got {image_size}")
    folder = Path(folder)
    image_dir = folder / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    categories = shape_categories()
    cat_ids = {c["name"]: c["id"] for c in categories}
    images, annotations = [], []
    for index in range(num_images):
        rng = np.random.default_rng([seed, index])
        pixels = np.clip(128 + rng.normal(0, 12, (image_size, image_size, 3)), 0, 255)
        taken = np.zeros((image_size, image_size), dtype=bool)
        for _ in range(int(rng.integers(1, 5))):
            colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            side = int(rng.integers(image_size // 8, image_size // 4 + 1))
            for _attempt in range(50):
                x0, y0 = (int(v) for v in rng.integers(0, image_size - side, size=2))
                # A 2-pixel gap keeps shapes apart, so masks and boxes never touch.
                if not taken[max(y0 - 2, 0) : y0 + side + 2, max(x0 - 2, 0) : x0 + side + 2].any():
                    break
            else:
                continue
            mask = np.zeros((image_size, image_size), dtype=bool)
            mask[y0 : y0 + side, x0 : x0 + side] = _shape_mask(shape, side)
            taken[y0 : y0 + side, x0 : x0 + side] = True
            pixels[mask] = np.asarray(COLOURS[colour]) + rng.normal(0, 6, (int(mask.sum()), 3))
            annotations.append(
                coco_annotation(
                    mask, len(annotations) + 1, index + 1, cat_ids[f"{colour} {shape}"], segmentation=masks
                )
            )
        images.append(save_image(pixels, image_dir, index))
    return write_coco_json(folder, images, annotations, categories), image_dir


def coco_annotation(
    mask: np.ndarray, ann_id: int, image_id: int, category_id: int, segmentation: bool = True
) -> dict[str, object]:
    """A COCO annotation of one object whose box and area are those of its exact mask.

    Args:
        mask: Boolean ``(H, W)`` mask of the object; must not be empty.
        ann_id: Annotation id.
        image_id: Image id.
        category_id: Category id.
        segmentation: Add the mask as compressed RLE; ``False`` gives a box-only record.

    Returns:
        The record, with ``bbox`` the mask's tight ``[x, y, w, h]`` box and ``area`` its pixel count.
    """
    ys, xs = np.nonzero(mask)
    ann: dict[str, object] = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
        "area": int(mask.sum()),
        "iscrowd": 0,
    }
    if segmentation:
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        ann["segmentation"] = {"size": list(mask.shape), "counts": rle["counts"].decode()}
    return ann


def save_image(pixels: np.ndarray, image_dir: Path, index: int) -> dict[str, object]:
    """Save float RGB ``pixels`` (clipped to 0..255) as ``<index:04d>.png``; return its COCO image record."""
    file_name = f"{index:04d}.png"
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(image_dir / file_name)
    height, width = pixels.shape[:2]
    return {"id": index + 1, "file_name": file_name, "height": height, "width": width}


#: ``info.description`` of every COCO file the kit's synthetic worlds write: how a fit tells the
#: concept world (what the tiny base knows) from a user's own data.
SYNTHETIC_WORLD = "sam3-adapt synthetic concept world"


def is_synthetic_world(json_path: str | Path) -> bool:
    """Whether a COCO file was written by the kit's synthetic worlds, from its ``info.description``.

    Those are ``make-world``, ``make-shapes`` and the demo's files (and K-shot splits of them, which
    keep ``info``). False for anything else or anything unreadable.
    """
    try:
        info = json.loads(Path(json_path).read_text()).get("info") or {}
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(info, dict) and info.get("description") == SYNTHETIC_WORLD


def write_coco_json(
    folder: Path,
    images: list[dict[str, object]],
    annotations: list[dict[str, object]],
    categories: list[dict[str, object]],
) -> Path:
    """Write ``folder/annotations.json`` from its three lists and return its path."""
    json_path = folder / "annotations.json"
    info = {"description": SYNTHETIC_WORLD, "contributor": "sam3-adapt"}
    coco = {"info": info, "images": images, "annotations": annotations, "categories": categories}
    json_path.write_text(json.dumps(coco, indent=1))
    return json_path
