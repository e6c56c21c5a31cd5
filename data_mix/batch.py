"""The batch contract between the data pipeline and the training core.

`ConceptCollator` makes :class:`ConceptBatch` dicts; the Lightning task reads them and nothing
else of ``data_mix``, apart from the :class:`EvaluationData` protocol a data module offers it.
This module imports nothing heavy, so the training core can depend on it alone.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

import torch


class QueryTarget(TypedDict):
    """The ground truth of one query, in the coordinates of the network input.

    Attributes:
        boxes: ``(n, 4)`` xyxy boxes normalised to ``[0, 1]``; ``n = 0`` for a negative query.
        masks: ``(n, S, S)`` boolean masks; all False for an object without a mask.
        has_mask: ``(n,)`` whether each object has a mask (box-only objects get no mask loss).
        exhaustive: ``()`` bool, whether every instance of the phrase is annotated. A query that is not
            exhaustive is trained on its positives only: its unmatched predictions get no negative
            class loss (the objective reads a target dict without this key as exhaustive).
    """

    boxes: torch.Tensor
    masks: torch.Tensor
    has_mask: torch.Tensor
    exhaustive: torch.Tensor


class ConceptBatch(TypedDict):
    """Images stacked once, their (image, phrase) queries flattened with the index of their image.

    ``B`` images and ``Q`` queries; every per-query list has length ``Q``.

    Attributes:
        pixel_values: ``(B, 3, S, S)`` float, normalised to ``[-1, 1]``.
        image_ids: ``(B,)`` ids of the images in their source.
        orig_sizes: ``(B, 2)`` original ``(height, width)``.
        sources: Source name of each image.
        phrases: The noun phrase of each query.
        query_image_index: ``(Q,)`` image of each query, values in ``[0, B)``.
        query_category_ids: ``(Q,)`` category id of each query in its source.
        exemplar_boxes: Per query, ``(k, 4)`` cxcywh normalised exemplar boxes (``k = 0`` without).
        exemplar_labels: Per query, ``(k,)`` 1 for a positive and 0 for a negative exemplar.
        targets: Per query, its :class:`QueryTarget`.
    """

    pixel_values: torch.Tensor
    image_ids: torch.Tensor
    orig_sizes: torch.Tensor
    sources: list[str]
    phrases: list[str]
    query_image_index: torch.Tensor
    query_category_ids: torch.Tensor
    exemplar_boxes: list[torch.Tensor]
    exemplar_labels: list[torch.Tensor]
    targets: list[QueryTarget]


Split = Literal["train", "val", "test", "predict"]


@runtime_checkable
class EvaluationData(Protocol):
    """What the training core asks of a data module beyond its loaders.

    `sam3_adapt.data_mix.datamodule.ConceptDataModule` implements it; a user's own data module
    implements it to get COCO AP and cgF1 during validation and phrase checks before training.
    """

    def gt_coco(self, split: Split) -> dict[str, Any] | None:
        """Ground truth of a split as a COCO dict in original image coordinates; ``None`` if unset."""
        ...

    def phrase_origins(self) -> list[tuple[str, str]]:
        """Every phrase the fit will query, each with where it comes from (file and record)."""
        ...
