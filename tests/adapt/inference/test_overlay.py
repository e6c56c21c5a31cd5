"""Overlay pictures draw masks where there are masks, boxes always, and show in Jupyter as PNG."""

import io
import json

import numpy as np
from PIL import Image

from sam3_adapt.data_mix.readers.coco import read_coco
from sam3_adapt.data_mix.synthetic.concept_world import write_world
from sam3_adapt.inference.overlay import Picture, overlay_figure, save_figure, truth_figure
from sam3_adapt.inference.prediction import Prediction

PNG = b"\x89PNG\r\n\x1a\n"


def pixels(fig: Picture) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(fig._repr_png_())))


def test_truth_figure_draws_masked_and_box_only_samples(tmp_path):
    json_path, images = write_world(tmp_path / "parts", "industrial", 2, seed=0)
    boxes_only = json.loads(json_path.read_text())
    for annotation in boxes_only["annotations"]:
        del annotation["segmentation"]
    (tmp_path / "boxes.json").write_text(json.dumps(boxes_only))
    masked = truth_figure(read_coco(json_path, images))
    unmasked = truth_figure(read_coco(tmp_path / "boxes.json", images))
    assert isinstance(masked, Picture) and masked._repr_png_().startswith(PNG)
    # Same boxes on both; only the masked one tints the objects.
    assert np.abs(pixels(masked).astype(int) - pixels(unmasked)).sum() > 0
    assert "not: " in masked.axes[0].get_xlabel()


def test_overlay_figure_tints_masks_and_writes_a_png(tmp_path):
    image = np.full((40, 60, 3), 200, dtype=np.uint8)
    mask = np.zeros((1, 40, 60), dtype=bool)
    mask[0, 10:20, 10:30] = True
    prediction = Prediction(
        phrases=["washer"],
        boxes=np.array([[10, 10, 30, 20]], dtype=np.float32),
        scores=np.array([0.9], dtype=np.float32),
        class_ids=np.array([0]),
        masks=mask,
        presence={"washer": 0.97},
        image_size=(40, 60),
    )
    fig = overlay_figure(image, prediction, title="test")
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "washer: 1 (present 0.97)"
    without_mask = overlay_figure(image, Prediction(**{**prediction.__dict__, "masks": None}), title="test")
    assert np.abs(pixels(fig).astype(int) - pixels(without_mask)).sum() > 0
    assert save_figure(fig, tmp_path / "a" / "overlay.png").read_bytes().startswith(PNG)
