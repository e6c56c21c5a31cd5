"""Phrases in chunks with gradient caching give the whole batch's losses and gradients."""

import pytest
import torch
from transformers import Sam3Model

from sam3_adapt.model.adaptation import LoraSettings, apply_full_finetune, apply_lora
from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.tiny import sam3_processor, tiny_sam3_config
from sam3_adapt.training.chunked_step import check_chunk, objective_step
from sam3_adapt.training.loss import ConceptObjective

SIZE = 112
MASK = SIZE // 14 * 4


def tiny_segmenter(adaptation: str) -> ConceptSegmenter:
    config = tiny_sam3_config(image_size=SIZE)
    # Dropout draws differ between one pass and several: switch it off to compare.
    for sub in (config.geometry_encoder_config, config.detr_encoder_config, config.detr_decoder_config):
        sub.dropout = 0.0
    torch.manual_seed(0)
    network = Sam3Model(config)
    if adaptation == "full":
        apply_full_finetune(network, freeze=[])
    else:
        preset = "detector+vision" if adaptation == "lora-vision" else "detector"
        network = apply_lora(network, LoraSettings(preset=preset, rank=4, dropout=0.0, last_vision_blocks=1))
        with torch.no_grad():  # B starts at 0, which would leave every A without gradient
            for name, parameter in network.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(std=0.05)
    return ConceptSegmenter(network.train(), sam3_processor(SIZE).tokenizer)


def target(boxes: list[list[float]], with_masks: bool, exhaustive: bool = True) -> dict[str, torch.Tensor]:
    masks = torch.zeros(len(boxes), MASK, MASK, dtype=torch.bool)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes):
        mask[int(y0 * MASK) : int(y1 * MASK), int(x0 * MASK) : int(x1 * MASK)] = with_masks
    return {
        "boxes": torch.tensor(boxes).reshape(-1, 4),
        "masks": masks,
        "has_mask": torch.full((len(boxes),), with_masks),
        "exhaustive": torch.tensor(exhaustive),
    }


def batch() -> dict:
    """Two images, four phrases each: positives with masks, box-only positives, negatives, a
    non-exhaustive query, and exemplar prompts (a positive and a negative box)."""
    generator = torch.Generator().manual_seed(3)
    phrases = ["red circle", "square", "blue cross", "green star", "red circle", "star", "square", "cross"]
    targets = [
        target([[0.1, 0.1, 0.4, 0.5], [0.6, 0.5, 0.9, 0.8]], True),
        target([[0.5, 0.1, 0.7, 0.3]], False),
        target([], True),
        target([], True),
        target([[0.2, 0.3, 0.6, 0.7]], True, exhaustive=False),
        target([[0.0, 0.0, 0.3, 0.2]], False),
        target([], True),
        target([], True),
    ]
    exemplar_boxes = [torch.zeros(0, 4)] * 8
    exemplar_labels = [torch.zeros(0, dtype=torch.long)] * 8
    exemplar_boxes[0] = torch.tensor([[0.25, 0.3, 0.3, 0.4]])  # cxcywh of the first instance
    exemplar_labels[0] = torch.tensor([1])
    exemplar_boxes[5] = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.15, 0.1, 0.3, 0.2]])
    exemplar_labels[5] = torch.tensor([0, 1])
    return {
        "pixel_values": torch.randn(2, 3, SIZE, SIZE, generator=generator),
        "phrases": phrases,
        "query_image_index": torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]),
        "exemplar_boxes": exemplar_boxes,
        "exemplar_labels": exemplar_labels,
        "targets": targets,
    }


def loss_and_grads(segmenter, objective, inputs, chunk):
    segmenter.zero_grad(set_to_none=True)
    step = objective_step(segmenter, objective, inputs, chunk)
    step.loss.backward()
    grads = {n: p.grad.clone() for n, p in segmenter.named_parameters() if p.grad is not None}
    return step, grads


@pytest.mark.parametrize("adaptation", ["lora-detector", "lora-vision", "full"])
def test_chunked_steps_give_the_whole_batchs_losses_and_gradients(adaptation):
    segmenter, objective, inputs = tiny_segmenter(adaptation), ConceptObjective(), batch()
    whole, whole_grads = loss_and_grads(segmenter, objective, inputs, None)
    trainable = {n for n, p in segmenter.named_parameters() if p.requires_grad}
    # Every trainable weight that the batch reaches gets a gradient, the towers' when they train.
    assert whole_grads.keys() <= trainable and len(whole_grads) > 0
    if adaptation != "lora-detector":
        assert any("vision_encoder" in n for n in whole_grads)
    if adaptation == "full":
        assert any("text_encoder" in n for n in whole_grads)
    for chunk in (1, 3):
        step, grads = loss_and_grads(segmenter, objective, inputs, chunk)
        assert step.chunks == -(-8 // chunk)
        torch.testing.assert_close(step.loss, whole.loss, rtol=1e-5, atol=1e-5)
        assert step.terms.keys() == whole.terms.keys()
        for key, value in whole.terms.items():
            torch.testing.assert_close(step.terms[key], value, rtol=1e-5, atol=1e-6, msg=key)
        assert grads.keys() == whole_grads.keys()
        for name, grad in whole_grads.items():
            torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_a_chunk_at_least_the_batch_is_the_whole_batch_step():
    segmenter, objective, inputs = tiny_segmenter("lora-detector"), ConceptObjective(), batch()
    assert objective_step(segmenter, objective, inputs, 8).chunks == 1
    assert objective_step(segmenter, objective, inputs, 100).chunks == 1


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4"])
def test_a_chunk_that_is_not_a_positive_whole_number_is_refused(bad):
    with pytest.raises(ValueError, match="phrase_chunk"):
        check_chunk(bad)
