"""``sam3-adapt tune``: search a recipe's learning rates, LoRA size, epochs and data mix with Optuna."""

from __future__ import annotations

import logging
import time
import traceback
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
from filelock import FileLock
from optuna.exceptions import ExperimentalWarning
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from sam3_adapt.tune.folds import write_folds
from sam3_adapt.tune.pruning import PruningSettings
from sam3_adapt.tune.recipe import check_space, load_recipe, lookup, with_values, write_recipe
from sam3_adapt.tune.report import write_summary
from sam3_adapt.tune.sampler import TrialSeededTPESampler
from sam3_adapt.tune.space import SearchSpace
from sam3_adapt.tune.trial import TrialObjective

logger = logging.getLogger(__name__)

#: Trial states that use up the trial budget.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class TuneResult:
    """What a study produced.

    Attributes:
        best_recipe: The base recipe with the best trial's values, ready for ``sam3-adapt fit``.
        summary: ``summary.md`` with the trial table and plots.
        best_value: The best trial's objective value.
        best_params: The best trial's values, by dotted recipe key.
        study_name: The study's name in the storage.
        storage: The storage URL.
    """

    best_recipe: Path
    summary: Path
    best_value: float
    best_params: dict[str, Any]
    study_name: str
    storage: str


def tune(
    recipe: str,
    search: dict[str, dict[str, Any]],
    overrides: dict[str, Any] | None = None,
    out: str = "runs/tune",
    n_trials: int = 20,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    metric: str = "val/cgF1",
    direction: Literal["maximize", "minimize"] = "maximize",
    folds: int = 1,
    seed: int = 0,
    pruning: PruningSettings | None = None,
    heartbeat_s: int = 60,
) -> TuneResult:
    """Search a recipe's settings with Optuna and write the best one as a ready recipe.

    Every trial is the recipe with the searched keys set to sampled values (TPE sampler), fitted as
    ``sam3-adapt fit`` would; trials whose validation metric falls below the median of earlier
    trials at the same epoch are pruned, and trials whose loss diverges are pruned at once. The
    study lives in a database, so a killed run resumes where it stopped and several processes can
    work on one study: each trial draws from ``seed`` + its number (no two workers try the same
    values), ``n_trials`` counts the trials of every worker (a worker that would go past it stops),
    and a trial whose process died is marked failed once its heartbeat is ``2 * heartbeat_s`` old.
    Give these arguments in a YAML file with ``--config`` (see ``recipes/tune/tiny-10shot.yaml``).

    Args:
        recipe: Base recipe YAML (a ``sam3-adapt fit`` config).
        search: Searched recipe keys, dotted, each ``{low, high}`` (optional ``step``, ``log``) or
            ``{choices: [...]}``, e.g. ``{"model.lr_detector": {"low": 1.0e-4, "high": 1.0e-2,
            "log": true}}``. Integer bounds sample integers.
        overrides: Recipe keys, dotted, set the same in every trial and in the best recipe, e.g.
            ``{"data.train_json": "my/train.json", "data.image_dir": "my/images"}``.
        out: Study folder: ``study.db`` (default storage), ``trials/<n>/`` (each trial's recipe and
            logs), ``folds/``, ``best-recipe.yaml``, ``summary.md`` and the plots.
        n_trials: Finished (completed or pruned) trials the study should have, over all workers; a
            resumed study runs only the missing ones. Failed trials are recorded but do not count,
            so a run that meets some ends short of ``n_trials``; run it again to fill up.
        timeout: Seconds after which this process starts no new trial; ``None`` for no limit.
        storage: Optuna storage URL (``sqlite:///...``, ``postgresql://...``); default
            ``sqlite:///<out>/study.db``.
        study_name: Study name in the storage; default: the name of ``out``.
        metric: Validation metric the task logs to optimise (``val/cgF1``, ``val/segm/AP``,
            ``val/bbox/AP``, ...), measured after the last epoch.
        direction: Whether a higher or a lower ``metric`` is better.
        folds: 1 validates on the recipe's ``data.val_json``; k >= 2 splits the images of
            ``data.train_json`` into k folds, trains on k-1 and validates on the last, and averages
            the k values, so no image both trains and judges a trial.
        seed: Seed of the sampler: trial ``n`` draws from ``seed + n`` (see
            `sam3_adapt.tune.sampler.TrialSeededTPESampler`), so workers and resumed runs never
            repeat a draw.
        pruning: Validation interval and pruning settings.
        heartbeat_s: Seconds between a running trial's heartbeats in the storage; a trial silent for
            twice as long (its process was killed) is marked failed.

    Returns:
        The best recipe, the summary and the best trial's value and parameters.

    Raises:
        ValueError: Before any trial, for a search key that is not a recipe key, an empty or
            malformed range, a value the recipe rejects, or a study resumed with other settings.
        RuntimeError: If no trial has completed when the run ends (see ``summary.md``).
    """
    space = SearchSpace.from_dict(search)
    pruning = pruning or PruningSettings()
    if n_trials < 1 or folds < 1 or (timeout is not None and timeout <= 0):
        raise ValueError(
            f"n_trials and folds must be >= 1 and timeout > 0; got {n_trials}, {folds}, {timeout}"
        )
    raw = load_recipe(recipe)
    config = check_space(raw, space, recipe, overrides)
    base = with_values(raw, overrides or {})
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    fold_data = _fold_data(config, folds, root)

    storage_url = storage or f"sqlite:///{(root / 'study.db').resolve()}"
    name = study_name or root.resolve().name
    # Workers started together would each create the SQLite tables and collide; one at a time here.
    creating = FileLock(root / ".study.lock") if storage_url.startswith("sqlite") else nullcontext()
    with creating:
        study = optuna.create_study(
            storage=_storage(storage_url, heartbeat_s),
            study_name=name,
            direction=direction,
            load_if_exists=True,
            pruner=pruning.pruner(),
        )
    settings = {"recipe": recipe, "overrides": overrides or {}, "metric": metric, "folds": folds}
    _check_settings(study, {**settings, "direction": direction})
    study.sampler = TrialSeededTPESampler(seed=seed)

    objective = TrialObjective(base, space, metric, root, fold_data, pruning)
    remaining = n_trials - len(study.get_trials(deepcopy=False, states=FINISHED))
    if remaining > 0:
        study.optimize(
            lambda trial: _guarded(objective, trial, n_trials, heartbeat_s),
            n_trials=remaining,
            timeout=timeout,
            callbacks=[MaxTrialsCallback(n_trials, states=FINISHED)],
        )
    _fail_stale_trials(study)  # trials of workers that died, silent past the grace period
    return _write_outputs(study, root, base, metric, storage_url)


def _storage(url: str, heartbeat_s: int) -> optuna.storages.RDBStorage:
    if heartbeat_s < 1:
        raise ValueError(f"heartbeat_s must be >= 1, got {heartbeat_s}")
    # SQLite locks the file for each write; a longer wait lets several workers share it.
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    with warnings.catch_warnings():
        # Optuna calls its heartbeat experimental; it is how tune fails the trials of dead workers.
        warnings.simplefilter("ignore", ExperimentalWarning)
        return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat_s)


def _fail_stale_trials(study: optuna.Study) -> None:
    """Mark failed the running trials whose heartbeat stopped (their process died).

    Optuna's check skips a running trial that has no heartbeat yet, so a worker killed between
    creating a trial and its first heartbeat would leave that trial running for ever, and a worker
    waiting on earlier trials would wait for ever. Such a trial is given one heartbeat here: if its
    process lives, its own heartbeats keep the trial fresh; if not, it goes stale after the grace
    period and a later call fails it.
    """
    _give_heartbeats(study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _give_heartbeats(study: optuna.Study) -> None:
    """Record a heartbeat for each running trial of ``study`` that has none (see `_fail_stale_trials`)."""
    # The study's RDB storage (under Optuna's cache), for a query Optuna has no public API for.
    storage = getattr(study._storage, "_backend", study._storage)  # noqa: SLF001
    if not isinstance(storage, optuna.storages.RDBStorage) or storage.heartbeat_interval is None:
        return
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(storage.scoped_session) as session:
        silent = [
            trial.trial_id
            for trial in session.query(models.TrialModel)
            .filter(models.TrialModel.study_id == study._study_id)  # noqa: SLF001
            .filter(models.TrialModel.state == TrialState.RUNNING)
            .all()
            if not trial.heartbeats
        ]
    for trial_id in silent:
        storage.record_heartbeat(trial_id)


def _fold_data(config: dict[str, Any], folds: int, root: Path) -> list[dict[str, Any]]:
    if folds == 1:
        if lookup(config, "data.val_json") is None:
            raise ValueError(
                "folds=1 validates on data.val_json, which the recipe does not set: set it in overrides, "
                "or cross-validate on the few shots with folds >= 2"
            )
        return [{}]
    train_json, image_dir = lookup(config, "data.train_json"), lookup(config, "data.image_dir")
    if train_json is None:
        raise ValueError(f"folds={folds} splits data.train_json, which the recipe does not set")
    return [
        {"data.train_json": str(train), "data.val_json": str(val), "data.val_image_dir": image_dir}
        for train, val in write_folds(train_json, root / "folds", folds)
    ]


def _check_settings(study: optuna.Study, settings: dict[str, Any]) -> None:
    # Optuna loads an existing study with its own direction, whatever direction was asked for.
    known = study.user_attrs.get("settings", {"direction": study.direction.name.lower()})
    changed = {key: (known[key], value) for key, value in settings.items() if known.get(key, value) != value}
    if changed:
        raise ValueError(
            f"study {study.study_name!r} was run with other settings {{key: (then, now)}}: {changed}; "
            "resume with the same ones or give another study_name"
        )
    if "settings" not in study.user_attrs:
        study.set_user_attr("settings", settings)


def _guarded(objective: TrialObjective, trial: optuna.Trial, n_trials: int, heartbeat_s: int) -> float:
    """Run a trial; once the study has a finished trial, an error fails only this trial.

    A trial that other workers' finished trials make one too many is not run: it is recorded as
    failed (which does not count) and this worker stops. While earlier trials still run, it waits:
    they may finish (then it is one too many) or turn out dead (failed by their heartbeat; then it runs).
    """
    while True:
        earlier = [
            t
            for t in trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
            if t.number < trial.number
        ]
        if len(earlier) < n_trials:
            break
        if not any(t.state == TrialState.RUNNING for t in earlier):
            trial.set_user_attr("error", f"not run: the study's other trials reach n_trials={n_trials}")
            trial.study.stop()
            return float("nan")
        time.sleep(heartbeat_s)
        _fail_stale_trials(trial.study)
    try:
        return objective(trial)
    except optuna.TrialPruned:
        raise
    except Exception as error:
        # Before any trial has finished, an error is most likely a mistake in the setup (a path, the
        # metric's name) that every trial would repeat: stop and show it.
        if not trial.study.get_trials(deepcopy=False, states=FINISHED):
            raise
        trial.set_user_attr("error", f"{type(error).__name__}: {error}")
        logger.warning("trial %d failed:\n%s", trial.number, traceback.format_exc())
        return float("nan")  # Optuna records a NaN objective as a failed trial


def _write_outputs(
    study: optuna.Study, root: Path, base: dict[str, Any], metric: str, storage: str
) -> TuneResult:
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        summary = write_summary(study, root, metric)
        raise RuntimeError(f"no trial of study {study.study_name!r} has completed; see {summary}")
    best = study.best_trial
    best_recipe = write_recipe(
        with_values(base, best.params),
        root / "best-recipe.yaml",
        header=(
            f"Best trial {best.number} of study '{study.study_name}': {metric} = {best.value:.4f} "
            f"({study.direction.name.lower()}), written by sam3-adapt tune.\n"
            f"Fit it: sam3-adapt fit --config {root / 'best-recipe.yaml'}"
        ),
    )
    summary = write_summary(study, root, metric, best_recipe)
    print(f"best {metric} = {best.value:.4f} (trial {best.number}); recipe {best_recipe}, summary {summary}")
    return TuneResult(best_recipe, summary, best.value, dict(best.params), study.study_name, storage)
