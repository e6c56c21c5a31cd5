"""Fuzzing the COCO and SA-Co readers: whatever a JSON file holds, only the kit's own error escapes.

Records are drawn from JSON-like values with a bias to the shapes a COCO file has (numbers of every
kind, NaN, huge values, booleans and strings where numbers belong, polygons and RLEs), over one
real 40x30 image. The count of examples that ran is printed (``pytest -s``) and checked.
"""

from __future__ import annotations

import math
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sam3_adapt.data_mix.images import ImageReadError
from sam3_adapt.data_mix.readers.coco import coco_set_from_dict
from sam3_adapt.data_mix.readers.coco_checks import CocoFormatError
from sam3_adapt.data_mix.readers.saco import saco_set_from_dict
from tests.robustness.conftest import write_coco

EXAMPLES = 200
numbers = st.one_of(
    st.integers(-(10**13), 10**13),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 30, 40, -1, 1e9, 1e12, math.nan, math.inf]),
)
scalars = st.one_of(numbers, st.booleans(), st.none(), st.text(max_size=8))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
polygons = st.lists(st.lists(st.one_of(numbers, st.booleans()), min_size=0, max_size=12), max_size=3)
rles = st.fixed_dictionaries(
    {
        "size": st.one_of(st.just([30, 40]), st.lists(scalars, max_size=3)),
        "counts": st.one_of(
            st.lists(st.one_of(st.integers(-5, 1300), st.booleans()), max_size=6), st.text(max_size=20)
        ),
    }
)
annotations = st.fixed_dictionaries(
    {
        "id": st.one_of(st.integers(1, 5), scalars),
        "image_id": st.one_of(st.just(1), st.just(2), values),
        "category_id": st.one_of(st.just(1), st.just(2), values),
        "bbox": st.one_of(st.lists(st.one_of(numbers, st.booleans()), min_size=4, max_size=4), values),
    },
    optional={
        "segmentation": st.one_of(polygons, rles, values),
        "area": st.one_of(numbers, scalars),
        "iscrowd": st.one_of(st.sampled_from([0, 1, True, False, "no", 2]), scalars),
    },
)
images = st.fixed_dictionaries(
    {
        "id": st.one_of(st.just(1), st.just(2), scalars),
        "file_name": st.one_of(
            st.sampled_from(["a.png", "b.png", "../a.png", "/a.png", "nope.png", ""]), scalars
        ),
    },
    optional={"width": st.one_of(st.just(40), scalars), "height": st.one_of(st.just(30), scalars)},
)
categories = st.fixed_dictionaries(
    {
        "id": st.one_of(st.just(1), st.just(2), scalars),
        "name": st.one_of(st.sampled_from(["cat", "dog", " ", ""]), scalars),
    }
)
files = st.one_of(
    st.fixed_dictionaries(
        {
            "images": st.lists(images, max_size=3),
            "annotations": st.lists(annotations, max_size=4),
            "categories": st.lists(categories, max_size=3),
        }
    ),
    values,
)
ran = {"count": 0}


def test_only_the_kits_errors_escape_the_coco_reader(tmp_path, basic_coco):
    json_path, image_dir = write_coco(tmp_path, basic_coco, "ann.json")

    @settings(max_examples=EXAMPLES, deadline=2000, suppress_health_check=list(HealthCheck), database=None)
    @given(coco=files, on_error=st.sampled_from(["raise", "skip"]))
    def read(coco, on_error):
        ran["count"] += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                coco_set_from_dict(coco, json_path, image_dir, on_error=on_error)
            except (CocoFormatError, ImageReadError):
                pass

    read()
    print(f"COCO reader fuzz: {ran['count']} examples ran")
    assert ran["count"] >= EXAMPLES // 2


saco_pairs = st.fixed_dictionaries(
    {
        "id": st.one_of(st.integers(1, 4), scalars),
        "file_name": st.one_of(st.sampled_from(["a.png", "b.png", "../a.png", "nope.png"]), scalars),
        "text_input": st.one_of(st.sampled_from(["cat", "dog"]), st.sampled_from(["", "  "]), scalars),
    },
    optional={
        "width": st.one_of(st.just(40), scalars),
        "height": st.one_of(st.just(30), scalars),
        "is_instance_exhaustive": st.one_of(st.sampled_from([0, 1]), scalars),
    },
)
saco_structured = st.fixed_dictionaries(
    {
        "images": st.lists(saco_pairs, min_size=1, max_size=4),
        "annotations": st.lists(annotations, min_size=1, max_size=4),
        "categories": st.just([{"id": 1, "name": "object"}]),
    }
)
# Mostly well-formed files: the records' contents are what the SA-Co conversion has to survive.
saco_files = st.one_of(saco_structured, saco_structured, saco_structured, values)
saco_ran = {"count": 0}


def test_only_the_kits_errors_escape_the_saco_reader(tmp_path, basic_coco):
    json_path, image_dir = write_coco(tmp_path, basic_coco, "saco.json")

    @settings(max_examples=EXAMPLES, deadline=2000, suppress_health_check=list(HealthCheck), database=None)
    @given(saco=saco_files, on_error=st.sampled_from(["raise", "skip"]), normalized=st.booleans())
    def read(saco, on_error, normalized):
        saco_ran["count"] += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                saco_set_from_dict(saco, json_path, image_dir, normalized_boxes=normalized, on_error=on_error)
            except (CocoFormatError, ImageReadError):
                pass

    read()
    print(f"SA-Co reader fuzz: {saco_ran['count']} examples ran")
    assert saco_ran["count"] >= EXAMPLES // 2


# Hugging Face objects: Arrow gives every column one type, so the fuzz stays inside a schema and
# varies what a schema allows: NaN, infinite, huge, negative and wrongly sized boxes and polygons,
# labels outside the ClassLabel, blank string categories, bad areas and crowd flags, broken images.
HF_EXAMPLES = 200
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([0.0, 5.0, 1e9, -1.0])
)
hf_objects = st.fixed_dictionaries(
    {
        "bbox": st.lists(floats, min_size=0, max_size=6),
        "area": floats,
        "iscrowd": st.integers(-2, 3),
        "segmentation": st.lists(st.lists(floats, max_size=10), max_size=2),
    }
)
hf_rows = st.lists(
    st.tuples(
        st.sampled_from(["png", "empty", "garbage"]),
        st.lists(
            st.tuples(hf_objects, st.integers(-1, 3), st.sampled_from(["cat", "dog", " ", ""])), max_size=4
        ),
    ),
    min_size=1,
    max_size=3,
)
hf_ran = {"count": 0}


def test_only_the_kits_errors_escape_the_hugging_face_reader(tmp_path):
    import datasets
    import numpy as np
    from PIL import Image

    from sam3_adapt.data_mix.readers.hf import read_hf_set

    Image.fromarray(np.full((30, 40, 3), 100, np.uint8)).save(tmp_path / "ok.png")
    contents = {"png": (tmp_path / "ok.png").read_bytes(), "empty": b"", "garbage": b"no image " * 9}
    labelled = datasets.List({
        "bbox": datasets.List(datasets.Value("float32")),
        "area": datasets.Value("float32"),
        "iscrowd": datasets.Value("int64"),
        "segmentation": datasets.List(datasets.List(datasets.Value("float32"))),
        "category": datasets.ClassLabel(names=["cat", "dog"]),
    })  # fmt: skip
    named = datasets.List({**labelled.feature, "category": datasets.Value("string")})

    @settings(max_examples=HF_EXAMPLES, deadline=5000, suppress_health_check=list(HealthCheck), database=None)
    @given(
        rows=hf_rows,
        strings=st.booleans(),
        normalized=st.booleans(),
        on_error=st.sampled_from(["raise", "skip"]),
    )
    def read(rows, strings, normalized, on_error):
        hf_ran["count"] += 1
        folder = tmp_path / f"set{hf_ran['count']}"
        records = [
            {
                "image": {"bytes": contents[kind], "path": None},
                "objects": [
                    {**obj, "category": name if strings else max(label, 0) % 2}
                    for obj, label, name in objects
                ],
            }
            for kind, objects in rows
        ]
        features = datasets.Features({"image": datasets.Image(), "objects": named if strings else labelled})
        datasets.Dataset.from_list(records, features=features).save_to_disk(folder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                read_hf_set(
                    folder, normalized_boxes=normalized, on_error=on_error, cache_dir=tmp_path / "cache"
                )
            except (CocoFormatError, ImageReadError):
                pass

    datasets.disable_progress_bars()
    try:
        read()
    finally:
        datasets.enable_progress_bars()
    print(f"Hugging Face reader fuzz: {hf_ran['count']} examples ran")
    assert hf_ran["count"] >= HF_EXAMPLES // 2
