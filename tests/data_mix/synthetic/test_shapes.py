import json
import time

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from sam3_adapt.data_mix.synthetic.shapes import COLOURS, write_shapes_coco


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_byte_identical_and_fast(tmp_path):
    start = time.perf_counter()
    write_shapes_coco(tmp_path / "a", num_images=8, seed=4)
    assert time.perf_counter() - start < 1.0
    write_shapes_coco(tmp_path / "b", num_images=8, seed=4)
    write_shapes_coco(tmp_path / "c", num_images=8, seed=5)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) == 9 and a == b
    assert a.keys() == c.keys() and a != c


def test_masks_are_exact_and_shapes_apart(tmp_path):
    json_path, image_dir = write_shapes_coco(tmp_path, num_images=8, image_size=96, seed=0)
    coco = json.loads(json_path.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert len(names) == 9 and "red circle" in names.values()
    per_image = {}
    for ann in coco["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann)
        mask = mask_utils.decode(ann["segmentation"]).astype(bool)
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["area"] == mask.sum()
        pixels = np.asarray(Image.open(image_dir / f"{ann['image_id'] - 1:04d}.png")).astype(float)
        colour = names[ann["category_id"]].split()[0]
        # painted pixels carry the category's colour, far from the grey background
        assert np.abs(pixels[mask].mean(axis=0) - COLOURS[colour]).max() < 10
    assert all(1 <= len(anns) <= 4 for anns in per_image.values())
    for anns in per_image.values():
        union = sum(mask_utils.decode(a["segmentation"]).astype(int) for a in anns)
        assert union.max() == 1


def test_box_only_variant(tmp_path):
    json_path, _ = write_shapes_coco(tmp_path, num_images=3, masks=False)
    annotations = json.loads(json_path.read_text())["annotations"]
    assert annotations and all("segmentation" not in a for a in annotations)
