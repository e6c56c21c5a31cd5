"""Counting quality and metrics by slice: phrase, source, pair kind, instance size, crowdedness.

A slice is a set of evaluated (image, phrase) pairs. Its AP and cgF1 come from the evaluator restricted
to those pairs (:meth:`sam3_adapt.training.metrics.ConceptEvaluator.subset`); metrics that a slice cannot
define
are ``None``: AP and pmF1 without positive pairs, IL_MCC and cgF1 without both positives and negatives.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
from pycocotools.cocoeval import COCOeval

from sam3_adapt.evaluation.pairs import PairResult
from sam3_adapt.training.metrics import ConceptEvaluator

#: COCO object sizes by area in pixels of the original image (COCOeval's ``areaRng``): name, low, high.
SIZES = (("small", 0.0, 32.0**2), ("medium", 32.0**2, 96.0**2), ("large", 96.0**2, float("inf")))
#: Lower edges of the crowdedness bins (non-crowd instances in the image over all phrases).
CROWD_EDGES = (0, 1, 3, 6, 11, 21, 51)


def count_errors(pairs: Sequence[PairResult], threshold: float) -> dict[str, float | None]:
    """How well the number of predictions above ``threshold`` counts the true instances of each pair.

    Args:
        pairs: Evaluated pairs (at least one).
        threshold: Score a prediction needs to be counted.

    Returns:
        ``pairs``; ``MAE`` (mean absolute error of predicted vs true count per pair); ``MAE_positive`` and
        ``MAE_negative`` over positive and negative pairs (``None`` when there are none); ``bias`` (mean
        predicted minus true); ``exact`` (fraction of pairs counted exactly); ``mean_predicted`` and
        ``mean_true``.
    """
    predicted = np.array([p.kept(threshold) for p in pairs], dtype=np.float64)
    true = np.array([len(p.truth) for p in pairs], dtype=np.float64)
    positive = true > 0
    error = np.abs(predicted - true)
    return {
        "pairs": len(pairs),
        "MAE": float(error.mean()),
        "MAE_positive": float(error[positive].mean()) if positive.any() else None,
        "MAE_negative": float(error[~positive].mean()) if (~positive).any() else None,
        "bias": float((predicted - true).mean()),
        "exact": float((error == 0).mean()),
        "mean_predicted": float(predicted.mean()),
        "mean_true": float(true.mean()),
    }


def slice_metrics(
    evaluator: ConceptEvaluator, pairs: Sequence[PairResult], threshold: float
) -> dict[str, float | int | None]:
    """Metrics of one slice of pairs.

    Args:
        evaluator: The evaluator that every pair was added to.
        pairs: The slice.
        threshold: The evaluator's score threshold.

    Returns:
        ``pairs``, ``positives``, ``negatives``, ``instances``; ``AP`` and ``AP50`` (of the evaluator's
        ``cgf1_iou_type``), ``pmF1``, ``IL_MCC``, ``cgF1``; ``count_MAE``; ``negatives_with_FP`` (fraction
        of negative pairs with any prediction above the threshold).
    """
    positives = [p for p in pairs if p.is_positive]
    negatives = [p for p in pairs if not p.is_positive]
    row: dict[str, float | int | None] = {
        "pairs": len(pairs),
        "positives": len(positives),
        "negatives": len(negatives),
        "instances": sum(len(p.truth) for p in pairs),
        "AP": None,
        "AP50": None,
        "pmF1": None,
        "IL_MCC": None,
        "cgF1": None,
        "count_MAE": count_errors(pairs, threshold)["MAE"],
        "negatives_with_FP": (
            float(np.mean([p.kept(threshold) > 0 for p in negatives])) if negatives else None
        ),
    }
    if positives:
        iou_type = evaluator.cgf1_iou_type
        sub = evaluator.subset([(p.image_id, p.category_id) for p in pairs], iou_types=[iou_type])
        with warnings.catch_warnings():
            # A slice without negatives is expected here; its IL_MCC is reported as undefined below.
            warnings.simplefilter("ignore", UserWarning)
            metrics = sub.compute()
        row.update(AP=metrics[f"{iou_type}/AP"], AP50=metrics[f"{iou_type}/AP50"], pmF1=metrics["pmF1"])
        if negatives:
            row.update(IL_MCC=metrics["IL_MCC"], cgF1=metrics["cgF1"])
    return row


def crowd_bin(instances: int) -> str:
    """Label of the crowdedness bin of an image with ``instances`` instances, e.g. ``"3-5"``."""
    low = max(edge for edge in CROWD_EDGES if edge <= instances)
    index = CROWD_EDGES.index(low)
    if index == len(CROWD_EDGES) - 1:
        return f"{low}+"
    high = CROWD_EDGES[index + 1] - 1
    return str(low) if high == low else f"{low}-{high}"


def by_key(
    evaluator: ConceptEvaluator,
    pairs: Sequence[PairResult],
    threshold: float,
    key: Callable[[PairResult], str],
    order: Callable[[str], Any] = str,
) -> dict[str, dict[str, Any]]:
    """:func:`slice_metrics` of each group of pairs sharing ``key(pair)``, sorted by ``order(label)``."""
    groups: dict[str, list[PairResult]] = defaultdict(list)
    for pair in pairs:
        groups[key(pair)].append(pair)
    return {label: slice_metrics(evaluator, groups[label], threshold) for label in sorted(groups, key=order)}


def by_size(
    cocoeval: COCOeval, pairs: Sequence[PairResult], threshold: float
) -> dict[str, dict[str, float | int | None]]:
    """AP, AR and recall at the threshold for small, medium and large true instances.

    Args:
        cocoeval: The evaluator's COCOeval (``stats[3:6]`` are AP by size, ``stats[9:12]`` AR by size).
        pairs: Every evaluated pair.
        threshold: Score a prediction needs to count for the recall.

    Returns:
        Per size: ``instances``, ``AP``, ``AR`` (``None`` without instances of that size) and ``recall``
        (fraction of the instances matched at IoU 0.5 by a prediction above the threshold).
    """
    found: dict[str, list[bool]] = {name: [] for name, _, _ in SIZES}
    for pair in pairs:
        matched = set(pair.matches(threshold)[1].tolist())
        for index, ann in enumerate(pair.truth):
            name = next(n for n, low, high in SIZES if low <= ann["area"] < high)
            found[name].append(index in matched)
    result = {}
    for k, (name, _, _) in enumerate(SIZES):
        ap, ar = float(cocoeval.stats[3 + k]), float(cocoeval.stats[9 + k])
        result[name] = {
            "instances": len(found[name]),
            "AP": None if ap < 0 else ap,
            "AR": None if ar < 0 else ar,
            "recall": float(np.mean(found[name])) if found[name] else None,
        }
    return result


def pair_kind(pair: PairResult, hard_negatives: Collection[tuple[int, int]] = ()) -> str:
    """The pair's kind: ``"positive"``, ``"hard negative"`` or ``"negative"``.

    A negative pair is hard when its ``(image_id, category_id)`` is in ``hard_negatives``.
    """
    if pair.is_positive:
        return "positive"
    return "hard negative" if (pair.image_id, pair.category_id) in hard_negatives else "negative"


def breakdowns(
    evaluator: ConceptEvaluator,
    cocoeval: COCOeval,
    pairs: Sequence[PairResult],
    threshold: float,
    hard_negatives: Collection[tuple[int, int]] = (),
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every breakdown the report shows.

    Args:
        evaluator: The evaluator that every pair was added to.
        cocoeval: ``evaluator.cocoeval(evaluator.cgf1_iou_type)``, for AP by instance size.
        pairs: Every evaluated pair.
        threshold: The evaluator's score threshold.
        hard_negatives: ``(image_id, category_id)`` of the negative pairs that are hard negatives
            (explicit, generated or mined; see `sam3_adapt.data_mix.samples.Query.is_hard_negative`): the pair
            kind breakdown reports them apart, and their ``negatives_with_FP`` is the false-positive
            rate on hard negatives.

    Returns:
        ``{"phrase": ..., "source": ..., "pair kind": ..., "crowdedness": ..., "instance size": ...}``,
        each mapping a slice label to its metrics.
    """
    return {
        "phrase": by_key(evaluator, pairs, threshold, lambda p: p.phrase),
        "source": by_key(evaluator, pairs, threshold, lambda p: p.source),
        "pair kind": by_key(evaluator, pairs, threshold, lambda p: pair_kind(p, hard_negatives)),
        "crowdedness": by_key(
            evaluator,
            pairs,
            threshold,
            lambda p: crowd_bin(p.image_instances),
            order=lambda label: int(label.split("-")[0].rstrip("+")),
        ),
        "instance size": by_size(cocoeval, pairs, threshold),
    }
