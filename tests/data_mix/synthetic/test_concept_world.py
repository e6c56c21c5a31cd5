import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from sam3_adapt.data_mix.preview import preview_grid
from sam3_adapt.data_mix.readers.coco import read_coco
from sam3_adapt.data_mix.synthetic.concept_world import (
    ANCHOR_COLOURS,
    ANCHOR_SHAPES,
    DOMAINS,
    concept_tree_file,
    domain_categories,
    write_demo_worlds,
    write_world,
)
from sam3_adapt.data_mix.synthetic.shapes import write_shapes_coco

COUNTS = {"anchor": (1, 8), "microscopy": (3, 10), "industrial": (1, 6)}


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """Twelve 168-pixel images of every domain: {domain: (json_path, image_dir)}."""
    root = tmp_path_factory.mktemp("worlds")
    return {domain: write_world(root / domain, domain, num_images=12, seed=7) for domain in DOMAINS}


@pytest.mark.parametrize("domain", DOMAINS)
def test_same_seed_byte_identical_other_seed_differs(domain, tmp_path):
    start = time.perf_counter()
    write_world(tmp_path / "a", domain, num_images=3, seed=1, image_size=96)
    assert time.perf_counter() - start < 3.0
    write_world(tmp_path / "b", domain, num_images=3, seed=1, image_size=96)
    write_world(tmp_path / "c", domain, num_images=3, seed=2, image_size=96)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    tree = Path("concept_tree.yaml")
    assert len(a) == 4 + (domain != "anchor") and a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a if k != tree)


@pytest.mark.parametrize("domain", DOMAINS)
def test_masks_exact_disjoint_visible_and_images_hold_one_to_three_categories(domain, worlds):
    json_path, image_dir = worlds[domain]
    coco = json.loads(json_path.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert [img["file_name"] for img in coco["images"]] == [f"{i:04d}.png" for i in range(12)]
    per_image = {}
    for ann in coco["annotations"]:
        mask = mask_utils.decode(ann["segmentation"]).astype(bool)
        ys, xs = np.nonzero(mask)
        assert mask.shape == (168, 168) and ann["iscrowd"] == 0
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["area"] == mask.sum()
        assert max(ann["bbox"][2:]) >= 8 and ann["area"] >= 40
        per_image.setdefault(ann["image_id"], []).append((names[ann["category_id"]], mask))
    assert sorted(per_image) == list(range(1, 13))
    # An anchor object is annotated twice, as "red circle" and as "circle", with the same mask.
    drawn = len(domain_categories(domain)) - (len(ANCHOR_SHAPES) if domain == "anchor" else 0)
    specific = set(list(names.values())[:drawn])
    for image_id, objects in per_image.items():
        broad = [(name, mask) for name, mask in objects if name not in specific]
        objects = per_image[image_id] = [(name, mask) for name, mask in objects if name in specific]
        assert len(broad) == (len(objects) if domain == "anchor" else 0)
        for name, mask in objects:
            assert any(b == name.split()[-1] and (m == mask).all() for b, m in broad) or domain != "anchor"
    low, high = COUNTS[domain]
    for objects in per_image.values():
        assert low <= len(objects) <= high
        assert 1 <= len({cat for cat, _ in objects}) <= 3
        assert sum(mask.astype(int) for _, mask in objects).max() == 1


def _object_colours(json_path, image_dir):
    """(phrase, mean RGB under its mask) for every annotation of a world."""
    coco = json.loads(json_path.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    for ann in coco["annotations"]:
        pixels = np.asarray(Image.open(image_dir / f"{ann['image_id'] - 1:04d}.png"), dtype=float)
        mask = mask_utils.decode(ann["segmentation"]).astype(bool)
        yield names[ann["category_id"]], pixels[mask].mean(axis=0)


def test_anchor_objects_carry_their_colour(worlds):
    palette = np.array(list(ANCHOR_COLOURS.values()), dtype=float)
    for name, mean in _object_colours(*worlds["anchor"]):
        if name in ANCHOR_SHAPES:
            continue
        nearest = list(ANCHOR_COLOURS)[int(np.abs(palette - mean).sum(axis=1).argmin())]
        assert name.split()[0] == nearest


def test_vocabularies_are_new_words_and_unknown_domain_fails():
    assert DOMAINS == ("anchor", "microscopy", "industrial")
    anchor = domain_categories("anchor")
    assert len(anchor) == 20 and [c["id"] for c in anchor] == list(range(1, 21))
    assert [c["name"] for c in anchor[16:]] == list(ANCHOR_SHAPES)
    anchor_words = {word for c in anchor for word in c["name"].split()}
    for domain in DOMAINS[1:]:
        names = [c["name"] for c in domain_categories(domain)]
        assert len(names) == len(set(names)) >= 4
        assert not anchor_words & {word for name in names for word in name.split()}
    with pytest.raises(ValueError, match="unknown domain 'medical'"):
        domain_categories("medical")
    with pytest.raises(ValueError, match="image_size"):
        write_world("unused", "anchor", 1, image_size=32)


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_image_has_negatives_and_every_phrase_is_frequent(domain, worlds):
    samples = read_coco(*worlds[domain])
    phrases = [c["name"] for c in domain_categories(domain)]
    present = {phrase: 0 for phrase in phrases}
    for sample in samples:
        assert sorted(q.phrase for q in sample.queries) == sorted(phrases)
        positives = [q.phrase for q in sample.queries if not q.is_negative]
        drawn = [p for p in positives if p not in ANCHOR_SHAPES]
        assert 1 <= len(drawn) <= 3 and len(positives) < len(phrases)
        if domain == "anchor":  # every present shape is also a positive on its own
            assert {p.split()[-1] for p in drawn} == set(positives) - set(drawn)
        for phrase in positives:
            present[phrase] += 1
    # 12 images with 1-3 drawn phrases each: every phrase shows up, anchor's 20 included
    assert min(present.values()) >= (1 if domain == "anchor" else 3)


@pytest.mark.parametrize("domain", DOMAINS[1:])
def test_target_objects_are_saturated_and_not_yellow(domain, worlds):
    # What the tiny base can learn in 10 shots (README): grey objects stay at AP 0, and yellow or
    # orange-yellow ones are found before adaptation by the feature every unknown phrase maps to.
    for _, (red, green, blue) in _object_colours(*worlds[domain]):
        assert max(red, green, blue) - min(red, green, blue) >= 0.4 * max(red, green, blue)
        assert not (red > blue + 60 and green > blue + 60)


def test_demo_worlds_have_exact_shots_and_disjoint_validation(tmp_path):
    paths = write_demo_worlds(
        tmp_path, seed=3, image_size=64, anchor_train=3, anchor_val=2, target_shots=4, target_val=3
    )
    assert sorted(paths) == sorted(f"{d}/{s}" for d in DOMAINS for s in ("train", "val"))
    for domain in DOMAINS:
        train_json, train_dir = paths[f"{domain}/train"]
        val_json, val_dir = paths[f"{domain}/val"]
        assert train_json == tmp_path / domain / "train" / "annotations.json"
        expected = (3, 2) if domain == "anchor" else (4, 3)
        counts = tuple(len(json.loads(p.read_text())["images"]) for p in (train_json, val_json))
        assert counts == expected
        assert (len(list(train_dir.glob("*.png"))), len(list(val_dir.glob("*.png")))) == expected
        digests = [
            {hashlib.sha256(p.read_bytes()).digest() for p in d.glob("*.png")} for d in (train_dir, val_dir)
        ]
        assert not digests[0] & digests[1]


def test_preview_writes_a_png(worlds, tmp_path):
    out = preview_grid(*worlds["microscopy"], tmp_path / "sub" / "preview.png", num=4, seed=1)
    assert out == tmp_path / "sub" / "preview.png"
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 300
        assert len(np.unique(np.asarray(image.convert("L")))) > 20


def test_preview_draws_box_only_sets(tmp_path):
    json_path, image_dir = write_shapes_coco(
        tmp_path / "boxes", num_images=3, image_size=64, seed=0, masks=False
    )
    out = preview_grid(json_path, image_dir, tmp_path / "boxes.png", num=3)
    with Image.open(out) as image:
        assert image.format == "PNG"


def test_target_domains_ship_their_concept_tree_as_hard_negatives(worlds):
    from sam3_adapt.data_mix.negatives.add import add_negatives
    from sam3_adapt.data_mix.readers.coco import read_coco_set

    assert concept_tree_file(worlds["anchor"][0]) is None
    SIBLINGS = {"scratch": "rust spot", "rust spot": "scratch", "hex bolt": "washer", "washer": "hex bolt"}
    json_path, image_dir = worlds["industrial"]
    tree = concept_tree_file(json_path)
    assert tree == json_path.parent / "concept_tree.yaml"
    coco = read_coco_set(json_path, image_dir)
    with_tree = add_negatives(coco, concept_tree=tree)
    for plain, hard in zip(coco.samples, with_tree.samples, strict=True):
        present = {q.phrase for q in plain.positives}
        added = [q.phrase for q in hard.queries[len(plain.queries) :]]
        # Exhaustive labels already make every absent phrase a negative; the tree marks the siblings
        # of present ones (a rust spot where only scratches are) as hard, and never a present one.
        expected = {SIBLINGS[p] for p in present} - present
        assert {q.phrase for q in hard.queries if q.phrase in expected} == expected
        assert not present & set(added)
