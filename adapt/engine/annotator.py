"""The simulated annotator: answers review requests from ground truth that the loop never sees.

It stands in for a person so that the engine can be measured and tested, and counts the actions
a person would spend: accepting or rejecting a mask costs 1; marking a pair absent or confirming it
exhaustive costs 1; adding a missing instance or fixing a mask with a box costs 2. Labelling from
scratch is costed the same way (`from_scratch_actions`): per pair, 1 presence decision plus 2 per
instance.

A fixed or added instance is what a person's box gives: the simulated person draws the true
instance's box and the model, prompted with the phrase and that box
(`sam3_adapt.inference.box_prompt`), gives the mask (`model_masker`). Without a masker the true mask
is used instead, an upper bound on what a box prompt gives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from sam3_adapt.engine.journal import Decision
from sam3_adapt.engine.signals import encode_rle, mask_iou
from sam3_adapt.engine.triage import ReviewRequest

#: What each decision costs a person.
ACTION_COST = {
    "accept": 1,
    "reject": 1,
    "absent": 1,
    "exhaustive": 1,
    "not_exhaustive": 1,
    "add": 2,
    "fix": 2,
}

#: Ground truth of one pair: ``(box xyxy, RLE mask)`` per instance.
Truth = list[tuple[list[float], dict[str, Any]]]

#: What a drawn box gives: ``(file_name, phrase, box xyxy) -> (box xyxy, RLE mask)``.
BoxMasker = Callable[[str, str, list[float]], tuple[list[float], dict[str, Any]]]


def model_masker(model: str, adapter: str | Path | None, pool_dir: str | Path) -> BoxMasker:
    """The model's mask for a box drawn on a pool image (`sam3_adapt.inference.box_prompt`).

    Args:
        model: Base SAM 3.
        adapter: Its adapter (the model the person reviews with), or ``None``.
        pool_dir: The folder the requests' ``file_name`` values are relative to.

    Returns:
        A masker; it keeps the vision features of the last images it saw.
    """
    from sam3_adapt.inference.box_prompt import BoxPrompter
    from sam3_adapt.model.loading import load_segmenter

    prompter = BoxPrompter(load_segmenter(model, adapter))

    def masker(file_name: str, phrase: str, box: list[float]) -> tuple[list[float], dict[str, Any]]:
        found = prompter(Path(pool_dir) / file_name, phrase, box)
        return found.box, encode_rle(found.mask)

    return masker


def from_scratch_actions(truth: dict[tuple[str, str], Truth], num_pairs: int) -> int:
    """Actions to label ``num_pairs`` pairs from scratch: 1 presence decision each plus 2 per instance.

    Args:
        truth: Ground truth of the pairs that have instances.
        num_pairs: Every pair to label (images times phrases), those without instances included.
    """
    return num_pairs + 2 * sum(len(instances) for instances in truth.values())


@dataclass
class SimulatedAnnotator:
    """Answers review requests from the ground truth, counting actions.

    A proposed mask is accepted when its IoU with a not yet claimed true instance reaches ``accept_iou``,
    fixed (a box, 2 actions) when it reaches ``fix_iou`` only, and rejected otherwise; every true
    instance left unclaimed is added (2 actions); then the pair is confirmed exhaustive, or absent
    when it has no instance (1 action). With a ``masker`` a fix or an addition is the model's mask
    for the true instance's box; one the person does not accept is discarded, and the pair is then
    marked not exhaustive instead (1 action).

    Args:
        truth: Ground truth by ``(file_name, phrase)``; a pair not listed has no instance.
        masker: What the true instance's box gives for a fix or an addition (`model_masker`);
            ``None``: the true mask (an upper bound).
        accept_iou: Mask IoU from which a proposal is good enough to accept.
        fix_iou: Mask IoU from which a proposal is the right object with a poor mask (fixed with a box).
        name: The actor name written on its decisions.
    """

    truth: dict[tuple[str, str], Truth]
    masker: BoxMasker | None = None
    accept_iou: float = 0.7
    fix_iou: float = 0.3
    name: str = "simulated"
    actions: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def answer(self, request: ReviewRequest, round_: int = 0) -> list[Decision]:
        """The decisions a careful person would make on ``request``; adds their cost to ``actions``."""
        truth = self.truth.get((request.file_name, request.phrase), [])
        true_masks = [mask_utils.decode(rle).astype(bool) for _, rle in truth]
        claimed: set[int] = set()
        common = {
            "file_name": request.file_name,
            "phrase": request.phrase,
            "actor": self.name,
            "actor_kind": "simulated",
            "round": round_,
        }
        decisions = []
        for inst in request.instances:
            proposed = mask_utils.decode(inst["segmentation"]).astype(bool)
            ious = [-1.0 if j in claimed else mask_iou(proposed, m) for j, m in enumerate(true_masks)]
            best = int(np.argmax(ious)) if ious else -1
            iou = ious[best] if ious else 0.0
            if iou >= self.accept_iou:
                claimed.add(best)
                decisions.append(Decision(kind="accept", instance=inst["index"], **common))
            elif iou >= self.fix_iou:
                claimed.add(best)
                value = self._drawn(request, truth[best])
                decisions.append(Decision(kind="fix", instance=inst["index"], value=value, **common))
            else:
                decisions.append(Decision(kind="reject", instance=inst["index"], **common))
        for j, instance in enumerate(truth):
            if j not in claimed:
                decisions.append(Decision(kind="add", value=self._drawn(request, instance), **common))
        # A box whose mask the person discarded leaves its object unlabelled: the pair is not exhaustive.
        missing = any(d.value.get("discarded") for d in decisions)
        last = "not_exhaustive" if missing else "exhaustive" if truth else "absent"
        decisions.append(Decision(kind=last, **common))
        self.count(decisions)
        return decisions

    def _drawn(self, request: ReviewRequest, instance: tuple[list[float], dict[str, Any]]) -> dict[str, Any]:
        """What a box drawn around a true instance gives: ``box``, ``segmentation``, ``drawn_box``.

        The person looks at the model's mask and keeps it by the standard they accept proposals by
        (mask IoU with the object of at least ``accept_iou``); a worse one, often another object the
        box overlaps, is ``discarded`` (the actions are spent all the same).
        """
        box, rle = instance
        if self.masker is None:
            return {"box": box, "segmentation": rle}
        found_box, found_rle = self.masker(request.file_name, request.phrase, box)
        true_mask = mask_utils.decode(rle).astype(bool)
        if mask_iou(mask_utils.decode(found_rle).astype(bool), true_mask) < self.accept_iou:
            return {"drawn_box": box, "discarded": True}
        return {"box": found_box, "segmentation": found_rle, "drawn_box": box}

    def count(self, decisions: Iterable[Decision]) -> None:
        """Add the cost of ``decisions`` to the tally."""
        for d in decisions:
            self.actions += ACTION_COST[d.kind]
            self.by_kind[d.kind] = self.by_kind.get(d.kind, 0) + 1
