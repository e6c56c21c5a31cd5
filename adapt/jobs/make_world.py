"""``sam3-adapt make-world``: the concept world's anchor and target splits, as the demo writes them.

The anchor world is what the built-in ``tiny`` base was pretrained on; mixing its images into a fit
(``data.anchor_json``) keeps what the base knew. This verb writes it (and the target domains) without
running the demo, with the demo's seeds, so ``--out runs/demo/world`` gives the demo's files.
"""

from __future__ import annotations

from pathlib import Path

from sam3_adapt.data_mix.synthetic.concept_world import write_demo_worlds


def make_world(
    out: str = "runs/world",
    seed: int = 0,
    anchor_images: int = 1000,
    shots: int = 10,
    val_images: int = 100,
    image_size: int = 168,
) -> dict[str, tuple[str, str]]:
    """Write the concept world's anchor and target splits (COCO JSON + PNG) for anchor mixing.

    Writes ``anchor/{train,val}``, ``microscopy/{train,val}`` and ``industrial/{train,val}`` under
    ``out`` (each ``annotations.json`` + ``images/``; a target domain also gets ``concept_tree.yaml``),
    and prints the settings that mix the anchor split into a fit.

    Args:
        out: Output folder.
        seed: Seed of the world (the demo's ``--seed``); the same seed writes the same files.
        anchor_images: Anchor training images (the pool anchor mixing draws from).
        shots: Training images of each target domain.
        val_images: Held-out images of each domain.
        image_size: Side of the square images in pixels (the tiny model's 168).

    Returns:
        ``{"<domain>/<split>": (json, image folder)}``.
    """
    paths = write_demo_worlds(
        Path(out),
        seed=seed,
        image_size=image_size,
        anchor_train=anchor_images,
        anchor_val=val_images,
        target_shots=shots,
        target_val=val_images,
    )
    written = {key: (str(json_path), str(image_dir)) for key, (json_path, image_dir) in paths.items()}
    for key, (json_path, _) in written.items():
        print(f"{key:<17} {json_path}")
    anchor_json, anchor_dir = written["anchor/train"]
    print(f"mix the anchor world into a fit: --data.anchor_json {anchor_json} \\")
    print(f"                                 --data.anchor_image_dir {anchor_dir}")
    return written
