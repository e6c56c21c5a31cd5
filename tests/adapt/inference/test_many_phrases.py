"""Hundreds of phrases per image: the predictor and the predict loop go through them in chunks,
and the detections are those of one pass over all of them."""

import numpy as np
import pytest

import sam3_adapt
from sam3_adapt.data_mix.synthetic.shapes import write_shapes_coco

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "pink", "brown", "grey", "white"]
SHAPES = ["circle", "square", "triangle", "star", "cross", "ring", "bar", "moon", "heart", "arrow"]
PHRASES = [f"{size} {colour} {shape}" for size in ("small", "big") for colour in COLOURS for shape in SHAPES]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    _, images = write_shapes_coco(tmp_path_factory.mktemp("shapes"), num_images=1, image_size=96, seed=2)
    return next(images.glob("*.png"))


def test_two_hundred_phrases_in_chunks_give_the_detections_of_one_pass(image):
    assert len(PHRASES) == 200
    chunked = sam3_adapt.load("tiny", device="cpu", score_threshold=0.0, max_detections=5)
    assert chunked.phrase_chunk == 32
    whole = sam3_adapt.load("tiny", device="cpu", score_threshold=0.0, max_detections=5)
    whole.phrase_chunk = None
    a, b = chunked.predict(image, PHRASES), whole.predict(image, PHRASES)
    assert len(a.scores) == len(b.scores) == 200 * 5
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.boxes, b.boxes, rtol=1e-4, atol=1e-3)
    assert (a.masks != b.masks).mean() < 1e-4  # a pixel on a mask's edge may flip with rounding
