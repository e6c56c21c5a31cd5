"""Paper-style evaluation of concept prompts: COCO AP (pycocotools) and cgF1 = pmF1 x IL_MCC.

cgF1 follows the SAM 3 reference evaluator (``sam3/eval/cgf1_eval.py``): every evaluated
(image, phrase) pair keeps its predictions scoring ``>= score_threshold``; on pairs with both ground
truth and predictions these are matched one-to-one to the ground truth by Hungarian matching on IoU,
and a match is a true positive when its IoU reaches the threshold. pmF1 is the *micro* F1 over the
positive pairs (pairs with ground truth): TP, FP and FN are summed over them before taking F1, so false
positives on negative pairs never enter it. IL_MCC is the Matthews correlation of the image-level
decision (predicted present = any kept prediction, truly present = any ground truth); it does not
depend on the IoU threshold. pmF1, and therefore cgF1, is averaged over IoU 0.50:0.05:0.95 and also
reported at 0.50 and 0.75. Crowd annotations are left out of cgF1, as in the reference.

Counting, a main use of concept prompts, is measured by ``count_MAE``: the mean absolute difference
between kept predictions and (non-crowd) true instances over every evaluated pair.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
from pycocotools.cocoeval import COCOeval
from scipy.optimize import linear_sum_assignment

from sam3_adapt.training.coco_ap import (
    AT_50,
    AT_75,
    IOU_THRESHOLDS,
    IOU_TYPES,
    coco_ap,
    load_coco,
    run_cocoeval,
    top_per_image,
)
from sam3_adapt.training.coco_results import ArrayLike, as_numpy, to_coco_results


def matthews_corrcoef(tp: int, fp: int, fn: int, tn: int) -> float:
    """Matthews correlation coefficient; 0 when a row or column of the confusion matrix is empty."""
    denominator = float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denominator == 0 else (tp * tn - fp * fn) / denominator**0.5


@dataclass
class PairCounts:
    """Matching outcome of one (image, phrase) pair; ``tp``, ``fp``, ``fn`` are per IoU threshold."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    has_gt: bool
    has_pred: bool


def match_pair(ious: np.ndarray) -> np.ndarray:
    """True positives per IoU threshold after Hungarian matching of ``(num_pred, num_gt)`` IoUs."""
    rows, cols = linear_sum_assignment(ious, maximize=True)
    matched = ious[rows, cols]
    return (matched[None, :] >= IOU_THRESHOLDS[:, None]).sum(axis=1)


class ConceptEvaluator:
    """Collects detections per (image, phrase) pair and computes COCO AP and cgF1 as the SAM 3 paper does.

    A pair is one image queried with one category name. Every pair passed to :meth:`add` counts as
    evaluated, even with no predictions (a negative pair with none is a true negative). AP uses only
    the evaluated pairs: COCOeval is restricted to their images and categories, and ground truth of
    pairs never added is left out, so querying a subset of phrases does not count the others as misses.

    segm AP is skipped, its keys absent, when the ground truth has no masks (box-only data): the
    reason is in :attr:`skipped`. cgF1 uses mask IoU when segm is evaluated, box IoU otherwise; the
    choice is :attr:`cgf1_iou_type`.

    Args:
        gt: COCO-format ground truth dict with ``images``, ``annotations`` and ``categories``.
        iou_types: AP flavours to compute, from ``"bbox"`` and ``"segm"``.
        score_threshold: Predictions scoring at least this count for cgF1.
        max_dets: Detections per image that AP sees, best first.
    """

    def __init__(
        self,
        gt: dict[str, Any],
        iou_types: Iterable[str] = IOU_TYPES,
        score_threshold: float = 0.5,
        max_dets: int = 100,
    ) -> None:
        iou_types = tuple(iou_types)
        if not iou_types or set(iou_types) - set(IOU_TYPES):
            raise ValueError(f"iou_types must be a non-empty subset of {IOU_TYPES}, got {iou_types}")
        self._coco = load_coco(gt)
        self.score_threshold = score_threshold
        self.max_dets = max_dets
        self.skipped: dict[str, str] = {}
        if "segm" in iou_types and not self._gt_has_masks():
            self.skipped["segm"] = "the ground truth has no masks (box-only data), so mask AP is undefined"
        self.iou_types = tuple(t for t in iou_types if t not in self.skipped)
        self.cgf1_iou_type = "segm" if "segm" in self.iou_types else "bbox"
        self.reset()

    def _gt_has_masks(self) -> bool:
        anns = self._coco.dataset["annotations"]
        with_mask = [a for a in anns if a.get("segmentation")]
        without = [a for a in anns if not a.get("segmentation")]
        if with_mask and without:
            raise ValueError(
                f"annotation {without[0]['id']} (image {without[0]['image_id']}) has no segmentation while "
                f"{len(with_mask)} others have one; segm evaluation needs a mask on every annotation "
                "(pass iou_types=('bbox',) to evaluate boxes only)"
            )
        return bool(with_mask)

    def reset(self) -> None:
        """Forget every added pair."""
        self._results: list[dict[str, Any]] = []
        self._pairs: dict[tuple[int, int], PairCounts] = {}

    @property
    def results(self) -> list[dict[str, Any]]:
        """COCO result records that AP evaluates (top ``max_dets`` per image), ready for a results file."""
        return top_per_image(self._results, self.max_dets)

    def add(
        self,
        image_id: int,
        category_id: int,
        boxes_xyxy: ArrayLike,
        scores: ArrayLike,
        masks: ArrayLike | None = None,
    ) -> list[dict[str, Any]]:
        """Record the predictions of one (image, phrase) pair.

        Args:
            image_id: COCO image id in the ground truth.
            category_id: COCO category id of the phrase.
            boxes_xyxy: ``(N, 4)`` boxes in absolute pixels of the original image; ``N`` may be 0.
            scores: ``(N,)`` scores.
            masks: ``(N, H, W)`` boolean masks at the original image size; required when segm is evaluated.

        Returns:
            The pair's COCO result records that AP may see (its best ``max_dets``), best first.

        Raises:
            ValueError: For an image or category the ground truth lacks, a pair added twice, missing
                masks while segm is evaluated, or masks whose size is not the image's.
        """
        image_id, category_id = int(image_id), int(category_id)
        where = f"image {image_id}, category {category_id}"
        if image_id not in self._coco.imgs:
            raise ValueError(f"image id {image_id} is not in the ground truth images")
        if category_id not in self._coco.cats:
            raise ValueError(f"category id {category_id} is not in the ground truth categories")
        if (image_id, category_id) in self._pairs:
            raise ValueError(f"{where}: pair added twice since the last reset()")
        if masks is None and "segm" in self.iou_types:
            raise ValueError(f"{where}: segm is evaluated but no masks were given (use iou_types=('bbox',))")
        if masks is not None:
            image = self._coco.imgs[image_id]
            # The shape alone: `CroppedMasks` of a large image would take K full-size masks as an array.
            shape = masks.shape if hasattr(masks, "shape") else as_numpy(masks).shape
            size = tuple(int(n) for n in shape[-2:])
            if size != (image["height"], image["width"]):
                raise ValueError(f"{where}: masks are {size}, image is {(image['height'], image['width'])}")
        records = to_coco_results(image_id, category_id, boxes_xyxy, scores, masks)
        # Keeping each pair's best max_dets loses nothing: the best max_dets of an image are among them.
        best = sorted(records, key=lambda r: -r["score"])[: self.max_dets]
        self._results.extend(best)
        self._pairs[(image_id, category_id)] = self._count(image_id, category_id, records)
        return best

    def _count(self, image_id: int, category_id: int, records: list[dict[str, Any]]) -> PairCounts:
        gts = [
            a for a in self._coco.imgToAnns[image_id] if a["category_id"] == category_id and not a["iscrowd"]
        ]
        dts = [r for r in records if r["score"] >= self.score_threshold]
        tp = np.zeros(len(IOU_THRESHOLDS), dtype=np.int64)
        if gts and dts:
            if self.cgf1_iou_type == "segm":
                d, g = [r["segmentation"] for r in dts], [self._coco.annToRLE(a) for a in gts]
            else:
                d, g = [r["bbox"] for r in dts], [a["bbox"] for a in gts]
            ious = np.asarray(mask_utils.iou(d, g, [0] * len(g)), dtype=np.float64).reshape(len(d), len(g))
            tp = match_pair(ious)
        return PairCounts(tp=tp, fp=len(dts) - tp, fn=len(gts) - tp, has_gt=bool(gts), has_pred=bool(dts))

    def export(self) -> dict[str, Any]:
        """Everything added since the last :meth:`reset`, picklable, to gather across processes.

        Returns:
            ``{"results": records, "pairs": counts by (image_id, category_id)}``.
        """
        return {"results": list(self._results), "pairs": dict(self._pairs)}

    def merge(self, exported: dict[str, Any]) -> None:
        """Add the pairs another evaluator on the same ground truth collected (e.g. another DDP process).

        Pairs already here are skipped: a distributed sampler repeats a few images to give every
        process the same number, and each pair must count once.

        Args:
            exported: What :meth:`export` returned.
        """
        new = {key: counts for key, counts in exported["pairs"].items() if key not in self._pairs}
        self._pairs.update(new)
        self._results.extend(r for r in exported["results"] if (r["image_id"], r["category_id"]) in new)

    @property
    def pairs(self) -> dict[tuple[int, int], PairCounts]:
        """Matching outcome of every added pair, by ``(image_id, category_id)``."""
        return dict(self._pairs)

    def subset(
        self, pairs: Iterable[tuple[int, int]], iou_types: Iterable[str] | None = None
    ) -> ConceptEvaluator:
        """An evaluator holding only some of the added pairs, e.g. one phrase or one source (a slice).

        Args:
            pairs: ``(image_id, category_id)`` keys of added pairs.
            iou_types: AP flavours the slice computes, among those evaluated here; all of them if ``None``.

        Returns:
            A new evaluator sharing this one's ground truth; adding to it does not change this one.

        Raises:
            ValueError: If a key was never added, or an IoU type is not evaluated here.
        """
        keep = {(int(i), int(c)) for i, c in pairs}
        unknown = keep - self._pairs.keys()
        if unknown:
            raise ValueError(f"pairs {sorted(unknown)[:5]} were never added to this evaluator")
        iou_types = self.iou_types if iou_types is None else tuple(iou_types)
        if not iou_types or set(iou_types) - set(self.iou_types):
            raise ValueError(f"iou_types must be a non-empty subset of {self.iou_types}, got {iou_types}")
        sub = copy.copy(self)
        sub.iou_types = iou_types
        sub._pairs = {key: counts for key, counts in self._pairs.items() if key in keep}
        sub._results = [r for r in self._results if (r["image_id"], r["category_id"]) in keep]
        return sub

    def cocoeval(self, iou_type: str) -> COCOeval:
        """The COCOeval of pycocotools over the added pairs, as :meth:`compute` runs it for AP.

        Args:
            iou_type: One of :attr:`iou_types`.

        Returns:
            The evaluated ``COCOeval``: ``stats`` (AP by size too) and ``eval["precision"]`` (PR curves).

        Raises:
            ValueError: If ``iou_type`` is not evaluated or no pair was added.
        """
        if iou_type not in self.iou_types:
            raise ValueError(f"{iou_type!r} is not evaluated here (iou_types={self.iou_types})")
        if not self._pairs:
            raise ValueError("no (image, phrase) pair was added; nothing to evaluate")
        gt, img_ids, cat_ids = self._pairs_gt()
        return run_cocoeval(gt, self._results, iou_type, img_ids, cat_ids, self.max_dets)

    def _pairs_gt(self) -> tuple[dict[str, Any], set[int], set[int]]:
        """Ground truth of the added pairs only, with their image and category ids."""
        gt = dict(self._coco.dataset)
        gt["annotations"] = [a for a in gt["annotations"] if (a["image_id"], a["category_id"]) in self._pairs]
        return gt, {i for i, _ in self._pairs}, {c for _, c in self._pairs}

    def compute(self) -> dict[str, float]:
        """Metrics over every pair added since the last :meth:`reset`.

        Returns:
            ``<iou_type>/AP``, ``/AP50``, ``/AP75``, ``/AR<max_dets>`` for each evaluated IoU type, and
            ``cgF1``, ``cgF1@50``, ``cgF1@75``, ``pmF1``, ``pmF1@50``, ``pmF1@75``, ``IL_MCC``, and
            ``count_MAE`` (kept predictions vs true instances per pair).

        Raises:
            ValueError: If no pair was added, or none has ground truth (cgF1 and AP need positives).
        """
        if not self._pairs:
            raise ValueError("no (image, phrase) pair was added; nothing to evaluate")
        positives = [c for c in self._pairs.values() if c.has_gt]
        if not positives:
            raise ValueError(
                f"none of the {len(self._pairs)} evaluated pairs has ground truth; "
                "cgF1 and AP are undefined without positives"
            )
        if len(positives) == len(self._pairs):
            warnings.warn(
                "no negative pair was evaluated, so IL_MCC and cgF1 are 0 by definition", stacklevel=2
            )
        metrics: dict[str, float] = {}
        gt, img_ids, cat_ids = self._pairs_gt()
        for iou_type in self.iou_types:
            ap = coco_ap(gt, self._results, iou_type, img_ids, cat_ids, self.max_dets)
            metrics.update({f"{iou_type}/{k}": float(v) for k, v in ap.items()})

        tp, fp, fn = (sum(getattr(c, k) for c in positives) for k in ("tp", "fp", "fn"))
        pm_f1 = 2 * tp / (2 * tp + fp + fn)
        pairs = self._pairs.values()
        il_mcc = matthews_corrcoef(
            tp=sum(c.has_gt and c.has_pred for c in pairs),
            fp=sum(not c.has_gt and c.has_pred for c in pairs),
            fn=sum(c.has_gt and not c.has_pred for c in pairs),
            tn=sum(not c.has_gt and not c.has_pred for c in pairs),
        )
        metrics.update(
            {
                "cgF1": float(pm_f1.mean() * il_mcc),
                "cgF1@50": float(pm_f1[AT_50] * il_mcc),
                "cgF1@75": float(pm_f1[AT_75] * il_mcc),
                "pmF1": float(pm_f1.mean()),
                "pmF1@50": float(pm_f1[AT_50]),
                "pmF1@75": float(pm_f1[AT_75]),
                "IL_MCC": float(il_mcc),
                "count_MAE": float(np.mean([abs(int(c.fp[0]) - int(c.fn[0])) for c in pairs])),
            }
        )
        return metrics
