"""What the objective divides by: counts of the whole batch, the same for every chunk of it.

Under data parallelism each count is averaged over processes, so that every process's sums divided
by them give exactly the gradient of the loss on the global batch, however it is split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

Target = dict[str, torch.Tensor]


def queries_needing_masks(targets: list[Target], mask_loss: bool = True) -> torch.Tensor:
    """Queries that have at least one instance with a mask, for which the mask decoder must run.

    Args:
        targets: One dict per query with a ``"has_mask"`` bool tensor of shape ``(n,)``.
        mask_loss: Whether mask losses are on; when off no query needs masks.

    Returns:
        Ascending int64 indices into the queries (on the CPU), possibly empty.
    """
    if not mask_loss:
        return torch.empty(0, dtype=torch.long)
    return torch.tensor([q for q, t in enumerate(targets) if bool(t["has_mask"].any())], dtype=torch.long)


def batch_counts(targets: list[Target], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Ground-truth boxes and queries of the whole batch, averaged over processes: the loss normalisers.

    Under data parallelism every process sees part of the global batch and DDP averages the
    gradients; dividing each process's sums by these averages makes the result exactly the gradient of
    the loss on the global batch, however it is split.

    Args:
        targets: One dict per query with ``"boxes"`` of shape ``(n, 4)``.
        device: Where to put the counts (the collective runs there).

    Returns:
        ``(num_boxes, num_queries, world_size)``: float32 scalars (boxes clamped to at least 1) and
        the number of processes.
    """
    counts = torch.tensor(
        [float(sum(t["boxes"].shape[0] for t in targets)), float(len(targets))], device=device
    )
    world_size = 1
    if dist.is_available() and dist.is_initialized():
        world_size = dist.get_world_size()
        dist.all_reduce(counts)
        counts = counts / world_size
    return counts[0].clamp(min=1.0), counts[1], world_size


def kept_class_slots(
    targets: list[Target], num_slots: int, device: torch.device, pad_slots: int | None = None
) -> torch.Tensor:
    """Prediction slots the class loss divides by, averaged over processes: its normaliser.

    An exhaustive query counts ``max(pad_slots, num_slots)`` slots: the reference's ``IABCEMdetr``
    with ``pad_n_queries`` pads the predictions of a model with fewer slots with empty ones (loss 0),
    so that the term has the same scale whatever the model's slot count. A query that is not
    exhaustive (``"exhaustive"`` False) counts only its matched slots, ``min(n, num_slots)``: its
    unmatched slots get no class loss at all, as in ``IABCEMdetr`` with ``weak_loss`` on, and the
    padded ones are unmatched too.

    Args:
        targets: One dict per query with ``"boxes"`` and optionally ``"exhaustive"`` (default True).
        num_slots: Prediction slots per query.
        device: Where to put the count (the collective runs there).
        pad_slots: Slots an exhaustive query counts at least (200 in the reference); ``None``
            counts ``num_slots``.

    Returns:
        A float32 scalar, at least 1.
    """
    padded = max(num_slots, pad_slots or 0)
    count = sum(padded if is_exhaustive(t) else min(int(t["boxes"].shape[0]), num_slots) for t in targets)
    kept = torch.tensor(float(count), device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(kept)
        kept = kept / dist.get_world_size()
    return kept.clamp(min=1.0)


def is_exhaustive(target: Target) -> bool:
    """Whether a query's every instance is annotated (a target without the key is)."""
    flag = target.get("exhaustive")
    return True if flag is None else bool(flag)


@dataclass(frozen=True)
class LossNormalisers:
    """What the objective's sums are divided by: counts of the whole (global) batch.

    Computed once per batch, so that a batch cut into chunks of queries gives chunk losses that add up
    to the loss of the whole batch (see :mod:`sam3_adapt.training.chunked_step`).

    Attributes:
        num_boxes: Ground-truth boxes (at least 1), averaged over processes.
        num_queries: Queries, averaged over processes.
        class_slots: Slots of the class term (:func:`kept_class_slots`).
        world_size: Processes.
    """

    num_boxes: torch.Tensor
    num_queries: torch.Tensor
    class_slots: torch.Tensor
    world_size: int
