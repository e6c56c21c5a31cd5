import copy
import json
import warnings

import numpy as np
import pytest

from sam3_adapt.data_mix import CocoFormatError, CocoSkipWarning, read_coco, read_coco_set
from tests.data_mix.conftest import write_coco


def by_phrase(sample):
    return {q.phrase: q for q in sample.queries}


def test_reads_polygon_rle_and_box_only(tmp_path, basic_coco):
    samples = read_coco(*write_coco(tmp_path, basic_coco))
    assert [s.image_id for s in samples] == [1, 2]
    first = samples[0]
    assert (first.height, first.width, first.source) == (30, 40, "train.json")
    assert first.image_path == tmp_path / "images" / "a.png"
    q = by_phrase(first)
    cat = q["cat"]
    assert [i.annotation_id for i in cat.instances] == [10, 11]
    poly, box_only = cat.instances
    assert poly.box_xyxy == (5.0, 5.0, 15.0, 15.0)
    mask = poly.mask_array()
    assert mask.shape == (30, 40) and mask.dtype == bool
    ys, xs = np.nonzero(mask)
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (5, 5, 14, 14)
    assert poly.area == 100
    assert not box_only.has_mask and box_only.mask_array() is None
    assert box_only.box_xyxy == (20.0, 10.0, 28.0, 16.0) and box_only.area == 48
    rle_mask = q["dog"].instances[0].mask_array()
    assert rle_mask.sum() == 10 and rle_mask[5:15, 2].all()
    assert q["dog"].instances[0].area == 10  # from the mask when the record has no area
    assert "image id 1 (a.png), category 2" in q["dog"].origin


def test_compressed_rle_from_shapes(shapes_set):
    json_path, image_dir = shapes_set
    coco = json.loads(json_path.read_text())
    samples = read_coco(json_path, image_dir)
    n_instances = sum(len(q.instances) for s in samples for q in s.queries)
    assert n_instances == len(coco["annotations"])
    for s in samples:
        for q in s.positives:
            for inst in q.instances:
                ys, xs = np.nonzero(inst.mask_array())
                assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == inst.box_xyxy


def test_negatives_for_absent_categories(tmp_path, basic_coco):
    samples = read_coco(*write_coco(tmp_path, basic_coco))
    first, second = samples
    assert [q.phrase for q in first.queries] == ["cat", "dog", "bird"]  # sorted by category id
    assert by_phrase(first)["bird"].is_negative and by_phrase(first)["bird"].exhaustive
    assert [q.phrase for q in first.negatives] == ["bird"]
    # an image without annotations still yields every category as a negative
    assert [q.category_id for q in second.queries] == [1, 2, 7] and all(q.is_negative for q in second.queries)

    no_neg = read_coco(*write_coco(tmp_path, basic_coco), include_negatives=False)
    assert [q.phrase for q in no_neg[0].queries] == ["cat", "dog"] and no_neg[1].queries == []


def test_prompt_map_inline_and_from_yaml(tmp_path, basic_coco):
    json_path, image_dir = write_coco(tmp_path, basic_coco)
    samples = read_coco(json_path, image_dir, prompt_map={"cat": "small cat", 7: "songbird"})
    assert [q.phrase for q in samples[0].queries] == ["small cat", "dog", "songbird"]

    yaml_path = tmp_path / "prompts.yaml"
    yaml_path.write_text("dog: puppy\n")
    coco_set = read_coco_set(json_path, image_dir, prompt_map=str(yaml_path))
    assert [q.phrase for q in coco_set.samples[1].queries] == ["cat", "puppy", "bird"]
    assert coco_set.phrases[2] == ("puppy", "train.json: category 2 ('dog') via prompt_map")

    with pytest.raises(CocoFormatError, match=r"train\.json: prompt_map key 'horse' names no category"):
        read_coco(json_path, image_dir, prompt_map={"horse": "pony"})
    with pytest.raises(CocoFormatError, match=r"categories 1 and 2 share the phrase 'pet'"):
        read_coco(json_path, image_dir, prompt_map={"cat": "pet", "dog": "pet"})


def test_crowd_is_no_target_and_no_negative(tmp_path, basic_coco):
    coco = copy.deepcopy(basic_coco)
    crowd = {"id": 20, "image_id": 2, "category_id": 7, "bbox": [1, 1, 5, 5], "iscrowd": 1}
    mixed = {"id": 21, "image_id": 1, "category_id": 2, "bbox": [30, 20, 5, 5], "iscrowd": 1}
    coco["annotations"] += [crowd, mixed]
    coco_set = read_coco_set(*write_coco(tmp_path, coco))
    first, second = coco_set.samples
    assert "bird" not in by_phrase(second)  # only a crowd: neither positive nor negative
    dog = by_phrase(first)["dog"]
    assert [i.annotation_id for i in dog.instances] == [12] and not dog.exhaustive
    # the ground truth keeps crowds for pycocotools, with area/iscrowd filled in
    gt_ids = {a["id"]: a for a in coco_set.gt["annotations"]}
    assert set(gt_ids) == {10, 11, 12, 20, 21}
    assert gt_ids[11]["iscrowd"] == 0 and gt_ids[11]["area"] == 48.0


def _ann(ann_id, image_id, category_id):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": [1, 1, 2, 2]}


BAD_CASES = {
    "missing image file": (
        lambda c: c["images"].append({"id": 3, "file_name": "gone.png", "width": 4, "height": 4}),
        r"image id 3 \(gone\.png\): image file not found",
    ),
    "unknown image id": (
        lambda c: c["annotations"].append(_ann(30, 99, 1)),
        r"annotation id 30: image_id 99 is not in 'images'",
    ),
    "unknown category id": (
        lambda c: c["annotations"].append(_ann(31, 1, 5)),
        r"annotation id 31 \(image id 1, a\.png\): category_id 5 is not in 'categories'",
    ),
    "non-positive box size": (
        lambda c: c["annotations"][0]["bbox"].__setitem__(2, 0),
        r"annotation id 10 \(image id 1, a\.png\): box \[5, 5, 0, 10\] has non-positive width",
    ),
    "polygon with fewer than 3 points": (
        lambda c: c["annotations"][0].__setitem__("segmentation", [[1, 1, 5, 5]]),
        r"annotation id 10 \(image id 1, a\.png\): a polygon has 2 point\(s\)",
    ),
    "malformed box": (
        lambda c: c["annotations"][1].pop("bbox"),
        r"annotation id 11 \(image id 1, a\.png\): 'bbox' must be 4 finite numbers",
    ),
    "duplicate annotation id": (
        lambda c: c["annotations"].append(_ann(10, 2, 1)),
        r"annotation id 10: the id is used by another annotation",
    ),
    "image size differs from file": (
        lambda c: c["images"][1].__setitem__("width", 41),
        r"image id 2 \(b\.png\): JSON says 41x30",
    ),
}


@pytest.mark.parametrize("reason", sorted(BAD_CASES))
def test_bad_record_raises_naming_file_and_record(tmp_path, basic_coco, reason):
    corrupt, pattern = BAD_CASES[reason]
    coco = copy.deepcopy(basic_coco)
    json_path, image_dir = write_coco(tmp_path, coco)  # images as the clean file describes them
    corrupt(coco)
    json_path.write_text(json.dumps(coco))
    with pytest.raises(CocoFormatError, match=pattern) as info:
        read_coco(json_path, image_dir)
    assert str(info.value).startswith(str(json_path))


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("{not json", r"bad\.json: cannot read COCO JSON"),
        ("[]", r"bad\.json: the top level must be an object"),
        ('{"images": [], "categories": []}', r"bad\.json: missing list 'annotations'"),
        (
            '{"images": [], "annotations": [], "categories": [{"id": 1}]}',
            r"bad\.json: category .* needs an int 'id'",
        ),
    ],
)
def test_malformed_json_structure(tmp_path, text, pattern):
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(CocoFormatError, match=pattern):
        read_coco(tmp_path / "bad.json", tmp_path)


def test_skip_mode_warns_once_with_counts(tmp_path, basic_coco):
    coco = copy.deepcopy(basic_coco)
    json_path, image_dir = write_coco(tmp_path, coco)
    coco["images"].append({"id": 3, "file_name": "gone.png", "width": 4, "height": 4})
    coco["annotations"] += [
        {"id": 40, "image_id": 3, "category_id": 1, "bbox": [0, 0, 2, 2]},  # dropped with its image
        {"id": 41, "image_id": 1, "category_id": 7, "bbox": [0, 0, -1, 2]},  # bad box: "bird" is unknown
        {"id": 42, "image_id": 2, "category_id": 9, "bbox": [0, 0, 2, 2]},
    ]
    coco["annotations"][2]["segmentation"] = [[1, 1, 2, 2]]  # the only "dog" of image 1
    json_path.write_text(json.dumps(coco))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coco_set = read_coco_set(json_path, image_dir, on_error="skip")
    skips = [w for w in caught if issubclass(w.category, CocoSkipWarning)]
    assert len(skips) == 1
    text = str(skips[0].message)
    assert text.startswith(f"{json_path}: skipped 4 invalid record(s)")
    for part in (
        "1 missing image file",
        "1 non-positive box size",
        "1 polygon with fewer than 3 points",
        "1 unknown category id",
        "with them 1 annotation(s) of skipped images",
    ):
        assert part in text
    assert [s.image_id for s in coco_set.samples] == [1, 2]
    first = by_phrase(coco_set.samples[0])
    # a skipped record's concept may be present: its query is dropped rather than made a negative
    assert set(first) == {"cat"}
    assert {a["id"] for a in coco_set.gt["annotations"]} == {10, 11}
    assert [i["id"] for i in coco_set.gt["images"]] == [1, 2]
