"""Find what a ``sam3-adapt fit`` run left behind: checkpoint, resolved recipe, logged metrics."""

from __future__ import annotations

import csv
import json
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass
class FinishedRun:
    """The files and settings of one finished fit.

    Attributes:
        folder: The run's log folder (``<root>/lightning_logs/version_N``, or the root without a logger).
        checkpoint: The Lightning checkpoint used (``checkpoints/last.ckpt`` when there is one).
        config: ``config.yaml``, the resolved recipe LightningCLI wrote; ``None`` outside the CLI.
        metrics_csv: ``metrics.csv`` of the CSV logger; ``None`` when the run had no logger.
        model_hparams: The task's constructor arguments, read from the checkpoint.
        data_hparams: The data module's constructor arguments (empty if the fit had no data module).
        global_step: Optimizer steps done when the checkpoint was written.
    """

    folder: Path
    checkpoint: Path
    config: Path | None
    metrics_csv: Path | None
    model_hparams: dict[str, Any]
    data_hparams: dict[str, Any]
    global_step: int

    @property
    def is_adapter(self) -> bool:
        """Whether the run trained a LoRA adapter (rather than every weight)."""
        return self.model_hparams.get("adaptation") == "lora" or self.model_hparams.get("adapter") is not None

    def data_file(self, key: str) -> Path | None:
        """A data path of the run (``train_json``, ``val_image_dir``...), checked to exist; ``None`` if unset.

        Raises:
            FileNotFoundError: If the run names a file that is not there.
        """
        value = self.data_hparams.get(key)
        if value is None:
            return None
        path = Path(value)
        if not path.exists():
            raise FileNotFoundError(
                f"the run's {key} {str(value)!r} (from {self.checkpoint}) does not exist here; relative "
                "paths are relative to the folder `sam3-adapt fit` ran in: publish from there"
            )
        return path


def warn_if_stale(run: FinishedRun) -> None:
    """Warn when the run logged steps after its checkpoint: the weights would not be the run's last.

    The run's last step is read from its ``metrics.csv``: a training row of ``step`` s is logged by
    optimizer step s + 1. An older checkpoint (a periodic one, or a ``last.ckpt`` from before the
    final steps) is still exported when asked for, but never silently.
    """
    if run.metrics_csv is None:
        return
    rows = read_metrics_csv(run.metrics_csv)
    trained = [int(row["step"]) + 1 for row in rows if any(key.startswith("train/") for key in row)]
    logged = max(trained, default=0)
    if logged > run.global_step:
        warnings.warn(
            f"{run.checkpoint} holds step {run.global_step}, but the run logged up to step {logged} "
            f"({run.metrics_csv}): these are not the run's final weights. Give the run's newest checkpoint, "
            "or resume the fit with --ckpt_path last to save them",
            UserWarning,
            stacklevel=2,
        )


def version_folder(checkpoint: str | Path) -> Path | None:
    """The logger folder (``<root>/<name>/version_N``) a checkpoint of ``<...>/checkpoints/`` belongs to."""
    folder = Path(checkpoint).parent.parent
    if Path(checkpoint).parent.name != "checkpoints" or not re.fullmatch(r"version_\d+", folder.name):
        return None
    return folder


def trim_metrics_csv(metrics_csv: Path, step: int) -> int:
    """Drop the rows a resumed run will log again: those of ``step`` and later.

    Args:
        metrics_csv: A CSV logger's ``metrics.csv`` (nothing happens if it does not exist).
        step: The global step of the checkpoint the run resumes from.

    Returns:
        The number of rows dropped.
    """
    if not metrics_csv.is_file():
        return 0
    with open(metrics_csv, newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    kept = [row for row in rows if not row.get("step") or int(float(row["step"])) < step]
    if len(kept) < len(rows) and fields:
        partial = metrics_csv.with_suffix(".csv.partial")
        with open(partial, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)
        partial.replace(metrics_csv)
    return len(rows) - len(kept)


def newest_last_checkpoint(root: str | Path) -> Path | None:
    """The newest ``last*.ckpt`` a run under ``root`` (a ``default_root_dir``) saved, or ``None``.

    Lightning's own ``ckpt_path="last"`` looks only in the checkpoint folder of the run being
    started, and a logger gives every run a new ``version_N`` folder, so on its own it never finds
    the checkpoint an interrupted run left. This looks where a fit under ``root`` puts it:
    ``<root>/<logger name>/version_N/checkpoints`` with a logger, ``<root>/checkpoints`` without.
    """
    root = Path(root)
    found = [*root.glob("checkpoints/last*.ckpt"), *root.glob("*/version_*/checkpoints/last*.ckpt")]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def find_run(run: str | Path) -> FinishedRun:
    """Locate the checkpoint and logs of a run.

    Args:
        run: A run folder (``<root>/lightning_logs/version_N``, or ``<root>`` itself: its latest version is
            used), or the path of a ``.ckpt`` file.

    Returns:
        The run.

    Raises:
        FileNotFoundError: If ``run`` does not exist or holds no checkpoint.
        ValueError: If the checkpoint was not written by the ``sam3-adapt`` task.
    """
    path = Path(run)
    if path.is_file():
        checkpoint: Path | None = path
        root = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    elif path.is_dir():
        root, checkpoint = path, _checkpoint_in(path)
    else:
        raise FileNotFoundError(f"run {str(run)!r} does not exist: give a run folder or a .ckpt file")
    folder = _log_folder(root)
    checkpoint = checkpoint or _checkpoint_in(folder)
    if checkpoint is None:
        looked = " and ".join(sorted({str(root / "checkpoints"), str(folder / "checkpoints")}))
        raise FileNotFoundError(
            f"run {str(run)!r} has no checkpoint: no .ckpt in {looked}. Fit with a ModelCheckpoint callback "
            "(the recipes have one), or pass the path of a .ckpt file"
        )
    saved = load_checkpoint(checkpoint)
    if not isinstance(saved, dict) or "checkpoint" not in saved.get("hyper_parameters", {}):
        raise ValueError(
            f"{checkpoint} is not a checkpoint of `sam3-adapt fit` (no task hyperparameters in it)"
        )
    config = folder / "config.yaml"
    metrics_csv = folder / "metrics.csv"
    return FinishedRun(
        folder=folder,
        checkpoint=checkpoint,
        config=config if config.is_file() else None,
        metrics_csv=metrics_csv if metrics_csv.is_file() else None,
        model_hparams=_public(saved["hyper_parameters"]),
        data_hparams=_public(saved.get("datamodule_hyper_parameters", {})),
        global_step=int(saved.get("global_step", 0)),
    )


def load_checkpoint(path: str | Path) -> Any:
    """Load a checkpoint file without running code from it (``torch.load(weights_only=True)``).

    A checkpoint is a pickle, and unpickling an untrusted one can run any code; with
    ``weights_only`` only tensors and plain containers are rebuilt, which is all that the checkpoints
    of ``sam3-adapt fit`` hold.

    Raises:
        ValueError: If the file is no checkpoint, or holds objects other than tensors and plain data.
    """
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{path}: refused to load: not a checkpoint of `sam3-adapt fit`, or it holds objects other than "
            f"tensors and plain data, which could run code when unpickled ({first})"
        ) from err


def _checkpoint_in(folder: Path) -> Path | None:
    """``checkpoints/last.ckpt`` of ``folder``, else its newest ``.ckpt``, else ``None``."""
    last = folder / "checkpoints" / "last.ckpt"
    if last.is_file():
        return last
    found = sorted((folder / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _log_folder(root: Path) -> Path:
    """``root`` if it holds the logs, else its newest ``lightning_logs/version_N``, else ``root``."""
    if (root / "config.yaml").is_file() or (root / "metrics.csv").is_file():
        return root
    versions = [
        p for p in (root / "lightning_logs").glob("version_*") if re.fullmatch(r"version_\d+", p.name)
    ]
    if not versions:
        return root
    return max(versions, key=lambda p: int(p.name.removeprefix("version_")))


def _public(hparams: Any) -> dict[str, Any]:
    """Hyperparameters without Lightning's private entries (``_instantiator``)."""
    return {key: value for key, value in dict(hparams).items() if not str(key).startswith("_")}


def last_validation(metrics_csv: Path, prefix: str = "val/") -> tuple[int | None, dict[str, float]]:
    """The metrics of the last validation logged in a CSV logger's ``metrics.csv``.

    Args:
        metrics_csv: The file.
        prefix: Column prefix of validation metrics; stripped from the returned names.

    Returns:
        ``(step, {name: value})`` of the last step that logged validation metrics; ``(None, {})`` if none did.
    """
    rows = read_metrics_csv(metrics_csv)
    steps = [row["step"] for row in rows if any(k.startswith(prefix) for k in row if k != "step")]
    if not steps:
        return None, {}
    step = int(steps[-1])
    merged: dict[str, float] = {}
    for row in rows:
        if row["step"] == step:
            merged.update({k.removeprefix(prefix): v for k, v in row.items() if k.startswith(prefix)})
    return step, merged


def read_metrics_csv(metrics_csv: Path) -> list[dict[str, float]]:
    """Rows of ``metrics.csv`` with their non-empty numeric cells (``step`` included)."""
    rows = []
    with open(metrics_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            values = {}
            for key, text in row.items():
                try:
                    values[key] = float(text)
                except (TypeError, ValueError):
                    continue
            if "step" in values:
                rows.append(values)
    return rows


def load_metrics_json(path: str | Path) -> tuple[dict[str, float], str]:
    """Numeric metrics of a JSON file, and a sentence saying where they come from.

    Three layouts are read: the ``metrics.json`` of ``sam3-adapt evaluate`` (the adapted model's
    ``model.metrics``), the one ``publish`` writes (``metrics``), or any object of numbers, nested
    objects flattened with ``/``. Non-numeric values (paths, names, lists) are left out.

    Args:
        path: The JSON file.

    Returns:
        ``({name: value}, source sentence)``.

    Raises:
        ValueError: If the file holds no numeric metric.
    """
    data = json.loads(Path(path).read_text())
    source = f"Evaluation results from `{Path(path).name}`."
    if isinstance(data, dict) and isinstance(data.get("model"), dict) and "metrics" in data["model"]:
        images = data.get("data", {}).get("images")
        source = f"Results of `sam3-adapt evaluate` on {images} held-out images (`{Path(path).name}`)."
        data = data["model"]["metrics"]
    elif isinstance(data, dict) and isinstance(data.get("metrics"), dict):
        source = data.get("source", source)
        data = data["metrics"]
    metrics = _flatten(data) if isinstance(data, dict) else {}
    if not metrics:
        raise ValueError(f"{path} holds no numeric metrics (expected an object of name: number)")
    return metrics, source


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat
