"""Masks are pasted at full size (one window at a time for large images), equal to resizing all at once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sam3_adapt.model import detections
from sam3_adapt.model.detections import paste_masks
from sam3_adapt.training.coco_results import encode_masks


@pytest.mark.parametrize("windows", [True, False])
@pytest.mark.parametrize(
    ("source", "target"), [((16, 16), (100, 70)), ((7, 9), (5, 4)), ((72, 72), (900, 1200))]
)
def test_paste_masks_equals_a_full_bilinear_resize_thresholded_at_zero(monkeypatch, source, target, windows):
    if windows:  # the path of large images, taken here at every size
        monkeypatch.setattr(detections, "DENSE_BYTES", 0)
    torch.manual_seed(0)
    logits = torch.randn(6, *source) * 3 - 2
    logits[2] = -1.0  # a mask with no positive logit
    logits[3, :, :] = -5.0
    logits[3, 2:4, 3:5] = 4.0  # a small blob: its window is a small part of the image
    expected = F.interpolate(logits[None], size=target, mode="bilinear", align_corners=False)[0] > 0
    pasted = paste_masks(logits, *target)
    assert pasted.shape == (6, *target) and len(pasted) == 6
    torch.testing.assert_close(pasted.dense(), expected)
    np.testing.assert_array_equal(np.asarray(pasted), expected.numpy())
    torch.testing.assert_close(pasted[3], expected[3])
    if windows:
        assert pasted.crops[2].numel() == 0
        assert pasted.crops[3].numel() < expected[3].numel() / 10
    picked = pasted[np.array([3, 0])]
    torch.testing.assert_close(picked.dense(), expected[[3, 0]])
    assert encode_masks(pasted) == encode_masks(expected)


def test_no_detections_give_an_empty_mask_stack(monkeypatch):
    for dense_bytes in (0, detections.DENSE_BYTES):
        monkeypatch.setattr(detections, "DENSE_BYTES", dense_bytes)
        pasted = paste_masks(torch.zeros(0, 8, 8), 30, 40)
        assert pasted.shape == (0, 30, 40) and pasted.numpy().shape == (0, 30, 40)
        assert encode_masks(pasted) == []


def test_mask_stability_is_the_area_ratio_of_the_two_cuts():
    from sam3_adapt.model.detections import mask_stability

    logits = torch.full((2, 4, 4), -5.0)
    logits[0, :2, :2] = 5.0  # 4 pixels above +1 and above -1: stable
    logits[1, :2, :] = 0.5  # 8 pixels above -1, none above +1
    logits[1, 0, 0] = 3.0  # ... but one
    assert mask_stability(logits).tolist() == pytest.approx([1.0, 1 / 8])
    assert mask_stability(torch.full((1, 3, 3), -4.0)).tolist() == [1.0]  # empty mask: nothing moves


def test_mirrored_outputs_map_a_flipped_input_back_onto_the_square():
    """A test-time flip is undone on the network's square, before letterbox padding is cut off."""
    from sam3_adapt.model.outputs import ConceptOutputs

    boxes = torch.tensor([[[[0.1, 0.2, 0.4, 0.6]]]])  # (L, Q, N, 4), normalised xyxy
    masks = torch.zeros(1, 1, 8, 8)
    masks[0, 0, 2:5, 1:3] = 5.0
    outputs = ConceptOutputs(
        logits=torch.zeros(1, 1, 1),
        boxes=boxes,
        presence_logits=torch.zeros(1, 1),
        masks=masks,
        mask_query_index=torch.tensor([0]),
    )
    back = detections.mirrored(outputs)
    torch.testing.assert_close(back.boxes, torch.tensor([[[[0.6, 0.2, 0.9, 0.6]]]]))
    assert torch.equal(back.masks[0, 0, 2:5, 5:7], masks[0, 0, 2:5, 1:3]) and back.masks.sum() == masks.sum()
    again = detections.mirrored(back)
    torch.testing.assert_close(again.boxes, outputs.boxes)
    assert torch.equal(again.masks, outputs.masks)
