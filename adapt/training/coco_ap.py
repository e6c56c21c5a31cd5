"""COCO AP of concept predictions with pycocotools: the ground truth as a COCO object, and COCOeval runs."""

from __future__ import annotations

import contextlib
import copy
import io
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

IOU_TYPES = ("bbox", "segm")
# The IoU thresholds of COCOeval, built the same way so that 0.5 and 0.75 are hit exactly.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
#: Indices of IoU 0.50 and 0.75 in IOU_THRESHOLDS.
AT_50, AT_75 = 0, 5


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
        results: Records as made by :func:`sam3_adapt.training.coco_results.to_coco_results`.
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
        results: Records as made by :func:`sam3_adapt.training.coco_results.to_coco_results`.
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
