import numpy as np
import pytest

from sam3_adapt.data_mix.transforms import eval_transform, train_sizes, train_transform


def test_train_sizes_match_reference_and_scale():
    assert train_sizes(1008) == list(range(480, 993, 32))
    assert train_sizes(168) == [96, 128, 160]  # 480/1008*168 = 80, rounded up to a multiple of 32
    assert train_sizes(96, min_size=40, max_size=90, step=25) == [40, 65, 90]
    with pytest.raises(ValueError, match="max_size <= image_size"):
        train_sizes(96, max_size=128)


def _scene(rng):
    """A 50x80 image with two rectangles given as boxes and masks."""
    image = rng.integers(0, 255, (50, 80, 3), dtype=np.uint8)
    boxes = np.array([[10, 5, 30, 25], [50, 30, 75, 48]], dtype=np.float32)
    masks = []
    for x0, y0, x1, y1 in boxes.astype(int):
        m = np.zeros((50, 80), np.uint8)
        m[y0:y1, x0:x1] = 1
        masks.append(m)
    return image, boxes, masks


def _mask_box(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def test_train_transform_keeps_boxes_and_masks_together():
    image, boxes, masks = _scene(np.random.default_rng(0))
    transform = train_transform(96, step=16)
    offsets = set()
    for seed in range(8):
        transform.set_random_seed(seed)
        out = transform(image=image, bboxes=boxes, instance_index=[0, 1], masks=masks)
        assert out["image"].shape == (96, 96, 3)
        assert list(out["instance_index"]) == [0, 1]
        for box, mask in zip(np.asarray(out["bboxes"]), out["masks"], strict=True):
            assert np.abs(_mask_box(mask) - box).max() <= 1.0
        # letterbox + pad: the 80 x 50 image content lies in an s x (s * 50 / 80) box, zeros around it
        nonzero = np.nonzero(out["image"].any(axis=2))
        side = nonzero[1].max() - nonzero[1].min() + 1
        assert side in train_sizes(96, step=16)
        assert nonzero[0].max() - nonzero[0].min() + 1 == round(side * 50 / 80)
        offsets.add((nonzero[0].min(), nonzero[1].min()))
    assert len(offsets) > 1  # random size / position


def test_train_transform_reproducible_with_seed():
    image, boxes, masks = _scene(np.random.default_rng(1))
    outs = []
    for _ in range(2):
        transform = train_transform(96)
        transform.set_random_seed(5)
        outs.append(transform(image=image, bboxes=boxes, instance_index=[0, 1], masks=masks))
    np.testing.assert_array_equal(outs[0]["image"], outs[1]["image"])
    np.testing.assert_allclose(outs[0]["bboxes"], outs[1]["bboxes"])


def test_eval_transform_letterboxes_by_default():
    image, boxes, masks = _scene(np.random.default_rng(2))
    out = eval_transform(64)(image=image, bboxes=boxes, instance_index=[0, 1], masks=masks)
    assert out["image"].shape == (64, 64, 3) and out["image"][40:].max() == 0  # 80 x 50 -> 64 x 40
    back = np.asarray(out["bboxes"]) / 64 * 80  # both axes by the longer side
    np.testing.assert_allclose(back, boxes, atol=1e-3)


def test_eval_transform_can_squash():
    image, boxes, masks = _scene(np.random.default_rng(2))
    out = eval_transform(64, "squash")(image=image, bboxes=boxes, instance_index=[0, 1], masks=masks)
    assert out["image"].shape == (64, 64, 3)
    normalised = np.asarray(out["bboxes"]) / 64
    back = normalised * np.array([80, 50, 80, 50])
    np.testing.assert_allclose(back, boxes, atol=1e-3)
    with pytest.raises(ValueError, match="letterbox"):
        eval_transform(64, "crop")
