"""Masks are pasted at full size one window at a time, equal to resizing all of them at once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sam3_adapt.model.detections import paste_masks
from sam3_adapt.training.coco_results import encode_masks


@pytest.mark.parametrize(
    ("source", "target"), [((16, 16), (100, 70)), ((7, 9), (5, 4)), ((72, 72), (900, 1200))]
)
def test_paste_masks_equals_a_full_bilinear_resize_thresholded_at_zero(source, target):
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
    assert pasted.crops[2].numel() == 0
    assert pasted.crops[3].numel() < expected[3].numel() / 10
    picked = pasted[np.array([3, 0])]
    torch.testing.assert_close(picked.dense(), expected[[3, 0]])
    assert encode_masks(pasted) == encode_masks(expected)


def test_no_detections_give_an_empty_mask_stack():
    pasted = paste_masks(torch.zeros(0, 8, 8), 30, 40)
    assert pasted.shape == (0, 30, 40) and pasted.numpy().shape == (0, 30, 40)
    assert encode_masks(pasted) == []
