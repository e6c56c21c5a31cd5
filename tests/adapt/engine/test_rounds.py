import json
import sqlite3

import pytest

from sam3_adapt.data_mix.synthetic.concept_world import write_world
from sam3_adapt.data_mix.synthetic.shapes import is_synthetic_world
from sam3_adapt.engine.annotator import ACTION_COST
from sam3_adapt.engine.rounds import engine

from .conftest import PHRASES


def _journal(folder):
    """A round's journal rows: ``(file_name, phrase, kind, actor, actor_kind)``."""
    db = sqlite3.connect(folder / "journal.sqlite")
    rows = db.execute("SELECT file_name, phrase, kind, actor, actor_kind FROM decisions").fetchall()
    db.close()
    return rows


@pytest.mark.slow
def test_engine_rounds_fit_propose_review_export_and_fit_again(tmp_path):
    labelled, labelled_dir = write_world(tmp_path / "shots", "anchor", 2, seed=1)
    truth, pool_dir = write_world(tmp_path / "pool", "anchor", 3, seed=2)
    val, val_dir = write_world(tmp_path / "val", "anchor", 2, seed=4)
    common = {
        "phrases": PHRASES,
        "labelled": str(labelled),
        "labelled_image_dir": str(labelled_dir),
        "max_steps": 2,
    }
    rows = engine(
        str(pool_dir),
        out=str(tmp_path / "engine"),
        rounds=2,
        truth_json=str(truth),
        review_budget=0.25,  # a few requests per round: round 1 has pairs left to ask
        target_json=str(val),
        target_image_dir=str(val_dir),
        **common,
    )
    assert [r["round"] for r in rows] == [0, 1, 2] and rows[0]["human_actions"] == 0
    assert all(0.0 <= r["target_AP"] <= 1.0 for r in rows)
    rounds = [tmp_path / "engine" / f"round-{r}" for r in range(3)]
    for folder in rounds[:2]:
        for name in (
            "adapter/adapter_config.json",
            "metrics.json",
            "proposals/run.json",
            "journal.sqlite",
            "labels.json",
            "verifiers.json",
        ):
            assert (folder / name).exists(), name
    assert (rounds[2] / "adapter" / "adapter_config.json").is_file()
    first, second = _journal(rounds[0]), _journal(rounds[1])
    assert {a for *_, a, kind in first if kind == "verifier"} == {"rules"}  # round 0 starts from the rules
    # Round 1's verifiers are the ones round 0's decisions chose: learned where they won on held-out ones.
    chosen = {
        c["check"]: "learned" if c["use_learned"] else "rules"
        for c in json.loads((rounds[0] / "verifiers.json").read_text())
    }
    triaged = {actor for _, _, kind, actor, _ in second if kind in ("auto_accept", "auto_reject", "queue")}
    assert triaged == {chosen["ev"]}
    per_instance = {
        actor for _, _, kind, actor, a in second if a == "verifier" and kind in ("accept", "reject")
    }
    assert per_instance <= {chosen["mv"]}
    # Both rounds spent their own budget on different pairs: nobody is asked twice about a closed pair.
    asked = [{(f, p) for f, p, _, _, a in journal if a == "simulated"} for journal in (first, second)]
    assert asked[0] and asked[1] and not asked[0] & asked[1]
    spent = [
        sum(ACTION_COST[k] for _, _, k, _, a in journal if a == "simulated") for journal in (first, second)
    ]
    assert [r["human_actions"] for r in rows] == [0, spent[0], spent[0] + spent[1]]
    # Each round trains on the labelled images plus every pool pair a person closed so far.
    labels = json.loads((rounds[1] / "labels.json").read_text())
    assert is_synthetic_world(rounds[1] / "labels.json")  # the labelled set's info: no tiny-base warning
    human = {
        (r["file_name"].split("/", 1)[1], r["text_input"])
        for r in labels["images"]
        if r["provenance"] == "human"
    }
    names = {r["file_name"].split("/")[0] for r in labels["images"]}
    assert names == {"shots", "pool"} and {(f"images/{f}", p) for f, p in asked[0] | asked[1]} <= human
    summary = (tmp_path / "engine" / "summary.md").read_text()
    assert summary.count("\n") == 5 and (tmp_path / "engine" / "summary.png").is_file()

    # Without a person or a simulation, the round writes the review queue and stops; nothing is redone.
    waiting = engine(str(pool_dir), out=str(tmp_path / "waiting"), rounds=1, **common)
    assert len(waiting) == 1
    assert (tmp_path / "waiting" / "round-0" / "review_queue.jsonl").is_file()
    assert not (tmp_path / "waiting" / "round-1").exists()
