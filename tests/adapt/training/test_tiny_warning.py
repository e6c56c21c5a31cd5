"""The built-in tiny base says once that it is a synthetic stand-in when fitted on other data."""

import json
import warnings

import lightning as L
import pytest

from sam3_adapt.data_mix.datamodule import ConceptDataModule
from sam3_adapt.data_mix.synthetic.shapes import is_synthetic_world, write_shapes_coco
from sam3_adapt.training.task import TINY_ON_REAL_DATA, ConceptSegmentationTask


def warnings_of_a_fit(train_json, images, checkpoint="tiny", size=168) -> list[str]:
    data = ConceptDataModule(train_json=str(train_json), image_dir=str(images), image_size=size, batch_size=2)
    task = ConceptSegmentationTask(checkpoint=checkpoint)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(task, data)
    return [str(w.message) for w in caught if "built-in tiny SAM 3" in str(w.message)]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_coco(tmp_path_factory.mktemp("shapes"), num_images=4, image_size=64, seed=0)


def test_no_warning_on_the_kits_synthetic_world(shapes):
    train_json, images = shapes
    assert is_synthetic_world(train_json)
    assert warnings_of_a_fit(train_json, images) == []


def test_one_warning_for_tiny_on_data_from_elsewhere_and_none_for_another_base(shapes, tmp_path):
    train_json, images = shapes
    # The same pictures in a COCO file of the user's own: nothing says it is the concept world.
    coco = json.loads(train_json.read_text())
    coco.pop("info")
    own = tmp_path / "own.json"
    own.write_text(json.dumps(coco))
    assert not is_synthetic_world(own)
    assert warnings_of_a_fit(own, images) == [TINY_ON_REAL_DATA]
    assert "facebook/sam3" in TINY_ON_REAL_DATA
    assert warnings_of_a_fit(own, images, checkpoint="tiny-random", size=224) == []
