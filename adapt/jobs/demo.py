"""The main job on any machine: adapt the tiny pretrained SAM 3 to a new domain from 10 images.

``sam3-adapt demo`` generates the concept world (an anchor world the tiny base model was pretrained
on, and target domains it has never seen), evaluates the base model, fits the ``tiny-10shot``
recipe on 10 images of one target domain mixed with anchor data, evaluates again on the same
held-out images, and prints the before/after table with the adapter's path and a before/after
picture.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import lightning as L

from sam3_adapt.data_mix.datamodule import ConceptDataModule
from sam3_adapt.data_mix.readers.coco import read_coco
from sam3_adapt.data_mix.samples import ConceptSample
from sam3_adapt.data_mix.synthetic.concept_world import concept_tree_file, write_demo_worlds
from sam3_adapt.fitting.fit_health import FitHealth
from sam3_adapt.fitting.lightning_cli import lightning_cli
from sam3_adapt.fitting.recipe_files import recipe_path
from sam3_adapt.inference.loop import QueryResult, predict_samples
from sam3_adapt.inference.overlay import comparison_figure, save_figure
from sam3_adapt.model.persistence import save_trained
from sam3_adapt.training.task import ConceptSegmentationTask

RECIPE = "tiny-10shot"
HEADLINE = ("segm/AP", "bbox/AP", "cgF1")
#: Held-out target images drawn in the before/after picture.
PICTURE_IMAGES = 3


def evaluate_sets(
    task: ConceptSegmentationTask, sets: dict[str, tuple[str, str]], image_size: int
) -> dict[str, dict[str, float]]:
    """Validation metrics of ``task`` on each named COCO set ``{name: (json, image_dir)}``.

    Runs on a GPU when there is one (Lightning's ``auto``), on the CPU otherwise.
    """
    trainer = L.Trainer(
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=sys.stdout.isatty(),
    )
    results = {}
    for name, (json_path, image_dir) in sets.items():
        data = ConceptDataModule(
            train_json=None,
            image_dir=None,
            val_json=json_path,
            val_image_dir=image_dir,
            image_size=image_size,
        )
        metrics = trainer.validate(task, data, verbose=False)[0]
        results[name] = {key.removeprefix("val/"): float(value) for key, value in metrics.items()}
    return results


def demo(
    domain: Literal["microscopy", "industrial"] = "industrial",
    out: str = "runs/demo",
    shots: int = 10,
    anchor_mix: bool = True,
    target_negatives: bool = True,
    recipe: str = RECIPE,
    base: str | None = None,
    max_epochs: int | None = None,
    anchor_images: int = 1000,
    val_images: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """Adapt the built-in tiny SAM 3 to a target domain of the concept world and show what changed.

    Writes into ``out``: ``world/`` (the generated data), ``fit/checkpoints/`` (``last.ckpt``, as
    the recipe checkpoints), ``adapter/`` (the trained LoRA adapter), ``before_after.png`` (held-out
    target images: the truth, the base model, the adapted model) and ``results.json`` (the figures).
    Killed mid-fit, the same command resumes from ``fit/checkpoints/last.ckpt``.

    Args:
        domain: Target domain of the concept world.
        out: Output folder.
        shots: Labelled target-domain images to train on.
        anchor_mix: Mix anchor-world images into training at the recipe's ``data.anchor_ratio``
            (``tiny-10shot``: two per target image), which keeps what the base knew.
        target_negatives: Train on the target images' negative phrases too, their look-alike siblings
            ("dividing cell" where only round cells are; "rust spot" where only scratches are, from
            the domain's ``concept_tree.yaml``) marked hard so that caps keep them; ``False``
            trains on the target's positive phrases only (anchor images keep their negatives).
        recipe: Recipe (a shipped recipe's name or a YAML file) whose model, data and trainer
            settings the fit uses.
        base: Base model instead of the recipe's ``model.checkpoint``.
        max_epochs: Training epochs instead of the recipe's ``trainer.max_epochs``.
        anchor_images: Anchor-world images available for mixing.
        val_images: Held-out images per domain (target and anchor), the same before and after.
        seed: Seed of the world and of training.

    Returns:
        The before/after metrics on the held-out target images and on held-out anchor images.
    """
    root = Path(out)
    world = write_demo_worlds(
        root / "world",
        seed=seed,
        anchor_train=anchor_images,
        anchor_val=val_images,
        target_shots=shots,
        target_val=val_images,
    )
    train_json, train_dir = world[f"{domain}/train"]
    held_out = {"target": world[f"{domain}/val"], "anchor": world["anchor/val"]}
    args = [
        "--config",
        str(recipe_path(recipe)),
        f"--seed_everything={seed}",
        f"--data.image_dir={train_dir}",
        f"--trainer.default_root_dir={root / 'fit'}",
        "--trainer.logger=false",
    ]
    if target_negatives:
        args += [f"--data.train_json={train_json}", "--data.sibling_negatives=true"]
        tree = concept_tree_file(train_json)
        if tree is not None:
            args.append(f"--data.concept_tree={tree}")
    else:
        args.append("--data.train_json=" + json.dumps({"path": str(train_json), "negatives": False}))
    if base is not None:
        args.append(f"--model.checkpoint={base}")
    if max_epochs is not None:
        args.append(f"--trainer.max_epochs={max_epochs}")
    if anchor_mix:
        anchor_json, anchor_dir = world["anchor/train"]
        args += [f"--data.anchor_json={anchor_json}", f"--data.anchor_image_dir={anchor_dir}"]
    cli = lightning_cli(args, run=False)
    task, image_size = cli.model, cli.datamodule.hparams.image_size
    resume = _resumable_checkpoint(root, args)
    before_file = root / "fit" / "before.json"
    pictured = read_coco(*held_out["target"])[:PICTURE_IMAGES]
    threshold = float(task.hparams.score_threshold)
    if resume is not None and before_file.is_file():
        before = json.loads(before_file.read_text())
        print(f"resuming the fit from {resume} (the base model's figures from {before_file})")
    else:
        before = evaluate_sets(task, held_out, image_size)
        before_file.parent.mkdir(parents=True, exist_ok=True)
        before_file.write_text(json.dumps(before, indent=2) + "\n")
    base_found = _predict(task, pictured, image_size, threshold)
    cli.trainer.fit(task, cli.datamodule, ckpt_path=resume)
    after = evaluate_sets(task, held_out, image_size)
    adapter, _ = save_trained(task.segmenter.network, root, str(task.hparams.checkpoint))
    picture = comparison_figure(
        pictured, {"before": base_found, "after": _predict(task, pictured, image_size, threshold)}, threshold
    )
    picture.suptitle(f"{shots}-shot adaptation of the tiny SAM 3 to '{domain}' (held-out images)", fontsize=9)

    results = {
        "domain": domain,
        "shots": shots,
        "anchor_mix": anchor_mix,
        "anchor_ratio": float(cli.datamodule.hparams.anchor_ratio) if anchor_mix else 0.0,
        "target_negatives": target_negatives,
        "steps": int(cli.trainer.global_step),
        "before": before,
        "after": after,
    }
    health = next((c.health for c in cli.trainer.callbacks if isinstance(c, FitHealth)), None)
    if health is not None:
        results["fit_health"] = {**asdict(health), "learning": health.learning}
    results["adapter"] = str(adapter)
    results["picture"] = str(save_figure(picture, root / "before_after.png", dpi=80))
    (root / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(format_table(results))
    return results


def _predict(
    task: ConceptSegmentationTask, samples: list[ConceptSample], image_size: int, threshold: float
) -> list[QueryResult]:
    """The task's detections on ``samples`` (for the picture), leaving the task in training mode."""
    found = list(predict_samples(task.segmenter, samples, image_size=image_size, min_score=threshold))
    task.segmenter.train()
    return found


def _resumable_checkpoint(root: Path, args: list[str]) -> str | None:
    """``last.ckpt`` of an interrupted demo run with the same settings, or ``None`` (a fresh fit).

    The settings (the fit's arguments) are written beside the checkpoints; a checkpoint left by a run
    with other settings is not resumed, and removed so that it cannot be mistaken for this run's.
    """
    folder = root / "fit"
    settings = folder / "settings.json"
    last = folder / "checkpoints" / "last.ckpt"
    same = settings.is_file() and json.loads(settings.read_text()) == args
    if last.is_file() and same:
        return str(last)
    if (folder / "checkpoints").is_dir():
        shutil.rmtree(folder / "checkpoints")
    folder.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps(args, indent=1) + "\n")
    return None


def format_table(results: dict[str, Any]) -> str:
    """The before/after table as Markdown."""
    ratio = results.get("anchor_ratio", 1.0)
    mix = f"with {ratio:g}:1" if results["anchor_mix"] else "without"
    negatives = "hard negatives" if results.get("target_negatives", True) else "positives only"
    title = f"{results['shots']}-shot LoRA adaptation of the tiny SAM 3 to '{results['domain']}'"
    lines = [
        f"\n{title} ({mix} anchor mixing, {negatives})",
        "",
        "| held-out set | metric | before | after | change |",
        "|---|---|---|---|---|",
    ]
    for split, label in (
        ("target", f"target ({results['domain']})"),
        ("anchor", "anchor world (forgetting)"),
    ):
        for metric in HEADLINE:
            if metric not in results["before"][split]:
                continue
            b, a = results["before"][split][metric], results["after"][split][metric]
            lines.append(f"| {label} | {metric} | {b:.3f} | {a:.3f} | {a - b:+.3f} |")
    health = results.get("fit_health")
    if health is not None:
        state = "learning" if health["learning"] else "NOT learning: see the warning above"
        lines += [
            "",
            f"train-set {health['metric']} on {health['images']} of the shots: base {health['base']:.3f}, "
            f"after training {health['after']:.3f} ({state})",
        ]
    lines += [
        "",
        f"adapter: {results['adapter']}  (load it: load_sam3('tiny', adapter='{results['adapter']}'))",
    ]
    if "picture" in results:
        lines.append(f"before/after picture: {results['picture']}")
    return "\n".join(lines)
