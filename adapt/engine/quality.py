"""How good a set of engine labels is, against ground truth the loop never sees (for the study).

The study measures each row's pool labels against the pool's hidden truth, so that a row that trains
worse can be explained: wrong confirmed negatives (the phrase is there, the labels say absent) teach
the model to suppress a real concept; imprecise positives teach it wrong masks; exhaustive pairs that
miss instances teach it that a real object is background.
"""

from __future__ import annotations

import os
from typing import Any

from pycocotools import mask as mask_utils

from sam3_adapt.engine.annotator import Truth
from sam3_adapt.engine.export import LabelledPair, _rle

#: Mask IoU from which a label instance counts as a true instance found.
MATCH_IOU = 0.5


def _matched(labels: list[dict[str, Any]], truth: list[dict[str, Any]]) -> int:
    """How many label masks match a distinct true mask at `MATCH_IOU` (greedy, best IoU first)."""
    if not labels or not truth:
        return 0
    ious = mask_utils.iou(labels, truth, [0] * len(truth))
    used: set[int] = set()
    found = 0
    for i in range(len(labels)):
        order = sorted(range(len(truth)), key=lambda j: -ious[i][j])
        j = next((j for j in order if j not in used and ious[i][j] >= MATCH_IOU), None)
        if j is not None:
            used.add(j)
            found += 1
    return found


def label_quality(
    pairs: list[LabelledPair], truth: dict[tuple[str, str], Truth], prefix: str
) -> dict[str, Any]:
    """Errors of the pool labels ``pairs`` against ``truth``, by kind.

    Args:
        pairs: The labels (pool pairs only; ``file_name`` under ``prefix``).
        truth: Ground truth by ``(file_name relative to the pool, phrase)``.
        prefix: Folder of the pool's images relative to the labels' image root.

    Returns:
        ``negative_pairs`` and ``wrong_negatives`` (the phrase is present), ``instances`` and
        ``precise_instances`` (match a true instance at mask IoU 0.5), ``exhaustive_pairs``,
        ``missed_in_exhaustive`` (true instances no label matches in pairs called exhaustive), and
        ``non_exhaustive_pairs``.
    """
    out = dict.fromkeys(
        (
            "negative_pairs",
            "wrong_negatives",
            "instances",
            "precise_instances",
            "exhaustive_pairs",
            "missed_in_exhaustive",
            "non_exhaustive_pairs",
        ),
        0,
    )
    for pair in pairs:
        true = [_rle(rle) for _, rle in truth.get((os.path.relpath(pair.file_name, prefix), pair.phrase), [])]
        found = [_rle(rle) for _, rle, _ in pair.instances if rle is not None]
        matched = _matched(found, true)
        out["instances"] += len(pair.instances)
        out["precise_instances"] += matched
        if not pair.instances:
            out["negative_pairs"] += 1
            out["wrong_negatives"] += bool(true)
        if pair.exhaustive:
            out["exhaustive_pairs"] += 1
            out["missed_in_exhaustive"] += len(true) - matched
        else:
            out["non_exhaustive_pairs"] += 1
    return out
