"""Load SAM 3 and its processor the same way from a hub id, a local folder or a built-in tiny model."""

from __future__ import annotations

import os

import torch
from torch import nn
from transformers import Sam3Model, Sam3Processor

from sam3_adapt.model.checkpoints import TINY, TINY_RANDOM, cache_dir, resolve_checkpoint
from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.persistence import adapter_image_size, load_adapter


def load_sam3(
    name_or_path: str | os.PathLike = "facebook/sam3",
    adapter: str | os.PathLike | None = None,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    adapter_trainable: bool = False,
) -> tuple[nn.Module, Sam3Processor]:
    """Load a SAM 3 network and its processor, optionally with a LoRA adapter on top.

    The same call serves the Hub and local copies::

        model, processor = load_sam3("facebook/sam3")             # gated: run `hf auth login` first
        model, processor = load_sam3("/data/checkpoints/sam3")     # a local HF-format folder
        model, processor = load_sam3("tiny-random")                # built-in tiny model, no download
        model, processor = load_sam3("facebook/sam3", adapter="org/sam3-cells-lora")

    Args:
        name_or_path: Hub id, local folder, or a built-in short name (``"tiny"``, ``"tiny-random"``).
        adapter: Hub id or local folder of a PEFT adapter (``adapter_config.json`` +
            ``adapter_model.safetensors``) trained on this base model.
        revision: Hub revision (branch, tag or commit) of the base model.
        token: Hub token; ``None`` uses the usual places (``HF_TOKEN``, ``hf auth login``).
        dtype: Parameter dtype, e.g. ``torch.bfloat16``; ``None`` keeps the stored one.
        device: Where to put the model; ``None`` leaves it on the CPU.
        adapter_trainable: Keep the adapter's weights trainable (to continue training it).

    Returns:
        ``(model, processor)``: a ``transformers.Sam3Model`` (a ``peft.PeftModel`` when an adapter is
        given) in eval mode, and its ``Sam3Processor`` (its image size the side the adapter was trained
        at, when the adapter records one: `sam3_adapt.model.persistence.adapter_image_size`).

    Raises:
        OSError: If the checkpoint cannot be found or downloaded; the message says what to check.
    """
    source = resolve_checkpoint(name_or_path)
    kwargs = {"revision": revision, "token": token}
    try:
        model = Sam3Model.from_pretrained(source, dtype=dtype, **kwargs)
        processor = Sam3Processor.from_pretrained(source, **kwargs)
    except OSError as error:
        raise OSError(
            f"could not load SAM 3 from {str(name_or_path)!r}: {error}\n"
            "A hub id needs network access and, for the gated facebook/sam3, an accepted licence and a "
            "token (`hf auth login`); offline, pass a local folder that holds config.json, "
            "model.safetensors and the processor files."
        ) from error
    if adapter is not None:
        model = load_adapter(model, adapter, expected_base=str(name_or_path), trainable=adapter_trainable)
        side = adapter_image_size(adapter)
        if side is not None:  # run at the side the adapter learnt (the segmenter sets the network to it)
            processor.image_processor.size = {"height": side, "width": side}
    if device is not None:
        model = model.to(device)
    return model.eval(), processor


def load_segmenter(
    name_or_path: str | os.PathLike = "facebook/sam3",
    adapter: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    adapter_trainable: bool = False,
) -> ConceptSegmenter:
    """Load a base SAM 3 (plus an adapter) into a :class:`ConceptSegmenter`: the one way the kit does it.

    Training, evaluation, the predictor, negative mining and publishing all start here, so a base
    model and an adapter mean the same thing everywhere.

    Args:
        name_or_path: Hub id, local folder, or a built-in short name (``"tiny"``, ``"tiny-random"``).
        adapter: Hub id or local folder of a PEFT adapter trained on this base model.
        device: Where to put the network; ``None`` leaves it on the CPU.
        dtype: Parameter dtype; ``None`` keeps the stored one.
        adapter_trainable: Keep the adapter's weights trainable (to continue training it).

    Returns:
        The segmenter in eval mode; ``image_size`` is the processor's input side.

    Raises:
        OSError: If the checkpoint cannot be found or downloaded.
        ValueError: If the adapter was trained on another base model.
    """
    network, processor = load_sam3(
        name_or_path, adapter=adapter, device=device, dtype=dtype, adapter_trainable=adapter_trainable
    )
    size = int(processor.image_processor.size["height"])
    return ConceptSegmenter(network, processor.tokenizer, image_size=size).eval()


__all__ = ["TINY", "TINY_RANDOM", "cache_dir", "load_sam3", "load_segmenter", "resolve_checkpoint"]
