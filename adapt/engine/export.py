"""Export verified labels: the journal and the proposals become one SA-Co-style COCO file.

The file has one ``images`` record per image-phrase pair (``text_input``, ``is_instance_exhaustive``),
so it carries what plain COCO cannot: confirmed negatives (a pair without annotations), exhaustivity
per pair, and provenance per annotation (``human``, ``auto-verified``, ``pseudo``) and per pair. The
kit reads it back as any training set (`sam3_adapt.data_mix.readers.sources.read_source`); a pair
that is not exhaustive trains on its positives only.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pycocotools import mask as mask_utils

from sam3_adapt.data_mix.readers.sources import read_source
from sam3_adapt.engine.annotator import Truth
from sam3_adapt.engine.journal import Decision
from sam3_adapt.engine.signals import encode_rle

#: Which proposals make it into the file: ``raw`` every proposal above the threshold, every pair taken
#: as exhaustive; ``auto`` the pairs the verifiers auto-accepted; ``verified`` those plus the pairs a
#: person reviewed.
Mode = Literal["raw", "auto", "verified"]

Provenance = Literal["human", "auto-verified", "pseudo"]


@dataclass
class LabelledPair:
    """One image-phrase pair of the export.

    Attributes:
        file_name: Image path relative to the export's image root.
        phrase: The phrase.
        width: Image width.
        height: Image height.
        instances: ``(box xyxy, RLE, provenance)`` per instance.
        exhaustive: Whether every instance is there.
        provenance: Who vouches for the pair.
        presence: The proposer's presence score of the phrase in the image (``None``: not proposed).
    """

    file_name: str
    phrase: str
    width: int
    height: int
    instances: list[tuple[list[float], dict[str, Any], Provenance]] = field(default_factory=list)
    exhaustive: bool = True
    provenance: Provenance = "human"
    presence: float | None = None


def _rle(rle: dict[str, Any]) -> dict[str, Any]:
    """An RLE with ``str`` counts (JSON-ready)."""
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(rle, *rle["size"])
        counts = rle["counts"]
    return {
        "size": [int(v) for v in rle["size"]],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def engine_pairs(
    records: dict[str, dict[str, Any]],
    decisions: list[Decision],
    mode: Mode,
    prefix: str = "",
    unreviewed: Literal["drop", "positives"] = "drop",
) -> list[LabelledPair]:
    """The pairs of a proposals run that ``mode`` keeps, with the latest decision on each item winning.

    Args:
        records: Image records of the proposals run.
        decisions: The journal's decisions, in the order written.
        mode: See `Mode`.
        prefix: Folder of the pool's images relative to the export's image root.
        unreviewed: What becomes of a queued pair nobody reviewed (``auto`` and ``verified`` modes):
            ``drop`` it, or keep the instances MV accepted as a pair that is not exhaustive
            (``pseudo``): it trains on those positives only.

    Returns:
        The kept pairs.
    """
    triage: dict[tuple[str, str], str] = {}
    machine: dict[tuple[str, str, int], str] = {}
    person: dict[tuple[str, str, int], Decision] = {}
    added: dict[tuple[str, str], list[Decision]] = defaultdict(list)
    closed: dict[tuple[str, str], str] = {}
    for d in decisions:
        key = (d.file_name, d.phrase)
        if d.kind in ("auto_accept", "auto_reject", "queue"):
            triage[key] = d.kind
        elif d.actor_kind == "verifier" and d.instance is not None:
            machine[(*key, d.instance)] = d.kind
        elif d.kind == "add":
            added[key].append(d)
        elif d.instance is not None:
            person[(*key, d.instance)] = d
        elif d.kind in ("absent", "exhaustive", "not_exhaustive"):
            closed[key] = d.kind
    pairs = []
    for file_name, record in records.items():
        for pair in record["pairs"]:
            key = (file_name, pair["phrase"])
            out = LabelledPair(
                os.path.join(prefix, file_name),
                pair["phrase"],
                record["width"],
                record["height"],
                presence=pair.get("presence"),
            )
            proposed = [(inst["box"], inst["segmentation"]) for inst in pair["instances"]]
            proposed_ids = range(len(proposed))
            if mode == "raw":
                out.instances = [(box, rle, "pseudo") for box, rle in proposed]
                out.provenance = "pseudo"
            elif mode == "verified" and closed.get(key) == "absent":
                pass  # a confirmed negative: whatever was proposed or accepted before, nothing is there
            elif mode == "verified" and key in closed:
                for k, (box, rle) in enumerate(proposed):
                    d = person.get((*key, k))
                    if d is not None and d.kind == "accept":
                        out.instances.append((box, rle, "human"))
                    elif d is not None and d.kind == "fix" and not d.value.get("discarded"):
                        out.instances.append((d.value["box"], d.value["segmentation"], "human"))
                    elif d is None and machine.get((*key, k)) == "accept":
                        out.instances.append((box, rle, "auto-verified"))
                out.instances += [
                    (d.value["box"], d.value["segmentation"], "human")
                    for d in added[key]
                    if not d.value.get("discarded")  # a mask the person did not accept: box drawn, no label
                ]
                out.exhaustive = closed[key] != "not_exhaustive"
                if not out.instances and not out.exhaustive:
                    continue  # nothing to train on: no positive, and "absent" would be wrong
            elif triage.get(key) == "auto_accept":
                kept = _distinct([k for k in proposed_ids if machine.get((*key, k)) == "accept"], proposed)
                out.instances = [(*proposed[k], "auto-verified") for k in kept]
                out.provenance = "auto-verified"
            elif mode != "raw" and unreviewed == "positives" and triage.get(key) == "queue":
                kept = _distinct([k for k in proposed_ids if machine.get((*key, k)) == "accept"], proposed)
                if not kept:
                    continue
                out.instances = [(*proposed[k], "pseudo") for k in kept]
                out.exhaustive, out.provenance = False, "pseudo"
            else:
                continue
            pairs.append(out)
    return pairs


def negative_ratio(pairs: list[LabelledPair]) -> float:
    """Negative pairs per positive pair of a labelled set (the prior that `balance_negatives` keeps).

    Raises:
        ValueError: The set has no positive pair, so no ratio can be read from it.
    """
    positives = sum(bool(p.instances) for p in pairs)
    if not positives:
        raise ValueError(
            "the labelled set has no positive pair, so the share of negatives to keep cannot be read "
            "from it; give the ratio instead"
        )
    return sum(not p.instances for p in pairs) / positives


def balance_negatives(pairs: list[LabelledPair], per_positive: float) -> list[LabelledPair]:
    """Keep at most ``per_positive`` machine-confirmed negative pairs per positive pair, per phrase.

    A verifier confirms a negative from the presence score alone, so its errors (the phrase is there)
    sit among the negatives with the highest presence, and a pool where few positives were found
    yields far more negatives than positives: trained on that, the model learns "absent" for concepts
    that are there. Per phrase, negatives a person confirmed are all kept (they count towards the
    cap); machine-confirmed ones fill what is left of ``per_positive`` times the phrase's positive
    pairs, lowest presence first. Positive and not-exhaustive pairs are kept as they are.

    Args:
        pairs: Exported pairs (`engine_pairs`); ``presence`` orders the machine-confirmed negatives.
        per_positive: Most negative pairs per positive pair (`negative_ratio` of the labelled images
            is the prior of the domain).

    Returns:
        The pairs kept, in their original order.
    """
    if per_positive < 0:
        raise ValueError(f"per_positive must be at least 0 negatives per positive pair, got {per_positive}")
    positives: dict[str, int] = defaultdict(int)
    for pair in pairs:
        positives[pair.phrase] += bool(pair.instances)
    negatives = [i for i, p in enumerate(pairs) if not p.instances and p.exhaustive]
    by_phrase: dict[str, list[int]] = defaultdict(list)
    for i in negatives:
        by_phrase[pairs[i].phrase].append(i)
    dropped: set[int] = set()
    for phrase, indices in by_phrase.items():
        cap = int(per_positive * positives[phrase])
        human = [i for i in indices if pairs[i].provenance == "human"]
        machine = sorted(
            (i for i in indices if pairs[i].provenance != "human"),
            key=lambda i: (pairs[i].presence if pairs[i].presence is not None else 1.0, i),
        )
        dropped.update(machine[max(0, cap - len(human)) :])
    return [p for i, p in enumerate(pairs) if i not in dropped]


#: Mask IoU from which two machine-accepted instances are taken for one object (the better one is kept).
DUPLICATE_MASK_IOU = 0.5


def _distinct(kept: list[int], proposed: list[tuple[list[float], dict[str, Any] | None]]) -> list[int]:
    """``kept`` without duplicates, the better of two instances kept (proposals come best first).

    An instance whose mask overlaps an earlier kept one at `DUPLICATE_MASK_IOU` or more is dropped. A
    person settles duplicates by rejecting them; machine-accepted labels need this, or a duplicate
    would train as a second object.
    """
    out: list[int] = []
    for k in kept:
        rle = proposed[k][1]
        if rle is not None and out:
            earlier = [_rle(proposed[j][1]) for j in out if proposed[j][1] is not None]
            if (
                earlier
                and max(mask_utils.iou([_rle(rle)], earlier, [0] * len(earlier))[0]) >= DUPLICATE_MASK_IOU
            ):
                continue
        out.append(k)
    return out


def labelled_pairs(data_json: str | Path, image_dir: str | Path, root: str | Path) -> list[LabelledPair]:
    """Every pair of a labelled set (positives and its negatives), as ``human`` pairs under ``root``."""
    pairs = []
    for sample in read_source(data_json, image_dir).samples:
        name = os.path.relpath(sample.image_path, root)
        for query in sample.queries:
            out = LabelledPair(name, query.phrase, sample.width, sample.height, exhaustive=query.exhaustive)
            for inst in query.instances:
                mask = inst.mask
                rle = encode_rle(mask) if isinstance(mask, np.ndarray) else _rle(mask) if mask else None
                out.instances.append((list(inst.box_xyxy), rle, "human"))
            pairs.append(out)
    return pairs


def truth_of(data_json: str | Path, image_dir: str | Path) -> dict[tuple[str, str], Truth]:
    """Ground truth by ``(file_name relative to image_dir, phrase)``: what the simulated annotator knows."""
    truth: dict[tuple[str, str], Truth] = {}
    for pair in labelled_pairs(data_json, image_dir, image_dir):
        if pair.instances:
            truth[(pair.file_name, pair.phrase)] = [(box, rle) for box, rle, _ in pair.instances]
    return truth


def coco_info(data_json: str | Path) -> dict[str, Any]:
    """The ``info`` record of a COCO file, for an export derived from it (empty when there is none).

    An export keeps the labelled set's ``info`` (its description, licence, contributor): a fit on the
    export knows its data as it knows the labelled set's (e.g. the kit's synthetic world).
    """
    try:
        info = json.loads(Path(data_json).read_text()).get("info")
    except (OSError, ValueError, AttributeError):
        return {}
    return dict(info) if isinstance(info, dict) else {}


def write_pairs(pairs: list[LabelledPair], out: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write pairs as an SA-Co-style COCO file (normalised boxes and areas); returns its path."""
    images, annotations = [], []
    for i, pair in enumerate(pairs, start=1):
        images.append(
            {
                "id": i,
                "file_name": pair.file_name,
                "text_input": pair.phrase,
                "width": pair.width,
                "height": pair.height,
                "is_instance_exhaustive": int(pair.exhaustive),
                "provenance": pair.provenance,
            }
        )
        for box, rle, provenance in pair.instances:
            x0, y0, x1, y1 = (float(v) for v in box)
            x0, y0 = max(0.0, x0), max(0.0, y0)
            x1, y1 = min(float(pair.width), x1), min(float(pair.height), y1)
            w, h = pair.width, pair.height
            if x1 <= x0 or y1 <= y0 or (rle is not None and not mask_utils.area(_rle(rle))):
                continue  # nothing left inside the image: no object to train on
            record = {
                "id": len(annotations) + 1,
                "image_id": i,
                "category_id": 1,
                "iscrowd": 0,
                "bbox": [x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h],
                "provenance": provenance,
            }
            if rle is not None:
                record["segmentation"] = _rle(rle)
                record["area"] = float(mask_utils.area(record["segmentation"])) / (w * h)
            else:
                record["area"] = (x1 - x0) * (y1 - y0) / (w * h)
            annotations.append(record)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "info": info or {},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "object"}],
    }
    partial = out.with_suffix(".tmp")
    partial.write_text(json.dumps(document))
    partial.replace(out)
    return out


def provenance_counts(pairs: list[LabelledPair]) -> dict[str, int]:
    """Annotations per provenance, pairs that are negatives, and pairs that are not exhaustive."""
    counts: dict[str, int] = defaultdict(int)
    for pair in pairs:
        for *_, provenance in pair.instances:
            counts[provenance] += 1
        counts["negative pairs"] += not pair.instances
        counts["non-exhaustive pairs"] += not pair.exhaustive
    return dict(counts)
