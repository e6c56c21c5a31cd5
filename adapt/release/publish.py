"""Publish a finished run as a Hub-ready folder (weights, card, recipe, split, figures) and upload it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Literal

import yaml

from sam3_adapt.data_mix.readers.coco import load_prompt_map
from sam3_adapt.fitting.out_folder import OutFolder
from sam3_adapt.fitting.run_files import (
    FinishedRun,
    find_run,
    last_validation,
    load_metrics_json,
    read_metrics_csv,
    warn_if_stale,
)
from sam3_adapt.model.loading import load_segmenter
from sam3_adapt.release.export import write_export
from sam3_adapt.release.figures import plot_predictions, plot_training_curves
from sam3_adapt.release.model_card import CardFacts, base_license, build_model_card
from sam3_adapt.release.upload import check_upload_args, upload_folder


def publish(
    run: str,
    repo_id: str | None = None,
    out: str | None = None,
    kind: Literal["adapter", "merged"] = "adapter",
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    license: str | None = None,
    dataset: str | None = None,
    metrics: str | None = None,
    num_samples: int = 4,
    overwrite: bool = False,
) -> Path:
    """Turn a finished fit into a Hub-ready folder and, given a repo id, upload it to the Hugging Face Hub.

    The folder holds the weights (a PEFT adapter, or merged ``Sam3Model`` weights with the processor),
    a model card (``README.md`` with Hub metadata and evaluation results), the recipe
    (``recipe.yaml``), the few-shot split (``data/train.json``), ``metrics.json``, training curves and
    sample predictions (``figures/``). Others load it with ``load_sam3(base, adapter=repo_id)``, plain
    ``peft.PeftModel.from_pretrained``, or (merged) ``Sam3Model.from_pretrained``. The token comes from
    ``HF_TOKEN`` or ``hf auth login`` and is never printed or written.

    The folder appears only when complete, with a ``manifest.json`` of its files that ``upload``
    checks (see `sam3_adapt.fitting.out_folder`); a killed ``publish`` leaves ``out`` as it was. A
    checkpoint older than the run's last logged step is published with a warning.

    Args:
        run: The run: its log folder (``<root>/lightning_logs/version_N``; ``<root>`` takes the latest
            version) or a ``.ckpt`` file.
        repo_id: Hub repo to upload to (``org/name``); ``None`` only writes the folder.
        out: Folder to write (new or empty unless ``overwrite``); default ``<run folder>/hub-<kind>``.
        kind: ``adapter`` (LoRA weights, small; needs the base model) or ``merged`` (full weights).
        private: Create the Hub repo private (an existing repo keeps its visibility).
        revision: Branch to push to (created from ``main`` if missing); default ``main``.
        commit_message: Commit message; default names the run.
        create_pr: Open a pull request with the files instead of pushing to the branch.
        license: Hub licence id of the result; default the base model's licence.
        dataset: Hub id of the data set adapted to (listed in the card's ``datasets``); default: the
            training set's folder name is used as its name and no id is listed.
        metrics: JSON of evaluation results (e.g. written by ``sam3-adapt evaluate``); default the last
            validation in the run's ``metrics.csv``.
        num_samples: Validation images drawn with the model's masks.
        overwrite: Replace what ``out`` holds.

    Returns:
        The published folder.

    Raises:
        ValueError: If ``repo_id`` is malformed, the run trained no adapter and ``kind`` is
            ``adapter``, or ``create_pr`` is combined with ``revision``.
        FileNotFoundError: If the run has no checkpoint or the data it names is missing.
        OutFolderError: If ``out`` is not empty (without ``overwrite``) or another run writes it.
        PublishError: If no token is found (checked before anything is written or sent) or the upload
            fails (the folder stays; the message gives the command that retries the upload).
    """
    token = check_upload_args(repo_id, revision, create_pr) if repo_id else None
    finished = find_run(run)
    if kind == "adapter" and not finished.is_adapter:
        raise ValueError(
            f"run {run!r} fine-tuned every weight (adaptation: full), so it has no adapter: use --kind merged"
        )
    licence = base_license(finished.model_hparams["checkpoint"], license)
    warn_if_stale(finished)
    folder = Path(out) if out else finished.folder / f"hub-{kind}"
    inputs = {"run": run, "checkpoint": finished.checkpoint, "kind": kind, "metrics": metrics}
    with OutFolder(folder, "publish", inputs, overwrite) as staging:
        _write_folder(finished, staging, folder, kind, repo_id, licence, dataset, metrics, num_samples)
    print(f"wrote {folder} (model card: {folder / 'README.md'})")
    if repo_id:
        message = commit_message or f"Add SAM 3 {kind} from sam3-adapt run {finished.folder.name}"
        upload_folder(folder, repo_id, token, private, revision, message, create_pr)
    return folder


def _write_folder(
    run: FinishedRun,
    folder: Path,
    final: Path,
    kind: Literal["adapter", "merged"],
    repo_id: str | None,
    licence: dict[str, str],
    dataset: str | None,
    metrics: str | None,
    num_samples: int,
) -> None:
    model_hp, data_hp = run.model_hparams, run.data_hparams
    base = str(model_hp["checkpoint"])
    # Every input is checked before the first file is written.
    train_json = run.data_file("train_json")
    sample_set = _sample_set(run) if num_samples > 0 else None
    write_export(run.checkpoint, folder, merged=kind == "merged")
    files = {
        "recipe.yaml": "the recipe of the run (`sam3-adapt fit --config recipe.yaml`)",
        "manifest.json": "what wrote this folder, from which run, and each file's size and SHA-256",
    }
    if run.config is not None:
        shutil.copyfile(run.config, folder / "recipe.yaml")
    else:  # fitted without the CLI: the constructor arguments are the recipe
        recipe = {"model": model_hp, "data": data_hp}
        (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    phrases, shots = [], 0
    if train_json is not None:
        (folder / "data").mkdir()
        shutil.copyfile(train_json, folder / "data" / "train.json")
        files["data/train.json"] = "the few-shot training split (COCO annotations; images not included)"
        phrases, shots = _phrases_and_images(train_json, data_hp.get("prompt_map"))

    results, source, split = _metrics(run, metrics)
    record = {"source": source, "split": split, "metrics": results}
    (folder / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    files["metrics.json"] = "the evaluation results of the card"
    figures = {}
    # A run shorter than the logger's interval (log_every_n_steps) logged no training loss: no curves.
    if run.metrics_csv is not None and any("train/loss" in row for row in read_metrics_csv(run.metrics_csv)):
        figures["figures/training_curves.png"] = "Training curves"
        plot_training_curves(run.metrics_csv, folder / "figures" / "training_curves.png")
    if sample_set is not None:
        figures["figures/predictions.png"] = "Sample predictions"
        _plot_samples(run, folder, kind, base, sample_set, num_samples)

    facts = CardFacts(
        name=repo_id.split("/")[-1] if repo_id else final.absolute().name,
        kind=kind,
        base=base,
        load_from=repo_id or str(final),
        phrases=phrases,
        shots=shots,
        dataset=dataset or _dataset_name(train_json),
        dataset_id=dataset,
        metrics=results,
        metrics_source=source,
        split=split,
        license=licence,
        training=_training_facts(run),
        figures=figures,
        files=files,
    )
    build_model_card(facts).save(folder / "README.md")


def _metrics(run: FinishedRun, metrics: str | None) -> tuple[dict[str, float], str, str]:
    """Evaluation results, a sentence naming their source, and the split they were computed on."""
    if metrics is not None:
        return *load_metrics_json(metrics), "held-out"
    if run.metrics_csv is not None:
        step, values = last_validation(run.metrics_csv)
        if values:
            source = (
                f"Validation metrics of the run's last validation (`metrics.csv`, logged at step {step}; "
                f"the published weights are from step {run.global_step})."
            )
            return values, source, "validation"
    return {}, "The run logged no validation metrics; evaluate it with `sam3-adapt evaluate`.", "validation"


def _sample_set(run: FinishedRun) -> tuple[Path, Path]:
    """COCO file and image folder of the images drawn: the validation set, else the training set."""
    if run.data_hparams.get("val_json"):
        return run.data_file("val_json"), run.data_file("val_image_dir") or run.data_file("image_dir")
    return run.data_file("train_json"), run.data_file("image_dir")


def _plot_samples(
    run: FinishedRun, folder: Path, kind: str, base: str, sample_set: tuple[Path, Path], num: int
) -> None:
    """Draw predictions of the published weights (reloaded from ``folder``) on ``num`` images."""
    segmenter = load_segmenter(base, adapter=folder) if kind == "adapter" else load_segmenter(folder)
    plot_predictions(
        segmenter,
        *sample_set,
        folder / "figures" / "predictions.png",
        image_size=int(run.data_hparams.get("image_size", 1008)),
        num=num,
        score_threshold=float(run.model_hparams.get("score_threshold", 0.5)),
        prompt_map=run.data_hparams.get("prompt_map"),
    )


def _phrases_and_images(train_json: Path, prompt_map: dict[str, str] | str | None) -> tuple[list[str], int]:
    coco = json.loads(train_json.read_text())
    overrides = load_prompt_map(prompt_map) or {}
    phrases = [
        overrides.get(c["name"], overrides.get(c["id"], c["name"])) for c in coco.get("categories", [])
    ]
    return phrases, len(coco.get("images", []))


def _dataset_name(train_json: Path | None) -> str:
    """A readable name for the training set: its folder, with the parent when the folder is a split name."""
    if train_json is None:
        return "unnamed data set"
    parent = train_json.parent
    if parent.name.lower() in {"train", "training", "annotations", "few-shot", "shots"}:
        return f"{parent.parent.name}/{parent.name}"
    return parent.name


def _training_facts(run: FinishedRun) -> dict[str, object]:
    hp = run.model_hparams
    keys = (
        "adaptation",
        "lora",
        "freeze",
        "lr_detector",
        "lr_vision",
        "lr_text",
        "weight_decay",
        "warmup_steps",
    )
    facts = {"base": hp["checkpoint"], **{k: hp[k] for k in keys if hp.get(k) is not None}}
    if hp.get("adapter"):
        facts["started_from_adapter"] = hp["adapter"]
    data = run.data_hparams
    for key in ("image_size", "batch_size", "anchor_json", "anchor_ratio"):
        if data.get(key) is not None:
            facts[key] = data[key]
    facts["steps"] = run.global_step
    return facts
