"""The memory estimate: the H100 figures it is checked against, flat memory when chunked, clear refusals."""

from functools import cache

import pytest
import torch
from transformers import Sam3Config, Sam3Model

from sam3_adapt.model.adaptation import LoraSettings, apply_lora
from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.tiny import sam3_processor, tiny_sam3_config
from sam3_adapt.training.memory_estimate import estimate_step_memory, largest_chunk, recipe_segmenter

#: Peak GPU memory measured on one H100 (README, torch 2.11, CUDA 13): the recipes as shipped
#: (bf16-mixed, activation checkpointing on), 1008 px, batch 1.
H100_GIB = {("lora", 20): 27.8, ("lora", 4): 9.8, ("full", 20): 29.2, ("full", 4): 18.2}


@cache
def full_size(kind: str) -> ConceptSegmenter:
    """The full-size architecture with fake weights: no memory, no initialisation."""
    return recipe_segmenter(Sam3Config(), adaptation=kind, activation_checkpointing=True)


@cache
def estimate(kind: str, phrases: int, chunk: int | None = None) -> float:
    """Estimated GiB of the full-size recipe, 2 of the phrases present (each trace takes seconds)."""
    return estimate_step_memory(full_size(kind), 1008, phrases, chunk, positives_per_image=2).peak_gib


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "phrases"), list(H100_GIB))
def test_the_estimate_lands_within_15_percent_of_the_h100_measurements(kind, phrases):
    ratio = estimate(kind, phrases) / H100_GIB[(kind, phrases)]
    assert 0.85 <= ratio <= 1.15, (
        f"{kind} at {phrases} phrases: {estimate(kind, phrases):.2f} GiB, ratio {ratio:.3f}"
    )


@pytest.mark.slow
def test_chunked_memory_is_flat_in_phrases_and_fits_the_issues_budgets():
    lora_4, lora_20 = estimate("lora", 4, 2), estimate("lora", 20, 2)
    assert lora_20 <= 1.25 * lora_4
    assert lora_20 <= 8 * 10**9 / 2**30  # LoRA at 1008 px with 20 phrases in 8 GB
    assert estimate("full", 20, 4) <= 24 * 10**9 / 2**30  # full fine-tuning in 24 GB
    assert estimate("lora", 20) > 2 * lora_20  # what the chunks save


def tiny_segmenter() -> ConceptSegmenter:
    torch.manual_seed(0)
    network = apply_lora(Sam3Model(tiny_sam3_config(image_size=112)), LoraSettings(rank=4))
    return ConceptSegmenter(network.train(), sam3_processor(112).tokenizer, image_size=112)


def test_the_estimate_uses_the_real_weights_of_a_real_model_and_leaves_them_alone():
    segmenter = tiny_segmenter()
    before = {n: p.detach().clone() for n, p in segmenter.named_parameters()}
    small = estimate_step_memory(segmenter, 112, 2).peak_gib
    large = estimate_step_memory(segmenter, 112, 16).peak_gib
    assert 0 < small < large
    assert all(p.grad is None for p in segmenter.parameters())
    for name, parameter in segmenter.named_parameters():
        assert torch.equal(parameter, before[name]), name


def test_the_largest_chunk_fits_the_budget_and_a_budget_below_one_phrase_is_refused():
    segmenter = tiny_segmenter()
    one = estimate_step_memory(segmenter, 112, 2, 1, positives_per_image=2).peak_gib
    two = estimate_step_memory(segmenter, 112, 2, 2, positives_per_image=2).peak_gib
    assert two > one
    chunk, first, second = largest_chunk(segmenter, 112, budget_gib=one + 2.5 * (two - one))
    assert (first.peak_gib, second.peak_gib) == (one, two)
    assert chunk == 3  # 1 + floor(2.5)
    with pytest.raises(ValueError, match=r"memory_budget_gb=1e-06 is below .*even one phrase.* GiB"):
        largest_chunk(segmenter, 112, budget_gib=1e-6)
    with pytest.raises(ValueError, match="memory_budget_gb must be positive"):
        largest_chunk(segmenter, 112, budget_gib=0)
