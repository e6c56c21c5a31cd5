import json

import datasets
import numpy as np
import pytest
from PIL import Image

from sam3_adapt.data_mix.readers.coco import read_coco_set
from sam3_adapt.data_mix.readers.coco_checks import CocoFormatError
from sam3_adapt.data_mix.readers.hf import read_hf_set
from tests.data_mix.conftest import write_coco
from tests.data_mix.twins import coco_to_hf, view


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network, and `datasets`' own cache inside the test folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_saved_dataset_reads_as_the_coco_file_and_is_cached(tmp_path, shapes_set):
    json_path, image_dir = shapes_set
    coco_to_hf(json.loads(json_path.read_text()), image_dir).save_to_disk(tmp_path / "shapes_hf")
    cache = tmp_path / "cache"
    hf_set = read_hf_set(tmp_path / "shapes_hf", cache_dir=cache)
    coco_set = read_coco_set(json_path, image_dir)
    assert view(hf_set.samples, paths=False) == view(coco_set.samples, paths=False)
    assert hf_set.samples[0].source == "shapes_hf"
    for hf_sample, coco_sample in zip(hf_set.samples, coco_set.samples, strict=True):
        assert hf_sample.image_path.parent.parent.parent == cache
        assert np.array_equal(
            np.array(Image.open(hf_sample.image_path)), np.array(Image.open(coco_sample.image_path))
        )

    # a second read loads the cached Arrow records and writes no image again
    before = _mtimes(cache)
    assert any(name.endswith(".arrow") for name in before)
    again = read_hf_set(tmp_path / "shapes_hf", cache_dir=cache)
    assert _mtimes(cache) == before
    assert view(again.samples) == view(hf_set.samples)


def test_data_folder_with_splits_box_formats_and_string_categories(tmp_path, basic_coco):
    json_path, image_dir = write_coco(tmp_path, basic_coco)
    coco = json.loads(json_path.read_text())
    for ann in coco["annotations"]:
        ann.pop("segmentation", None)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    rows = []
    for image in coco["images"]:
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        w, h = image["width"], image["height"]
        rows.append(
            {
                "image": str(image_dir / image["file_name"]),
                "image_id": image["id"],
                "objects": {  # a struct of lists, and normalised corner boxes
                    "id": [a["id"] for a in anns],
                    "bbox": [
                        [x / w, y / h, (x + bw) / w, (y + bh) / h]
                        for x, y, bw, bh in (a["bbox"] for a in anns)
                    ],
                    "category": [names[a["category_id"]] for a in anns],
                },
            }
        )
    data = datasets.Dataset.from_list(rows).cast_column("image", datasets.Image())
    (tmp_path / "parquet").mkdir()
    data.to_parquet(tmp_path / "parquet" / "test.parquet")
    data.to_parquet(tmp_path / "parquet" / "train.parquet")
    with pytest.raises(ValueError, match=r"no split was given; its splits are \['test', 'train'\]"):
        read_hf_set(tmp_path / "parquet", cache_dir=tmp_path / "cache")
    hf_set = read_hf_set(
        tmp_path / "parquet",
        split="test",
        bbox_format="xyxy",
        normalized_boxes=True,
        cache_dir=tmp_path / "cache",
    )
    # categories that never occur are unknown to a string column: "bird" (id 7) is no phrase here
    expected = read_coco_set(*write_coco(tmp_path / "boxes", {**coco, "categories": coco["categories"][:2]}))
    assert view(hf_set.samples, paths=False) == view(expected.samples, paths=False)


def _dataset(tmp_path, objects_feature, objects):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    features = datasets.Features({"image": datasets.Image(), "objects": objects_feature})
    datasets.Dataset.from_list(
        [{"image": str(tmp_path / "x.png"), "objects": objects}], features=features
    ).save_to_disk(tmp_path / "bad")
    return tmp_path / "bad"


def test_missing_columns_are_named(tmp_path):
    path = _dataset(
        tmp_path, datasets.List({"bbox": datasets.List(datasets.Value("float32"))}), [{"bbox": [1, 1, 2, 2]}]
    )
    with pytest.raises(CocoFormatError, match=r"bad: the objects column 'objects' lacks \['category'\]"):
        read_hf_set(path, cache_dir=tmp_path / "cache")
    with pytest.raises(
        CocoFormatError,
        match=r"bad: needs an objects column 'boxes' .* its columns are \['image', 'objects'\]",
    ):
        read_hf_set(path, objects_column="boxes", cache_dir=tmp_path / "cache")
    with pytest.raises(CocoFormatError, match=r"bad: needs an image column 'img'"):
        read_hf_set(path, image_column="img", cache_dir=tmp_path / "cache")


def test_bad_records_name_the_dataset_and_record(tmp_path):
    feature = datasets.List(
        {"bbox": datasets.List(datasets.Value("float32")), "category": datasets.ClassLabel(names=["a"])}
    )
    path = _dataset(tmp_path, feature, [{"bbox": [1, 1, 0, 2], "category": 0}])
    with pytest.raises(
        CocoFormatError, match=r"bad: annotation id 1 \(image id 1, 00000000\.png\): box .* non-positive"
    ):
        read_hf_set(path, cache_dir=tmp_path / "cache")
    ints = datasets.List(
        {"bbox": datasets.List(datasets.Value("float32")), "category": datasets.Value("int64")}
    )
    (tmp_path / "ints").mkdir()
    with pytest.raises(CocoFormatError, match=r"objects\.category must be a datasets\.ClassLabel"):
        read_hf_set(
            _dataset(tmp_path / "ints", ints, [{"bbox": [1, 1, 2, 2], "category": 0}]),
            cache_dir=tmp_path / "c",
        )
