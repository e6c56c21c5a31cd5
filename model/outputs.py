"""What the concept forward returns: every decoder layer's predictions for every query."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ConceptOutputs:
    """Per-layer predictions for a batch of queries (one query = one image and one phrase).

    ``L`` is the number of decoder layers, ``Q`` the number of queries in the batch and
    ``N`` the number of object slots (decoder queries) per query. The last layer,
    ``[-1]``, is what ``Sam3Model.forward`` returns; the earlier layers feed the
    auxiliary losses.

    Attributes:
        logits: Classification logits, shape ``(L, Q, N)``; presence not folded in.
        boxes: Boxes as normalised ``(x0, y0, x1, y1)`` in ``[0, 1]``, shape ``(L, Q, N, 4)``.
        presence_logits: Logit that the phrase is present in the image at all, shape ``(L, Q)``.
        masks: Mask logits of the last layer, shape ``(Qm, N, h, w)``, for the queries listed
            in ``mask_query_index`` only, or ``None`` when no query asked for masks.
        mask_query_index: Which queries (indices into ``Q``) ``masks`` belongs to, shape ``(Qm,)``.
    """

    logits: torch.Tensor
    boxes: torch.Tensor
    presence_logits: torch.Tensor
    masks: torch.Tensor | None
    mask_query_index: torch.Tensor

    @property
    def num_layers(self) -> int:
        """Number of decoder layers ``L``."""
        return self.logits.shape[0]

    @property
    def num_queries(self) -> int:
        """Number of queries ``Q`` in the batch."""
        return self.logits.shape[1]

    def scores(self) -> torch.Tensor:
        """Detection scores of the last layer as SAM 3 ranks them: ``sigmoid(logit) * sigmoid(presence)``.

        Returns:
            Tensor of shape ``(Q, N)``.
        """
        return self.logits[-1].sigmoid() * self.presence_logits[-1].sigmoid().unsqueeze(-1)


def concat_outputs(parts: list[ConceptOutputs]) -> ConceptOutputs:
    """Join the outputs of several forward passes into one batch, queries in the order given.

    Args:
        parts: Outputs of forward passes over consecutive query groups (same layers and slots).

    Returns:
        One :class:`ConceptOutputs`; ``mask_query_index`` is shifted to the joined query numbering.
    """
    offsets, start = [], 0
    for part in parts:
        offsets.append(start)
        start += part.num_queries
    with_masks = [(part, offset) for part, offset in zip(parts, offsets) if part.masks is not None]
    device = parts[0].logits.device
    return ConceptOutputs(
        logits=torch.cat([part.logits for part in parts], dim=1),
        boxes=torch.cat([part.boxes for part in parts], dim=1),
        presence_logits=torch.cat([part.presence_logits for part in parts], dim=1),
        masks=torch.cat([part.masks for part, _ in with_masks]) if with_masks else None,
        mask_query_index=torch.cat(
            [part.mask_query_index.to(device) + offset for part, offset in with_masks]
            or [torch.zeros(0, dtype=torch.long, device=device)]
        ),
    )
