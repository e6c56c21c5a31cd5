"""The predict loop in bf16 autocast finds what it finds in float32, within bf16's rounding."""

import numpy as np
import pytest

from sam3_adapt.data_mix.readers.sources import read_source
from sam3_adapt.data_mix.synthetic.concept_world import write_world
from sam3_adapt.inference.loop import predict_samples
from sam3_adapt.model.loading import load_segmenter


def test_bf16_autocast_gives_the_float32_detections_within_rounding(tmp_path):
    json_path, images = write_world(tmp_path, "anchor", 3, seed=5)
    samples = read_source(json_path, images).samples
    segmenter = load_segmenter("tiny")
    full = list(predict_samples(segmenter, samples, max_detections=5))
    half = list(predict_samples(segmenter, samples, max_detections=5, precision="bf16-mixed"))
    assert [(r.sample.image_id, r.phrase) for r in full] == [(r.sample.image_id, r.phrase) for r in half]
    for a, b in zip(full, half, strict=True):
        assert a.detections.scores.dtype == b.detections.scores.dtype  # post-processed in float32
        scores_a, scores_b = np.asarray(a.detections.scores), np.asarray(b.detections.scores)
        np.testing.assert_allclose(scores_a, scores_b, atol=0.05)
        found = scores_a > 0.5
        boxes_a, boxes_b = np.asarray(a.detections.boxes)[found], np.asarray(b.detections.boxes)[found]
        np.testing.assert_allclose(boxes_a, boxes_b, atol=2.0)  # pixels
    with pytest.raises(ValueError, match="precision must be 32-true or bf16-mixed"):
        next(iter(predict_samples(segmenter, samples, precision="16-mixed")))
