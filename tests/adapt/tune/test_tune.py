"""`sam3-adapt tune` on the tiny model: bad spaces fail early, bad trials are pruned, killed runs resume."""

import json
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import optuna
import pytest
import yaml
from jsonargparse import ActionConfigFile, ArgumentParser
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from sam3_adapt.data_mix.synthetic.concept_world import write_world
from sam3_adapt.fitting.lightning_cli import lightning_cli
from sam3_adapt.model.tiny import write_tiny_random_sam3
from sam3_adapt.tune import PruningSettings, tune
from sam3_adapt.tune.folds import write_folds
from sam3_adapt.tune.recipe import check_space, load_recipe, lookup
from sam3_adapt.tune.space import SearchSpace

ROOT = Path(__file__).parents[3]
RECIPE = str(ROOT / "recipes" / "tiny-10shot.yaml")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
LR = {"model.lr_detector": {"low": 1.0e-4, "high": 1.0e-2, "log": True}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, object]:
    """Recipe overrides that make tiny-10shot a seconds-long fit: a 56 px random SAM 3, 4 + 1 images."""
    root = tmp_path_factory.mktemp("tune")
    checkpoint = write_tiny_random_sam3(root / "model", image_size=56)
    train_json, train_dir = write_world(root / "train", "microscopy", 4, seed=0, image_size=64)
    val_json, val_dir = write_world(root / "val", "microscopy", 1, seed=1, image_size=64)
    return {
        "model.checkpoint": str(checkpoint),
        "data.train_json": str(train_json),
        "data.image_dir": str(train_dir),
        "data.val_json": str(val_json),
        "data.val_image_dir": str(val_dir),
        "data.image_size": 56,
        "data.batch_size": 2,
        "trainer.max_epochs": 3,
        "trainer.logger": False,
        "trainer.enable_progress_bar": False,
        "trainer.enable_model_summary": False,
    }


def load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name=out.name, storage=f"sqlite:///{out / 'study.db'}")


@pytest.mark.parametrize(
    ("search", "named"),
    [
        ({"model.lr_detectr": {"low": 1.0e-4, "high": 1.0e-2}}, "'model.lr_detectr'.*lr_detector"),
        ({"model.lora.rnk": {"choices": [4, 8]}}, "'model.lora.rnk'.*rank"),
        ({"model.lr_detector": {"low": 1.0e-2, "high": 1.0e-3}}, "'model.lr_detector': empty range"),
        ({"model.lora.rank": {"choices": []}}, "'model.lora.rank': choices must be a non-empty list"),
        ({"trainer.max_epochs": {"choices": [2, 2.5]}}, "'trainer.max_epochs' = 2.5 is rejected"),
        ({"model.lr_detector": {"low": 1.0e-4, "hihg": 1.0e-2}}, "'model.lr_detector': unknown field.*hihg"),
    ],
    ids=[
        "unknown-key",
        "unknown-lora-key",
        "empty-range",
        "empty-choices",
        "rejected-value",
        "unknown-field",
    ],
)
def test_a_bad_search_space_fails_before_any_trial_naming_the_key(search, named, tiny, tmp_path):
    with pytest.raises(ValueError, match=named):
        tune(RECIPE, search, tiny, out=str(tmp_path / "study"), n_trials=1)
    assert not (tmp_path / "study" / "study.db").exists()
    assert not (tmp_path / "study" / "trials").exists()


def test_validating_on_nothing_fails_before_any_trial(tiny, tmp_path):
    without_val = {**tiny, "data.val_json": None}
    with pytest.raises(ValueError, match="data.val_json"):
        tune(RECIPE, LR, without_val, out=str(tmp_path / "study"), n_trials=1, folds=1)
    assert not (tmp_path / "study" / "study.db").exists()


def test_resuming_a_study_with_other_settings_fails_before_any_trial(tiny, tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    optuna.create_study(study_name=out.name, storage=f"sqlite:///{out / 'study.db'}", direction="minimize")
    with pytest.raises(ValueError, match="'direction': \\('minimize', 'maximize'\\)"):
        tune(RECIPE, LR, tiny, out=str(out), n_trials=1, direction="maximize")
    assert load(out).trials == [] and not (out / "trials").exists()


def test_k_fold_never_trains_and_judges_on_the_same_image(tiny, tmp_path):
    coco = json.loads(Path(tiny["data.train_json"]).read_text())
    pairs = write_folds(tiny["data.train_json"], tmp_path, folds=3)
    judged = []
    for train_json, val_json in pairs:
        train, val = json.loads(train_json.read_text()), json.loads(val_json.read_text())
        train_ids, val_ids = {i["id"] for i in train["images"]}, {i["id"] for i in val["images"]}
        assert val_ids and not train_ids & val_ids
        assert train_ids | val_ids == {i["id"] for i in coco["images"]}
        assert {a["image_id"] for a in val["annotations"]} <= val_ids
        assert len(train["annotations"]) + len(val["annotations"]) == len(coco["annotations"])
        assert train["categories"] == coco["categories"]
        judged += sorted(val_ids)
    assert sorted(judged) == sorted(i["id"] for i in coco["images"])
    with pytest.raises(ValueError, match="folds=5"):
        write_folds(tiny["data.train_json"], tmp_path, folds=5)


def test_the_tiny_tune_recipe_is_a_valid_tune_config():
    # The same parser `sam3-adapt tune --config` builds from tune's signature.
    parser = ArgumentParser()
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_function_arguments(tune)
    settings = parser.instantiate_classes(
        parser.parse_args(["--config", str(ROOT / "recipes/tune/tiny-10shot.yaml")])
    )
    assert isinstance(settings.pruning, PruningSettings)
    space = SearchSpace.from_dict(settings.search)
    config = check_space(load_recipe(ROOT / settings.recipe), space, settings.recipe, settings.overrides)
    assert lookup(config, "data.train_json") == settings.overrides["data.train_json"]
    assert "model.lora.rank" in space.keys and "data.anchor_ratio" in space.keys


def test_a_diverging_trial_is_pruned_before_its_last_epoch(tiny, tmp_path):
    out = tmp_path / "study"
    # An absurd learning rate on every LoRA weight sends the outputs to inf/NaN within a step or two.
    with pytest.raises(RuntimeError, match="no trial .* has completed"):
        tune(
            RECIPE,
            {"model.lr_detector": {"choices": [1.0e6]}},
            {**tiny, "model.lr_text": 1.0e6},
            out=str(out),
            n_trials=1,
        )
    [trial] = load(out).trials
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["stop_reason"].startswith("diverged")
    assert trial.user_attrs["stopped_epoch"] < tiny["trainer.max_epochs"] - 1
    assert "diverged" in (out / "summary.md").read_text()


def test_a_trial_below_the_median_is_pruned_at_its_first_validation(tiny, tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    # An earlier trial of the study that scored a perfect cgF1 at every epoch: any real trial is below it.
    earlier = optuna.create_study(
        study_name=out.name, storage=f"sqlite:///{out / 'study.db'}", direction="maximize"
    )
    earlier.add_trial(
        create_trial(
            params={"model.lr_detector": 1.0e-3},
            distributions={"model.lr_detector": FloatDistribution(1.0e-4, 1.0e-2, log=True)},
            value=1.0,
            intermediate_values={0: 1.0, 1: 1.0, 2: 1.0},
        )
    )
    result = tune(RECIPE, LR, tiny, out=str(out), n_trials=2, pruning=PruningSettings(startup_trials=1))
    new = load(out).trials[1]
    assert new.state == TrialState.PRUNED
    assert list(new.intermediate_values) == [0] and new.intermediate_values[0] < 1.0
    assert new.user_attrs["stopped_epoch"] == 0 < tiny["trainer.max_epochs"] - 1
    assert result.best_params == {"model.lr_detector": 1.0e-3}


def test_k_fold_trials_fit_every_fold_and_average_them(tiny, tmp_path):
    out = tmp_path / "study"
    no_val = {**tiny, "data.val_json": None, "data.val_image_dir": None, "trainer.max_epochs": 1}
    result = tune(RECIPE, LR, no_val, out=str(out), n_trials=1, folds=2)
    [trial] = load(out).trials
    assert trial.state == TrialState.COMPLETE
    assert len(trial.user_attrs["fold_values"]) == 2
    assert trial.value == pytest.approx(sum(trial.user_attrs["fold_values"]) / 2)
    assert sorted(p.name for p in (out / "trials" / "0000").iterdir()) == ["fold0", "fold1", "recipe.yaml"]
    # The best recipe is the user's recipe, not a fold's: its data are the full few-shot set.
    best = yaml.safe_load(result.best_recipe.read_text())
    assert best["data"]["train_json"] == tiny["data.train_json"] and best["data"]["val_json"] is None


def finished(out: Path) -> int:
    """Finished trials, read with plain read-only SQL: opening the file through Optuna's storage
    while the worker creates it would race the worker's own schema set-up (both stamp alembic)."""
    if not (out / "study.db").exists():
        return 0
    states = ", ".join(f"'{state.name}'" for state in FINISHED)
    try:
        with closing(sqlite3.connect(f"file:{out / 'study.db'}?mode=ro", uri=True)) as db:
            return db.execute(f"SELECT COUNT(*) FROM trials WHERE state IN ({states})").fetchone()[0]
    except sqlite3.OperationalError:  # the worker is still creating the tables
        return 0


def start_worker(settings: dict, log: Path) -> subprocess.Popen:
    """``tune(**settings)`` in a process of its own, its output in ``log``."""
    code = "import json, sys; from sam3_adapt.tune import tune; tune(**json.loads(sys.argv[1]))"
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, "-c", code, json.dumps(settings)],
            cwd=ROOT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
            stdout=output,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.slow
def test_two_workers_on_one_study_try_distinct_values_and_stop_at_the_budget(tiny, tmp_path):
    out = tmp_path / "study"
    settings = {
        "recipe": RECIPE,
        "search": {**LR, "model.lora.rank": {"choices": [4, 8]}},
        "overrides": {**tiny, "trainer.max_epochs": 1},
        "out": str(out),
        "n_trials": 5,
        "heartbeat_s": 1,
    }
    workers = [start_worker(settings, tmp_path / f"worker{i}.log") for i in range(2)]
    for i, worker in enumerate(workers):
        assert worker.wait(timeout=900) == 0, (tmp_path / f"worker{i}.log").read_text()[-3000:]
    trials = load(out).trials
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == 5  # not one more, though both workers asked for 5
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    values = [t.params["model.lr_detector"] for t in finished]
    assert len(set(values)) == len(values)  # the same seed, yet no two trials alike
    ran = [t for t in trials if "not run" not in t.user_attrs.get("error", "")]
    assert {t.number for t in ran} == {t.number for t in finished}


@pytest.mark.slow
def test_a_killed_study_resumes_to_its_trial_budget(tiny, tmp_path):
    out = tmp_path / "study"
    settings = {
        "recipe": RECIPE,
        "search": {**LR, "model.lora.rank": {"choices": [4, 8]}},
        "overrides": {**tiny, "trainer.max_epochs": 2},
        "out": str(out),
        "n_trials": 4,
        "heartbeat_s": 1,  # the killed trial is failed once silent for 2 s
    }
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        deadline = time.monotonic() + 900
        while finished(out) < 2:
            assert worker.poll() is None, f"the worker ended before it was killed:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the tune worker finished no two trials in time"
            time.sleep(0.2)
    finally:
        worker.kill()  # SIGKILL: no clean-up, like a crash or a pulled plug
        worker.wait()
    before = {t.number for t in load(out).trials if t.state in FINISHED}
    assert 2 <= len(before) < 4

    result = tune(**settings)

    trials = load(out).trials
    after = {t.number for t in trials if t.state in FINISHED}
    assert len(after) == 4 and before <= after  # the killed run's trials count, they are not rerun
    # The trial the kill interrupted (if one was running) is failed by its heartbeat, not left RUNNING.
    assert all(t.state == TrialState.FAIL for t in trials if t.state not in FINISHED)
    best = yaml.safe_load(result.best_recipe.read_text())
    assert "search" not in best
    assert best["model"]["lr_detector"] == pytest.approx(result.best_params["model.lr_detector"])
    cli = lightning_cli(
        ["--config", str(result.best_recipe), f"--trainer.default_root_dir={tmp_path / 'fit'}"], run=False
    )
    assert cli.model.hparams.lora["rank"] == result.best_params["model.lora.rank"]
    assert cli.datamodule.hparams.train_json == tiny["data.train_json"]
    summary = result.summary.read_text()
    assert f"Best: trial {load(out).best_trial.number}" in summary
    for plot in ("optimization-history.png", "param-importances.png"):
        assert plot in summary and (out / plot).stat().st_size > 0
