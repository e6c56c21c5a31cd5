import pytest
import torch
from transformers import Sam3Model

from benchmarks.levers import LEVERS, lever_outputs
from sam3_adapt.model.adaptation import LoraSettings, apply_full_finetune, apply_lora
from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.tiny import sam3_processor, tiny_sam3_config
from sam3_adapt.training.loss import ConceptObjective
from tests.adapt.training.test_chunked_step import SIZE, target


def tiny_segmenter(adaptation: str) -> ConceptSegmenter:
    config = tiny_sam3_config(image_size=SIZE)
    # Dropout draws differ between one pass per query and one batched pass; switch it off to compare.
    for sub in (config.geometry_encoder_config, config.detr_encoder_config, config.detr_decoder_config):
        sub.dropout = 0.0
    torch.manual_seed(0)
    network = Sam3Model(config)
    if adaptation == "lora":
        network = apply_lora(network, LoraSettings(rank=4, dropout=0.0))
        with torch.no_grad():  # B starts at 0, which would leave every A without gradient
            for name, parameter in network.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(std=0.05)
    else:
        apply_full_finetune(network, freeze=["vision_encoder", "text_encoder"])
    return ConceptSegmenter(network.train(), sam3_processor(SIZE).tokenizer)


def batch() -> dict:
    """Two images, four phrases each: a positive with masks, a box-only positive, two negatives."""
    generator = torch.Generator().manual_seed(3)
    phrases = ["red circle", "square", "blue cross", "green star", "red circle", "star", "square", "cross"]
    targets = [
        target([[0.1, 0.1, 0.4, 0.5], [0.6, 0.5, 0.9, 0.8]], True),
        target([[0.5, 0.1, 0.7, 0.3]], False),
        target([], True),
        target([], True),
        target([[0.2, 0.3, 0.6, 0.7]], True),
        target([[0.0, 0.0, 0.3, 0.2]], False),
        target([], True),
        target([], True),
    ]
    return {
        "pixel_values": torch.randn(2, 3, SIZE, SIZE, generator=generator),
        "phrases": phrases,
        "query_image_index": torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]),
        "exemplar_boxes": [torch.zeros(0, 4)] * 8,
        "exemplar_labels": [torch.zeros(0, dtype=torch.long)] * 8,
        "targets": targets,
    }


def loss_and_grads(segmenter, objective, inputs, lever):
    segmenter.zero_grad(set_to_none=True)
    losses = objective(lever_outputs(segmenter, inputs, lever), inputs["targets"])
    losses["loss"].backward()
    grads = {n: p.grad.clone() for n, p in segmenter.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, grads


@pytest.mark.parametrize("adaptation", ["lora", "full"])
def test_every_lever_gives_the_naive_loops_losses_and_gradients(adaptation):
    segmenter, objective, inputs = tiny_segmenter(adaptation), ConceptObjective(), batch()
    results = {lever: loss_and_grads(segmenter, objective, inputs, lever) for lever in LEVERS[:3]}
    segmenter.use_feature_cache("memory")
    loss_and_grads(segmenter, objective, inputs, "cached")  # first epoch fills the cache
    results["cached"] = loss_and_grads(segmenter, objective, inputs, "cached")
    assert (segmenter.vision_cache.hits, segmenter.text_cache.hits) == (2, 6)  # 6 distinct phrases

    naive_losses, naive_grads = results["naive"]
    assert naive_losses["loss_mask"] > 0 and naive_losses["loss_bbox"] > 0
    assert sum(bool(g.abs().sum() > 0) for g in naive_grads.values()) > 0.9 * len(naive_grads)
    if adaptation == "full":  # the mask decoder and the detector train; the towers do not
        assert any(n.startswith("network.mask_decoder.") for n in naive_grads)
        assert not any(".vision_encoder." in n or ".text_encoder." in n for n in naive_grads)
    for lever in LEVERS[1:]:
        losses, grads = results[lever]
        for key, value in naive_losses.items():
            torch.testing.assert_close(losses[key], value, atol=1e-5, rtol=1e-4, msg=f"{lever} {key}")
        assert grads.keys() == naive_grads.keys(), lever
        for name, grad in naive_grads.items():
            torch.testing.assert_close(grads[name], grad, atol=1e-5, rtol=1e-3, msg=f"{lever} {name}")


def test_levers_check_that_the_segmenter_matches():
    segmenter = tiny_segmenter("full")
    with pytest.raises(ValueError, match="needs a segmenter with a feature cache"):
        lever_outputs(segmenter, batch(), "cached")
    segmenter.use_feature_cache("memory")
    with pytest.raises(ValueError, match="without a feature cache"):
        lever_outputs(segmenter, batch(), "batched")
