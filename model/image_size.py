"""Run a SAM 3 network at any input side that is a whole number of patches, as Meta's code does.

SAM 3's ViT handles another side in three ways:

* its absolute position embeddings (pretrained for ``pretrain_image_size``, 336 px) are tiled to
  the grid of patches, at every side, the native one included;
* its windowed layers pad the grid to whole windows (24 patches for ``facebook/sam3``);
* its global-attention layers hold rotary positions precomputed for one grid, ``image_size //
  patch_size`` patches a side (72 for ``facebook/sam3`` at 1008 px). Positions run over
  ``window_size`` units whatever the grid (``arange(grid) * window_size / grid``), which is Meta's
  ``rope_interp`` (``scale_pos = rope_pt_size / grid``). For another side the kit recomputes them the
  same way, so the grid still spans the range the model was trained on (position interpolation).

The DETR encoder, decoder and mask decoder take any grid (sine positions computed from the shape).
A side that is not a multiple of the patch size would silently drop its last pixels, so it is
refused by name.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers.models.sam3.modeling_sam3 import Sam3ViTLayer

#: The smallest grid the FPN neck takes: its coarsest level halves the grid.
MIN_GRID = 2


def _vit_config(config: Any) -> Any:
    """The ViT's configuration inside a ``Sam3Config``, a vision config or the ViT config itself."""
    return getattr(getattr(config, "vision_config", config), "backbone_config", config)


def check_image_size(config: Any, image_size: int, name: str = "the model") -> None:
    """Raise a clear error unless ``image_size`` is a whole number of the ViT's patches.

    Args:
        config: A ``Sam3Config`` (or its ``vision_config``, or the ViT's ``backbone_config``).
        image_size: The side the data pipeline makes.
        name: The model's name, for the message.

    Raises:
        ValueError: Naming the nearest sides that work.
    """
    patch = int(_vit_config(config).patch_size)
    if image_size % patch == 0 and image_size // patch >= MIN_GRID:
        return
    lower = max(MIN_GRID * patch, image_size - image_size % patch)
    raise ValueError(
        f"image_size {image_size} does not fit {name}: its ViT cuts the input into {patch}-px patches, "
        f"so the side must be a multiple of {patch} of at least {MIN_GRID * patch} px; "
        f"use {lower} or {lower + patch}"
    )


def native_image_size(config: Any) -> int:
    """The side a network of ``config`` was built for (its global-attention grid times the patch).

    Args:
        config: A ``Sam3Config`` (see `check_image_size`).

    Returns:
        ``image_size`` of the ViT's configuration, rounded down to whole patches.
    """
    vit = _vit_config(config)
    return int(vit.image_size) - int(vit.image_size) % int(vit.patch_size)


def set_input_side(network: nn.Module, image_size: int) -> bool:
    """Make a SAM 3 network take ``image_size`` x ``image_size`` inputs from now on.

    Recomputes the rotary positions of every global-attention ViT layer for the new grid (Meta's
    ``rope_interp``) and records the side in the network's configuration, so merged weights saved
    afterwards say which side they were trained at. Windowed layers need nothing. Works on a
    ``Sam3Model``, its vision encoder, or either wrapped by PEFT.

    Args:
        network: The network (any module holding SAM 3 ViT layers).
        image_size: The new side in pixels.

    Returns:
        Whether any position changed (``False`` when the network already took this side).

    Raises:
        ValueError: If ``image_size`` is not a whole number of patches (`check_image_size`).
    """
    layers = [m for m in network.modules() if isinstance(m, Sam3ViTLayer) and m.window_size == 0]
    if not layers:
        return False
    vit = layers[0].config
    check_image_size(vit, image_size, getattr(network, "name_or_path", None) or "the model")
    if native_image_size(vit) == image_size:
        return False
    vit.image_size = image_size  # every layer shares this config object; positions follow it
    positions = Sam3ViTLayer.precompute_positions(vit, 0)
    for layer in layers:  # a copy each: layers never share one tensor (saving refuses shared storage)
        layer.position_ids = positions.to(layer.position_ids.device, copy=True)
    grid = image_size // int(vit.patch_size)
    for config in _configs_holding(network, vit):
        config.backbone_feature_sizes = [[4 * grid] * 2, [2 * grid] * 2, [grid] * 2]
    return True


def _configs_holding(network: nn.Module, vit: Any) -> list[Any]:
    """Vision configs (``Sam3VisionConfig``) in ``network`` whose ViT config is ``vit``."""
    found = []
    for module in network.modules():
        config = getattr(module, "config", None)
        vision = getattr(config, "vision_config", config)
        if getattr(vision, "backbone_config", None) is vit and hasattr(vision, "backbone_feature_sizes"):
            if all(vision is not seen for seen in found):
                found.append(vision)
    return found
