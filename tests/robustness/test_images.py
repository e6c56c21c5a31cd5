"""Images of any bit depth are read by one rule, and unreadable files are named (and skippable).

Before, ``convert("RGB")`` saturated every pixel of a 16-bit PNG to 255, in training, evaluation and
prediction alike.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from sam3_adapt.data_mix.dataset import ConceptDataset
from sam3_adapt.data_mix.images import ImageReadError, probe_image, read_rgb
from sam3_adapt.data_mix.readers.coco import read_coco
from sam3_adapt.data_mix.readers.coco_checks import CocoFormatError, CocoSkipWarning
from sam3_adapt.data_mix.transforms import eval_transform
from sam3_adapt.predictor import load
from tests.robustness.conftest import write_coco


def reference_stretch(values: np.ndarray) -> np.ndarray:
    """The documented rule, written out with np.percentile: 1st -> 0, 99.8th -> 255, clipped."""
    low, high = np.percentile(values.astype(np.float64), [1, 99.8])
    return np.clip(np.rint((values - low) * (255 / (high - low))), 0, 255).astype(np.uint8)


def microscopy_16bit(depth: int, seed: int = 0) -> np.ndarray:
    """Dim noisy background with a few bright blobs, as a fluorescence camera of ``depth`` bits gives."""
    rng = np.random.default_rng(seed)
    top = 2**depth - 1
    image = rng.normal(0.05 * top, 0.01 * top, (60, 80))
    yy, xx = np.mgrid[:60, :80]
    for cy, cx in ((15, 20), (40, 55), (30, 70)):
        image += 0.7 * top * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 40)
    return np.clip(image, 0, top).astype(np.uint16)


@pytest.mark.parametrize("depth", [16, 12])
def test_grey_16bit_png_and_tiff_follow_the_percentile_rule(tmp_path, depth):
    pixels = microscopy_16bit(depth)
    for suffix in (".png", ".tif"):
        path = tmp_path / f"cells{suffix}"
        Image.fromarray(pixels).save(path)
        assert Image.open(path).mode.startswith("I;16")
        rgb = read_rgb(path)
        assert rgb.shape == (60, 80, 3) and rgb.dtype == np.uint8
        np.testing.assert_array_equal(rgb[..., 0], reference_stretch(pixels))
        assert (rgb == 255).mean() < 0.01  # the old conversion made every pixel 255
        assert rgb.std() > 20


def test_colour_16bit_is_read_at_full_depth_with_one_stretch_for_all_channels(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 4096, (40, 50, 3)).astype(np.uint16)  # 12-bit colour
    path = tmp_path / "colour.png"
    cv2.imwrite(str(path), pixels[..., ::-1])
    np.testing.assert_array_equal(read_rgb(path), reference_stretch(pixels))


def test_float_tiff_with_nan_and_8bit_images_are_read(tmp_path):
    values = np.linspace(-1, 3, 30 * 40, dtype=np.float32).reshape(30, 40)
    values[0, 0] = math.nan
    Image.fromarray(values).save(tmp_path / "float.tif")
    rgb = read_rgb(tmp_path / "float.tif")
    assert rgb.dtype == np.uint8 and rgb[0, 0, 0] == 0 and rgb.max() == 255
    eight = np.random.default_rng(2).integers(0, 256, (30, 40, 3)).astype(np.uint8)
    Image.fromarray(eight).save(tmp_path / "eight.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "eight.png"), eight)


def test_a_16bit_image_trains_and_predicts_as_its_8bit_conversion(tmp_path):
    pixels = microscopy_16bit(12)
    Image.fromarray(pixels).save(tmp_path / "cells16.png")
    Image.fromarray(reference_stretch(pixels)).convert("RGB").save(tmp_path / "cells8.png")

    predictor = load("tiny", device="cpu", score_threshold=0.0)
    high, low = (predictor.predict(tmp_path / f"cells{b}.png", ["round cell", "circle"]) for b in (16, 8))
    np.testing.assert_array_equal(high.scores, low.scores)
    np.testing.assert_array_equal(high.boxes, low.boxes)
    np.testing.assert_array_equal(high.masks, low.masks)

    coco = {
        "images": [{"id": 1, "file_name": "cells16.png"}, {"id": 2, "file_name": "cells8.png"}],
        "annotations": [],
        "categories": [{"id": 1, "name": "round cell"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    dataset = ConceptDataset(read_coco(tmp_path / "ann.json", tmp_path), eval_transform(64))
    torch.testing.assert_close(dataset[0]["pixel_values"], dataset[1]["pixel_values"], rtol=0, atol=0)


def _cut(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path):
    path.write_bytes(b"this is no image " * 20)


def _empty(path):
    path.write_bytes(b"")


def _corrupt_pixels(path):
    data = bytearray(path.read_bytes())
    data[100:120] = b"\x00" * 20  # inside the compressed pixel data: found only when decoded
    path.write_bytes(bytes(data))


def _large(path):
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).resize((4000, 3000)).save(path)


UNREADABLE = {
    "empty file": (_empty, r"the image file is empty \(0 bytes\)"),
    "cut short": (_cut, r"the file is cut short or corrupt"),
    "not an image": (_garbage, r"not a readable image"),
    "over the pixel limit": (
        _large,
        r"4000x3000 = 12\.0 Mpx is over the limit of 1 Mpx.*SAM3_ADAPT_MAX_PIXELS",
    ),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_unreadable_image_is_named_and_skippable(tmp_path, monkeypatch, basic_coco, case):
    monkeypatch.setenv("SAM3_ADAPT_MAX_PIXELS", "1e6")
    damage, pattern = UNREADABLE[case]
    json_path, image_dir = write_coco(tmp_path, basic_coco, "ann.json")
    damage(image_dir / "a.png")
    with pytest.raises(CocoFormatError, match=r"ann\.json: image id 1 \(a\.png\): .*a\.png: " + pattern):
        read_coco(json_path, image_dir)
    with pytest.warns(CocoSkipWarning, match="1 unreadable image"):
        kept = read_coco(json_path, image_dir, on_error="skip")
    assert [s.image_id for s in kept] == [2]


def test_corrupt_pixel_data_is_named_with_its_record_when_decoded(tmp_path, basic_coco):
    json_path, image_dir = write_coco(tmp_path, basic_coco, "ann.json")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(
        image_dir / "a.png"
    )
    _corrupt_pixels(image_dir / "a.png")
    assert probe_image(image_dir / "a.png") == (40, 30)  # the header and the end are fine
    dataset = ConceptDataset(read_coco(json_path, image_dir), eval_transform(32))
    with pytest.raises(ImageReadError, match=r"ann\.json: image id 1: .*a\.png: cannot decode the image"):
        dataset[0]


def test_pixel_limit_setting_must_be_a_positive_number(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(tmp_path / "x.png")
    monkeypatch.setenv("SAM3_ADAPT_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="SAM3_ADAPT_MAX_PIXELS must be a positive number"):
        read_rgb(tmp_path / "x.png")


def test_unreadable_image_in_a_hugging_face_dataset_is_named_and_skippable(tmp_path, monkeypatch, basic_coco):
    import datasets

    from sam3_adapt.data_mix.readers.hf import read_hf_set
    from tests.data_mix.twins import coco_to_hf

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    json_path, image_dir = write_coco(tmp_path, basic_coco, "ann.json")
    _garbage(image_dir / "a.png")
    coco_to_hf(basic_coco, image_dir).save_to_disk(tmp_path / "set_hf")
    with pytest.raises(
        CocoFormatError, match=r"set_hf: image id 1 \(00000000\.unreadable\): .*not a readable image"
    ):
        read_hf_set(tmp_path / "set_hf", cache_dir=tmp_path / "cache")
    with pytest.warns(CocoSkipWarning, match="1 unreadable image"):
        kept = read_hf_set(tmp_path / "set_hf", cache_dir=tmp_path / "cache", on_error="skip")
    assert [s.image_id for s in kept.samples] == [2]
