"""A set with more instances in a pair than the model has object slots is named, with its recall ceiling."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from sam3_adapt.data_mix.readers.coco import read_coco
from sam3_adapt.fitting.lightning_cli import lightning_cli
from sam3_adapt.fitting.recipe_files import recipe_path
from sam3_adapt.inference.loop import predict_samples
from sam3_adapt.inference.slots import slot_ceiling
from sam3_adapt.model.loading import load_segmenter


def crowded_set(tmp_path, counts):
    """One 168-px image per entry of ``counts``, with that many small 'dot' boxes (and one 'disc')."""
    images, annotations = [], []
    (tmp_path / "images").mkdir()
    for image_id, count in enumerate(counts, 1):
        Image.fromarray(np.zeros((168, 168, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": 168, "width": 168})
        boxes = [(8 * (k % 20), 8 * (k // 20), 6, 6) for k in range(count)] + [(100, 100, 20, 20)]
        for k, box in enumerate(boxes):
            category = 1 if k < count else 2
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": list(box),
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    path = tmp_path / "crowded.json"
    categories = [{"id": 1, "name": "dot"}, {"id": 2, "name": "disc"}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def test_ceiling_arithmetic(tmp_path):
    samples = read_coco(crowded_set(tmp_path, [30, 10, 25]), tmp_path / "images")
    ceiling = slot_ceiling(samples, 20)
    assert (ceiling.over, ceiling.positive_pairs, ceiling.most) == (2, 6, 30)
    # dots: 20 + 10 + 20 of 65 can be found; each disc pair has 1 instance.
    assert ceiling.best_recall == pytest.approx((50 + 3) / (65 + 3))
    assert ceiling.per_phrase == {"dot": (2, 3, pytest.approx(50 / 65))}
    assert slot_ceiling(samples, 30) is None


def test_predicting_a_crowded_set_warns_once_with_the_set_and_the_counts(tmp_path):
    json_path = crowded_set(tmp_path, [30, 10, 25])
    samples = read_coco(json_path, tmp_path / "images")
    segmenter = load_segmenter("tiny")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(2):
            found = list(predict_samples(segmenter, samples, masks=False))
    slot_warnings = [str(w.message) for w in caught if "object slots" in str(w.message)]
    assert len(slot_warnings) == 1
    message = slot_warnings[0]
    assert "crowded.json" in message and "2 of 6 positive image-phrase pairs" in message
    assert "20 object slots" in message and "best possible recall is 0.78" in message
    assert "'dot': 2 of 3 pairs, best recall 0.77" in message
    # max_detections defaults to 100, but no pair ever gets more than the 20 slots.
    assert max(len(r.detections.scores) for r in found) == segmenter.num_slots == 20


def test_a_fit_on_a_crowded_set_warns_at_its_start(tmp_path):
    json_path = crowded_set(tmp_path, [25])
    args = [f"--data.train_json={json_path}", f"--data.image_dir={tmp_path / 'images'}"]
    args += ["--trainer.max_steps=1", "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}"]
    cli = lightning_cli(["--config", str(recipe_path("tiny-10shot")), *args], run=False)
    ceiling = r"crowded.json: 1 of 2 positive image-phrase pairs .* 20 object slots"
    with pytest.warns(UserWarning, match=ceiling):
        cli.trainer.fit(cli.model, cli.datamodule)
