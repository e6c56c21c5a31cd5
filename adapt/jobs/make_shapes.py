"""``sam3-adapt make-shapes``: a small synthetic COCO set to try a recipe on (``recipes/tiny-cpu.yaml``)."""

from __future__ import annotations

from pathlib import Path

from sam3_adapt.data_mix.synthetic.shapes import write_shapes_coco


def make_shapes(
    out: str = "runs/shapes",
    num_images: int = 48,
    image_size: int = 96,
    seed: int = 0,
    masks: bool = True,
) -> None:
    """Write a small synthetic COCO set of coloured shapes (train.json, val.json and images/).

    Args:
        out: Output folder.
        num_images: Images in the training split; the validation split gets half as many.
        image_size: Side of the square images in pixels.
        seed: Seed; the same seed writes the same files.
        masks: Write instance masks; ``false`` writes a box-only set.
    """
    root = Path(out)
    train_json, _ = write_shapes_coco(
        root / "train", num_images=num_images, image_size=image_size, seed=seed, masks=masks
    )
    val_json, _ = write_shapes_coco(
        root / "val", num_images=max(1, num_images // 2), image_size=image_size, seed=seed + 1, masks=masks
    )
    print(f"wrote {train_json} and {val_json}")
