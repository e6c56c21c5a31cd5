import math

import pytest
import torch

from sam3_adapt.training.matcher import HungarianMatcher


def _target(boxes: list[list[float]]) -> dict[str, torch.Tensor]:
    tensor = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    n = tensor.shape[0]
    return {
        "boxes": tensor,
        "masks": torch.zeros(n, 4, 4, dtype=torch.bool),
        "has_mask": torch.zeros(n, dtype=torch.bool),
    }


def test_matches_each_target_to_the_slot_on_top_of_it():
    # Slot 0 sits on target 1, slot 2 on target 0, slot 1 is far from both.
    boxes = torch.tensor([[[0.5, 0.5, 0.9, 0.9], [0.0, 0.8, 0.1, 0.9], [0.1, 0.1, 0.3, 0.3]]])
    logits = torch.zeros(1, 3)
    targets = [_target([[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9]])]
    [(pred, tgt)] = HungarianMatcher()(logits, boxes, targets)
    assert pred.tolist() == [0, 2]
    assert tgt.tolist() == [1, 0]
    assert pred.dtype == tgt.dtype == torch.long


def test_class_cost_breaks_a_tie_between_identical_boxes():
    # focal(p) = -0.25 (1-p)^2 log p + 0.75 p^2 log(1-p) falls with p:
    # p=0.5: 0.0433 - 0.1300 = -0.0866; p=0.9: 0.0003 - 1.3990 = -1.3987, so the confident slot wins.
    box = [0.2, 0.2, 0.6, 0.6]
    boxes = torch.tensor([[box, box]])
    logits = torch.tensor([[0.0, math.log(9.0)]])
    [(pred, tgt)] = HungarianMatcher()(logits, boxes, [_target([box])])
    assert pred.tolist() == [1]
    assert tgt.tolist() == [0]


def test_weights_trade_class_against_box_cost():
    # Target (0, 0, .5, .5), cxcywh (.25, .25, .5, .5).
    # Slot A: exact box, p = 0.01: class = -0.25 * 0.99^2 * log(0.01) + 0.75 * 1e-4 * log(0.99) = 1.1284;
    #   cost = 5*0 + 2*1.1284 - 2*1 = 0.257.
    # Slot B: box shifted by .05 in x, p = 0.99: L1 = 0.05; IoU = .225/.275 = .818 = GIoU (enclosing = union);
    #   class = -0.25 * 1e-4 * log(.99) + 0.75 * 0.9801 * log(0.01) = -3.385;
    #   cost = 5*.05 + 2*(-3.385) - 2*.818 = -8.16. B wins.
    # Without the class cost: A = -2, B = .25 - 1.636 = -1.386, so A wins.
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.05, 0.0, 0.55, 0.5]]])
    logits = torch.tensor([[math.log(0.01 / 0.99), math.log(0.99 / 0.01)]])
    targets = [_target([[0.0, 0.0, 0.5, 0.5]])]
    [(pred, _)] = HungarianMatcher()(logits, boxes, targets)
    assert pred.tolist() == [1]
    [(pred, _)] = HungarianMatcher(cost_class=0.0)(logits, boxes, targets)
    assert pred.tolist() == [0]


def test_negative_query_gets_empty_indices_and_fewer_slots_than_targets_match_all_slots():
    boxes = torch.tensor([[[0.0, 0.0, 0.2, 0.2]], [[0.5, 0.5, 0.7, 0.7]]])
    logits = torch.zeros(2, 1)
    targets = [_target([]), _target([[0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 0.7, 0.7]])]
    (neg_pred, neg_tgt), (pred, tgt) = HungarianMatcher()(logits, boxes, targets)
    assert neg_pred.numel() == 0 and neg_tgt.numel() == 0
    assert neg_pred.dtype == torch.long
    # One slot, two targets: the slot takes the target it overlaps.
    assert pred.tolist() == [0]
    assert tgt.tolist() == [1]


def test_rejects_wrong_number_of_targets_and_all_zero_costs():
    with pytest.raises(ValueError, match="2 targets for 1 queries"):
        HungarianMatcher()(torch.zeros(1, 2), torch.rand(1, 2, 4), [_target([]), _target([])])
    with pytest.raises(ValueError, match="cannot all be 0"):
        HungarianMatcher(cost_class=0.0, cost_bbox=0.0, cost_giou=0.0)
