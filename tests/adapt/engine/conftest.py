import numpy as np
import pytest

from sam3_adapt.data_mix.synthetic.concept_world import write_world
from sam3_adapt.engine.signals import encode_rle

#: Anchor phrases the tiny base knows (so proposals have instances) and one it never fires on.
PHRASES = ["red circle", "blue square", "circle", "yellow star"]

#: Side of the built review cases' images.
SIZE = 20


def square(x0, y0, x1, y1):
    """A built instance: its box and the RLE of the filled square."""
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return [float(x0), float(y0), float(x1), float(y1)], encode_rle(mask)


#: Three built instances.
A, B, C = square(0, 0, 4, 4), square(10, 10, 14, 14), square(5, 12, 9, 16)


@pytest.fixture(scope="session")
def anchor_pool(tmp_path_factory):
    """Four anchor-world images with their ground truth (the pool's hidden labels)."""
    folder = tmp_path_factory.mktemp("pool")
    json_path, image_dir = write_world(folder, "anchor", 4, seed=3)
    return json_path, image_dir


@pytest.fixture(scope="session")
def proposals(anchor_pool, tmp_path_factory):
    """The tiny base's proposals over the pool (propose's own run)."""
    from sam3_adapt.engine.propose import TrainerOptions, propose

    out = tmp_path_factory.mktemp("proposals") / "run"
    propose(str(anchor_pool[1]), PHRASES, str(out), progress=False, trainer=TrainerOptions(accelerator="cpu"))
    return out
