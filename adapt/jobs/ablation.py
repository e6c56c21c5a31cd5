"""What anchor mixing and hard negatives each buy (``sam3-adapt ablation``).

Runs the main job (`sam3_adapt.jobs.demo.demo`) four times on one target domain of the concept world, with
anchor mixing off and on (at the recipe's ``data.anchor_ratio``), and with the target's negatives
off (positives only) and on (absent look-alike phrases as hard negatives), then evaluates every
adapter the same way with `sam3_adapt.evaluation.evaluate` on the same held-out images: target-domain AP
and cgF1, anchor-world AP (forgetting), and the false-positive rate on hard negatives (the share of
held-out (image, phrase) pairs whose phrase is an absent sibling of a present one, "dividing cell"
where only round cells are, or "rust spot" where only scratches are (the domain's
``concept_tree.yaml``), on which the model predicts an instance above the score threshold; "n/a"
for a set without such pairs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from sam3_adapt.data_mix.synthetic.concept_world import concept_tree_file
from sam3_adapt.evaluation import evaluate
from sam3_adapt.jobs.demo import RECIPE, demo

#: The ablation's columns: key in a row, header in the Markdown table.
COLUMNS = (
    ("target_AP", "target segm AP"),
    ("target_cgF1", "target cgF1"),
    ("anchor_AP", "anchor segm AP"),
    ("hard_negative_FP_rate", "FP rate on hard negatives"),
)


def ablation(
    domain: Literal["microscopy", "industrial"] = "industrial",
    out: str = "runs/ablation",
    shots: int = 10,
    recipe: str = RECIPE,
    base: str = "tiny",
    max_epochs: int | None = None,
    anchor_images: int = 1000,
    val_images: int = 100,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Adapt with {no mixing, anchor mixing} x {positives only, hard negatives} and compare.

    Args:
        domain: Target domain of the concept world.
        out: Output folder: one sub-folder per run (world, adapter, evaluation reports) and
            ``ablation.json`` / ``ablation.md`` with the table.
        shots: Labelled target-domain images to train on.
        recipe: Recipe YAML of every fit.
        base: Base model (``tiny``: the shipped pretrained tiny SAM 3).
        max_epochs: Training epochs instead of the recipe's.
        anchor_images: Anchor-world images available for mixing.
        val_images: Held-out images per domain, the same for every run and for the base model.
        seed: Seed of the world and of training.

    Returns:
        One row per model (the base first): its settings and the four measured figures.
    """
    root = Path(out)
    rows = []
    for anchor_mix in (False, True):
        for negatives in (False, True):
            name = f"mix-{anchor_mix}_negatives-{negatives}"
            run = demo(
                domain,
                out=str(root / name),
                shots=shots,
                anchor_mix=anchor_mix,
                target_negatives=negatives,
                recipe=recipe,
                base=base,
                max_epochs=max_epochs,
                anchor_images=anchor_images,
                val_images=val_images,
                seed=seed,
            )
            world, evaluation = root / name / "world", root / name / "evaluation"
            measured = measure(base, run["adapter"], world, domain, evaluation)
            settings = {"anchor_mix": anchor_mix, "anchor_ratio": run["anchor_ratio"]}
            rows.append({"model": name} | settings | {"target_negatives": negatives} | measured)
    # Every run wrote the same world (same seed and sizes): the base is measured on the first one's.
    first = root / rows[0]["model"] / "world"
    measured = measure(base, None, first, domain, root / "base" / "evaluation")
    before = {"model": "base (before adaptation)", "anchor_mix": None, "target_negatives": None}
    rows.insert(0, before | measured)
    (root / "ablation.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = format_ablation(rows, domain, shots)
    (root / "ablation.md").write_text(table + "\n")
    print(table)
    return rows


def measure(base: str, adapter: str | None, world: Path, domain: str, out: Path) -> dict[str, float | None]:
    """Target and anchor figures of one model on the held-out images of ``world``.

    These are the ablation's columns, and the engine study's.
    """
    common = {"model": base, "adapter": adapter, "pictures": 0, "progress": False, "overwrite": True}
    target_json = world / domain / "val" / "annotations.json"
    tree = concept_tree_file(target_json)
    target = evaluate(
        str(target_json),
        str(world / domain / "val" / "images"),
        out=str(out / "target"),
        sibling_negatives=True,
        concept_tree=None if tree is None else str(tree),
        **common,
    )["model"]
    anchor = evaluate(
        str(world / "anchor" / "val" / "annotations.json"),
        str(world / "anchor" / "val" / "images"),
        out=str(out / "anchor"),
        **common,
    )["model"]
    return {
        "target_AP": target["metrics"]["segm/AP"],
        "target_cgF1": target["metrics"]["cgF1"],
        "anchor_AP": anchor["metrics"]["segm/AP"],
        # None where no held-out pair has an absent sibling of a present phrase.
        "hard_negative_FP_rate": target["breakdowns"]["pair kind"]
        .get("hard negative", {})
        .get("negatives_with_FP"),
    }


def format_ablation(rows: list[dict[str, Any]], domain: str, shots: int) -> str:
    """The ablation table as Markdown."""
    lines = [
        f"{shots}-shot LoRA adaptation to '{domain}': anchor mixing x hard negatives",
        "",
        "| model | anchor mixing | target negatives | " + " | ".join(h for _, h in COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for row in rows:
        mix = "" if row["anchor_mix"] is None else "none"
        if row["anchor_mix"]:
            mix = f"{row.get('anchor_ratio', 1.0):g}:1"
        negatives = "" if row["target_negatives"] is None else ("hard" if row["target_negatives"] else "none")
        values = " | ".join("n/a" if row[key] is None else f"{row[key]:.3f}" for key, _ in COLUMNS)
        lines.append(f"| {row['model']} | {mix} | {negatives} | {values} |")
    return "\n".join(lines)
