import math

import numpy as np
import pytest

from sam3_adapt.engine.journal import Decision
from sam3_adapt.engine.learning import decided_signals, learned_verifiers
from sam3_adapt.engine.triage import triage
from sam3_adapt.engine.verifiers import ev_rule, fit_learned, mv_rule

GOOD = {"score": 0.9, "stability": 0.9, "flip_iou": 0.8, "box_mask_iou": 0.9, "log_size_ratio": 0.1}


def test_mv_rule_accepts_rejects_and_is_unsure_by_its_documented_thresholds():
    assert mv_rule(GOOD)[0] == "accept"
    assert mv_rule(GOOD)[1] == pytest.approx(0.9 * 0.9 * 0.8 * 0.9)
    assert mv_rule({**GOOD, "flip_iou": 0.1})[0] == "reject"  # the mirrored pass does not find it
    assert mv_rule({**GOOD, "score": 0.55})[0] == "unsure"
    too_big = {**GOOD, "log_size_ratio": math.log(6.0)}  # 6x the labelled median: past the 3x allowed
    assert mv_rule(too_big)[0] == "unsure" and mv_rule(too_big)[1] == pytest.approx(0.9 * 0.9 * 0.8 * 0.9 / 2)


def test_ev_rule_reads_leftovers_and_count_agreement():
    quiet = {"presence": 0.9, "count": 2.0, "near_count": 0.0, "near_max": 0.0, "flip_count_diff": 0.0}
    assert ev_rule(quiet) == ("complete", 1.0)
    assert ev_rule({**quiet, "count": 0.0})[0] == "unsure"  # nothing found, but presence says present
    absent = {**quiet, "count": 0.0, "presence": 0.1}
    assert ev_rule(absent) == ("complete", pytest.approx(0.9))  # a confirmed negative: far from firing
    # A confirmed negative needs all three: low presence, no leftover, and the mirrored pass agreeing.
    assert ev_rule({**absent, "presence": 0.3})[0] == "unsure"
    assert ev_rule({**absent, "near_count": 1.0, "near_max": 0.25})[0] == "unsure"
    assert ev_rule({**absent, "flip_count_diff": 1.0})[0] == "unsure"
    assert ev_rule({**absent, "presence": 0.3})[1] < ev_rule(absent)[1]  # presence lowers "absent"
    assert ev_rule({**quiet, "near_count": 3.0, "near_max": 0.3})[0] == "complete"  # weak leftovers only
    assert ev_rule({**quiet, "near_count": 1.0, "near_max": 0.42})[0] == "unsure"
    assert ev_rule({**quiet, "near_count": 1.0, "near_max": 0.46})[0] == "unsure"  # counts agree
    assert ev_rule({**quiet, "near_count": 1.0, "near_max": 0.46, "flip_count_diff": 1.0})[0] == "incomplete"
    assert ev_rule({**quiet, "flip_count_diff": 2.0})[0] == "incomplete"


def test_the_learned_verifier_replaces_the_rules_only_where_it_beats_them():
    # People accept a mask exactly when its size is typical, a signal the rules barely weigh: the
    # learned verifier finds it; on decisions that follow the rules' own probability it gains nothing.
    rng = np.random.default_rng(0)
    signals = [
        {**GOOD, "score": float(rng.uniform(0.5, 1)), "log_size_ratio": float(rng.uniform(-1, 1))}
        for _ in range(80)
    ]
    by_size = [abs(s["log_size_ratio"]) < 0.5 for s in signals]
    learned, comparison = fit_learned("mv", signals, by_size)
    assert comparison.decisions == (sum(by_size), 80 - sum(by_size))
    assert comparison.learned_accuracy > 0.85 > comparison.rules_accuracy and comparison.use_learned
    assert learned is not None and learned({**GOOD, "log_size_ratio": 0.0})[0] == "accept"
    by_rules = [v == "accept" or (v == "unsure" and p >= 0.5) for v, p in map(mv_rule, signals)]
    _, same = fit_learned("mv", signals, by_rules)
    assert same.rules_accuracy == 1.0 and not same.use_learned
    none, few = fit_learned(
        "ev", [{"presence": 0.5, "count": 1, "near_count": 0, "near_max": 0, "flip_count_diff": 0}], [True]
    )
    assert none is None and not few.use_learned and "too few" in few.notes[0]


def test_decisions_become_training_data_for_mv_and_ev():
    ev = {"presence": 0.9, "count": 2.0, "near_count": 0.0, "near_max": 0.0, "flip_count_diff": 0.0}
    records = {
        "a.png": {
            "width": 8,
            "height": 8,
            "pairs": [
                {
                    "phrase": "circle",
                    "presence": 0.9,
                    "signals": ev,
                    "instances": [{"signals": GOOD}, {"signals": {**GOOD, "flip_iou": 0.1}}],
                },
                {"phrase": "square", "presence": 0.9, "signals": {**ev, "near_count": 2.0}, "instances": []},
            ],
        }
    }
    person = {"actor": "ann", "actor_kind": "human"}
    decisions = [
        Decision(
            "a.png", "circle", "reject", instance=1, actor="rules", actor_kind="verifier"
        ),  # not a person's
        Decision("a.png", "circle", "accept", instance=0, **person),
        Decision("a.png", "circle", "fix", instance=1, **person),
        Decision("a.png", "circle", "exhaustive", **person),
        Decision("a.png", "square", "add", value={"box": [0, 0, 2, 2]}, **person),
        Decision("a.png", "square", "exhaustive", **person),
    ]
    data = decided_signals(records, decisions)
    assert data["mv"] == ([GOOD, {**GOOD, "flip_iou": 0.1}], [True, False])
    assert data["ev"][1] == [True, False]  # square needed an added instance: it was not complete
    verifiers, comparisons = learned_verifiers(records, decisions)
    assert verifiers.names == {"mv": "rules", "ev": "rules"}  # one decision of a kind: nothing learned
    assert [c.check for c in comparisons] == ["mv", "ev"]


def test_the_next_round_triages_with_the_learned_verifier_where_it_won():
    # Round 0: a person accepts a mask exactly when its size is typical (the rules barely weigh size).
    rng = np.random.default_rng(1)
    ev = {"presence": 0.9, "count": 4.0, "near_count": 0.0, "near_max": 0.0, "flip_count_diff": 0.0}
    records = {
        f"{i}.png": {
            "width": 8,
            "height": 8,
            "pairs": [
                {
                    "phrase": "circle",
                    "presence": 0.9,
                    "signals": ev,
                    "instances": [
                        {"signals": {**GOOD, "log_size_ratio": float(rng.uniform(-1, 1))}} for _ in range(4)
                    ],
                }
            ],
        }
        for i in range(20)
    }
    person = {"actor": "ann", "actor_kind": "human", "phrase": "circle"}
    decisions = [
        Decision(
            file_name=name,
            kind="accept" if abs(inst["signals"]["log_size_ratio"]) < 0.5 else "reject",
            instance=k,
            **person,
        )
        for name, record in records.items()
        for k, inst in enumerate(record["pairs"][0]["instances"])
    ]
    verifiers, comparisons = learned_verifiers(records, decisions)
    mv = next(c for c in comparisons if c.check == "mv")
    assert mv.use_learned and verifiers.names == {"mv": "learned", "ev": "rules"}  # EV: nothing to learn
    # Round 1 triages with it: an oversized mask the rules accept is now rejected, by "learned".
    big = {**GOOD, "log_size_ratio": 0.9}
    assert mv_rule(big)[0] == "accept" and verifiers.mv(big)[0] == "reject"
    fresh = {
        "new.png": {
            "width": 8,
            "height": 8,
            "pairs": [{**records["0.png"]["pairs"][0], "instances": [{"signals": big}]}],
        }
    }
    sorted_out = triage(fresh, verifiers, round_=1)
    (verdict,) = [d for d in sorted_out.decisions if d.instance is not None]
    assert (verdict.kind, verdict.actor, verdict.round) == ("reject", "learned", 1)
