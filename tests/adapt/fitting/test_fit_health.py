"""Fit health: the train-set AP before and after a fit, and a warning when the model does not learn."""

import warnings

import pytest

from sam3_adapt.data_mix.synthetic.concept_world import write_world
from sam3_adapt.fitting.fit_health import FitHealth, Health
from sam3_adapt.fitting.lightning_cli import lightning_cli
from sam3_adapt.fitting.recipe_files import recipe_path


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    root = tmp_path_factory.mktemp("health")
    return write_world(root / "shots", "industrial", 4), write_world(root / "anchor", "anchor", 8)


def fit(tmp_path, shots, steps, *extra):
    (train_json, image_dir), (anchor_json, anchor_dir) = shots
    args = [
        "--config",
        str(recipe_path("tiny-10shot")),
        f"--data.train_json={train_json}",
        f"--data.image_dir={image_dir}",
        f"--data.anchor_json={anchor_json}",
        f"--data.anchor_image_dir={anchor_dir}",
        f"--trainer.max_steps={steps}",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        *extra,
    ]
    cli = lightning_cli(args, run=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli.trainer.fit(cli.model, cli.datamodule)
    [callback] = [c for c in cli.trainer.callbacks if isinstance(c, FitHealth)]
    return callback.health, [str(w.message) for w in caught if "is not learning" in str(w.message)]


def test_a_frozen_adapter_cannot_fit_and_is_told_what_to_change(tmp_path, shots, capsys):
    # Learning rate 0: the LoRA adapter stays at its initial zero update, the features stay the base's.
    rates = [f"--model.{key}=0.0" for key in ("lr_detector", "lr_text", "lr_vision")]
    health, warned = fit(tmp_path, shots, 4, *rates)
    assert health.images == 4 and health.metric == "segm/AP"
    assert health.after == pytest.approx(health.base) and not health.learning
    assert len(warned) == 1
    assert (
        "the adapter is not learning" in warned[0]
        and "full fine-tuning (--model.adaptation full)" in warned[0]
    )
    assert "more steps" in warned[0] and "a higher rate" in warned[0]
    assert "fit health: train-set segm/AP on 4 training images" in capsys.readouterr().out


@pytest.mark.slow
def test_the_demo_recipe_learns_its_shots_without_a_warning(tmp_path, shots):
    health, warned = fit(tmp_path, shots, 60)
    assert health.learning and health.after > health.base + 0.05 and not warned


def test_the_warning_names_levers_for_full_fine_tuning_too():
    text = Health("bbox/AP", 8, 0.0, 0.01).warning("full")
    assert text.startswith("the model is not learning") and "full fine-tuning" not in text
