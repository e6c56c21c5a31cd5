"""Step time of the chunked training step against the whole-batch step, on a CPU-sized SAM 3.

Runs the ``mid`` config of :mod:`benchmarks.phrase_batching` (ViT 256 wide, 8 layers, 448 px; the
vision encoder dominates as in the real model) with LoRA on the detector, one training step (forward,
loss, backward) of 8 phrases per image, for each chunk size in turn, repeated in interleaved rounds
so that a busy machine slows every setting alike; prints the median seconds per step of each.

Run: ``python -m benchmarks.chunk_time``.
"""

from __future__ import annotations

import statistics
import time

import torch
from transformers import Sam3Model

from benchmarks.phrase_batching import config_of, make_batches
from sam3_adapt.model.adaptation import LoraSettings, apply_lora
from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.tiny import tiny_sam3_config
from sam3_adapt.model.tokenizer import clip_tokenizer
from sam3_adapt.training.chunked_step import objective_step
from sam3_adapt.training.loss import ConceptObjective


def detector_config():
    """``facebook/sam3``'s detector behind a small ViT: the part of the step that chunks repeat.

    DETR encoder and decoder of 6 layers, 256 wide, 8 heads, 200 slots, on 5,184 image tokens (1008 px).
    """
    config = tiny_sam3_config(
        image_size=1008, vision_hidden=64, vision_layers=2, detr_hidden=256, detr_layers=6, num_queries=200
    )
    for sub in ("geometry_encoder_config", "detr_encoder_config", "detr_decoder_config"):
        getattr(config, sub).num_attention_heads = 8
    config.mask_decoder_config.num_attention_heads = 8
    return config


def main(
    model: str = "mid",
    phrases: int = 8,
    batch_size: int = 2,
    chunks: list[int | None] | None = None,
    rounds: int = 5,
    threads: int = 1,
) -> dict[str, float]:
    """Median step time per chunk size.

    Args:
        model: ``tiny`` or ``mid`` (see :mod:`benchmarks.phrase_batching`), or ``detector``: the
            full-size detector at 1008 px behind a small ViT (:func:`detector_config`).
        phrases: Phrases per image (one present).
        batch_size: Images per step.
        chunks: Chunk sizes to time; ``None`` in the list is the whole batch. Default: whole, 8, 4, 2, 1.
        rounds: Interleaved rounds (the first is a warm-up and not counted).
        threads: CPU threads of torch.

    Returns:
        Median seconds per step by chunk (``"all"`` for the whole batch).
    """
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    # Not called ``config``: jsonargparse keeps ``--config`` for configuration files.
    sam3_config = detector_config() if model == "detector" else config_of(model)
    size = sam3_config.vision_config.backbone_config.image_size
    network = apply_lora(Sam3Model(sam3_config), LoraSettings(dropout=0.0))
    segmenter = ConceptSegmenter(network.train(), clip_tokenizer(), image_size=size)
    objective = ConceptObjective()
    batch = make_batches(size, batch_size, batch_size, phrases, seed=1)[0]
    chunks = [None, 8, 4, 2, 1] if chunks is None else chunks
    times: dict[str, list[float]] = {str(c or "all"): [] for c in chunks}
    for round_ in range(rounds):
        for chunk in chunks:
            segmenter.zero_grad(set_to_none=True)
            start = time.perf_counter()
            objective_step(segmenter, objective, batch, chunk).loss.backward()
            if round_:
                times[str(chunk or "all")].append(time.perf_counter() - start)
    medians = {key: statistics.median(values) for key, values in times.items()}
    for key, value in medians.items():
        print(f"chunk {key:>3}: {value:.3f} s/step ({value / medians['all']:.2f}x)")  # noqa: T201
    return medians


if __name__ == "__main__":
    from jsonargparse import CLI

    CLI(main, as_positional=False)
