"""Which input sides a SAM 3 network takes, checked before its ViT fails on a shape mismatch deep inside.

SAM 3's ViT tiles its absolute position embeddings to any grid of patches, and its windowed layers
pad to whole windows, but its global-attention layers carry rotary positions precomputed for one
grid: ``config.image_size // patch_size`` patches a side (72 for ``facebook/sam3`` at 1008 px, 12 for
the tiny model at 168 px). Any other side fails inside transformers with ``The size of tensor a (576)
must match the size of tensor b (144)``. Those positions are a non-trainable buffer of the checkpoint's
config, so the kit names the side that works instead of rewriting them.
"""

from __future__ import annotations

from typing import Any


def supported_image_sizes(config: Any) -> list[int]:
    """Input sides (pixels) a SAM 3 network of ``config`` takes.

    Args:
        config: A ``Sam3Config`` (or its ``vision_config``, or the ViT's ``backbone_config``).

    Returns:
        The sides, smallest first: the configured side alone when the ViT has global-attention
        layers (every SAM 3 checkpoint has); otherwise every multiple of the patch size up to it.
    """
    vit = getattr(getattr(config, "vision_config", config), "backbone_config", config)
    patch, side = int(vit.patch_size), int(vit.image_size)
    if vit.global_attn_indexes:
        return [side - side % patch]
    return list(range(patch, side + 1, patch))


def check_image_size(config: Any, image_size: int, name: str = "the model") -> None:
    """Raise a clear error unless a network of ``config`` takes ``image_size`` x ``image_size`` inputs.

    Args:
        config: A ``Sam3Config`` (see `supported_image_sizes`).
        image_size: The side the data pipeline makes.
        name: The model's name, for the message.

    Raises:
        ValueError: Naming the side(s) that work.
    """
    sizes = supported_image_sizes(config)
    if image_size in sizes:
        return
    vit = getattr(getattr(config, "vision_config", config), "backbone_config", config)
    grid = int(vit.image_size) // int(vit.patch_size)
    works = str(sizes[0]) if len(sizes) == 1 else f"a multiple of {vit.patch_size} up to {sizes[-1]}"
    raise ValueError(
        f"image_size {image_size} does not fit {name}: its ViT's global-attention layers hold rotary "
        f"positions for a {grid}x{grid} grid of {vit.patch_size}-px patches, so it takes {works} px inputs "
        f"only; set image_size to {sizes[-1]} (images of any size are resized to it)"
    )
