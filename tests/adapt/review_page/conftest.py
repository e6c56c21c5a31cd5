import shutil

import pytest

from sam3_adapt.data_mix.synthetic.concept_world import write_world
from sam3_adapt.engine.rounds import engine

#: Anchor phrases the tiny base knows (so proposals have instances) and one it never fires on.
PHRASES = ["red circle", "blue square", "circle", "yellow star"]


def engine_arguments(folder):
    """The engine's arguments over a small pool: 2 labelled images, 6 pool images, 2 fit steps."""
    labelled, labelled_dir = write_world(folder / "shots", "anchor", 2, seed=1)
    _, pool = write_world(folder / "pool", "anchor", 6, seed=2)
    return {
        "pool": str(pool),
        "phrases": PHRASES,
        "labelled": str(labelled),
        "labelled_image_dir": str(labelled_dir),
        "out": str(folder / "engine"),
        "rounds": 1,
        "max_steps": 2,
    }


@pytest.fixture(scope="session")
def waiting_round(tmp_path_factory):
    """An engine run stopped at round 0's review queue (no person, no simulation): the page's input."""
    folder = tmp_path_factory.mktemp("waiting")
    arguments = engine_arguments(folder)
    engine(**arguments)
    return folder, arguments


@pytest.fixture
def round_copy(waiting_round, tmp_path):
    """A fresh copy of the waiting engine run (its journal untouched) and the engine's arguments for it."""
    folder, arguments = waiting_round
    shutil.copytree(folder / "engine", tmp_path / "engine")
    return tmp_path / "engine" / "round-0", {**arguments, "out": str(tmp_path / "engine")}
