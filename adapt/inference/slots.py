"""The object-slot ceiling: a SAM 3 detector finds at most one instance per slot for each phrase.

The tiny model has 20 slots, ``facebook/sam3`` 200. A crowded set (cells, cars in a car park) can
hold more instances of one phrase in one image; those pairs can never be fully found, whatever the
training, and recall is capped without any error. `check_slots` says so once per set.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sam3_adapt.data_mix.samples import ConceptSample


@dataclass(frozen=True)
class SlotCeiling:
    """Positive pairs with more ground-truth instances than the model has slots.

    Attributes:
        slots: The model's object slots.
        positive_pairs: Positive (image, phrase) pairs of the set.
        over: Of them, those with more instances than ``slots``.
        most: The most instances of one pair.
        best_recall: The highest recall any model with ``slots`` slots can reach on the set
            (every pair's instances, at most ``slots`` of them, over all instances).
        per_phrase: ``{phrase: (pairs over the ceiling, positive pairs, best recall)}`` for each
            phrase with a pair over it.
    """

    slots: int
    positive_pairs: int
    over: int
    most: int
    best_recall: float
    per_phrase: dict[str, tuple[int, int, float]]

    def message(self, name: str) -> str:
        """The warning text for the set called ``name``."""
        phrases = "; ".join(
            f"{phrase!r}: {over} of {pairs} pairs, best recall {recall:.2f}"
            for phrase, (over, pairs, recall) in sorted(self.per_phrase.items())
        )
        return (
            f"{name}: {self.over} of {self.positive_pairs} positive image-phrase pairs have more instances "
            f"(up to {self.most}) than the model's {self.slots} object slots, so at most {self.slots} of "
            f"them can be found per pair: the best possible recall is {self.best_recall:.2f} "
            f"({phrases}). A model with more slots (facebook/sam3 has 200) or tiles of the images lift it."
        )


def slot_ceiling(samples: Sequence[ConceptSample], slots: int) -> SlotCeiling | None:
    """The pairs of ``samples`` over ``slots`` instances, or ``None`` when every pair fits.

    Crowd annotations are not instances of a query (the readers keep them for COCO only).

    Returns:
        The :class:`SlotCeiling`, or ``None``.
    """
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # over, pairs, found, instances
    most = 0
    for sample in samples:
        for query in sample.queries:
            count = len(query.instances)
            if not count:
                continue
            row = totals[query.phrase]
            row[0] += count > slots
            row[1] += 1
            row[2] += min(count, slots)
            row[3] += count
            most = max(most, count)
    if most <= slots:
        return None
    over = sum(row[0] for row in totals.values())
    return SlotCeiling(
        slots=slots,
        positive_pairs=sum(row[1] for row in totals.values()),
        over=over,
        most=most,
        best_recall=sum(row[2] for row in totals.values()) / sum(row[3] for row in totals.values()),
        per_phrase={p: (r[0], r[1], r[2] / r[3]) for p, r in totals.items() if r[0]},
    )


#: Messages already given in this process: a set is named once, however many models run over it.
_WARNED: set[str] = set()


def check_slots(samples: Sequence[ConceptSample], slots: int, name: str) -> SlotCeiling | None:
    """Warn, once per set and slot count in a process, when pairs hold more instances than slots.

    Args:
        samples: The set's images and queries.
        slots: The model's object slots (`ConceptSegmenter.num_slots`).
        name: The set's name for the message (its file).

    Returns:
        The :class:`SlotCeiling`, or ``None`` when every pair fits.
    """
    ceiling = slot_ceiling(samples, slots)
    if ceiling is not None and ceiling.message(name) not in _WARNED:
        _WARNED.add(ceiling.message(name))
        warnings.warn(ceiling.message(name), UserWarning, stacklevel=2)
    return ceiling
