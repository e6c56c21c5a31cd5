"""SAM 3's training objective (IA-BCE, presence, boxes, masks), as Meta's reference trainer computes it.

Hugging Face ``Sam3Model`` ships no loss; this module supplies the one of the reference release
(``sam3/train/loss/loss_fns.py``, ``sam3_loss.py``) with the weights of its RF100-VL fine-tuning config.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert, box_iou, sigmoid_focal_loss

from sam3_adapt.model.outputs import ConceptOutputs
from sam3_adapt.training.loss_counts import (
    LossNormalisers,
    Target,
    batch_counts,
    is_exhaustive,
    kept_class_slots,
    queries_needing_masks,
)
from sam3_adapt.training.matcher import HungarianMatcher, Match

__all__ = ["ConceptObjective", "LossNormalisers", "queries_needing_masks"]

#: Slots per query the reference's class term divides by (``IABCEMdetr(pad_n_queries=200)``).
REFERENCE_PAD_SLOTS = 200
LAYER_TERMS = ("loss_class", "loss_presence", "loss_bbox", "loss_giou")
MASK_TERMS = ("loss_mask", "loss_dice")


def paired_generalized_box_iou(boxes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """GIoU of each box with the target in the same row, without a stabilising eps.

    As the reference's ``fast_diag_generalized_box_iou``: ``IoU - (C - U) / C`` with ``U`` the union
    and ``C`` the smallest enclosing box's area (torchvision's loss adds 1e-7 to both denominators).

    Args:
        boxes: Predicted boxes, shape ``(M, 4)`` xyxy.
        targets: Target boxes, shape ``(M, 4)`` xyxy.

    Returns:
        GIoU per row, shape ``(M,)``, in ``[-1, 1]``.
    """
    area_a = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_b = (targets[:, 2] - targets[:, 0]) * (targets[:, 3] - targets[:, 1])
    low = torch.max(boxes[:, :2], targets[:, :2])
    high = torch.min(boxes[:, 2:], targets[:, 2:])
    inter = (high - low).clamp(min=0).prod(dim=1)
    union = area_a + area_b - inter
    enclosing = (torch.max(boxes[:, 2:], targets[:, 2:]) - torch.min(boxes[:, :2], targets[:, :2])).prod(
        dim=1
    )
    return inter / union - (enclosing - union) / enclosing


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss per mask with +1 smoothing: ``1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1)``.

    Args:
        logits: Mask logits, shape ``(M, P)``.
        targets: Binary targets as floats, shape ``(M, P)``.

    Returns:
        Loss per mask, shape ``(M,)``.
    """
    prob = logits.sigmoid()
    numerator = 2 * (prob * targets).sum(-1)
    denominator = prob.sum(-1) + targets.sum(-1)
    return 1 - (numerator + 1) / (denominator + 1)


class ConceptObjective(nn.Module):
    """Loss of SAM 3's concept (phrase -> all instances) task over every decoder layer.

    For each decoder layer (the last only when ``aux_loss`` is off) slots are matched one-to-one
    to the ground truth, then:

    * ``loss_class``, IA-BCE: a matched slot gets BCE against the detached soft target
      ``clamp(p^ia_alpha * IoU^(1-ia_alpha), min=ia_clamp)`` times ``pos_weight``; an unmatched one
      BCE against 0 times ``p^ia_gamma``. Zeroed on queries without ground truth, then divided by
      ``Q * max(N, pad_slots)`` (negative queries included in the count): the reference pads a
      model with fewer than 200 slots to 200 so that the term keeps its scale. A query that is not exhaustive
      (``"exhaustive"`` False: some instances are unlabelled) is trained on its positives only: its
      unmatched slots get no class loss and leave the count (:func:`kept_class_slots`), as the
      reference's ``IABCEMdetr`` does with ``weak_loss``.
    * ``loss_presence``: sigmoid focal loss with ``presence_alpha``/``presence_gamma`` (0.5 and 0,
      that is ``0.5 * BCE``) of the presence logit against "the query has an instance", mean over queries.
    * ``loss_bbox`` (L1 on normalised cxcywh) and ``loss_giou`` (``1 - GIoU``) summed over matched
      pairs and divided by ``num_boxes``.

    On the last layer only, for matched instances whose ``has_mask`` is True: ``loss_mask``, sigmoid
    focal loss averaged over pixels, and ``loss_dice``, each summed over instances and divided by
    ``num_boxes``; predicted masks are bilinearly upsampled to the target's size.

    ``num_boxes`` counts every ground-truth box (box-only instances too), averaged over processes.
    The total is ``sum(weight * term)``, times ``sqrt(Q)`` when ``scale_by_sqrt_queries`` is on.

    Under data parallelism ``Q`` and the means over queries and slots refer to the global batch (every
    process divides by the count averaged over processes, see :func:`batch_counts`), so a run gives
    the same gradients however its batch is split across processes. The reference instead scales by
    the square root of each GPU's own query count, which makes its loss depend on the split.

    Args:
        weight_class: Weight of ``loss_class``.
        pos_weight: Factor on the matched slots' IA-BCE (10 for RF100-VL, 5 for ODinW).
        weight_presence: Weight of ``loss_presence``.
        weight_bbox: Weight of ``loss_bbox``.
        weight_giou: Weight of ``loss_giou``.
        weight_mask: Weight of ``loss_mask``.
        weight_dice: Weight of ``loss_dice``.
        ia_alpha: IA-BCE soft target exponent on the probability; the IoU gets ``1 - ia_alpha``.
        ia_gamma: Exponent of ``p`` weighting the unmatched slots' BCE.
        ia_clamp: Lower bound of the IA-BCE soft target.
        presence_alpha: Focal balance of the presence loss (0.5 weights both classes by one half).
        presence_gamma: Focal exponent of the presence loss (0 leaves plain BCE).
        mask_focal_alpha: Focal balance of the mask loss.
        mask_focal_gamma: Focal exponent of the mask loss.
        mask_loss: Whether mask terms are computed at all (off for detection-only data).
        aux_loss: Whether class, presence and box terms cover every decoder layer or the last only.
        pad_slots: Slots per exhaustive query the class term divides by at least (the reference's
            ``pad_n_queries``, 200; ``None`` divides by the model's own slot count).
        scale_by_sqrt_queries: Multiply the total by the square root of the number of queries in
            the batch, as the reference configs do (``scale_by_find_batch_size``).
        matcher: The slot-to-instance matcher; a default ``HungarianMatcher`` when None.
    """

    def __init__(
        self,
        *,
        weight_class: float = 20.0,
        pos_weight: float = 10.0,
        weight_presence: float = 20.0,
        weight_bbox: float = 5.0,
        weight_giou: float = 2.0,
        weight_mask: float = 200.0,
        weight_dice: float = 10.0,
        ia_alpha: float = 0.25,
        ia_gamma: float = 2.0,
        ia_clamp: float = 0.01,
        presence_alpha: float = 0.5,
        presence_gamma: float = 0.0,
        mask_focal_alpha: float = 0.25,
        mask_focal_gamma: float = 2.0,
        mask_loss: bool = True,
        aux_loss: bool = True,
        pad_slots: int | None = REFERENCE_PAD_SLOTS,
        scale_by_sqrt_queries: bool = True,
        matcher: HungarianMatcher | None = None,
    ) -> None:
        super().__init__()
        self.weights = {
            "loss_class": weight_class,
            "loss_presence": weight_presence,
            "loss_bbox": weight_bbox,
            "loss_giou": weight_giou,
            "loss_mask": weight_mask,
            "loss_dice": weight_dice,
        }
        self.pos_weight = pos_weight
        self.ia_alpha = ia_alpha
        self.ia_gamma = ia_gamma
        self.ia_clamp = ia_clamp
        self.presence_alpha = presence_alpha
        self.presence_gamma = presence_gamma
        self.mask_focal_alpha = mask_focal_alpha
        self.mask_focal_gamma = mask_focal_gamma
        self.mask_loss = mask_loss
        self.aux_loss = aux_loss
        self.pad_slots = pad_slots
        self.scale_by_sqrt_queries = scale_by_sqrt_queries
        self.matcher = matcher if matcher is not None else HungarianMatcher()

    def mask_queries(self, targets: list[Target]) -> torch.Tensor:
        """Queries whose masks the loss needs (none when mask losses are off): the mask decoder's rows."""
        return queries_needing_masks(targets, self.mask_loss)

    def normalisers(self, targets: list[Target], num_slots: int, device: torch.device) -> LossNormalisers:
        """The counts of a batch that every term is divided by (collectives run under DDP).

        Args:
            targets: Every query's target of the batch (of this process).
            num_slots: Prediction slots per query of the model.
            device: Where the counts go.
        """
        num_boxes, num_queries, world_size = batch_counts(targets, device)
        class_slots = kept_class_slots(targets, num_slots, device, self.pad_slots)
        return LossNormalisers(num_boxes, num_queries, class_slots, world_size)

    def forward(
        self, outputs: ConceptOutputs, targets: list[Target], normalisers: LossNormalisers | None = None
    ) -> dict[str, torch.Tensor]:
        """Compute the weighted total and each term.

        Args:
            outputs: Every decoder layer's predictions for ``Q`` queries.
            targets: ``Q`` dicts with ``"boxes"`` ``(n, 4)`` normalised xyxy, ``"masks"`` ``(n, H, W)``
                bool and ``"has_mask"`` ``(n,)`` bool; ``n = 0`` for a negative query.
            normalisers: Counts to divide by when ``outputs`` are one chunk of a larger batch (from
                :meth:`normalisers` on the whole batch's targets); ``None`` takes them from ``targets``.

        Returns:
            ``"loss"``, the differentiable total, and detached ``loss_class``, ``loss_presence``,
            ``loss_bbox``, ``loss_giou`` (unweighted, summed over the layers used), ``loss_mask``,
            ``loss_dice`` (unweighted, last layer; 0 when mask losses are off) and ``num_boxes``.

        Raises:
            ValueError: If ``targets`` does not have one entry per query, or a query with ground-truth
                masks has no predicted masks while mask losses are on.
        """
        if len(targets) != outputs.num_queries:
            raise ValueError(
                f"ConceptObjective: got {len(targets)} targets for {outputs.num_queries} queries"
            )
        device = outputs.logits.device
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        mask_rows = self._mask_rows(outputs, targets)
        if normalisers is None:
            normalisers = self.normalisers(targets, outputs.logits.shape[-1], device)
        num_boxes, num_queries = normalisers.num_boxes, normalisers.num_queries
        class_slots, world_size = normalisers.class_slots, normalisers.world_size
        layers = range(outputs.num_layers) if self.aux_loss else [outputs.num_layers - 1]

        # Losses in float32 whatever the autocast context of the forward pass.
        with torch.autocast(device_type=device.type, enabled=False):
            terms = {key: torch.zeros((), device=device) for key in LAYER_TERMS + MASK_TERMS}
            last_matches: list[Match] = []
            for layer in layers:
                logits = outputs.logits[layer].float()
                boxes = outputs.boxes[layer].float()
                matches = self.matcher(logits, boxes, targets)
                layer_terms = self._layer_terms(
                    logits,
                    boxes,
                    outputs.presence_logits[layer].float(),
                    targets,
                    matches,
                    num_boxes,
                    num_queries,
                    class_slots,
                )
                for key, value in layer_terms.items():
                    terms[key] = terms[key] + value
                last_matches = matches
            if self.mask_loss and mask_rows:
                terms.update(self._mask_terms(outputs.masks, mask_rows, targets, last_matches, num_boxes))
            total = sum(self.weights[key] * value for key, value in terms.items())
            if self.scale_by_sqrt_queries:
                total = total * torch.sqrt(num_queries * world_size)

        result = {key: value.detach() for key, value in terms.items()}
        result["num_boxes"] = num_boxes.detach()
        result["loss"] = total
        return result

    def _mask_rows(self, outputs: ConceptOutputs, targets: list[Target]) -> dict[int, int]:
        """Map each query that needs a mask loss to its row in ``outputs.masks``."""
        needed = queries_needing_masks(targets, self.mask_loss).tolist()
        if not needed:
            return {}
        rows = (
            {}
            if outputs.masks is None
            else {q: row for row, q in enumerate(outputs.mask_query_index.tolist())}
        )
        missing = [q for q in needed if q not in rows]
        if missing:
            raise ValueError(
                f"ConceptObjective: queries {missing} have ground-truth masks but no predicted masks "
                "(not in outputs.mask_query_index); run the mask decoder for queries_needing_masks(targets) "
                "or set mask_loss=False"
            )
        return {q: rows[q] for q in needed}

    def _layer_terms(
        self,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        presence_logits: torch.Tensor,
        targets: list[Target],
        matches: list[Match],
        num_boxes: torch.Tensor,
        num_queries: torch.Tensor,
        class_slots: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Class, presence and box terms of one layer; ``logits`` ``(Q, N)``, ``boxes`` ``(Q, N, 4)``.

        Means over queries divide by ``num_queries`` and the class term by ``class_slots`` (the
        per-process averages of the global batch), which are ``Q`` and ``Q * N`` in a single process
        when every query is exhaustive.
        """
        query_idx = torch.cat([torch.full_like(pred, q) for q, (pred, _) in enumerate(matches)])
        slot_idx = torch.cat([pred for pred, _ in matches])
        tgt_boxes = torch.cat([t["boxes"][tgt].float() for t, (_, tgt) in zip(targets, matches, strict=True)])
        pred_boxes = boxes[query_idx, slot_idx]

        prob = logits.sigmoid()
        with torch.no_grad():
            matched = torch.zeros_like(logits)
            matched[query_idx, slot_idx] = 1.0
            iou = box_iou(pred_boxes, tgt_boxes).diagonal()
            soft = (prob[query_idx, slot_idx] ** self.ia_alpha * iou ** (1 - self.ia_alpha)).clamp(
                min=self.ia_clamp
            )
            soft_targets = torch.zeros_like(logits)
            soft_targets[query_idx, slot_idx] = soft
            present = torch.tensor([float(t["boxes"].shape[0] > 0) for t in targets], device=logits.device)
            exhaustive = torch.tensor([float(is_exhaustive(t)) for t in targets], device=logits.device)

        positive = F.binary_cross_entropy_with_logits(logits, soft_targets, reduction="none") * matched
        negative = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
        # Unmatched slots of a query that is not exhaustive may sit on unlabelled instances: no loss.
        negative = negative * (1 - matched) * prob**self.ia_gamma * exhaustive[:, None]
        weighted = (self.pos_weight * positive + negative) * present[:, None]
        loss_class = weighted.sum() / class_slots

        loss_presence = (
            sigmoid_focal_loss(
                presence_logits,
                present,
                alpha=self.presence_alpha,
                gamma=self.presence_gamma,
                reduction="sum",
            )
            / num_queries
        )
        l1 = F.l1_loss(
            box_convert(pred_boxes, "xyxy", "cxcywh"),
            box_convert(tgt_boxes, "xyxy", "cxcywh"),
            reduction="sum",
        )
        giou = (1 - paired_generalized_box_iou(pred_boxes, tgt_boxes)).sum()
        return {
            "loss_class": loss_class,
            "loss_presence": loss_presence,
            "loss_bbox": l1 / num_boxes,
            "loss_giou": giou / num_boxes,
        }

    def _mask_terms(
        self,
        masks: torch.Tensor,
        mask_rows: dict[int, int],
        targets: list[Target],
        matches: list[Match],
        num_boxes: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Focal and dice mask terms of the last layer for matched instances that have a mask."""
        loss_mask = torch.zeros((), device=masks.device)
        loss_dice = torch.zeros((), device=masks.device)
        for q, row in mask_rows.items():
            pred, tgt = matches[q]
            keep = targets[q]["has_mask"][tgt]
            if not bool(keep.any()):
                continue
            gt = targets[q]["masks"][tgt[keep]].float()
            logits = F.interpolate(
                masks[row, pred[keep]].float()[:, None],
                size=gt.shape[-2:],
                mode="bilinear",
                align_corners=False,
            )
            logits, gt = logits.flatten(1), gt.flatten(1)
            focal = sigmoid_focal_loss(
                logits, gt, alpha=self.mask_focal_alpha, gamma=self.mask_focal_gamma, reduction="none"
            )
            loss_mask = loss_mask + focal.mean(1).sum()
            loss_dice = loss_dice + dice_loss(logits, gt).sum()
        return {"loss_mask": loss_mask / num_boxes, "loss_dice": loss_dice / num_boxes}
