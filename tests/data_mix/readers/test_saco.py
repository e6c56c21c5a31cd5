import copy
import json
import warnings

import pytest

from sam3_adapt.data_mix import CocoFormatError, CocoSkipWarning, read_coco_set, read_saco_set
from tests.data_mix.conftest import write_coco
from tests.data_mix.twins import coco_to_saco, view


def _write(folder, saco, name="saco.json"):
    path = folder / name
    path.write_text(json.dumps(saco))
    return path


@pytest.mark.parametrize("normalized", [True, False])
def test_saco_twin_reads_as_the_coco_file(tmp_path, basic_coco, normalized):
    json_path, image_dir = write_coco(tmp_path, basic_coco)
    saco_path = _write(tmp_path, coco_to_saco(basic_coco, normalized=normalized))
    coco_set = read_coco_set(json_path, image_dir)
    saco_set = read_saco_set(saco_path, image_dir, normalized_boxes=normalized)
    assert view(saco_set.samples) == view(coco_set.samples)
    assert [s.source for s in saco_set.samples] == ["saco.json"] * 2
    # one category per phrase, numbered in order of first appearance; boxes back in pixels
    assert sorted(p for p, _ in saco_set.phrases.values()) == ["bird", "cat", "dog"]
    assert {a["id"]: a["bbox"] for a in saco_set.gt["annotations"]}[11] == pytest.approx([20, 10, 8, 6])
    assert [i["id"] for i in saco_set.gt["images"]] == [1, 2]
    origin = {q.phrase: q.origin for q in saco_set.samples[0].queries}["dog"]
    assert origin == "saco.json: image record id 101 (a.png), 'dog'"


def test_masked_shapes_round_trip(shapes_set):
    json_path, image_dir = shapes_set
    coco = json.loads(json_path.read_text())
    saco_path = _write(json_path.parent, coco_to_saco(coco), "shapes_saco.json")
    assert view(read_saco_set(saco_path, image_dir).samples) == view(
        read_coco_set(json_path, image_dir).samples
    )


def test_only_listed_pairs_are_queries(tmp_path, basic_coco):
    _, image_dir = write_coco(tmp_path, basic_coco)
    saco = coco_to_saco(basic_coco)
    # b.png keeps only its "dog" pair (a negative); a.png's "dog" pair is not exhaustive
    saco["images"] = [r for r in saco["images"] if r["file_name"] == "a.png" or r["text_input"] == "dog"]
    next(r for r in saco["images"] if r["id"] == 101)["is_instance_exhaustive"] = 0
    first, second = read_saco_set(_write(tmp_path, saco), image_dir).samples
    assert [(q.phrase, q.exhaustive, q.is_negative) for q in first.queries] == [
        ("cat", True, False),
        ("dog", False, False),
        ("bird", True, True),
    ]
    assert [(q.phrase, q.is_negative) for q in second.queries] == [("dog", True)]  # "cat" is unknown here
    no_neg = read_saco_set(_write(tmp_path, saco), image_dir, include_negatives=False).samples
    assert [q.phrase for q in no_neg[0].queries] == ["cat", "dog"] and no_neg[1].queries == []


def test_a_record_without_a_phrase_is_named(tmp_path, basic_coco):
    _, image_dir = write_coco(tmp_path, basic_coco)
    saco = coco_to_saco(basic_coco)
    del saco["images"][1]["text_input"]
    path = _write(tmp_path, saco)
    with pytest.raises(CocoFormatError, match=r"saco\.json: image record id 101 \(a\.png\): no noun phrase"):
        read_saco_set(path, image_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = read_saco_set(path, image_dir, on_error="skip").samples
    assert "1 record without a phrase" in str(
        next(w for w in caught if w.category is CocoSkipWarning).message
    )
    assert [q.phrase for q in samples[0].queries] == ["cat", "bird"]  # the pair and its object are gone


@pytest.mark.parametrize(
    ("corrupt", "pattern"),
    [
        (
            lambda s: s["annotations"][0]["bbox"].__setitem__(2, 30),
            r"annotation id 10 \(image record id 100\): box",
        ),
        (
            lambda s: s["annotations"][0].__setitem__("image_id", 7),
            r"annotation id 10: image_id 7 is no image-phrase",
        ),
        (
            lambda s: s["images"].append({**s["images"][0], "id": 999}),
            r"image record id 999 .*also image record id 100",
        ),
        (lambda s: s.pop("images"), r"an SA-Co file needs a list 'images'"),
    ],
)
def test_bad_records_name_the_file_and_record(tmp_path, basic_coco, corrupt, pattern):
    _, image_dir = write_coco(tmp_path, basic_coco)
    saco = copy.deepcopy(coco_to_saco(basic_coco))
    corrupt(saco)
    path = _write(tmp_path, saco)
    with pytest.raises(CocoFormatError, match=pattern) as info:
        read_saco_set(path, image_dir)
    assert str(info.value).startswith(str(path))
