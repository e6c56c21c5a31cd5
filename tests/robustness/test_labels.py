"""Bad labels are refused before anything heavy runs, naming the file and the record.

Each case breaks the clean set of ``conftest.py`` in one place. Before these checks, a polygon
vertex at 1e12 or NaN made pycocotools' rasteriser exhaust memory, garbage RLE strings crashed only
later inside pycocotools, and ``iscrowd: "no"`` or ``bbox: [true, ...]`` were accepted.
"""

from __future__ import annotations

import json
import math
import warnings

import pytest

from sam3_adapt.data_mix.readers.coco import read_coco, read_coco_set
from sam3_adapt.data_mix.readers.coco_checks import CocoFormatError, CocoSkipWarning
from sam3_adapt.data_mix.readers.sources import read_source
from tests.robustness.conftest import write_coco

A10 = r"annotation id 10 \(image id 1, a\.png\)"
A12 = r"annotation id 12 \(image id 1, a\.png\)"


def _set(path, value):
    """A mutation that sets ``coco[path[0]][path[1]][path[2]] = value``."""

    def mutate(coco):
        target = coco
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


CASES = {
    "polygon NaN": (_set(["annotations", 0, "segmentation"], [[5, 5, math.nan, 5, 15, 15]]), A10 + r".*NaN"),
    "polygon +Inf": (
        _set(["annotations", 0, "segmentation"], [[5, 5, math.inf, 5, 15, 15]]),
        A10 + r".*infinite",
    ),
    "polygon -Inf": (_set(["annotations", 0, "segmentation"], [[5, -math.inf, 9, 5, 15, 15]]), A10),
    "polygon 1e12": (_set(["annotations", 0, "segmentation"], [[5, 5, 1e12, 5, 15, 15]]), A10 + r".*1e\+12"),
    "polygon -1e9": (
        _set(["annotations", 0, "segmentation"], [[5, 5, -1e9, 5, 15, 15]]),
        A10 + r".*far outside",
    ),
    "polygon outside": (
        _set(["annotations", 0, "segmentation"], [[50, 40, 60, 40, 60, 50]]),
        A10 + r".*polygons lie outside the 40x30 image",
    ),
    "polygon of strings": (_set(["annotations", 0, "segmentation"], [["5", "5", "9", "5", "9", "9"]]), A10),
    "polygon of booleans": (_set(["annotations", 0, "segmentation"], [[True] * 6]), A10 + r".*numbers"),
    "bbox of booleans": (
        _set(["annotations", 0, "bbox"], [True, True, True, True]),
        A10 + r".*4 finite numbers",
    ),
    "bbox NaN": (_set(["annotations", 0, "bbox"], [math.nan, 5, 10, 10]), A10 + r".*4 finite numbers"),
    "bbox Inf": (_set(["annotations", 0, "bbox"], [5, 5, math.inf, 10]), A10 + r".*4 finite numbers"),
    "bbox 1e12": (_set(["annotations", 0, "bbox"], [5, 5, 1e12, 10]), A10 + r".*far outside"),
    "bbox string": (_set(["annotations", 0, "bbox"], "5,5,10,10"), A10 + r".*4 finite numbers"),
    "RLE counts do not add up": (
        _set(["annotations", 2, "segmentation", "counts"], [65, 10, 1000]),
        A12 + r".*add up to 1075 pixels.*1200",
    ),
    "RLE counts empty list": (_set(["annotations", 2, "segmentation", "counts"], []), A12 + r".*non-empty"),
    "RLE counts negative": (_set(["annotations", 2, "segmentation", "counts"], [65, -10, 1145]), A12),
    "RLE counts empty string": (_set(["annotations", 2, "segmentation", "counts"], ""), A12 + r".*empty"),
    "RLE garbage string": (
        _set(["annotations", 2, "segmentation", "counts"], "\u00e9\u00e9 not an rle ~~~"),
        A12 + r".*foreign character",
    ),
    "RLE string cut inside a number": (_set(["annotations", 2, "segmentation", "counts"], "Pa"), A12),
    "RLE string wrong total": (_set(["annotations", 2, "segmentation", "counts"], "a0"), A12 + r".*add up"),
    "RLE size of strings": (
        _set(["annotations", 2, "segmentation", "size"], ["30", "40"]),
        A12 + r".*RLE size",
    ),
    "iscrowd no": (_set(["annotations", 0, "iscrowd"], "no"), A10 + r".*'iscrowd' must be 0 or 1, got 'no'"),
    "iscrowd 2": (_set(["annotations", 0, "iscrowd"], 2), A10 + r".*'iscrowd' must be 0 or 1"),
    "area negative": (_set(["annotations", 0, "area"], -5), A10 + r".*'area' must be a finite number >= 0"),
    "area NaN": (_set(["annotations", 0, "area"], math.nan), A10 + r".*'area'"),
    "area string": (_set(["annotations", 0, "area"], "100"), A10 + r".*'area'"),
    "width as a string": (
        _set(["images", 0, "width"], "40"),
        r"image id 1 \(a\.png\): 'width' and 'height' must be positive ints",
    ),
    "height boolean": (_set(["images", 0, "height"], True), r"image id 1 \(a\.png\): 'width' and 'height'"),
    "image id boolean": (_set(["images", 0, "id"], True), r"image record .* needs an int 'id'"),
    "file_name not a string": (_set(["images", 0, "file_name"], 7), r"image record .* needs an int 'id'"),
    "annotation id boolean": (_set(["annotations", 0, "id"], True), r"annotation .* needs an int 'id'"),
    "category id boolean": (_set(["categories", 0, "id"], True), r"category .* needs an int 'id'"),
    "blank category name": (_set(["categories", 0, "name"], "   "), r"category 1 \('   '\): empty phrase"),
    "empty category name": (_set(["categories", 1, "name"], ""), r"category 2 \(''\): empty phrase"),
    "file_name with ..": (
        _set(["images", 0, "file_name"], "../a.png"),
        r"image id 1 \(\.\./a\.png\): file_name must be a path inside image_dir",
    ),
    "absolute file_name": (
        _set(["images", 0, "file_name"], "/etc/hostname"),
        r"image id 1 \(/etc/hostname\): file_name must be a path inside image_dir",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_label_is_refused_naming_file_and_record(tmp_path, basic_coco, case):
    mutate, pattern = CASES[case]
    json_path, image_dir = write_coco(tmp_path, basic_coco, "ann.json")
    mutate(basic_coco)
    json_path.write_text(json.dumps(basic_coco))
    before = json_path.read_bytes()
    with pytest.raises(CocoFormatError, match=pattern) as info:
        read_coco(json_path, image_dir)
    assert json_path.name in str(info.value).split(":")[0]
    assert json_path.read_bytes() == before


def test_skip_drops_each_bad_record_and_keeps_the_rest(tmp_path, basic_coco):
    coco = basic_coco
    json_path, image_dir = write_coco(tmp_path, coco, "ann.json")
    coco["annotations"][0]["segmentation"] = [[5, 5, 1e12, 5, 15, 15]]
    coco["annotations"][2]["segmentation"]["counts"] = "garbage~~"
    coco["images"][1]["file_name"] = "../b.png"
    json_path.write_text(json.dumps(coco))
    with pytest.warns(CocoSkipWarning, match=r"skipped 3 invalid record\(s\)") as caught:
        kept = read_coco_set(json_path, image_dir, on_error="skip")
    message = str(caught[0].message)
    assert "polygon far outside the image" in message and "file outside image_dir" in message
    assert [s.image_id for s in kept.samples] == [1]
    assert [ann["id"] for ann in kept.gt["annotations"]] == [11]


def test_paths_outside_image_dir_are_read_when_allowed(tmp_path, basic_coco):
    coco = basic_coco
    json_path, image_dir = write_coco(tmp_path, coco, "ann.json")
    coco["images"][0]["file_name"] = "../images/a.png"
    coco["images"][1]["file_name"] = str((image_dir / "b.png").resolve())
    json_path.write_text(json.dumps(coco))
    samples = read_coco(json_path, image_dir, allow_outside_image_dir=True)
    assert [s.image_path.resolve() for s in samples] == [
        (image_dir / n).resolve() for n in ("a.png", "b.png")
    ]


def test_saco_file_without_any_phrase_is_an_error_not_coco(tmp_path):
    """An SA-Co pair file that lost its ``text_input`` used to be read as COCO with the phrase "object"."""
    saco = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 40, "height": 30, "is_instance_exhaustive": 1},
            {"id": 2, "file_name": "b.png", "width": 40, "height": 30, "is_instance_exhaustive": 1},
        ],
        "annotations": [{"id": 1, "image_id": 1, "bbox": [0.1, 0.1, 0.2, 0.2], "category_id": 1}],
        "categories": [{"id": 1, "name": "object"}],
    }
    json_path, image_dir = write_coco(tmp_path, saco, "saco.json")
    for on_error in ("raise", "skip"):
        with pytest.raises(
            CocoFormatError, match=r"saco\.json: an SA-Co file, but none of its 2 image records"
        ):
            read_source(json_path, image_dir, on_error=on_error)


def test_huge_coordinates_are_refused_fast_and_without_memory(tmp_path, basic_coco):
    """The record is refused before pycocotools rasterises it (which took more than 15 GB)."""
    import resource
    import time

    coco = basic_coco
    coco["annotations"][0]["segmentation"] = [[0, 0, 1e15, 0, 1e15, 1e15]]
    json_path, image_dir = write_coco(tmp_path, coco, "ann.json")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with warnings.catch_warnings(), pytest.raises(CocoFormatError, match=A10):
        read_coco(json_path, image_dir)
    assert time.perf_counter() - start < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB
