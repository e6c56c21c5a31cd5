import json
from collections import Counter

import numpy as np
import pytest
from jsonargparse import CLI

from sam3_adapt.data_mix.kshot import kshot_split, make_kshot
from sam3_adapt.data_mix.readers.coco import read_coco_set


def _coco(num_images=60, seed=0):
    """Images with 0-4 objects of 4 classes of very different frequency, plus a crowd now and then."""
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 32, "height": 32})
        for _ in range(rng.integers(0, 5)):
            category = int(rng.choice([1, 2, 3, 4], p=[0.55, 0.3, 0.1, 0.05]))
            crowd = int(rng.random() < 0.1)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": [1, 1, 4, 4],
                }
                | {"iscrowd": crowd}
            )
    categories = [{"id": i, "name": n} for i, n in enumerate(["common", "usual", "rare", "scarce"], start=1)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _instances(split):
    return Counter(a["category_id"] for a in split["annotations"] if not a["iscrowd"])


@pytest.mark.parametrize("k", [1, 3])
def test_every_class_gets_k_instances_reproducibly(k):
    coco = _coco()
    split = kshot_split(coco, k=k, seed=0)
    assert split == kshot_split(coco, k=k, seed=0)
    assert split["images"] != kshot_split(coco, k=k, seed=1)["images"]
    assert all(_instances(split)[c["id"]] >= k for c in coco["categories"])
    ids = [i["id"] for i in split["images"]]
    assert ids == sorted(ids) and len(ids) < len(coco["images"])  # original order, a real subset
    # whole images: every annotation of a chosen image comes along, crowds included
    assert split["annotations"] == [a for a in coco["annotations"] if a["image_id"] in set(ids)]
    assert split["categories"] == coco["categories"]
    info = split["info"]["kshot"]
    assert (info["mode"], info["k"], info["seed"], info["image_ids"]) == ("instances", k, 0, ids)
    assert info["instances_per_category"] == {str(c): n for c, n in sorted(_instances(split).items())}


def test_classes_short_of_k_get_all_their_images_with_a_warning():
    coco = _coco()
    scarce = sum(1 for a in coco["annotations"] if a["category_id"] == 4 and not a["iscrowd"])
    with pytest.warns(UserWarning, match=rf"fewer than k=50 instances .*'scarce': {scarce}"):
        split = kshot_split(coco, k=50, seed=0)
    assert _instances(split)[4] == scarce


def test_n_images_mode_and_bad_arguments():
    coco = _coco()
    split = kshot_split(coco, num_images=7, seed=2)
    assert len(split["images"]) == 7 and split == kshot_split(coco, num_images=7, seed=2)
    assert split["info"]["kshot"]["mode"] == "images"
    with pytest.raises(ValueError, match="exactly one of k and num_images"):
        kshot_split(coco, k=2, num_images=3)
    with pytest.raises(ValueError, match="fewer than num_images=99"):
        kshot_split(coco, num_images=99)


def test_make_kshot_writes_a_coco_file_that_reads_back(shapes_set, tmp_path, capsys):
    json_path, image_dir = shapes_set
    out = tmp_path / "split" / "2shot.json"
    # the typed signature is what `sam3-adapt make-kshot` parses; this small set is short of some classes
    args = ["--data_json", str(json_path), "--k", "2", "--seed", "0", "--out", str(out)]
    with pytest.warns(UserWarning, match="fewer than k=2 instances"):
        CLI(make_kshot, as_positional=False, args=args)
    assert f"wrote {out}" in capsys.readouterr().out
    split = json.loads(out.read_text())
    coco_set = read_coco_set(out, image_dir)
    assert [s.image_id for s in coco_set.samples] == split["info"]["kshot"]["image_ids"]
    source = json.loads(json_path.read_text())["annotations"]
    totals = Counter(a["category_id"] for a in source if not a.get("iscrowd", 0))
    for cat_id, n in split["info"]["kshot"]["instances_per_category"].items():
        assert n >= min(2, totals[int(cat_id)])


def _crowded(seed=0):
    """72 images in two folders: 20 with 30 'cell's, 40 with one 'dish', 12 with nothing at all."""
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    kinds = ["crowded"] * 20 + ["sparse"] * 40 + ["empty"] * 12
    for image_id, kind in enumerate(rng.permutation(kinds).tolist(), start=1):
        folder = "lab_a" if image_id % 2 else "lab_b"
        images.append({"id": image_id, "file_name": f"{folder}/{image_id}.png", "width": 64, "height": 64})
        for _ in range({"crowded": 30, "sparse": 1, "empty": 0}[kind]):
            category = 1 if kind == "crowded" else 2
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": [1, 1, 4, 4],
                }
            )
    categories = [{"id": 1, "name": "cell"}, {"id": 2, "name": "dish"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def test_k_instances_of_a_crowded_class_take_one_image_which_num_images_per_class_fixes():
    coco = _crowded()
    assert kshot_split(coco, k=10, negative_share=0)["info"]["kshot"]["images_per_category"]["1"] == 1
    split = kshot_split(coco, num_images=5, per="class", seed=0)
    info = split["info"]["kshot"]
    assert info["images_per_category"] == {"1": 5, "2": 5}  # every class, five images each
    # The source set has 12 of 72 images without instances; the split keeps that share as negatives.
    assert info["negative_images"] == 2 and len(split["images"]) == 12
    assert split == kshot_split(coco, num_images=5, per="class", seed=0)
    assert (
        kshot_split(coco, num_images=5, per="class", negative_share=0.5)["info"]["kshot"]["negative_images"]
        == 10
    )


def test_per_source_stratifies_by_folder_or_field_and_keeps_negatives():
    coco = _crowded()
    split = kshot_split(coco, num_images=3, per="source", negative_share=0.25, seed=1)
    info = split["info"]["kshot"]
    positives = [i for i in split["images"] if any(a["image_id"] == i["id"] for a in split["annotations"])]
    assert sorted(i["file_name"].split("/")[0] for i in positives) == ["lab_a"] * 3 + ["lab_b"] * 3
    assert info["negative_images"] == 2 and set(info["images_per_source"]) == {"lab_a", "lab_b"}
    for image in coco["images"]:
        image["source"] = "odd" if image["id"] % 3 else "third"
    by_field = kshot_split(coco, k=2, per="source", negative_share=0)["info"]["kshot"]
    assert set(by_field["images_per_source"]) == {"odd", "third"}
    with pytest.raises(ValueError, match="per must be"):
        kshot_split(coco, k=2, per="folder")


def test_make_kshot_reports_what_it_picked(tmp_path, capsys):
    source = tmp_path / "crowded.json"
    source.write_text(json.dumps(_crowded()))
    out = tmp_path / "split.json"
    args = ["--data_json", str(source), "--num_images", "5", "--per", "class", "--out", str(out)]
    CLI(make_kshot, as_positional=False, args=args)
    printed = capsys.readouterr().out
    assert "12 of 72 images" in printed and "images without instances (negatives): 2" in printed
    assert any(line.split()[:3] == ["cell", "150", "5"] for line in printed.splitlines())
