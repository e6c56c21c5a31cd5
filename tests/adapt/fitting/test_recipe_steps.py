"""Few-shot recipes train for a number of steps: the schedule does not stretch with the dataset."""

import pytest
import yaml
from lightning.pytorch.callbacks import Callback

from sam3_adapt.data_mix.synthetic.concept_world import write_world
from sam3_adapt.fitting.lightning_cli import lightning_cli
from sam3_adapt.fitting.recipe_files import recipe_path

FEW_SHOT = ("tiny-10shot", "lora-10shot", "full-finetune", "box-only")


class Planned(Exception):
    """Raised at the first training step, carrying the steps the trainer planned."""


class StopAtStart(Callback):
    def on_train_start(self, trainer, pl_module):
        raise Planned(trainer.estimated_stepping_batches, trainer.num_training_batches)


@pytest.mark.parametrize("name", FEW_SHOT)
def test_few_shot_recipes_give_steps_not_epochs(name):
    trainer = yaml.safe_load(recipe_path(name).read_text())["trainer"]
    assert trainer["max_steps"] > 0 and trainer["max_epochs"] == -1


def planned_steps(tmp_path, images):
    json_path, image_dir = write_world(tmp_path / f"shots{images}", "industrial", images, image_size=168)
    anchor_json, anchor_dir = write_world(tmp_path / f"anchor{images}", "anchor", 4, image_size=168)
    cli = lightning_cli(
        [
            "--config",
            str(recipe_path("tiny-10shot")),
            f"--data.train_json={json_path}",
            f"--data.image_dir={image_dir}",
            f"--data.anchor_json={anchor_json}",
            f"--data.anchor_image_dir={anchor_dir}",
            f"--trainer.default_root_dir={tmp_path / f'run{images}'}",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
        ],
        run=False,
    )
    cli.trainer.callbacks.append(StopAtStart())
    with pytest.raises(Planned) as planned:
        cli.trainer.fit(cli.model, cli.datamodule)
    return planned.value.args


def test_the_tiny_recipe_plans_960_steps_for_5_or_38_shots(tmp_path):
    (few, few_batches), (many, many_batches) = planned_steps(tmp_path, 5), planned_steps(tmp_path, 38)
    assert few_batches < many_batches  # the passes differ in length ...
    assert few == many == 960  # ... the fit and its schedule do not
