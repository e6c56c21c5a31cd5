import math

import pytest
import torch

from sam3_adapt.model.outputs import ConceptOutputs
from sam3_adapt.training.loss import ConceptObjective, paired_generalized_box_iou, queries_needing_masks

LN3 = math.log(3.0)  # sigmoid(LN3) = 0.75, sigmoid(-LN3) = 0.25
FAR = [0.6, 0.6, 1.0, 1.0]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def make_outputs(logits, boxes, presence, masks=None, mask_query_index=()) -> ConceptOutputs:
    """Outputs from nested lists: logits (L,Q,N), boxes (L,Q,N,4), presence (L,Q), masks (Qm,N,h,w)."""
    return ConceptOutputs(
        logits=torch.tensor(logits, dtype=torch.float32),
        boxes=torch.tensor(boxes, dtype=torch.float32),
        presence_logits=torch.tensor(presence, dtype=torch.float32),
        masks=None if masks is None else torch.as_tensor(masks, dtype=torch.float32),
        mask_query_index=torch.tensor(mask_query_index, dtype=torch.long),
    )


def make_target(boxes, masks=None, has_mask=None, size=4) -> dict[str, torch.Tensor]:
    box_tensor = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    n = box_tensor.shape[0]
    mask_tensor = (
        torch.zeros(n, size, size, dtype=torch.bool) if masks is None else torch.as_tensor(masks).bool()
    )
    has = mask_tensor.flatten(1).any(1) if has_mask is None else torch.tensor(has_mask, dtype=torch.bool)
    return {"boxes": box_tensor, "masks": mask_tensor, "has_mask": has}


def top_left_mask() -> torch.Tensor:
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2, :2] = True
    return mask


def test_class_presence_and_box_terms_on_a_positive_and_a_negative_query():
    # Query 0 (positive), target (0, 0, .5, .5):
    #   slot 0: box (0, 0, .5, .25), IoU .125/.25 = .5, p = .75 -> matched;
    #   slot 1: far box, p = .25 -> unmatched.
    # Query 1 (negative): any slots; presence logit LN3 (p = .75) against target 0.
    outputs = make_outputs(
        logits=[[[LN3, -LN3], [LN3, 0.0]]],
        boxes=[[[[0.0, 0.0, 0.5, 0.25], FAR], [[0.1, 0.1, 0.2, 0.2], FAR]]],
        presence=[[0.0, LN3]],
    )
    targets = [make_target([[0.0, 0.0, 0.5, 0.5]]), make_target([])]
    losses = ConceptObjective(scale_by_sqrt_queries=False, pad_slots=None)(outputs, targets)

    t = 0.75**0.25 * 0.5**0.75  # IA-BCE soft target p^.25 * IoU^.75 = 0.5533
    matched = 10 * -(t * math.log(0.75) + (1 - t) * math.log(0.25))  # pos_weight 10 * BCE = 7.7839
    unmatched = -math.log(1 - 0.25) * 0.25**2  # BCE against 0 times p^2 = 0.0180
    loss_class = (matched + unmatched) / 4  # mean over Q*N = 4 slots; the negative query's are zeroed
    loss_presence = 0.5 * (math.log(2.0) + -math.log(1 - 0.75)) / 2  # 0.5 * BCE, mean over queries
    # cxcywh (.25, .125, .5, .25) vs (.25, .25, .5, .5); GIoU = IoU = .5 (enclosing box = union).
    loss_bbox = (0.125 + 0.25) / 1
    loss_giou = (1 - 0.5) / 1
    assert losses["loss_class"].item() == pytest.approx(loss_class, rel=1e-5)
    assert losses["loss_presence"].item() == pytest.approx(loss_presence, rel=1e-5)
    assert losses["loss_bbox"].item() == pytest.approx(loss_bbox, rel=1e-5)
    assert losses["loss_giou"].item() == pytest.approx(loss_giou, rel=1e-5)
    assert losses["num_boxes"].item() == 1.0
    total = 20 * loss_class + 20 * loss_presence + 5 * loss_bbox + 2 * loss_giou
    assert losses["loss"].item() == pytest.approx(total, rel=1e-5)

    # The reference multiplies the total by sqrt(queries in the batch).
    scaled = ConceptObjective(pad_slots=None)(outputs, targets)
    assert scaled["loss"].item() == pytest.approx(math.sqrt(2) * total, rel=1e-5)
    assert scaled["loss_class"].item() == pytest.approx(loss_class, rel=1e-5)

    # By default the class term divides by 200 slots per query, as the reference's IABCEMdetr with
    # pad_n_queries=200 does for a model with fewer slots (here 2): 2 queries x 200 slots.
    padded = ConceptObjective(scale_by_sqrt_queries=False)(outputs, targets)
    assert padded["loss_class"].item() == pytest.approx((matched + unmatched) / 400, rel=1e-5)
    assert padded["loss_presence"].item() == pytest.approx(loss_presence, rel=1e-5)


def test_non_exhaustive_query_gets_no_negative_class_loss():
    # As in the first test, but query 0 is marked "not all instances found" (exhaustive False), so
    # its unmatched slot 1 (p = .25, which may sit on an unlabelled instance) gets no class loss and
    # leaves the normaliser: the reference's IABCEMdetr with weak_loss divides by the kept slots.
    outputs = make_outputs(
        logits=[[[LN3, -LN3], [LN3, 0.0]]],
        boxes=[[[[0.0, 0.0, 0.5, 0.25], FAR], [[0.1, 0.1, 0.2, 0.2], FAR]]],
        presence=[[0.0, LN3]],
    )
    partial = make_target([[0.0, 0.0, 0.5, 0.5]]) | {"exhaustive": torch.tensor(False)}
    targets = [partial, make_target([])]
    losses = ConceptObjective(scale_by_sqrt_queries=False, pad_slots=None)(outputs, targets)
    t = 0.75**0.25 * 0.5**0.75
    matched = 10 * -(t * math.log(0.75) + (1 - t) * math.log(0.25))  # 7.7839, as before
    assert losses["loss_class"].item() == pytest.approx(matched / 3, rel=1e-5)  # 4 slots less 1 dropped
    # Padded to 200 slots: the exhaustive negative query counts 200, the partial one its matched slot.
    padded = ConceptObjective(scale_by_sqrt_queries=False)(outputs, targets)
    assert padded["loss_class"].item() == pytest.approx(matched / 201, rel=1e-5)
    # Presence still learns that the phrase is there; boxes are unchanged.
    assert losses["loss_presence"].item() == pytest.approx(
        0.5 * (math.log(2.0) - math.log(0.25)) / 2, rel=1e-5
    )
    assert losses["loss_bbox"].item() == pytest.approx(0.375, rel=1e-5)

    # Exhaustive again (the flag given explicitly): the unmatched slot's BCE against 0 is back.
    targets[0]["exhaustive"] = torch.tensor(True)
    exhaustive = ConceptObjective(scale_by_sqrt_queries=False, pad_slots=None)(outputs, targets)
    unmatched = -math.log(1 - 0.25) * 0.25**2
    assert exhaustive["loss_class"].item() == pytest.approx((matched + unmatched) / 4, rel=1e-5)


@pytest.mark.parametrize("slots", [200, 250])
def test_the_class_term_of_a_model_with_200_slots_or_more_is_the_plain_mean(slots):
    # One positive query whose slot 0 is a perfect box with p = .5 and every other slot has p = .5:
    # with N >= 200 slots the padding adds nothing, and the class term is the mean over N slots.
    logits = [[[0.0] * slots]]
    boxes = [[[[0.0, 0.0, 0.5, 0.5]] + [FAR] * (slots - 1)]]
    outputs = make_outputs(logits=logits, boxes=boxes, presence=[[0.0]])
    losses = ConceptObjective(scale_by_sqrt_queries=False)(outputs, [make_target([[0.0, 0.0, 0.5, 0.5]])])
    t = 0.5**0.25 * 1.0**0.75  # soft target of the matched slot: p^.25 * IoU^.75
    matched = 10 * -(t * math.log(0.5) + (1 - t) * math.log(0.5))  # = 10 ln 2 whatever t
    unmatched = -math.log(0.5) * 0.5**2
    expected = (matched + (slots - 1) * unmatched) / slots
    assert losses["loss_class"].item() == pytest.approx(expected, rel=1e-5)
    unpadded = ConceptObjective(scale_by_sqrt_queries=False, pad_slots=None)(
        outputs, [make_target([[0.0, 0.0, 0.5, 0.5]])]
    )
    assert unpadded["loss_class"].item() == pytest.approx(expected, rel=1e-5)


def test_giou_follows_the_reference_formula_without_eps():
    # Disjoint boxes: A = (0, 0, .2, .2), B = (.4, .4, .5, .5): IoU 0, union .04 + .01 = .05,
    # enclosing (0, 0, .5, .5) = .25: GIoU = 0 - (.25 - .05) / .25 = -.8, loss 1.8.
    assert paired_generalized_box_iou(
        torch.tensor([[0.0, 0.0, 0.2, 0.2]]), torch.tensor([[0.4, 0.4, 0.5, 0.5]])
    ).item() == pytest.approx(-0.8, rel=1e-6)
    # Tiny boxes (areas 1e-8 and 2e-8, half overlapping): exactly .5 without an eps; torchvision's
    # 1e-7 in the denominators would give about .08.
    tiny = paired_generalized_box_iou(
        torch.tensor([[0.0, 0.0, 1e-4, 1e-4]], dtype=torch.float64),
        torch.tensor([[0.0, 0.0, 2e-4, 1e-4]], dtype=torch.float64),
    )
    assert tiny.item() == pytest.approx(0.5, rel=1e-9)
    # The objective's GIoU term on a matched pair uses the same formula: (1 - GIoU) / num_boxes.
    outputs = make_outputs(logits=[[[LN3]]], boxes=[[[[0.0, 0.0, 0.2, 0.2]]]], presence=[[0.0]])
    # Slot 0 must match the single target: with one slot the matcher has no other choice.
    losses = ConceptObjective(scale_by_sqrt_queries=False)(outputs, [make_target([[0.4, 0.4, 0.5, 0.5]])])
    assert losses["loss_giou"].item() == pytest.approx(1.8, rel=1e-5)


def test_non_exhaustive_negative_slots_with_a_high_score_cost_nothing():
    # One non-exhaustive query, one instance, three slots: slot 0 matches; slots 1 and 2 fire hard
    # (p = .99) on what may be unlabelled instances: the class loss is slot 0's alone, over 1 slot.
    high = math.log(99.0)
    outputs = make_outputs(
        logits=[[[LN3, high, high]]],
        boxes=[[[[0.0, 0.0, 0.5, 0.25], FAR, FAR]]],
        presence=[[0.0]],
    )
    target = make_target([[0.0, 0.0, 0.5, 0.5]]) | {"exhaustive": torch.tensor(False)}
    losses = ConceptObjective(scale_by_sqrt_queries=False)(outputs, [target])
    t = 0.75**0.25 * 0.5**0.75
    matched = 10 * -(t * math.log(0.75) + (1 - t) * math.log(0.25))
    assert losses["loss_class"].item() == pytest.approx(matched / 1, rel=1e-5)
    logits = outputs.logits.clone().requires_grad_(True)
    ConceptObjective(scale_by_sqrt_queries=False)(
        ConceptOutputs(logits, outputs.boxes, outputs.presence_logits, None, outputs.mask_query_index),
        [target],
    )["loss"].backward()
    assert logits.grad[0, 0, 1:].abs().max().item() == 0.0  # no push down on the unmatched slots


def test_soft_target_is_clamped_when_the_matched_box_misses():
    # One slot, so it is matched although disjoint: IoU 0 -> t = clamp(0, min=0.01) = 0.01.
    outputs = make_outputs(logits=[[[LN3]]], boxes=[[[FAR]]], presence=[[0.0]])
    losses = ConceptObjective(pad_slots=None)(outputs, [make_target([[0.0, 0.0, 0.5, 0.5]])])
    assert losses["loss_class"].item() == pytest.approx(
        10 * -(0.01 * math.log(0.75) + 0.99 * math.log(0.25)), rel=1e-5
    )
    # cxcywh (.8, .8, .4, .4) vs (.25, .25, .5, .5): .55 + .55 + .1 + .1.
    assert losses["loss_bbox"].item() == pytest.approx(1.3, rel=1e-5)
    # IoU 0; enclosing box area 1, union .25 + .16 = .41: GIoU = -(1 - .41) / 1 = -.59.
    assert losses["loss_giou"].item() == pytest.approx(1.59, rel=1e-5)


def test_mask_focal_and_dice_on_the_matched_slot():
    # Target: the top-left 2x2 of a 4x4 mask. Slot 0 (on the box) predicts +2 there and -2 elsewhere;
    # slot 1 (unmatched) predicts +5 everywhere and must not count.
    target_box = [0.0, 0.0, 0.5, 0.5]
    slot0 = torch.full((4, 4), -2.0)
    slot0[:2, :2] = 2.0
    masks = torch.stack([slot0, torch.full((4, 4), 5.0)])[None]
    outputs = make_outputs([[[0.0, 0.0]]], [[[target_box, FAR]]], [[0.0]], masks=masks, mask_query_index=[0])
    losses = ConceptObjective()(outputs, [make_target([target_box], masks=top_left_mask()[None])])

    p = sigmoid(2.0)  # inside; outside the probability is 1 - p
    focal_in = 0.25 * (1 - p) ** 2 * -math.log(p)  # alpha 0.25, gamma 2, target 1
    focal_out = 0.75 * (1 - p) ** 2 * -math.log(p)  # 1 - alpha, target 0, prob 1 - p
    assert losses["loss_mask"].item() == pytest.approx((4 * focal_in + 12 * focal_out) / 16, rel=1e-5)
    dice = 1 - (2 * 4 * p + 1) / ((4 * p + 12 * (1 - p)) + 4 + 1)
    assert losses["loss_dice"].item() == pytest.approx(dice, rel=1e-5)


def test_mask_logits_are_upsampled_bilinearly_to_the_target_size():
    # A 2x2 prediction [[-2, 2], [-2, 2]] becomes rows [-2, -1, 1, 2] at 4x4 (bilinear,
    # align_corners=False: x=1 -> .75*(-2) + .25*2, x=2 -> .25*(-2) + .75*2); nearest would give [-2,-2,2,2].
    target_box = [0.5, 0.0, 1.0, 1.0]
    gt = torch.zeros(4, 4, dtype=torch.bool)
    gt[:, 2:] = True
    masks = torch.tensor([[[[-2.0, 2.0], [-2.0, 2.0]]]])
    outputs = make_outputs([[[0.0]]], [[[target_box]]], [[0.0]], masks=masks, mask_query_index=[0])
    losses = ConceptObjective()(outputs, [make_target([target_box], masks=gt[None])])

    row = [sigmoid(v) for v in (-2.0, -1.0, 1.0, 2.0)]
    row_focal = sum(0.75 * q**2 * -math.log(1 - q) for q in row[:2]) + sum(
        0.25 * (1 - q) ** 2 * -math.log(q) for q in row[2:]
    )
    assert losses["loss_mask"].item() == pytest.approx(row_focal / 4, rel=1e-5)
    inter = 4 * (row[2] + row[3])
    assert losses["loss_dice"].item() == pytest.approx(1 - (2 * inter + 1) / (4 * sum(row) + 8 + 1), rel=1e-5)


def test_box_only_instance_gets_box_loss_counts_in_num_boxes_but_no_mask_loss():
    # Instance A (top-left, with mask) matched by slot 0 exactly; instance B (box only) by slot 1,
    # whose box is off by (cy .125, h .25) and whose mask logits (+10) would cost a lot.
    box_a, box_b = [0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]
    masks = torch.stack([torch.zeros(4, 4), torch.full((4, 4), 10.0)])[None].requires_grad_()
    outputs = make_outputs(
        [[[0.0, 0.0]]], [[[box_a, [0.5, 0.5, 1.0, 0.75]]]], [[0.0]], masks=masks, mask_query_index=[0]
    )
    outputs.masks = masks
    gt = torch.stack([top_left_mask(), torch.zeros(4, 4, dtype=torch.bool)])
    losses = ConceptObjective()(outputs, [make_target([box_a, box_b], masks=gt, has_mask=[True, False])])

    assert losses["num_boxes"].item() == 2.0
    # Slot 0 at p = .5 everywhere: focal .25*.25*log2 on the 4 ones, .75*.25*log2 on the 12 zeros.
    focal = (4 * 0.0625 + 12 * 0.1875) * math.log(2.0) / 16
    dice = 1 - (2 * 2 + 1) / (8 + 4 + 1)
    assert losses["loss_mask"].item() == pytest.approx(focal / 2, rel=1e-5)
    assert losses["loss_dice"].item() == pytest.approx(dice / 2, rel=1e-5)
    assert losses["loss_bbox"].item() == pytest.approx((0.125 + 0.25) / 2, rel=1e-5)
    assert losses["loss_giou"].item() == pytest.approx(0.5 / 2, rel=1e-5)
    losses["loss"].backward()
    assert masks.grad[0, 1].abs().sum() == 0
    assert masks.grad[0, 0].abs().sum() > 0


def test_negative_query_contributes_only_through_presence():
    box = [0.0, 0.0, 0.5, 0.5]
    logits = torch.tensor([[[LN3, 0.0], [1.0, -1.0]]], requires_grad=True)
    # Query 0's slot 0 is near, not on, its target: a box on it would have no box gradient at all.
    boxes = torch.tensor([[[[0.0, 0.0, 0.5, 0.4], FAR], [box, FAR]]], requires_grad=True)
    presence = torch.tensor([[0.0, 0.5]], requires_grad=True)
    masks = torch.zeros(1, 2, 4, 4, requires_grad=True)
    outputs = ConceptOutputs(logits, boxes, presence, masks, torch.tensor([0]))
    targets = [make_target([box], masks=top_left_mask()[None]), make_target([])]
    losses = ConceptObjective()(outputs, targets)
    assert all(not value.requires_grad for key, value in losses.items() if key != "loss")
    losses["loss"].backward()
    assert logits.grad[:, 1].abs().sum() == 0
    assert boxes.grad[:, 1].abs().sum() == 0
    assert presence.grad[0, 1] != 0
    assert logits.grad[:, 0].abs().sum() > 0
    assert boxes.grad[:, 0].abs().sum() > 0

    # A batch of one negative query: total = 20 * 0.5 * BCE(0, 0) = 10 log 2; num_boxes clamps to 1.
    alone = make_outputs([[[LN3, 0.0]]], [[[box, FAR]]], [[0.0]])
    losses = ConceptObjective()(alone, [make_target([])])
    assert losses["loss"].item() == pytest.approx(10 * math.log(2.0), rel=1e-5)
    assert losses["num_boxes"].item() == 1.0


def test_mask_loss_off_ignores_masks_entirely():
    box = [0.0, 0.0, 0.5, 0.5]
    targets = [make_target([box], masks=top_left_mask()[None])]
    assert queries_needing_masks(targets).tolist() == [0]
    assert queries_needing_masks(targets, mask_loss=False).tolist() == []

    no_masks = make_outputs([[[0.0, 0.0]]], [[[box, FAR]]], [[0.0]])
    off = ConceptObjective(mask_loss=False)(no_masks, targets)
    assert off["loss_mask"].item() == 0.0
    assert off["loss_dice"].item() == 0.0

    with_masks = make_outputs([[[0.0, 0.0]]], [[[box, FAR]]], [[0.0]], torch.zeros(1, 2, 4, 4), [0])
    on = ConceptObjective()(with_masks, targets)
    off_with_masks = ConceptObjective(mask_loss=False)(with_masks, targets)
    assert off_with_masks["loss"].item() == pytest.approx(off["loss"].item(), rel=1e-6)
    focal = (4 * 0.0625 + 12 * 0.1875) * math.log(2.0) / 16
    dice = 1 - 5 / 13
    assert on["loss"].item() == pytest.approx(off["loss"].item() + 200 * focal + 10 * dice, rel=1e-5)


def test_aux_layers_are_matched_separately_and_add_their_terms():
    # Layer 0 holds layer 1's slots in swapped order: matched per layer, both layers cost the same.
    box = [0.0, 0.0, 0.5, 0.25]
    last = ([LN3, -LN3], [box, FAR])
    first = ([-LN3, LN3], [FAR, box])
    masks = torch.zeros(1, 2, 4, 4)
    targets = [make_target([[0.0, 0.0, 0.5, 0.5]], masks=top_left_mask()[None])]
    two = make_outputs([[first[0]], [last[0]]], [[first[1]], [last[1]]], [[0.0], [0.0]], masks, [0])
    one = make_outputs([[last[0]]], [[last[1]]], [[0.0]], masks, [0])

    with_aux = ConceptObjective()(two, targets)
    last_only = ConceptObjective(aux_loss=False)(two, targets)
    single = ConceptObjective()(one, targets)
    for key in ("loss_class", "loss_presence", "loss_bbox", "loss_giou"):
        assert with_aux[key].item() == pytest.approx(2 * single[key].item(), rel=1e-6)
        assert last_only[key].item() == pytest.approx(single[key].item(), rel=1e-6)
    for key in ("loss_mask", "loss_dice"):
        assert with_aux[key].item() == pytest.approx(single[key].item(), rel=1e-6)
    layer = sum(
        w * single[k].item()
        for k, w in (("loss_class", 20), ("loss_presence", 20), ("loss_bbox", 5), ("loss_giou", 2))
    )
    assert with_aux["loss"].item() == pytest.approx(single["loss"].item() + layer, rel=1e-5)


def test_missing_predicted_masks_for_a_query_with_masks_is_an_error():
    box = [0.0, 0.0, 0.5, 0.5]
    targets = [make_target([box], masks=top_left_mask()[None]) for _ in range(2)]
    logits, boxes, presence = [[[0.0], [0.0]]], [[[box], [box]]], [[0.0, 0.0]]
    only_first = make_outputs(logits, boxes, presence, torch.zeros(1, 1, 4, 4), [0])
    with pytest.raises(ValueError, match=r"queries \[1\] have ground-truth masks"):
        ConceptObjective()(only_first, targets)
    with pytest.raises(ValueError, match=r"queries \[0, 1\]"):
        ConceptObjective()(make_outputs(logits, boxes, presence), targets)
    with pytest.raises(ValueError, match="1 targets for 2 queries"):
        ConceptObjective()(only_first, targets[:1])


def test_bf16_outputs_under_autocast_give_float32_losses():
    box = [0.0, 0.0, 0.5, 0.5]
    targets = [make_target([box], masks=top_left_mask()[None]), make_target([])]
    outputs = make_outputs(
        [[[1.3, -0.7], [0.2, 0.9]]],
        [[[[0.05, 0.0, 0.45, 0.55], FAR], [[0.1, 0.1, 0.3, 0.3], FAR]]],
        [[0.3, -0.4]],
        torch.randn(1, 2, 2, 2, generator=torch.Generator().manual_seed(0)),
        [0],
    )
    as_bf16 = ConceptOutputs(
        outputs.logits.bfloat16(),
        outputs.boxes.bfloat16(),
        outputs.presence_logits.bfloat16(),
        outputs.masks.bfloat16(),
        outputs.mask_query_index,
    )
    rounded = ConceptOutputs(
        as_bf16.logits.float(),
        as_bf16.boxes.float(),
        as_bf16.presence_logits.float(),
        as_bf16.masks.float(),
        outputs.mask_query_index,
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = ConceptObjective()(as_bf16, targets)
    reference = ConceptObjective()(rounded, targets)
    for key, value in low.items():
        assert value.dtype == torch.float32, key
        assert value.item() == pytest.approx(reference[key].item(), rel=1e-5, abs=1e-7), key
