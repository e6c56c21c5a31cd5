"""One-to-one Hungarian matching of predicted object slots to ground-truth instances, per query."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_convert, generalized_box_iou

Match = tuple[torch.Tensor, torch.Tensor]


class DivergedError(FloatingPointError):
    """Training diverged: the network's predictions or the loss are NaN or infinite."""


#: What a user can do about a diverged run.
DIVERGED_HINT = (
    "lower the learning rates (--model.lr_detector, --model.lr_vision, --model.lr_text), clip gradients "
    "(--trainer.gradient_clip_val 0.1), or train in bf16-mixed or 32-true rather than 16-mixed; resume "
    "from the last checkpoint saved before it"
)


class HungarianMatcher:
    """Match each query's object slots to its ground-truth boxes at the lowest total cost.

    The cost of pairing slot ``i`` with instance ``j`` is, as in SAM 3's reference trainer,
    ``cost_bbox * L1(cxcywh_i, cxcywh_j) + cost_class * focal_i - cost_giou * GIoU(xyxy_i, xyxy_j)``
    where ``focal_i = -alpha (1-p)^gamma log p + (1-alpha) p^gamma log(1-p)`` and ``p = sigmoid(logit_i)``.
    The class cost depends only on the slot, since every instance of a query has the same class.

    Args:
        cost_class: Weight of the focal classification cost.
        cost_bbox: Weight of the L1 distance between normalised ``(cx, cy, w, h)`` boxes.
        cost_giou: Weight of the negative generalised IoU between ``(x0, y0, x1, y1)`` boxes.
        focal_alpha: Focal cost balance between the positive and the negative term.
        focal_gamma: Focal cost focusing exponent.
    """

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ) -> None:
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("HungarianMatcher: cost_class, cost_bbox and cost_giou cannot all be 0")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    @torch.no_grad()
    def __call__(
        self, logits: torch.Tensor, boxes: torch.Tensor, targets: list[dict[str, torch.Tensor]]
    ) -> list[Match]:
        """Match one decoder layer's predictions to the ground truth.

        Args:
            logits: Classification logits, shape ``(Q, N)``.
            boxes: Predicted boxes, normalised ``(x0, y0, x1, y1)``, shape ``(Q, N, 4)``.
            targets: One dict per query with ``"boxes"`` of shape ``(n, 4)``, normalised ``(x0, y0, x1, y1)``.

        Returns:
            Per query, ``(pred_idx, target_idx)``: two int64 tensors of length ``min(N, n)`` on the
            predictions' device, ``pred_idx`` ascending. Both are empty for a query with no ground truth.

        Raises:
            ValueError: If ``targets`` does not have one entry per query.
            DivergedError: If a matching cost is NaN or infinite (the predictions are).
        """
        num_queries = logits.shape[0]
        if len(targets) != num_queries:
            raise ValueError(f"HungarianMatcher: got {len(targets)} targets for {num_queries} queries")
        device = logits.device
        logits = logits.float()
        boxes = boxes.float()
        prob = logits.sigmoid()
        # logsigmoid keeps the focal cost finite for saturated logits.
        class_cost = -self.focal_alpha * (1 - prob) ** self.focal_gamma * F.logsigmoid(logits) + (
            1 - self.focal_alpha
        ) * prob**self.focal_gamma * F.logsigmoid(-logits)

        matches: list[Match] = []
        for q, target in enumerate(targets):
            tgt_boxes = target["boxes"].to(device=device, dtype=torch.float32)
            if tgt_boxes.shape[0] == 0:
                empty = torch.empty(0, dtype=torch.long, device=device)
                matches.append((empty, empty.clone()))
                continue
            l1 = torch.cdist(
                box_convert(boxes[q], "xyxy", "cxcywh"), box_convert(tgt_boxes, "xyxy", "cxcywh"), p=1
            )
            giou = generalized_box_iou(boxes[q], tgt_boxes)
            cost = self.cost_bbox * l1 + self.cost_class * class_cost[q, :, None] - self.cost_giou * giou
            cost = cost.cpu()
            if not torch.isfinite(cost).all():
                raise DivergedError(
                    "training diverged: the network's predicted boxes or scores are NaN or infinite, so "
                    f"they cannot be matched to the ground truth; {DIVERGED_HINT}"
                )
            pred_idx, tgt_idx = linear_sum_assignment(cost.numpy())
            matches.append(
                (
                    torch.as_tensor(pred_idx, dtype=torch.long, device=device),
                    torch.as_tensor(tgt_idx, dtype=torch.long, device=device),
                )
            )
        return matches
