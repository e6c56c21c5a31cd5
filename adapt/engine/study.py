"""The label-quality study of SAM 3's domain-adaptation experiment, on the concept world.

One target domain: 10 labelled images, an unlabelled pool (200 images), the same held-out test set
for every row. The 10-shot model (with anchor mixing) proposes over the pool; the rows then train on
the 10 shots plus: nothing; raw pseudo-labels (every proposal above the threshold, every pair taken
as exhaustive); verifier-cleaned labels (the pairs the verifiers auto-accepted, and the instances MV
accepted in queued pairs as pairs that are not exhaustive); human-verified labels (the simulated
annotator works the review queue, most useful first, until ``review_budget`` runs out, its fixes and
additions the proposer's mask for the true instance's box; the rest as in the cleaned row); the
fully labelled pool (the upper bound). Each row with and without anchor mixing, each seed on its own draw
of the world. Columns: target segm AP and cgF1, anchor segm
AP, human actions, and those as a share of labelling the pool from scratch. The learned verifiers
are compared with the rules on the simulated annotator's decisions.

Run it with ``python -m sam3_adapt.engine.study --help``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sam3_adapt.data_mix.synthetic.concept_world import domain_categories, write_demo_worlds, write_world
from sam3_adapt.engine.annotator import SimulatedAnnotator, from_scratch_actions, model_masker
from sam3_adapt.engine.export import (
    balance_negatives,
    coco_info,
    engine_pairs,
    labelled_pairs,
    negative_ratio,
    provenance_counts,
    truth_of,
    write_pairs,
)
from sam3_adapt.engine.fit_labels import fit_labels
from sam3_adapt.engine.journal import Journal
from sam3_adapt.engine.learning import compare_verifiers
from sam3_adapt.engine.propose import propose
from sam3_adapt.engine.quality import label_quality
from sam3_adapt.engine.review import work_queue
from sam3_adapt.engine.store import read_proposals, run_info
from sam3_adapt.engine.triage import triage
from sam3_adapt.engine.verifiers import Verifiers
from sam3_adapt.jobs.ablation import measure

ROWS = ("10-shot", "raw", "cleaned", "human", "full")
ROW_NAMES = {
    "10-shot": "10-shot only",
    "raw": "+ raw pseudo-labels",
    "cleaned": "+ verifier-cleaned (auto-accepted)",
    "human": "+ human-verified (queue by the simulated annotator)",
    "full": "+ fully labelled pool (upper bound)",
}


def study_seed(
    root: Path,
    domain: str,
    seed: int,
    rows: tuple[str, ...],
    mixes: tuple[bool, ...],
    shots: int,
    pool_images: int,
    val_images: int,
    anchor_images: int,
    max_steps: int,
    review_budget: float | None,
    balance: bool = False,
) -> list[dict[str, Any]]:
    """Every row of one seed (resumable: measured rows are read back from ``results.json``)."""
    root.mkdir(parents=True, exist_ok=True)
    results_file = root / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    world = root / "world"
    sets = write_demo_worlds(
        world,
        seed=seed,
        anchor_train=anchor_images,
        anchor_val=val_images,
        target_shots=shots,
        target_val=val_images,
    )
    shots_json, shots_dir = sets[f"{domain}/train"]
    anchor_json, anchor_dir = sets["anchor/train"]
    pool_json, pool_dir = write_world(world / domain / "pool", domain, pool_images, seed=1000 + seed)
    phrases = [str(c["name"]) for c in domain_categories(domain)]  # type: ignore[arg-type]
    shots_pairs = labelled_pairs(shots_json, shots_dir, world)

    def run_row(row: str, mix: bool, labels: Path, actions: int) -> None:
        key = f"{row}|{'mix' if mix else 'no-mix'}"
        if key in results:
            return
        folder = root / "fits" / key.replace("|", "_")
        adapter = fit_labels(
            labels,
            world,
            folder,
            anchor_json=anchor_json if mix else None,
            anchor_image_dir=anchor_dir if mix else None,
            max_steps=max_steps,
            seed=seed,
        )
        measured = measure("tiny", str(adapter), world, domain, folder / "evaluation")
        results[key] = {"row": row, "anchor_mix": mix, "seed": seed, "actions": actions, **measured}
        results_file.write_text(json.dumps(results, indent=1) + "\n")

    labels_dir = root / "labels"
    info = coco_info(shots_json)  # the world's mark: fits know they train on the concept world
    ten = write_pairs(shots_pairs, labels_dir / "10-shot.json", {**info, "row": "10-shot"})
    for mix in sorted(set(mixes) | {True}, reverse=True):  # the proposer first: 10-shot with mixing
        if "10-shot" in rows or mix:
            run_row("10-shot", mix, ten, 0)
    proposer = root / "fits" / "10-shot_mix" / "adapter"
    propose(
        str(pool_dir),
        phrases,
        str(root / "proposals"),
        adapter=str(proposer),
        labelled=str(shots_json),
        labelled_image_dir=str(shots_dir),
        progress=False,
    )
    records = read_proposals(root / "proposals")
    journal = Journal(root / "journal.sqlite", run_info(root / "proposals")["run_id"])
    if not len(journal):
        journal.append(triage(records, Verifiers()).decisions)
    sorted_out = triage(records, Verifiers())
    truth = truth_of(pool_json, pool_dir)
    scratch = from_scratch_actions(truth, sum(len(r["pairs"]) for r in records.values()))
    annotator = SimulatedAnnotator(truth, masker=model_masker("tiny", proposer, pool_dir))
    budget = None if review_budget is None else int(review_budget * scratch)
    spent = work_queue(sorted_out.queue, annotator.answer, journal, budget=budget) if "human" in rows else 0
    decisions = journal.decisions()
    prefix = str(Path(pool_dir).relative_to(world))
    ratio = negative_ratio(shots_pairs) if balance else None

    def balanced(pairs: list) -> list:
        return pairs if ratio is None else balance_negatives(pairs, ratio)

    label_sets = {
        "raw": engine_pairs(records, decisions, "raw", prefix),
        "cleaned": balanced(engine_pairs(records, decisions, "auto", prefix, unreviewed="positives")),
        # Queued pairs left when the budget ran out keep what MV accepted, as non-exhaustive positives.
        "human": balanced(engine_pairs(records, decisions, "verified", prefix, unreviewed="positives")),
        "full": labelled_pairs(pool_json, pool_dir, world),
    }
    actions = {"raw": 0, "cleaned": 0, "human": spent, "full": scratch}
    summary = {
        "triage": sorted_out.counts,
        "queue": len(sorted_out.queue),
        "from_scratch_actions": scratch,
        "negatives_per_positive": ratio,
        "human_actions": spent,
        "labels": {row: provenance_counts(pairs) for row, pairs in label_sets.items()},
        "label_quality": {row: label_quality(pairs, truth, prefix) for row, pairs in label_sets.items()},
        "human_decisions": dict(Counter(d.kind for d in decisions if d.actor_kind != "verifier")),
        "verifiers": [asdict(c) for c in compare_verifiers(records, decisions, seed=seed)],
    }
    (root / "engine_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    for row in rows[1:] if rows[0] == "10-shot" else rows:
        labels = write_pairs(shots_pairs + label_sets[row], labels_dir / f"{row}.json", {**info, "row": row})
        for mix in mixes:
            run_row(row, mix, labels, actions[row])
    for entry in results.values():
        entry["share_of_scratch"] = entry["actions"] / scratch
    results_file.write_text(json.dumps(results, indent=1) + "\n")
    journal.close()
    return [results[k] for k in results]


def format_study(rows: list[dict[str, Any]]) -> str:
    """The study table (mean over seeds, each seed's value in brackets) as Markdown."""
    keys: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    for entry in rows:
        keys.setdefault((entry["row"], entry["anchor_mix"]), []).append(entry)
    lines = [
        "| labels | anchor mixing | target segm AP | target cgF1 | anchor segm AP | human actions "
        "| share of scratch |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in ROWS:
        for mix in (False, True):
            found = keys.get((row, mix))
            if not found:
                continue

            def cell(name: str, fmt: str = ".3f", found: list[dict[str, Any]] = found) -> str:
                values = [e[name] for e in found]
                mean = sum(values) / len(values)
                each = " / ".join(format(v, fmt) for v in values)
                return format(mean, fmt) + (f" ({each})" if len(values) > 1 else "")

            mixing = "2:1" if mix else "none"
            lines.append(
                f"| {ROW_NAMES[row]} | {mixing} | {cell('target_AP')} | {cell('target_cgF1')} | "
                f"{cell('anchor_AP')} | {cell('actions', '.0f')} | {cell('share_of_scratch', '.1%')} |"
            )
    return "\n".join(lines)


def engine_study(
    out: str = "runs/engine-study",
    domain: str = "industrial",
    seeds: list[int] | None = None,
    rows: list[str] | None = None,
    anchor_mix: list[bool] | None = None,
    shots: int = 10,
    pool_images: int = 200,
    val_images: int = 100,
    anchor_images: int = 1000,
    max_steps: int = 300,
    review_budget: float | None = None,
    balance_negatives: bool = False,
) -> list[dict[str, Any]]:
    """Run the label-quality study and write ``study.json`` and ``study.md`` into ``out``.

    Args:
        out: Output folder, one ``seed-<s>`` folder per seed (resumable).
        domain: Target domain of the concept world.
        seeds: Seeds (default 0 and 1).
        rows: Rows to run, of ``10-shot``, ``raw``, ``cleaned``, ``human``, ``full`` (default: all).
        anchor_mix: With and/or without anchor mixing (default both).
        shots: Labelled target images.
        pool_images: Unlabelled pool images.
        val_images: Held-out images per domain.
        anchor_images: Anchor images available for mixing.
        max_steps: Optimizer steps of every fit.
        review_budget: Most actions the simulated annotator spends, as a share of labelling the pool
            from scratch (``None``: the whole queue).
        balance_negatives: Keep the cleaned and human rows' machine-confirmed negatives in the
            labelled images' proportion to positives (`sam3_adapt.engine.export.balance_negatives`).

    Returns:
        Every measured row.
    """
    measured = []
    for seed in seeds if seeds is not None else [0, 1]:
        measured += study_seed(
            Path(out) / f"seed-{seed}",
            domain,
            seed,
            tuple(rows or ROWS),
            tuple(anchor_mix if anchor_mix is not None else (False, True)),
            shots,
            pool_images,
            val_images,
            anchor_images,
            max_steps,
            review_budget,
            balance_negatives,
        )
        table = format_study(measured)
        Path(out, "study.json").write_text(json.dumps(measured, indent=1) + "\n")
        Path(out, "study.md").write_text(table + "\n")
        print(table)
    return measured


if __name__ == "__main__":
    from jsonargparse import CLI

    CLI(engine_study, as_positional=False)
