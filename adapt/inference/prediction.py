"""What ``predict`` returns: the detections of some phrases on one image, and their conversions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam3_adapt.training.coco_results import to_coco_results


@dataclass
class Prediction:
    """Detections of one or more noun phrases on one image, in pixels of the original image.

    Detections of all phrases are stacked, phrase by phrase in the order asked and best first within
    a phrase; ``class_ids`` says which phrase each belongs to.

    Attributes:
        phrases: The phrases asked, in order; ``class_ids`` index this list.
        boxes: ``(N, 4)`` float32 boxes ``(x0, y0, x1, y1)`` in pixels.
        scores: ``(N,)`` float32 SAM 3 scores, ``sigmoid(logit) * sigmoid(presence)``.
        class_ids: ``(N,)`` int64 index of each detection's phrase in ``phrases``.
        masks: ``(N, H, W)`` boolean masks at the image's size, or ``None`` for a box-only model.
        presence: ``{phrase: probability}`` that each phrase is in the image at all.
        image_size: ``(height, width)`` of the image.
    """

    phrases: list[str]
    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    masks: np.ndarray | None
    presence: dict[str, float]
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def labels(self) -> list[str]:
        """The phrase of each detection."""
        return [self.phrases[i] for i in self.class_ids]

    def to_coco(
        self, image_id: int = 0, category_ids: Mapping[str, int] | None = None
    ) -> list[dict[str, Any]]:
        """The detections as COCO result records (what ``COCO.loadRes`` and ``evaluate`` read).

        Args:
            image_id: COCO id of the image.
            category_ids: COCO category id of each phrase; default: the phrase's position in ``phrases``
                plus 1.

        Returns:
            One record per detection: ``image_id``, ``category_id``, ``bbox`` (xywh), ``score`` and,
            with masks, ``segmentation`` (compressed RLE).

        Raises:
            KeyError: If ``category_ids`` lacks one of the phrases.
        """
        records = []
        for k, phrase in enumerate(self.phrases):
            rows = self.class_ids == k
            category = category_ids[phrase] if category_ids is not None else k + 1
            masks = None if self.masks is None else self.masks[rows]
            records += to_coco_results(image_id, category, self.boxes[rows], self.scores[rows], masks)
        return records

    def to_supervision(self) -> Any:
        """The detections as ``supervision.Detections`` (to draw, track or count with supervision).

        ``xyxy``, ``mask``, ``confidence`` and ``class_id`` carry the detections;
        ``data["class_name"]`` the phrase of each.

        Returns:
            A ``supervision.Detections``.

        Raises:
            ImportError: If the ``supervision`` package is not installed.
        """
        try:
            import supervision as sv
        except ImportError as error:
            raise ImportError(
                "Prediction.to_supervision needs the supervision package: pip install supervision"
            ) from error
        return sv.Detections(
            xyxy=self.boxes.astype(np.float32),
            mask=self.masks,
            confidence=self.scores.astype(np.float32),
            class_id=self.class_ids.astype(int),
            data={"class_name": np.array(self.labels, dtype=str)},
        )
