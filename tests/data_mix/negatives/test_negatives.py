"""Hard negatives: files of confusions, generated siblings, and the cap and ratio per image."""

import copy

import numpy as np
import pytest
from PIL import Image

from sam3_adapt.data_mix import ConceptDataset, ConceptSample, Instance, Query, eval_transform, read_coco_set
from sam3_adapt.data_mix.negatives.add import NegativeConflictError, add_negatives
from sam3_adapt.data_mix.negatives.files import (
    NegativeEntry,
    read_negative_phrases,
    write_negative_phrases,
)
from sam3_adapt.data_mix.negatives.siblings import ConceptTree, split_phrase, vocabulary_siblings
from tests.data_mix.conftest import write_coco

SHAPES = [f"{c} {s}" for c in ("red", "green", "blue") for s in ("circle", "square", "triangle")]


def described(coco_set):
    """Every query as comparable tuples, by image."""
    return {
        s.image_id: [(q.phrase, q.category_id, len(q.instances), q.negative_kind) for q in s.queries]
        for s in coco_set.samples
    }


@pytest.fixture
def coco_files(tmp_path, basic_coco):
    """basic_coco on disk: image 1 (a.png) has cat and dog, image 2 (b.png) has nothing."""
    return write_coco(tmp_path, basic_coco)


def test_yaml_and_csv_give_the_same_queries(tmp_path, coco_files):
    (tmp_path / "neg.yaml").write_text(
        "dataset: [fox]\nimages:\n  a.png: [wolf]\n  2: [bird, 'Wolf ', fox]\n"
    )
    (tmp_path / "neg.csv").write_text("image,phrase,note\n*,fox,\na.png,wolf,x\n2,bird,\n2, Wolf,\n,fox,\n")
    coco = read_coco_set(*coco_files)
    before = copy.deepcopy(described(coco))
    from_yaml = add_negatives(coco, explicit=tmp_path / "neg.yaml")
    from_csv = add_negatives(coco, explicit=str(tmp_path / "neg.csv"))
    assert described(from_yaml) == described(from_csv)
    assert described(coco) == before  # the input set is left alone
    assert described(from_yaml) == {
        1: [
            ("cat", 1, 2, "implicit"),
            ("dog", 2, 1, "implicit"),
            ("bird", 7, 0, "implicit"),
            ("fox", 8, 0, "explicit"),
            ("wolf", 9, 0, "explicit"),
        ],
        2: [
            ("cat", 1, 0, "implicit"),
            ("dog", 2, 0, "implicit"),
            ("bird", 7, 0, "explicit"),  # the implicit negative, now a hard one
            ("fox", 8, 0, "explicit"),
            ("wolf", 9, 0, "explicit"),  # " Wolf" is the phrase first seen as "wolf"
        ],
    }
    assert from_yaml.gt["categories"][-2:] == [{"id": 8, "name": "fox"}, {"id": 9, "name": "wolf"}]
    assert from_yaml.phrases[8][1].startswith("neg.yaml: image id 1 (a.png)")
    assert (
        from_yaml.samples[1].queries[2].is_hard_negative
        and not from_yaml.samples[1].queries[0].is_hard_negative
    )


@pytest.mark.parametrize(
    ("text", "suffix"),
    [
        ("images:\n  a.png: [Cat]\n", ".yaml"),  # case and spaces do not hide the conflict
        ("dataset: [dog]\n", ".yaml"),  # a dataset-wide phrase present in one image
        ("image,phrase\n1,cat\n", ".csv"),
    ],
)
def test_negative_that_is_a_positive_names_file_image_and_phrase(tmp_path, coco_files, text, suffix):
    path = tmp_path / f"confusions{suffix}"
    path.write_text(text)
    with pytest.raises(NegativeConflictError, match=r"confusions\.\w+: image id 1 \(a\.png\).*(cat|dog|Cat)"):
        add_negatives(read_coco_set(*coco_files), explicit=path)


def test_crowd_only_phrase_is_present_too(tmp_path, basic_coco):
    basic_coco["annotations"].append(
        {"id": 20, "image_id": 2, "category_id": 7, "bbox": [1, 1, 5, 5], "iscrowd": 1, "segmentation": []}
    )
    coco = read_coco_set(*write_coco(tmp_path, basic_coco))
    (tmp_path / "neg.yaml").write_text("images:\n  b.png: [bird]\n")
    with pytest.raises(NegativeConflictError, match=r"image id 2 \(b\.png\).*'bird'"):
        add_negatives(coco, mined=tmp_path / "neg.yaml")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("n.yaml", "images:\n  c.png: [fox]\n", "image 'c.png' names no image"),
        ("n.yaml", "negatives: [fox]\n", "expected a mapping with the keys"),
        ("n.yaml", "dataset: fox\n", "expected a list of phrases"),
        ("n.csv", "img,phrase\na.png,fox\n", "needs the columns 'image' and 'phrase'"),
        ("n.csv", "image,phrase\na.png,  \n", "line 2"),
        ("n.txt", "fox\n", ".yaml, .yml or .csv"),
    ],
)
def test_bad_negative_files_are_named(tmp_path, coco_files, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        add_negatives(read_coco_set(*coco_files), explicit=tmp_path / name)
    assert name in str(info.value)


def test_written_files_read_back_the_same(tmp_path):
    entries = [
        NegativeEntry(None, "fox"),
        NegativeEntry("a b.png", 'say "cheese"', {"score": 0.9, "iou": 0.1}),
        NegativeEntry(7, "wolf", {"score": 0.6}),
        NegativeEntry("7", "owl"),  # a file named 7, not image id 7
    ]
    from_yaml = read_negative_phrases(write_negative_phrases(tmp_path / "m.yaml", entries, "mined\nby test"))
    from_csv = read_negative_phrases(write_negative_phrases(tmp_path / "m.csv", entries))
    assert (from_yaml.dataset, from_yaml.images) == (
        ["fox"],
        {"a b.png": ['say "cheese"'], 7: ["wolf"], "7": ["owl"]},
    )
    assert from_csv.dataset == ["fox"]
    assert from_csv.images == {"a b.png": ['say "cheese"'], "7": ["wolf", "owl"]}  # CSV keys are text
    assert (tmp_path / "m.yaml").read_text().startswith("# mined\n# by test\n")
    assert "score: 0.9" in (tmp_path / "m.yaml").read_text()


def test_vocabulary_siblings():
    assert vocabulary_siblings("red circle", SHAPES) == [
        "red square",
        "red triangle",
        "green circle",
        "blue circle",
    ]
    # Generalisations and other attribute counts are never siblings: they may be present.
    vocab = [
        "circle",
        "red circle",
        "big red circle",
        "small red circle",
        "big blue circle",
        "big red square",
    ]
    assert vocabulary_siblings("big red circle", vocab) == [
        "small red circle",
        "big blue circle",
        "big red square",
    ]
    assert vocabulary_siblings("circle", vocab) == []
    assert vocabulary_siblings("red circle", ["red circle", "blue square"], compose=True) == [
        "blue circle",
        "red square",
    ]
    assert vocabulary_siblings(
        "red cup of tea", ["blue cup of tea", "blue cup of coffee", "red mug of tea"]
    ) == [
        "blue cup of tea",
        "red mug of tea",
    ]
    assert split_phrase("Big  red circle") == (("big", "red"), "circle", ())


def test_concept_tree_siblings_and_relatives():
    tree = ConceptTree.from_mapping(
        {"vehicle": {"car": ["sedan", "SUV"], "truck": ["pickup"]}, "animal": ["cat", "dog"]}
    )
    assert (
        tree.siblings("sedan") == ["SUV"]
        and tree.siblings("car") == ["truck"]
        and tree.siblings("cat") == ["dog"]
    )
    assert tree.related(["pickup"]) == {"pickup", "truck", "vehicle"}
    with pytest.raises(ValueError, match="its own ancestor"):
        ConceptTree.from_mapping({"a": {"b": ["a"]}})


def _image(image_id, file_name, boxes_by_cat):
    return {"id": image_id, "file_name": file_name, "width": 40, "height": 40}, [
        {"image_id": image_id, "category_id": cat, "bbox": [2 + 8 * k, 2, 6, 6], "iscrowd": 0}
        for k, cat in enumerate(boxes_by_cat)
    ]


def _coco(categories, images):
    records, annotations = [], []
    for image_id, cats in enumerate(images, start=1):
        record, anns = _image(image_id, f"{image_id}.png", cats)
        records.append(record)
        annotations += anns
    for ann_id, ann in enumerate(annotations, start=1):
        ann["id"] = ann_id
    return {
        "images": records,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(categories)],
        "annotations": annotations,
    }


def test_generated_siblings_from_vocabulary_and_tree(tmp_path):
    coco = read_coco_set(
        *write_coco(
            tmp_path,
            _coco(
                ["red circle", "blue circle", "red square", "green triangle", "car", "pickup", "sedan"],
                [[1], [1, 2], [5, 6], [7]],
            ),
        )
    )
    kinds = {
        image_id: {phrase: kind for phrase, _, n, kind in queries if n == 0}
        for image_id, queries in described(add_negatives(coco, siblings=True)).items()
    }
    assert kinds[1] == {
        "blue circle": "generated",
        "red square": "generated",
        "green triangle": "implicit",
        "car": "implicit",
        "pickup": "implicit",
        "sedan": "implicit",
    }
    assert kinds[2]["red square"] == "generated" and kinds[2]["green triangle"] == "implicit"

    (tmp_path / "tree.yaml").write_text("vehicle:\n  car: [sedan, suv]\n  truck: [pickup]\n")
    with_tree = add_negatives(coco, concept_tree=tmp_path / "tree.yaml")
    generated = {
        s.image_id: [q.phrase for q in s.queries if q.negative_kind == "generated"] for s in with_tree.samples
    }
    # Image 3 has a car and a pickup: "truck" (sibling of car) is present, as the pickup's parent.
    assert generated == {1: [], 2: [], 3: [], 4: ["suv"]}
    assert with_tree.gt["categories"][-1] == {"id": 8, "name": "suv"}


# ---------------------------------------------------------------- cap and ratio


@pytest.fixture
def crowded_sample(tmp_path):
    """One image with 2 positives, 3 hard negatives and 5 implicit negatives, interleaved."""
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "x.png")
    inst = Instance((2.0, 2.0, 8.0, 8.0), None, 36.0, 1)
    kinds = ["implicit", "explicit", "implicit", "generated", "implicit", "mined", "implicit", "implicit"]
    queries = [Query("p0", 0, [inst], origin="t")] + [
        Query(f"{kind[0]}{i}", i + 1, [], origin="t", negative_kind=kind) for i, kind in enumerate(kinds)
    ]
    queries.insert(5, Query("p1", 99, [inst], origin="t"))
    return ConceptSample(1, tmp_path / "x.png", 16, 16, queries, "t")


def _draws(sample, count=40, **caps):
    dataset = ConceptDataset([sample], eval_transform(16), seed=0, **caps)
    return [dataset[0]["phrases"] for _ in range(count)]


def test_no_cap_keeps_every_query(crowded_sample):
    assert _draws(crowded_sample, 2) == [[q.phrase for q in crowded_sample.queries]] * 2


@pytest.mark.parametrize(
    ("caps", "negatives", "hard_kept", "forced"),
    [
        ({"max_negatives_per_image": 4}, 4, 3, False),
        ({"max_negatives_per_image": 2}, 2, 2, False),
        ({"negatives_per_positive": 1.0}, 2, 2, False),  # 2 positives
        ({"negatives_per_positive": 1.5}, 3, 3, True),
        ({"negatives_per_positive": 3.0, "max_negatives_per_image": 5}, 5, 3, False),
        ({"negatives_per_positive": 0.0}, 0, 0, True),
        ({"max_queries_per_image": 6, "negatives_per_positive": 10.0}, 4, 3, False),
    ],
)
def test_cap_and_ratio_hold_and_prefer_hard_negatives(crowded_sample, caps, negatives, hard_kept, forced):
    order = [q.phrase for q in crowded_sample.queries]
    seen = set()
    for phrases in _draws(crowded_sample, **caps):
        negs = [p for p in phrases if not p.startswith("p")]
        assert {"p0", "p1"} <= set(phrases) and len(negs) == negatives
        assert sum(not p.startswith("i") for p in negs) == hard_kept
        assert phrases == sorted(phrases, key=order.index)
        seen.add(tuple(negs))
    assert len(seen) == 1 if forced else len(seen) > 1  # random subsets, unless the choice is forced


def test_ratio_on_an_image_without_positives(crowded_sample):
    crowded_sample.queries = [q for q in crowded_sample.queries if q.is_negative]
    for phrases in _draws(crowded_sample, 10, negatives_per_positive=2.0):
        assert len(phrases) == 2 and all(not p.startswith("i") for p in phrases)


def test_bad_caps_raise(crowded_sample):
    with pytest.raises(ValueError, match="max_negatives_per_image"):
        ConceptDataset([crowded_sample], eval_transform(16), max_negatives_per_image=-1)
    with pytest.raises(ValueError, match="negatives_per_positive"):
        ConceptDataset([crowded_sample], eval_transform(16), negatives_per_positive=-0.5)
