"""The mixing x negatives ablation end to end, on a small world and the random tiny model."""

import json

import pytest
import yaml

from sam3_adapt.jobs.ablation import COLUMNS, ablation, format_ablation
from sam3_adapt.model.tiny import write_tiny_random_sam3


@pytest.mark.slow
def test_ablation_runs_the_four_arms_and_the_base_on_the_same_held_out_images(tmp_path, capsys):
    base = write_tiny_random_sam3(tmp_path / "base-168", image_size=168)
    rows = ablation(
        domain="microscopy",
        out=str(tmp_path / "ablation"),
        shots=2,
        base=str(base),
        max_epochs=1,
        anchor_images=2,
        val_images=2,
    )
    arms = [(r["anchor_mix"], r["target_negatives"]) for r in rows]
    assert arms == [(None, None), (False, False), (False, True), (True, False), (True, True)]
    for row in rows:
        for key, _ in COLUMNS:
            assert 0.0 <= row[key] <= 1.0
    assert json.loads((tmp_path / "ablation" / "ablation.json").read_text()) == rows
    table = capsys.readouterr().out
    assert "| base (before adaptation) |  |  |" in table and "FP rate on hard negatives" in table
    # Positives-only arms read the target set without its negatives; the others add sibling negatives.
    for row in rows[1:]:
        config = yaml.safe_load((tmp_path / "ablation" / row["model"] / "fit" / "config.yaml").read_text())
        data = config["data"]
        train = data["train_json"]
        assert train.endswith("annotations.json") if row["target_negatives"] else train["negatives"] is False
        assert data["sibling_negatives"] is row["target_negatives"]
        assert (data["anchor_json"] is not None) is row["anchor_mix"]
    worlds = [
        tmp_path / "ablation" / r["model"] / "world" / "microscopy" / "val" / "annotations.json"
        for r in rows[1:]
    ]
    assert len({w.read_text() for w in worlds}) == 1


def test_a_domain_without_sibling_phrases_reports_no_hard_negative_rate():
    row = {"model": "x", "anchor_mix": True, "target_negatives": True, "target_AP": 0.5}
    row |= {"target_cgF1": 0.25, "anchor_AP": 0.5, "hard_negative_FP_rate": None}
    assert (
        format_ablation([row], "industrial", 10).splitlines()[-1].endswith("| 0.500 | 0.250 | 0.500 | n/a |")
    )
    assert "| x | 1:1 | hard |" in format_ablation([row], "industrial", 10)
    assert "| x | 2:1 | hard |" in format_ablation([row | {"anchor_ratio": 2.0}], "industrial", 10)
    assert "| x | none | hard |" in format_ablation([row | {"anchor_mix": False}], "industrial", 10)
