"""A box drawn around a shape of the concept world gives that shape's mask; a second box skips the ViT."""

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from sam3_adapt.data_mix.images import read_rgb
from sam3_adapt.data_mix.synthetic.concept_world import write_world
from sam3_adapt.inference.box_prompt import BoxPrompter, box_prompt
from sam3_adapt.model.loading import load_segmenter


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    json_path, image_dir = write_world(tmp_path_factory.mktemp("world"), "anchor", 2, seed=3)
    coco = json.loads(json_path.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {i["id"]: image_dir / i["file_name"] for i in coco["images"]}
    shapes = [
        (files[a["image_id"]], names[a["category_id"]], a["bbox"], mask_utils.decode(a["segmentation"]) > 0)
        for a in coco["annotations"]
    ]
    return shapes


def iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def test_a_box_around_a_shape_gives_its_mask_and_a_second_box_reuses_the_vision_features(world):
    segmenter = load_segmenter("tiny")
    calls = []
    segmenter.sam3.vision_encoder.register_forward_hook(lambda *_: calls.append(1))
    prompter = BoxPrompter(segmenter)
    same_image = [shape for shape in world if shape[0] == world[0][0]][:2]
    for path, phrase, (x, y, w, h), truth in same_image:
        found = prompter(path, phrase, [x - 2, y - 2, x + w + 2, y + h + 2])
        assert found.mask.shape == truth.shape and found.mask.dtype == bool
        assert not found.from_box and found.overlap > 0.5 and 0 < found.score <= 1
        assert iou(found.mask, truth) > 0.6
    assert len(calls) == prompter.vision_runs == 1  # two boxes on one image: the encoder ran once

    # Pixels given as an array are read the same way and give the same instance.
    path, phrase, (x, y, w, h), _ = same_image[0]
    box = [x - 2, y - 2, x + w + 2, y + h + 2]
    from_file, from_array = prompter(path, phrase, box), box_prompt(segmenter, read_rgb(path), phrase, box)
    assert np.array_equal(from_file.mask, from_array.mask) and from_file.box == pytest.approx(from_array.box)
    assert len(calls) == 2


def test_a_box_without_area_in_the_image_is_refused(world):
    prompter = BoxPrompter(load_segmenter("tiny"))
    path, phrase, _, truth = world[0]
    height, width = truth.shape
    with pytest.raises(ValueError, match="less than one pixel of area"):
        prompter(path, phrase, [width + 5, 0, width + 40, 30])
    with pytest.raises(ValueError, match="four finite numbers"):
        prompter(path, phrase, [0, 0, 10])
