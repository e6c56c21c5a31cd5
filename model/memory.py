"""Memory levers for training the full-size SAM 3 on small GPUs."""

from __future__ import annotations

from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from sam3_adapt.model.forward import unwrap_sam3


def enable_activation_checkpointing(network: nn.Module, every_n_layers: int = 1) -> int:
    """Recompute transformer block activations in the backward pass instead of storing them.

    ``Sam3Model`` declares ``supports_gradient_checkpointing = False`` and so refuses
    ``gradient_checkpointing_enable()``, although its ViT blocks are ``GradientCheckpointingLayer``s
    that checkpoint correctly. This flips the flag on this instance only and enables non-reentrant
    checkpointing (which works with frozen inputs and LoRA).

    Args:
        network: ``Sam3Model`` or a ``peft.PeftModel`` wrapping one.
        every_n_layers: Checkpoint every n-th block (1 = all).

    Returns:
        Number of blocks that now checkpoint (ViT blocks, and the CLIP text encoder's layers).
    """
    sam3 = unwrap_sam3(network)
    sam3.supports_gradient_checkpointing = True
    sam3.activation_checkpointing_enable(
        activation_checkpointing_kwargs={"use_reentrant": False}, every_n_layers=every_n_layers
    )
    return sum(
        1 for m in sam3.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing
    )
