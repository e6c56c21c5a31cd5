"""Triage: each image-phrase pair is auto-accepted, auto-rejected, or queued for a person.

A pair is auto-accepted when EV calls it complete (or absent) and MV is sure about every instance
(accepted ones are kept, rejected ones dropped); auto-rejected when EV calls it incomplete and MV
rejected every instance (nothing in it is worth a person's time this round); otherwise it goes to
the review queue. The queue is ordered by how much a decision is expected to help per action it
costs: the verifiers' probability that the pair is wrong as proposed (``1 - p``, ``p`` the EV
probability times the MV probability of each instance not rejected) divided by the actions a person
spends at least (one per proposed instance plus one for the pair), taken in turn from each phrase
so that no phrase starves. A pair likely to need a correction and cheap to settle comes first, e.g.
a pair where nothing was found but the presence score or a leftover detection says the phrase may
be there: reviewed, it becomes a missed positive or a confirmed hard negative for one action.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

from sam3_adapt.engine.journal import Decision
from sam3_adapt.engine.verifiers import Verifiers


@dataclass
class ReviewRequest:
    """What a person is asked about one image-phrase pair (the review page shows this and answers it).

    The answer is a list of `sam3_adapt.engine.journal.Decision`: per proposed instance ``accept``,
    ``reject`` or ``fix`` (with a box; the page asks the model for the mask), then ``add`` per missing
    instance (a box), and one EV decision: ``absent``, ``exhaustive`` or ``not_exhaustive``.

    Attributes:
        file_name: The image, relative to the pool folder.
        phrase: The phrase.
        width: Image width in pixels.
        height: Image height in pixels.
        presence: The model's presence score.
        instances: The proposed instances: ``index``, ``box`` (xyxy pixels), ``score``,
            ``segmentation`` (RLE), ``verdict`` (MV) and ``p``.
        ev_verdict: EV's verdict on the pair.
        priority: Expected use of a decision here (higher first).
    """

    file_name: str
    phrase: str
    width: int
    height: int
    presence: float
    instances: list[dict[str, Any]]
    ev_verdict: str
    priority: float


@dataclass
class Triage:
    """The outcome of triage over a proposals run.

    Attributes:
        decisions: The verifiers' decisions (per instance and per pair), for the journal.
        queue: Review requests, most useful first.
        counts: Pairs per outcome: ``auto_accept``, ``auto_reject``, ``queue``.
    """

    decisions: list[Decision]
    queue: list[ReviewRequest]
    counts: dict[str, int] = field(default_factory=dict)


def triage(records: dict[str, dict[str, Any]], verifiers: Verifiers, round_: int = 0) -> Triage:
    """Verify every proposal and sort its pair into auto-accept, auto-reject or the queue.

    Args:
        records: Image records of a proposals run (`sam3_adapt.engine.store.read_proposals`).
        verifiers: The MV and EV verifiers in use.
        round_: The engine round, written on the decisions.

    Returns:
        The decisions and the ordered queue.
    """
    decisions: list[Decision] = []
    queued: dict[str, list[ReviewRequest]] = defaultdict(list)
    counts = {"auto_accept": 0, "auto_reject": 0, "queue": 0}
    for file_name, record in records.items():
        for pair in record["pairs"]:
            phrase = pair["phrase"]
            common = {"file_name": file_name, "phrase": phrase, "actor_kind": "verifier", "round": round_}
            mv = [verifiers.mv(inst["signals"]) for inst in pair["instances"]]
            ev_verdict, ev_p = verifiers.ev(pair["signals"])
            for k, (verdict, p) in enumerate(mv):
                if verdict != "unsure":
                    decisions.append(
                        Decision(
                            kind=verdict, instance=k, actor=verifiers.names["mv"], value={"p": p}, **common
                        )
                    )
            sure = all(v != "unsure" for v, _ in mv)
            if ev_verdict == "complete" and sure:
                outcome = "auto_accept"
            elif ev_verdict == "incomplete" and all(v == "reject" for v, _ in mv):
                outcome = "auto_reject"
            else:
                outcome = "queue"
            p_right = ev_p
            for verdict, p in mv:
                p_right *= p if verdict != "reject" else 1.0
            priority = (1.0 - p_right) / (1 + len(mv))
            value = {"p": p_right, "ev": ev_verdict, "ev_p": ev_p, "priority": priority}
            decisions.append(Decision(kind=outcome, actor=verifiers.names["ev"], value=value, **common))
            counts[outcome] += 1
            if outcome == "queue":
                instances = [
                    {
                        **{k: inst.get(k) for k in ("box", "score", "segmentation")},
                        "index": k,
                        "verdict": v,
                        "p": p,
                    }
                    for k, (inst, (v, p)) in enumerate(zip(pair["instances"], mv, strict=True))
                ]
                queued[phrase].append(
                    ReviewRequest(
                        file_name,
                        phrase,
                        record["width"],
                        record["height"],
                        pair["presence"],
                        instances,
                        ev_verdict,
                        priority,
                    )
                )
    for requests in queued.values():
        requests.sort(key=lambda r: (-r.priority, r.file_name))
    queue = [r for turn in zip_longest(*queued.values()) for r in turn if r is not None]
    return Triage(decisions, queue, counts)
