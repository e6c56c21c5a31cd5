import json
import sqlite3

import pytest

from sam3_adapt.data_mix.synthetic.concept_world import write_world
from sam3_adapt.engine.annotator import ACTION_COST
from sam3_adapt.engine.rounds import engine

from .conftest import PHRASES


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
        rounds=1,
        truth_json=str(truth),
        target_json=str(val),
        target_image_dir=str(val_dir),
        **common,
    )
    assert [r["round"] for r in rows] == [0, 1] and rows[0]["human_actions"] == 0
    assert all(0.0 <= r["target_AP"] <= 1.0 for r in rows)
    round0 = tmp_path / "engine" / "round-0"
    for name in (
        "adapter/adapter_config.json",
        "metrics.json",
        "proposals/run.json",
        "journal.sqlite",
        "labels.json",
        "verifiers.json",
    ):
        assert (round0 / name).exists(), name
    assert (tmp_path / "engine" / "round-1" / "adapter" / "adapter_config.json").is_file()
    db = sqlite3.connect(round0 / "journal.sqlite")
    kinds = dict(db.execute("SELECT actor_kind, COUNT(*) FROM decisions GROUP BY actor_kind"))
    assert kinds["verifier"] > 0
    # Round 1 trained on the labelled images plus the verified pool labels of round 0.
    labels = json.loads((round0 / "labels.json").read_text())
    names = {r["file_name"].split("/")[0] for r in labels["images"]}
    assert names == {"shots", "pool"}
    simulated = db.execute("SELECT kind FROM decisions WHERE actor_kind = 'simulated'").fetchall()
    assert rows[1]["human_actions"] == sum(ACTION_COST[kind] for (kind,) in simulated)
    summary = (tmp_path / "engine" / "summary.md").read_text()
    assert summary.count("\n") == 4 and (tmp_path / "engine" / "summary.png").is_file()

    # Without a person or a simulation, the round writes the review queue and stops; nothing is redone.
    waiting = engine(str(pool_dir), out=str(tmp_path / "waiting"), rounds=1, **common)
    assert len(waiting) == 1
    assert (tmp_path / "waiting" / "round-0" / "review_queue.jsonl").is_file()
    assert not (tmp_path / "waiting" / "round-1").exists()
