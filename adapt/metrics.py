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

import contextlib
import copy
import io
import warnings
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy.optimize import linear_sum_assignment

from adapt.coco_results import ArrayLike, as_numpy, to_coco_results

IOU_TYPES = ("bbox", "segm")
# The IoU thresholds of COCOeval, built the same way so that 0.5 and 0.75 are hit exactly.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
_AT_50, _AT_75 = 0, 5


def load_coco(dataset: dict[str, Any]) -> COCO:
    """Index a COCO-format dataset dict with pycocotools without printing or touching the caller's dict.

    Args:
        dataset: Dict with ``images``, ``annotations`` and ``categories``.

    Returns:
        A ``COCO`` object over a deep copy of ``dataset``; absent ``iscrowd`` means not crowd.

    Raises:
        ValueError: If an annotation lacks ``bbox`` or ``area``, which COCOeval needs.
    """
    dataset = copy.deepcopy(dataset)
    for ann in dataset["annotations"]:
        for key in ("bbox", "area"):
            if key not in ann:
                raise ValueError(f"annotation {ann.get('id')} (image {ann.get('image_id')}) has no '{key}'")
        ann.setdefault("iscrowd", 0)
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def top_per_image(results: Iterable[dict[str, Any]], max_dets: int) -> list[dict[str, Any]]:
    """Keep the ``max_dets`` best-scoring records of each image, across all its categories."""
    by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for record in results:
        by_image[record["image_id"]].append(record)
    kept = []
    for records in by_image.values():
        kept.extend(sorted(records, key=lambda r: -r["score"])[:max_dets])
    return kept


def run_cocoeval(
    gt: dict[str, Any],
    results: list[dict[str, Any]],
    iou_type: str,
    img_ids: Iterable[int] | None = None,
    cat_ids: Iterable[int] | None = None,
    max_dets: int = 100,
) -> COCOeval:
    """Run pycocotools' COCOeval on result records (top ``max_dets`` detections per image), quietly.

    Args:
        gt: COCO-format ground truth dict (polygon, RLE or, for ``"bbox"``, no segmentation).
        results: Records as made by :func:`adapt.coco_results.to_coco_results`.
        iou_type: ``"bbox"`` or ``"segm"``.
        img_ids: Images to evaluate (COCOeval ``params.imgIds``); all images of ``gt`` if ``None``.
        cat_ids: Categories to evaluate (``params.catIds``); all categories of ``gt`` if ``None``.
        max_dets: Detections kept per image, best first, across categories, as the SAM 3 reference
            does before COCOeval; also COCOeval's largest ``maxDets``.

    Returns:
        The evaluated, accumulated and summarised ``COCOeval`` (``stats``, ``eval["precision"]``, ...).

    Raises:
        ValueError: For an unknown ``iou_type``, results on images that ``gt`` lacks, or ``"segm"``
            results without masks.
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    coco_gt = load_coco(gt)
    unknown = {r["image_id"] for r in results} - set(coco_gt.imgs)
    if unknown:
        raise ValueError(f"results for image ids {sorted(unknown)} that the ground truth does not contain")
    dets = copy.deepcopy(top_per_image(results, max_dets))
    if iou_type == "segm":
        for det in dets:
            if "segmentation" not in det:
                raise ValueError(f"segm AP needs masks; a result on image {det['image_id']} has none")
            # COCO splits objects by size using the result's area; loadRes takes the box area when a
            # bbox is present, so drop it to use the mask area (as detectron2 does).
            det.pop("bbox", None)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(dets) if dets else COCO()
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.params.imgIds = sorted(coco_gt.imgs) if img_ids is None else sorted(img_ids)
        evaluator.params.catIds = sorted(coco_gt.cats) if cat_ids is None else sorted(cat_ids)
        evaluator.params.maxDets = [1, 10, max_dets]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def coco_ap(
    gt: dict[str, Any],
    results: list[dict[str, Any]],
    iou_type: str,
    img_ids: Iterable[int] | None = None,
    cat_ids: Iterable[int] | None = None,
    max_dets: int = 100,
) -> dict[str, float]:
    """COCO AP of result records with pycocotools' COCOeval (top ``max_dets`` detections per image).

    Args:
        gt: COCO-format ground truth dict (polygon, RLE or, for ``"bbox"``, no segmentation).
        results: Records as made by :func:`adapt.coco_results.to_coco_results`.
        iou_type: ``"bbox"`` or ``"segm"``.
        img_ids: Images to evaluate (COCOeval ``params.imgIds``); all images of ``gt`` if ``None``.
        cat_ids: Categories to evaluate (``params.catIds``); all categories of ``gt`` if ``None``.
        max_dets: Detections kept per image, best first, across categories, as the SAM 3 reference
            does before COCOeval; also COCOeval's largest ``maxDets``.

    Returns:
        ``{"AP", "AP50", "AP75", "AR<max_dets>"}`` over all object sizes.

    Raises:
        ValueError: For an unknown ``iou_type``, results on images that ``gt`` lacks, ``"segm"`` results
            without masks, or no (non-crowd) ground truth among the evaluated images and categories.
    """
    evaluator = run_cocoeval(gt, results, iou_type, img_ids, cat_ids, max_dets)
    stats = [float(v) for v in evaluator.stats]
    if stats[0] == -1:
        raise ValueError(
            "AP is undefined: no non-crowd ground truth among the evaluated images and categories"
        )
    return {"AP": stats[0], "AP50": stats[1], "AP75": stats[2], f"AR{max_dets}": stats[8]}


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
            size = tuple(as_numpy(masks).shape[-2:])
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
                "cgF1@50": float(pm_f1[_AT_50] * il_mcc),
                "cgF1@75": float(pm_f1[_AT_75] * il_mcc),
                "pmF1": float(pm_f1.mean()),
                "pmF1@50": float(pm_f1[_AT_50]),
                "pmF1@75": float(pm_f1[_AT_75]),
                "IL_MCC": float(il_mcc),
                "count_MAE": float(np.mean([abs(int(c.fp[0]) - int(c.fn[0])) for c in pairs])),
            }
        )
        return metrics
