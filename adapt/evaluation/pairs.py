"""Per (image, phrase) pair predictions and truth, kept for the analyses behind the headline metrics.

The headline metrics come from :class:`sam3_adapt.training.metrics.ConceptEvaluator`. Counting,
the threshold sweep, the breakdowns by instance size and the pictures need more than its totals:
each pair's scores, its prediction-to-truth IoUs and which instances were matched. A
:class:`PairResult` keeps them and matches the way the evaluator does (Hungarian matching on IoU,
non-crowd truth only), so at the evaluator's score threshold it gives the evaluator's counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
from scipy.optimize import linear_sum_assignment

from sam3_adapt.training.coco_ap import IOU_THRESHOLDS, load_coco
from sam3_adapt.training.metrics import match_pair


@dataclass
class PairResult:
    """One evaluated (image, phrase) pair.

    Attributes:
        image_id: COCO image id.
        category_id: COCO category id of the phrase.
        phrase: The phrase the model was given.
        source: Data source of the image (its annotation file).
        records: COCO result records of the pair, best first.
        scores: Their scores, ``(len(records),)``.
        truth: The pair's non-crowd ground-truth annotations.
        ious: ``(len(records), len(truth))`` IoU of each prediction with each true instance (mask IoU
            when masks are evaluated, box IoU otherwise).
        image_instances: Non-crowd instances in the image over all phrases (its crowdedness).
    """

    image_id: int
    category_id: int
    phrase: str
    source: str
    records: list[dict[str, Any]]
    scores: np.ndarray
    truth: list[dict[str, Any]]
    ious: np.ndarray
    image_instances: int

    @property
    def is_positive(self) -> bool:
        """Whether the phrase has an instance in the image."""
        return bool(self.truth)

    def kept(self, threshold: float) -> int:
        """Number of predictions scoring at least ``threshold`` (they are the first ones)."""
        return int((self.scores >= threshold).sum())

    def true_positives(self, threshold: float) -> np.ndarray:
        """True positives per IoU threshold (0.50:0.05:0.95) among predictions scoring ``>= threshold``."""
        kept = self.kept(threshold)
        if not kept or not self.truth:
            return np.zeros(len(IOU_THRESHOLDS), dtype=np.int64)
        return match_pair(self.ious[:kept])

    def matches(self, threshold: float, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """Indices of matched predictions and of the true instances they match, at one IoU threshold.

        Args:
            threshold: Score a prediction needs to count.
            iou: IoU a matched pair needs to be a true positive.

        Returns:
            ``(prediction indices, truth indices)`` of equal length.
        """
        kept = self.kept(threshold)
        if not kept or not self.truth:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        rows, cols = linear_sum_assignment(self.ious[:kept], maximize=True)
        good = self.ious[rows, cols] >= iou
        return rows[good], cols[good]

    def outcome(self, threshold: float, iou: float = 0.5) -> tuple[int, int, int]:
        """``(TP, FP, FN)`` at a score threshold and an IoU threshold."""
        tp = len(self.matches(threshold, iou)[0])
        return tp, self.kept(threshold) - tp, len(self.truth) - tp

    def f1(self, threshold: float, iou: float = 0.5) -> float:
        """F1 of the pair; 1 for a negative pair with no prediction, 0 for one with any."""
        tp, fp, fn = self.outcome(threshold, iou)
        return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


class PairTable:
    """Builds :class:`PairResult` objects against one ground truth.

    Args:
        gt: COCO-format ground truth dict (the evaluated set's).
        iou_type: ``"segm"`` for mask IoU, ``"bbox"`` for box IoU; use the evaluator's ``cgf1_iou_type``.
    """

    def __init__(self, gt: dict[str, Any], iou_type: str) -> None:
        if iou_type not in ("bbox", "segm"):
            raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
        self.coco = load_coco(gt)
        self.iou_type = iou_type
        self.pairs: list[PairResult] = []

    def add(
        self, image_id: int, category_id: int, phrase: str, source: str, records: list[dict[str, Any]]
    ) -> PairResult:
        """Record one pair from its COCO result records (as :meth:`ConceptEvaluator.add` returns them).

        Returns:
            The new :class:`PairResult`.
        """
        anns = [a for a in self.coco.imgToAnns[image_id] if not a["iscrowd"]]
        truth = [a for a in anns if a["category_id"] == category_id]
        records = sorted(records, key=lambda r: -r["score"])
        ious = np.zeros((len(records), len(truth)))
        if records and truth:
            if self.iou_type == "segm":
                d, g = [r["segmentation"] for r in records], [self.coco.annToRLE(a) for a in truth]
            else:
                d, g = [r["bbox"] for r in records], [a["bbox"] for a in truth]
            ious = np.asarray(mask_utils.iou(d, g, [0] * len(g)), dtype=np.float64).reshape(ious.shape)
        scores = np.array([r["score"] for r in records], dtype=np.float64)
        pair = PairResult(image_id, category_id, phrase, source, records, scores, truth, ious, len(anns))
        self.pairs.append(pair)
        return pair

    def truth_mask(self, annotation: dict[str, Any]) -> np.ndarray | None:
        """The boolean mask of a ground-truth annotation, or ``None`` when it is box-only."""
        if not annotation.get("segmentation"):
            return None
        return self.coco.annToMask(annotation).astype(bool)
