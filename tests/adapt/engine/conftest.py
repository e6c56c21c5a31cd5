import pytest

from sam3_adapt.data_mix.synthetic.concept_world import write_world

#: Anchor phrases the tiny base knows (so proposals have instances) and one it never fires on.
PHRASES = ["red circle", "blue square", "circle", "yellow star"]


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
