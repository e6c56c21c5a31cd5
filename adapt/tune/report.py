"""The study's summary: a Markdown table of trials with Optuna's history and importance plots."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

#: Completed trials needed before parameter importances mean anything.
MIN_TRIALS_FOR_IMPORTANCE = 2


def _save_plot(axes, path: Path) -> Path:
    from matplotlib import pyplot as plt  # optuna's plots are drawn with pyplot

    figure = axes.figure
    figure.set_size_inches(7, 4)
    partial = path.with_name(f".{path.stem}.{os.getpid()}{path.suffix}")
    figure.savefig(partial, dpi=100, bbox_inches="tight")
    plt.close(figure)
    partial.replace(path)
    return path


def write_plots(study: optuna.Study, out: str | Path, metric: str) -> dict[str, Path]:
    """Save Optuna's optimisation-history and parameter-importance plots as PNG files.

    The importance plot needs at least two completed trials and is left out before that.

    Args:
        study: The study.
        out: Output folder.
        metric: Name of the objective, for the axis labels.

    Returns:
        ``{"history": path, "importance": path}`` for the plots written.
    """
    import matplotlib
    from optuna.visualization import matplotlib as optuna_plots

    out = Path(out)
    plots = {}
    # Optuna's plots switch pyplot to its ggplot style; the context puts the caller's style back.
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # What Optuna's plots say about a study of few trials (an empty legend, equal importances):
        # the plot shows it, and the summary's table gives the figures.
        warnings.filterwarnings("ignore", message="No artists with labels found to put in legend")
        warnings.filterwarnings("ignore", message="Target and region quantiles select the same set of trials")
        axes = optuna_plots.plot_optimization_history(study, target_name=metric)
        plots["history"] = _save_plot(axes, out / "optimization-history.png")
        if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= MIN_TRIALS_FOR_IMPORTANCE:
            axes = optuna_plots.plot_param_importances(study, target_name=metric)
            plots["importance"] = _save_plot(axes, out / "param-importances.png")
    return plots


def _note(trial: FrozenTrial) -> str:
    if "error" in trial.user_attrs:
        return trial.user_attrs["error"]
    if trial.state == TrialState.PRUNED and "stop_reason" in trial.user_attrs:
        return trial.user_attrs["stop_reason"]
    return ""


def _cell(value: object) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def write_summary(study: optuna.Study, out: str | Path, metric: str, best_recipe: Path | None = None) -> Path:
    """Write ``summary.md``: the best trial, every trial's state, value and parameters, and the plots.

    Args:
        study: The study.
        out: Output folder.
        metric: Name of the objective.
        best_recipe: The best recipe written for the study, if any.

    Returns:
        The path of ``summary.md``.
    """
    out = Path(out)
    trials = study.get_trials(deepcopy=False)
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    counts = ", ".join(
        f"{n} {s.name.lower()}" for s in TrialState if (n := sum(t.state == s for t in trials))
    )
    lines = [
        f"# Study `{study.study_name}`",
        "",
        f"Objective: {metric} ({study.direction.name.lower()}). Trials: {counts or 'none'}.",
        "",
    ]
    if completed:
        best = study.best_trial
        lines += [f"**Best: trial {best.number}, {metric} = {best.value:.4f}**", ""]
        lines += [f"- `{key}`: {_cell(value)}" for key, value in best.params.items()]
        if best_recipe is not None:
            lines += ["", f"Best recipe: `{best_recipe}` (fit it: `sam3-adapt fit --config {best_recipe}`)."]
    else:
        lines += ["No trial has completed yet, so there is no best recipe."]
    keys = sorted({key for t in trials for key in t.params})
    lines += [
        "",
        "## Trials",
        "",
        "| trial | state | value | " + " | ".join(f"`{k}`" for k in keys) + " | note |",
    ]
    lines.append("|---" * (len(keys) + 4) + "|")
    for t in trials:
        value = "" if t.value is None else _cell(t.value)
        params = [_cell(t.params[k]) if k in t.params else "" for k in keys]
        row = [str(t.number), t.state.name.lower(), value, *params, _cell(_note(t))]
        lines.append("| " + " | ".join(row) + " |")
    plots = write_plots(study, out, metric)
    lines += ["", "## Plots", "", f"![optimisation history]({plots['history'].name})", ""]
    if "importance" in plots:
        lines.append(f"![parameter importances]({plots['importance'].name})")
    else:
        lines.append(
            f"Parameter importances need at least {MIN_TRIALS_FOR_IMPORTANCE} completed trials "
            f"({len(completed)} so far); the plot is left out."
        )
    path = out / "summary.md"
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text("\n".join(lines) + "\n")
    partial.replace(path)
    return path
