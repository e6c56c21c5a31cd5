"""The review budget is never overrun, and machine-confirmed negatives are kept in proportion."""

import pytest

from sam3_adapt.engine.annotator import SimulatedAnnotator
from sam3_adapt.engine.export import LabelledPair, balance_negatives, negative_ratio
from sam3_adapt.engine.journal import Journal
from sam3_adapt.engine.review import within_budget, work_queue
from sam3_adapt.engine.triage import ReviewRequest

from .conftest import SIZE, A, B, C

#: a.png holds three circles, none of them proposed; b.png holds nothing.
TRUTH = {("a.png", "circle"): [A, B, C]}


def request(file_name, phrase, proposed=()):
    instances = [
        {"index": k, "box": box, "score": 0.9, "segmentation": rle} for k, (box, rle) in enumerate(proposed)
    ]
    return ReviewRequest(file_name, phrase, SIZE, SIZE, 0.5, instances, "unsure", 1.0)


def test_an_answer_that_would_overrun_stops_adding_and_leaves_the_pair_open():
    answer = SimulatedAnnotator(TRUTH).answer(request("a.png", "circle", [A]))
    assert [d.kind for d in answer] == ["accept", "add", "add", "exhaustive"]  # 1 + 2 + 2 + 1 = 6
    assert within_budget(answer, 6) is answer
    cut = within_budget(answer, 5)  # accept 1, one add 2, not exhaustive 1 = 4 (a second add needs 6)
    assert [d.kind for d in cut] == ["accept", "add", "not_exhaustive"]
    assert [d.kind for d in within_budget(answer, 3)] == ["accept", "not_exhaustive"]
    assert within_budget(answer, 1) is None  # not even the proposed instance and the pair's close
    assert answer[-1].kind == "exhaustive"  # the original answer is untouched


def test_the_queue_never_spends_more_than_the_budget(tmp_path):
    queue = [
        request("a.png", "circle", [A]),  # least cost 2, answer costs 6
        request("a.png", "square", [B, C]),  # least cost 3: rejected twice, absent = 3
        request("b.png", "circle"),  # least cost 1: absent
    ]
    journal = Journal(tmp_path / "journal.sqlite", "run-x")
    spent = work_queue(queue, SimulatedAnnotator(TRUTH).answer, journal, budget=3)
    # The first answer is cut to accept + not exhaustive (2 actions; an add would make 4); the
    # second (least cost 3) does not fit the 1 left and is passed over; the third (1) fits: 3 in all.
    assert spent == 3
    kinds = [(d.file_name, d.phrase, d.kind) for d in journal.decisions()]
    assert kinds == [
        ("a.png", "circle", "accept"),
        ("a.png", "circle", "not_exhaustive"),
        ("b.png", "circle", "absent"),
    ]
    journal.close()
    for budget in range(0, 12):
        journal = Journal(tmp_path / f"journal-{budget}.sqlite", "run-x")
        assert work_queue(queue, SimulatedAnnotator(TRUTH).answer, journal, budget=budget) <= budget
        journal.close()


def pair(name, phrase, instances=0, presence=None, provenance="auto-verified", exhaustive=True):
    out = LabelledPair(name, phrase, SIZE, SIZE, exhaustive=exhaustive, provenance=provenance)
    out.instances = [(A[0], A[1], provenance)] * instances
    out.presence = presence
    return out


def test_negatives_are_kept_in_proportion_per_phrase_persons_first_then_lowest_presence():
    pairs = [
        pair("p1", "circle", instances=2),
        pair("p2", "circle", instances=1, provenance="pseudo", exhaustive=False),
        pair("n1", "circle", presence=0.15),
        pair("n2", "circle", presence=0.01),
        pair("n3", "circle", presence=0.12, provenance="human"),
        pair("n4", "circle", presence=0.05),
        pair("n5", "circle", presence=0.02),
        pair("m1", "square", presence=0.01),  # a phrase with no positive pair keeps no machine negative
        pair("m2", "square", presence=0.3, provenance="human"),  # ... but a person's negative stays
    ]
    kept = balance_negatives(pairs, per_positive=1.5)  # circle: int(1.5 x 2) = 3 negatives
    assert [p.file_name for p in kept] == ["p1", "p2", "n2", "n3", "n5", "m2"]
    assert [p.file_name for p in balance_negatives(pairs, 0.0)] == ["p1", "p2", "n3", "m2"]
    assert [p.file_name for p in balance_negatives(pairs, 10.0)] == [
        p.file_name for p in pairs if p.file_name != "m1"
    ]
    with pytest.raises(ValueError, match="at least 0"):
        balance_negatives(pairs, -1.0)


def test_the_negative_ratio_is_read_from_the_labelled_pairs():
    labelled = [pair("a", "circle", 2), pair("b", "circle"), pair("c", "square", 1), pair("d", "square")]
    labelled.append(pair("e", "square"))
    assert negative_ratio(labelled) == 3 / 2
    with pytest.raises(ValueError, match="no positive pair"):
        negative_ratio([pair("b", "circle")])
