"""AdamW parameter groups the way SAM 3's fine-tuning configs build them.

The reference (``facebookresearch/sam3``, ``sam3/train/configs/roboflow_v100/*.yaml`` with
``sam3/train/optim/optimizer.py``) uses:

* one learning rate per part: vision backbone (ViT trunk and FPN neck), language backbone (CLIP text
  encoder and the linear that resizes its width to the detector's; here ``text_encoder`` and
  ``text_projection``), and everything else (the detector);
* weight decay 0 for biases and normalisation layers, the configured decay for every other tensor,
  embeddings included (the reference lists only ``nn.LayerNorm``; ``nn.GroupNorm`` and ``nn.RMSNorm``
  count here too);
* layer-wise decay on the ViT trunk as in BEiT: with ``N`` blocks, block ``i`` (from 0) gets
  ``lr_vision * layer_decay ** (N - i)``, the patch embedding and the norm before the first block
  ``lr_vision * layer_decay ** (N + 1)``, and the absolute position embedding (reference override
  ``'*pos_embed*': 1.0``) and the FPN neck ``lr_vision``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from peft import PeftModel
from torch import nn

#: Top-level components of ``Sam3Model`` and the learning rate each one uses.
COMPONENT_PART = {
    "vision_encoder": "vision",
    "text_encoder": "text",
    "text_projection": "text",
    "geometry_encoder": "detector",
    "detr_encoder": "detector",
    "detr_decoder": "detector",
    "mask_decoder": "detector",
    "dot_product_scoring": "detector",
}
_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
_VISION_BLOCK = re.compile(r"vision_encoder\.backbone\.layers\.(\d+)\.")
_VISION_STEM = ("vision_encoder.backbone.embeddings.patch_embeddings.", "vision_encoder.backbone.layer_norm.")
_VISION_POSITION = "vision_encoder.backbone.embeddings.position_embeddings"


def _owned_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter, nn.Module]]:
    """``(name, parameter, owning module)`` with names relative to the ``Sam3Model``; shared ones once."""
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    seen: set[int] = set()
    for module_name, module in base.named_modules():
        for name, parameter in module.named_parameters(recurse=False):
            if id(parameter) not in seen:
                seen.add(id(parameter))
                yield (f"{module_name}.{name}" if module_name else name), parameter, module


def _vision_place(name: str, depth: int) -> tuple[str, int | None]:
    """Group label and layer-decay exponent (``None``: no decay) of a vision parameter."""
    block = _VISION_BLOCK.match(name)
    if block:
        index = int(block.group(1))
        return f"vision.block{index:02d}", depth - index
    if name.startswith(_VISION_STEM):
        return "vision.stem", depth + 1
    if name == _VISION_POSITION:
        return "vision.position", None
    return ("vision.neck" if name.startswith("vision_encoder.neck.") else "vision"), None


def param_groups(
    model: nn.Module,
    *,
    lr_detector: float = 8e-5,
    lr_vision: float = 2.5e-5,
    lr_text: float = 5e-6,
    weight_decay: float = 0.1,
    layer_decay: float = 0.9,
) -> list[dict]:
    """Parameter groups for ``torch.optim.AdamW`` with SAM 3's per-part learning rates.

    Only trainable parameters are included, each in exactly one group; LoRA weights go to the group
    of the layer they adapt. Group names read ``<part>[.<place>][.no_decay]``, e.g. ``"detector"``,
    ``"vision.block31"``, ``"vision.stem.no_decay"``, ``"text"``.

    Args:
        model: A ``transformers.Sam3Model`` or a ``peft.PeftModel`` wrapping one.
        lr_detector: Learning rate of the geometry encoder, DETR encoder/decoder and heads.
        lr_vision: Learning rate of the vision backbone before layer decay.
        lr_text: Learning rate of the text encoder and text projection.
        weight_decay: Weight decay of every tensor except biases and norm weights.
        layer_decay: Factor per ViT block from the top (1 turns layer decay off).

    Returns:
        A list of ``{"name", "params", "lr", "weight_decay"}`` dicts, in model order.

    Raises:
        ValueError: If a setting is out of range, no parameter is trainable, or a trainable
            parameter lies outside the known components.
    """
    for label, value in (("lr_detector", lr_detector), ("lr_vision", lr_vision), ("lr_text", lr_text)):
        if value < 0:
            raise ValueError(f"param_groups: {label} must be >= 0, got {value}")
    if weight_decay < 0:
        raise ValueError(f"param_groups: weight_decay must be >= 0, got {weight_decay}")
    if not 0 < layer_decay <= 1:
        raise ValueError(f"param_groups: layer_decay must be in (0, 1], got {layer_decay}")
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    depth = base.config.vision_config.backbone_config.num_hidden_layers
    part_lr = {"detector": lr_detector, "vision": lr_vision, "text": lr_text}
    groups: dict[str, dict] = {}
    for name, parameter, owner in _owned_parameters(model):
        if not parameter.requires_grad:
            continue
        part = COMPONENT_PART.get(name.split(".", 1)[0])
        if part is None:
            raise ValueError(f"param_groups: trainable parameter {name!r} is outside the known components")
        label, exponent = _vision_place(name, depth) if part == "vision" else (part, None)
        no_decay = name.rsplit(".", 1)[-1] == "bias" or isinstance(owner, _NORMS)
        if no_decay:
            label += ".no_decay"
        if label not in groups:
            groups[label] = {
                "name": label,
                "params": [],
                "lr": part_lr[part] * (layer_decay**exponent if exponent is not None else 1.0),
                "weight_decay": 0.0 if no_decay else weight_decay,
            }
        groups[label]["params"].append(parameter)
    if not groups:
        raise ValueError("param_groups: the model has no trainable parameter")
    return list(groups.values())
