"""A tiny ``Sam3Model`` of the real class: every code path of the kit runs on it on a CPU in seconds."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

from sam3_adapt.model.tokenizer import MAX_PHRASE_TOKENS, clip_tokenizer


def tiny_sam3_config(
    image_size: int = 224,
    vision_hidden: int = 64,
    vision_layers: int = 4,
    text_hidden: int = 64,
    text_layers: int = 2,
    detr_hidden: int = 32,
    detr_layers: int = 2,
    num_queries: int = 20,
    init_std: float | None = None,
) -> Sam3Config:
    """Configuration of a small SAM 3 with the full architecture (about 3.8M parameters at the defaults).

    Every component of ``facebook/sam3`` is there (windowed ViT with global layers, FPN neck, CLIP
    text encoder, geometry encoder, DETR encoder and decoder with presence token, mask decoder),
    only narrower and shallower. Most of the parameters are the 49408-token embedding table.

    Args:
        image_size: Input side in pixels; a multiple of 14 (the patch size) whose patch grid is a
            multiple of the attention window (8 at 224 px).
        vision_hidden: ViT width.
        vision_layers: ViT depth; the second and last layers use global attention.
        text_hidden: CLIP text encoder width.
        text_layers: CLIP text encoder depth.
        detr_hidden: Width of the geometry encoder, DETR encoder/decoder and mask decoder.
        detr_layers: Depth of the DETR encoder and of the decoder (auxiliary losses use each layer).
        num_queries: Object slots per phrase.
        init_std: Standard deviation of the random initialisation (``initializer_range``) of every
            component but the CLIP text encoder, which scales its own by width and depth; ``None``
            keeps Hugging Face's 0.02. Training from scratch at
            these widths needs more: at 0.02 the presence logit moves by 1.5e-5 when a phrase token
            moves by 5 (0.04 at 0.1), so the presence head starts with almost no gradient.

    Returns:
        A ``transformers.Sam3Config``.

    Raises:
        ValueError: If ``image_size`` does not tile into patches and windows.
    """
    patch = 14
    grid = image_size // patch
    window = grid // 2
    if image_size % patch or grid % window or grid % 4:
        raise ValueError(f"image_size={image_size} must be a multiple of 56 (patch 14, grid divisible by 4)")
    heads = max(1, vision_hidden // 16)
    config = Sam3Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam3_vit_model",
                "hidden_size": vision_hidden,
                "intermediate_size": 4 * vision_hidden,
                "num_hidden_layers": vision_layers,
                "num_attention_heads": heads,
                "image_size": image_size,
                "patch_size": patch,
                "window_size": window,
                "global_attn_indexes": sorted({1, vision_layers - 1}),
                "pretrain_image_size": image_size,
            },
            "fpn_hidden_size": detr_hidden,
            "backbone_feature_sizes": [[grid * 4, grid * 4], [grid * 2, grid * 2], [grid, grid]],
        },
        text_config={
            "vocab_size": 49408,
            "hidden_size": text_hidden,
            "intermediate_size": 4 * text_hidden,
            "projection_dim": text_hidden,
            "num_hidden_layers": text_layers,
            "num_attention_heads": max(1, text_hidden // 16),
            "max_position_embeddings": MAX_PHRASE_TOKENS,
        },
        geometry_encoder_config={
            "hidden_size": detr_hidden,
            "num_layers": 1,
            "num_attention_heads": 4,
            "intermediate_size": 2 * detr_hidden,
        },
        detr_encoder_config={
            "hidden_size": detr_hidden,
            "num_layers": detr_layers,
            "num_attention_heads": 4,
            "intermediate_size": 2 * detr_hidden,
        },
        detr_decoder_config={
            "hidden_size": detr_hidden,
            "num_layers": detr_layers,
            "num_queries": num_queries,
            "num_attention_heads": 4,
            "intermediate_size": 2 * detr_hidden,
        },
        mask_decoder_config={"hidden_size": detr_hidden, "num_attention_heads": 4},
    )
    if init_std is not None:
        config.initializer_range = init_std
        for name in _SUB_CONFIGS:
            getattr(config, name).initializer_range = init_std
        config.vision_config.backbone_config.initializer_range = init_std
    return config


_SUB_CONFIGS = (
    "vision_config",
    "text_config",
    "geometry_encoder_config",
    "detr_encoder_config",
    "detr_decoder_config",
    "mask_decoder_config",
)


def sam3_processor(image_size: int) -> Sam3Processor:
    """A ``Sam3Processor`` for square ``image_size`` inputs with the offline CLIP tokenizer.

    Args:
        image_size: Side of the network input in pixels.

    Returns:
        The processor (image processor with SAM 3's mean/std of 0.5, and tokenizer).
    """
    image_processor = Sam3ImageProcessor(
        size={"height": image_size, "width": image_size},
        mask_size={"height": image_size // 14 * 4, "width": image_size // 14 * 4},
    )
    return Sam3Processor(image_processor=image_processor, tokenizer=clip_tokenizer())


def write_tiny_random_sam3(folder: str | Path, seed: int = 0, **config_overrides: float | None) -> Path:
    """Write a randomly initialised tiny SAM 3 and its processor as an ordinary HF folder.

    The folder loads with ``Sam3Model.from_pretrained`` and ``Sam3Processor.from_pretrained``
    exactly like a local copy of ``facebook/sam3``.

    Args:
        folder: Where to write ``config.json``, ``model.safetensors`` and the processor files.
        seed: Seed of the random initialisation, so the same seed gives the same weights.
        **config_overrides: Keyword arguments for :func:`tiny_sam3_config`.

    Returns:
        The folder.
    """
    folder = Path(folder)
    config = tiny_sam3_config(**config_overrides)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Sam3Model(config)
    model.save_pretrained(folder)
    sam3_processor(config.image_size).save_pretrained(folder)
    return folder
