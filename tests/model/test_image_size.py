"""SAM 3 runs at any whole number of patches, with Meta's interpolated rotary positions."""

import pytest
import torch
from transformers import Sam3Config, Sam3Model, Sam3Processor

from sam3_adapt.model.checkpoints import resolve_checkpoint
from sam3_adapt.model.image_size import check_image_size, native_image_size, set_input_side
from sam3_adapt.model.loading import load_segmenter
from sam3_adapt.model.persistence import save_trained
from sam3_adapt.training.chunked_step import objective_step
from sam3_adapt.training.loss import ConceptObjective


def global_positions(network) -> list[torch.Tensor]:
    from transformers.models.sam3.modeling_sam3 import Sam3ViTLayer

    return [m.position_ids for m in network.modules() if isinstance(m, Sam3ViTLayer) and m.window_size == 0]


def test_sides_must_be_whole_patches():
    config = Sam3Config()  # facebook/sam3's shape; only the config, no weights
    for side in (1008, 504, 336, 28):
        check_image_size(config, side)
    with pytest.raises(
        ValueError, match=r"image_size 500 does not fit facebook/sam3: .*14-px.*use 490 or 504"
    ):
        check_image_size(config, 500, "facebook/sam3")
    with pytest.raises(ValueError, match=r"image_size 14 .*at least 28 px"):
        check_image_size(config, 14)


def test_another_side_gives_what_a_network_built_for_it_gives():
    """Tiny at 224 px (built for 168): the positions and outputs of a model whose config says 224."""
    segmenter = load_segmenter("tiny")
    at_168 = segmenter.encode_images(torch.ones(1, 3, 168, 168)).fpn_hidden_states[-1]
    pixels = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        moved = segmenter(pixels, ["red circle"], torch.tensor([0]))
    config = Sam3Config.from_pretrained(resolve_checkpoint("tiny"))
    config.image_size = 224
    built = Sam3Model.from_pretrained(resolve_checkpoint("tiny"), config=config).eval()
    for ours, theirs in zip(global_positions(segmenter.sam3), global_positions(built), strict=True):
        assert ours.shape == (16 * 16, 2) and torch.equal(ours, theirs)
        assert ours.max() < config.vision_config.backbone_config.window_size  # the trained range
    assert native_image_size(segmenter.sam3.config) == 224
    reference = load_segmenter("tiny").eval()
    reference.network = built
    with torch.no_grad():
        expected = reference(pixels, ["red circle"], torch.tensor([0]))
    torch.testing.assert_close(moved.logits, expected.logits)
    torch.testing.assert_close(moved.boxes, expected.boxes)
    torch.testing.assert_close(moved.masks, expected.masks)
    # Back to the native side: the original outputs, exactly.
    again = segmenter.encode_images(torch.ones(1, 3, 168, 168)).fpn_hidden_states[-1]
    assert torch.equal(again, at_168)
    assert native_image_size(segmenter.sam3.config) == 168


def test_a_training_step_at_another_side_and_its_merged_weights(tmp_path):
    segmenter = load_segmenter("tiny").train()
    side, mask_side = 224, 224 // 14 * 4
    masks = torch.zeros(1, mask_side, mask_side, dtype=torch.bool)
    masks[0, 10:30, 12:40] = True
    target = {
        "boxes": torch.tensor([[12 / 64, 10 / 64, 40 / 64, 30 / 64]]),
        "masks": masks,
        "has_mask": torch.tensor([True]),
        "exhaustive": torch.tensor(True),
    }
    empty = {
        **target,
        "boxes": torch.zeros(0, 4),
        "masks": masks[:0],
        "has_mask": torch.zeros(0, dtype=torch.bool),
    }
    batch = {
        "pixel_values": torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(1)),
        "phrases": ["red circle", "blue square"],
        "query_image_index": torch.tensor([0, 0]),
        "targets": [target, empty],
    }
    step = objective_step(segmenter, ConceptObjective(), batch, None)
    step.loss.backward()
    assert torch.isfinite(step.loss)
    grads = [p.grad for p in segmenter.parameters() if p.grad is not None]
    assert len(grads) > 100 and all(torch.isfinite(g).all() for g in grads)
    patches = segmenter.sam3.vision_encoder.backbone.embeddings.patch_embeddings.projection.weight
    assert patches.grad is not None and patches.grad.abs().sum() > 0  # through the ViT at 224 px
    # Merged weights say the side they were trained at, and load back taking it.
    _, folder = save_trained(segmenter.network, tmp_path, base="tiny")
    assert Sam3Processor.from_pretrained(folder).image_processor.size["height"] == side
    loaded = load_segmenter(str(folder))
    assert loaded.image_size == side and native_image_size(loaded.sam3.config) == side


def test_set_input_side_refuses_a_partial_patch():
    network = load_segmenter("tiny").sam3
    with pytest.raises(ValueError, match="image_size 230 .*use 224 or 238"):
        set_input_side(network, 230)
    assert set_input_side(network, 168) is False  # already there


def test_an_adapter_records_the_side_it_was_trained_at_and_loads_at_it(tmp_path):
    from sam3_adapt.model.adaptation import LoraSettings, apply_lora
    from sam3_adapt.model.persistence import ADAPTER_NOTE, adapter_image_size

    segmenter = load_segmenter("tiny")
    segmenter.network = apply_lora(segmenter.network, LoraSettings())
    with torch.no_grad():  # a pass at 224 px sets the network's side, as training at 224 does
        segmenter(torch.rand(1, 3, 224, 224), ["red circle"], torch.tensor([0]))
    adapter, _ = save_trained(segmenter.network, tmp_path, base="tiny")
    assert adapter_image_size(adapter) == 224 and (adapter / ADAPTER_NOTE).is_file()
    loaded = load_segmenter("tiny", str(adapter))
    assert loaded.image_size == 224  # prediction, evaluation and review resize images to 224 px
    # An adapter without the note (PEFT's own, or an older kit's) runs at the base's side.
    (adapter / ADAPTER_NOTE).unlink()
    assert adapter_image_size(adapter) is None and load_segmenter("tiny", str(adapter)).image_size == 168
    (adapter / ADAPTER_NOTE).write_text("[1, 2]")
    with pytest.raises(ValueError, match=rf"{ADAPTER_NOTE}: not a JSON object with image_size"):
        adapter_image_size(adapter)
