"""``sam3-adapt make-world`` writes the demo's anchor and target splits, which read back as COCO sets."""

import json

from sam3_adapt.cli import main
from sam3_adapt.data_mix.readers.coco import read_coco
from sam3_adapt.data_mix.synthetic.concept_world import write_demo_worlds


def test_make_world_writes_splits_that_read_back_and_match_the_demos(tmp_path, capsys):
    main(["make-world", "--out", str(tmp_path / "world"), "--anchor_images", "3", "--shots", "2",
          "--val_images", "2", "--image_size", "96"])  # fmt: skip
    printed = capsys.readouterr().out
    anchor_json = tmp_path / "world" / "anchor" / "train" / "annotations.json"
    assert f"--data.anchor_json {anchor_json}" in printed and "--data.anchor_image_dir" in printed
    for domain in ("anchor", "microscopy", "industrial"):
        for split, count in (("train", 3 if domain == "anchor" else 2), ("val", 2)):
            folder = tmp_path / "world" / domain / split
            samples = read_coco(folder / "annotations.json", folder / "images")
            assert len(samples) == count and all(s.positives for s in samples)
    assert (tmp_path / "world" / "industrial" / "train" / "concept_tree.yaml").is_file()
    # The same files as the demo's world with the same settings.
    demo = write_demo_worlds(tmp_path / "demo", anchor_train=3, anchor_val=2, target_shots=2, target_val=2,
                             image_size=96)  # fmt: skip
    demo_json, _ = demo["anchor/train"]
    assert json.loads(anchor_json.read_text()) == json.loads(demo_json.read_text())
