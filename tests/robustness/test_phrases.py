"""An empty or blank phrase is an error everywhere: the network would answer it with confident noise."""

from __future__ import annotations

import numpy as np
import pytest

from sam3_adapt.predictor import load


@pytest.fixture(scope="module")
def predictor():
    return load("tiny", device="cpu")


@pytest.mark.parametrize("phrase", ["", "   ", "\t\n"])
def test_blank_phrase_is_refused_by_the_network_and_the_predictor(predictor, phrase):
    with pytest.raises(ValueError, match=r"cells\.json: category 3: phrase .* is empty or blank"):
        predictor.segmenter.check_phrase(phrase, origin="cells.json: category 3")
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="is empty or blank"):
        predictor.predict(image, ["red circle", phrase])
    with pytest.raises(ValueError, match="is empty or blank"):
        predictor.predict(image, phrase)
