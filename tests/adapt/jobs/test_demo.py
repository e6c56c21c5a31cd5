"""The main job's code path end to end, on a small world and the random tiny model."""

import json

from sam3_adapt.jobs.demo import demo
from sam3_adapt.model.loading import load_sam3
from sam3_adapt.model.tiny import write_tiny_random_sam3


def test_demo_evaluates_the_same_held_out_sets_before_and_after_and_saves_an_adapter(tmp_path, capsys):
    base = write_tiny_random_sam3(tmp_path / "base-168", image_size=168)
    results = demo(
        domain="industrial",
        out=str(tmp_path / "demo"),
        shots=2,
        base=str(base),
        max_epochs=1,
        anchor_images=4,
        val_images=2,
    )
    saved = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    for when in ("before", "after"):
        assert {"target", "anchor"} <= results[when].keys()
        assert "segm/AP" in results[when]["target"] and "cgF1" in results[when]["anchor"]
    world = tmp_path / "demo" / "world"
    train = json.loads((world / "industrial" / "train" / "annotations.json").read_text())
    assert len(train["images"]) == 2
    table = capsys.readouterr().out
    assert "| target (industrial) | segm/AP |" in table and results["adapter"] in table
    model, _ = load_sam3(str(base), adapter=results["adapter"])
    assert any("lora_" in name for name, _ in model.named_parameters())
