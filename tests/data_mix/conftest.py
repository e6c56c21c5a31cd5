import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam3_adapt.data_mix.synthetic.shapes import write_shapes_coco


@pytest.fixture(scope="session")
def shapes_set(tmp_path_factory):
    """A small synthetic set with masks: (json_path, image_dir)."""
    return write_shapes_coco(tmp_path_factory.mktemp("shapes"), num_images=6, image_size=64, seed=3)


def write_coco(folder: Path, coco: dict, name: str = "train.json"):
    """Write ``coco`` and a grey PNG of the stated size for every image record."""
    image_dir = folder / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    for img in coco.get("images", []):
        Image.fromarray(np.full((img["height"], img["width"], 3), 100, np.uint8)).save(
            image_dir / img["file_name"]
        )
    json_path = folder / name
    json_path.write_text(json.dumps(coco))
    return json_path, image_dir


@pytest.fixture
def basic_coco():
    """Two 40x30 images, three categories; image 2 has no annotations."""
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 2, "file_name": "b.png", "width": 40, "height": 30},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 7, "name": "bird"}],
        "annotations": [
            # polygon: a 10x10 square
            {
                "id": 10,
                "image_id": 1,
                "category_id": 1,
                "bbox": [5, 5, 10, 10],
                "segmentation": [[5, 5, 15, 5, 15, 15, 5, 15]],
                "area": 100,
                "iscrowd": 0,
            },
            # box only (no segmentation key)
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [20, 10, 8, 6], "iscrowd": 0},
            # uncompressed RLE: column-major runs, 30 rows x 40 cols; pixels 65..74 set (column 2, rows 5..14)
            {
                "id": 12,
                "image_id": 1,
                "category_id": 2,
                "bbox": [2, 5, 1, 10],
                "segmentation": {"size": [30, 40], "counts": [65, 10, 1125]},
                "iscrowd": 0,
            },
        ],
    }
