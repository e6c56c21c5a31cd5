"""Letterbox: a 3:1 image keeps its aspect ratio in the network input; boxes and masks come back exactly."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sam3_adapt.data_mix.readers.coco import read_coco
from sam3_adapt.data_mix.transforms import eval_transform, train_transform
from sam3_adapt.inference.loop import predict_samples
from sam3_adapt.model import detections
from sam3_adapt.model.detections import detections_per_query
from sam3_adapt.model.loading import load_segmenter
from sam3_adapt.model.outputs import ConceptOutputs

HEIGHT, WIDTH, SIDE = 168, 504, 168  # 3:1, letterboxed to 168 x 56 in a 168 x 168 input
BOX = (30.0, 42.0, 300.0, 120.0)  # multiples of 3: whole input pixels


def image_and_mask():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    x0, y0, x1, y1 = (int(v) for v in BOX)
    mask[y0:y1, x0:x1] = 1
    mask[y0 : y0 + 30, x0 : x0 + 60] = 0  # a notch: not a plain rectangle
    return image, mask


def through_the_network_input(resize):
    """The image, box and mask as the evaluation transform puts them into the square input."""
    image, mask = image_and_mask()
    out = eval_transform(SIDE, resize)(image=image, bboxes=np.array([BOX]), instance_index=[0], masks=[mask])
    return image, mask, out


def outputs_from(box_net, mask_net):
    """Network outputs with one confident slot holding the given box (pixels of the input) and mask."""
    boxes = torch.zeros(1, 1, 2, 4)
    boxes[0, 0, 0] = torch.tensor(box_net, dtype=torch.float32) / SIDE
    logits = torch.tensor([[[8.0, -8.0]]])
    masks = torch.full((1, 2, SIDE, SIDE), -4.0)
    masks[0, 0] = torch.from_numpy(mask_net.astype(np.float32)) * 8 - 4
    return ConceptOutputs(logits, boxes, torch.tensor([[8.0]]), masks, torch.tensor([0]))


def test_letterbox_keeps_the_aspect_ratio_and_pads_right_and_below():
    image, _, out = through_the_network_input("letterbox")
    assert out["image"].shape == (SIDE, SIDE, 3)
    assert out["image"][HEIGHT // 3 :].max() == 0  # below the 56 image rows: padding
    np.testing.assert_allclose(out["bboxes"][0], np.array(BOX) / 3)
    assert out["masks"][0][56:].sum() == 0


@pytest.mark.parametrize("windows", [False, True])
def test_box_and_mask_on_a_3_to_1_image_come_back_exactly(monkeypatch, windows):
    if windows:  # the path of large images
        monkeypatch.setattr(detections, "DENSE_BYTES", 0)
    _, mask, out = through_the_network_input("letterbox")
    outputs = outputs_from(out["bboxes"][0], np.asarray(out["masks"][0]))
    found = detections_per_query(outputs, torch.tensor([[HEIGHT, WIDTH]]), torch.tensor([0]), top_k=1)[0]
    assert found.boxes[0].tolist() == pytest.approx(list(BOX), abs=1e-4)
    assert found.masks.shape == (1, HEIGHT, WIDTH)
    # The mask is the image's part of the input (56 rows) resized to the image: no padding stretched
    # into it, no offset. Its edges are exactly where they were; bilinear resizing only rounds the
    # three corners of the shape by a pixel each (the same on a square image).
    content = outputs.masks[0, :1, : HEIGHT // 3, :]
    expected = (
        F.interpolate(content[None], size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)[0, 0] > 0
    )
    np.testing.assert_array_equal(found.masks.numpy()[0], expected.numpy())
    assert (found.masks.numpy()[0] != mask.astype(bool)).sum() <= 6


def test_squash_stretches_and_maps_back_by_width_and_height():
    _, mask, out = through_the_network_input("squash")
    np.testing.assert_allclose(out["bboxes"][0], [10, 42, 100, 120])  # x / 3, y as it was
    outputs = outputs_from(out["bboxes"][0], np.asarray(out["masks"][0]))
    found = detections_per_query(
        outputs, torch.tensor([[HEIGHT, WIDTH]]), torch.tensor([0]), top_k=1, resize="squash"
    )[0]
    assert found.boxes[0].tolist() == pytest.approx(list(BOX), abs=1e-4)
    np.testing.assert_array_equal(found.masks.numpy()[0], mask.astype(bool))


def test_training_augmentation_keeps_the_aspect_ratio():
    image, mask = image_and_mask()
    transform = train_transform(SIDE)
    for seed in range(5):
        transform.set_random_seed(seed)
        out = transform(image=image, bboxes=np.array([BOX]), instance_index=[0], masks=[mask])
        x0, y0, x1, y1 = out["bboxes"][0]
        assert (x1 - x0) / (y1 - y0) == pytest.approx((BOX[2] - BOX[0]) / (BOX[3] - BOX[1]), rel=0.05)


def test_predictions_on_a_wide_image_stay_inside_it(tmp_path):
    import json

    from PIL import Image

    image, _ = image_and_mask()
    Image.fromarray(image).save(tmp_path / "wide.png")
    coco = {
        "images": [{"id": 7, "file_name": "wide.png", "height": HEIGHT, "width": WIDTH}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [30, 42, 270, 78], "area": 21060, "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": "red circle"}],
    }
    (tmp_path / "wide.json").write_text(json.dumps(coco))
    samples = read_coco(tmp_path / "wide.json", tmp_path)
    result = next(iter(predict_samples(load_segmenter("tiny"), samples)))
    boxes = result.detections.boxes
    assert result.detections.masks.shape == (len(boxes), HEIGHT, WIDTH)
    assert (boxes[:, 2] <= WIDTH).all() and (boxes[:, 3] <= HEIGHT).all() and (boxes >= 0).all()
