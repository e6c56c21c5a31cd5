"""``sam3-adapt engine``: rounds of fit -> propose -> verify -> review -> export -> fit.

Each round has its own folder ``round-<r>/``: ``fit/`` and ``adapter/`` (the model trained on the
previous round's labels; round 0 trains on the labelled images alone), ``metrics.json`` (held-out
target and anchor figures when sets are given, and the human actions spent before the fit),
``proposals/``, ``journal.sqlite`` (every decision), ``verifiers.json`` (rules against learned on
the decisions so far) and ``labels.json`` (the export the next round trains on). ``summary.md`` and
``summary.png`` show target AP per round against human actions spent.

The person answers the review queue through the review page; without one, ``truth_json`` lets the
simulated annotator answer (for measurement and tests). Without either, the round writes
``review_queue.jsonl`` and stops: once the decisions are in the round's journal, the same command
goes on. Killed anywhere, the same command resumes: fits whose adapter is saved are not repeated,
proposals skip done images, the journal keeps every decision made.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from sam3_adapt.engine.annotator import ACTION_COST, SimulatedAnnotator, from_scratch_actions, model_masker
from sam3_adapt.engine.export import (
    LabelledPair,
    balance_negatives,
    coco_info,
    engine_pairs,
    labelled_pairs,
    negative_ratio,
    truth_of,
    write_pairs,
)
from sam3_adapt.engine.fit_labels import fit_labels
from sam3_adapt.engine.journal import Journal
from sam3_adapt.engine.learning import learned_verifiers
from sam3_adapt.engine.pool import read_phrases, read_pool
from sam3_adapt.engine.propose import propose
from sam3_adapt.engine.review import work_queue
from sam3_adapt.engine.store import read_proposals, run_info
from sam3_adapt.engine.triage import triage
from sam3_adapt.engine.verifiers import Verifiers


def _evaluate(adapter: Path, sets: dict[str, tuple[str, str]], out: Path) -> dict[str, float]:
    """Segm AP and cgF1 of the adapted model on each held-out set."""
    from sam3_adapt.evaluation import evaluate

    found = {}
    for name, (data_json, image_dir) in sets.items():
        metrics = evaluate(
            data_json, image_dir, adapter=str(adapter), out=str(out / name), pictures=0, progress=False
        )["model"]["metrics"]
        found[f"{name}_AP"], found[f"{name}_cgF1"] = metrics["segm/AP"], metrics["cgF1"]
    return found


def engine(
    pool: str,
    phrases: str | list[str],
    labelled: str,
    labelled_image_dir: str,
    out: str = "runs/engine",
    rounds: int = 2,
    model: str = "tiny",
    anchor_json: str | None = None,
    anchor_image_dir: str | None = None,
    truth_json: str | None = None,
    review_budget: float | None = None,
    target_json: str | None = None,
    target_image_dir: str | None = None,
    anchor_val_json: str | None = None,
    anchor_val_image_dir: str | None = None,
    recipe: str = "tiny-10shot",
    max_steps: int = 300,
    seed: int = 0,
    negatives_per_positive: float | Literal["labelled"] | None = None,
) -> list[dict[str, Any]]:
    """Run data-engine rounds: fit, propose, verify, review, export, and fit again.

    Args:
        pool: Folder of unlabelled images (or a COCO file listing them).
        phrases: The domain's vocabulary plus candidate negatives (a list or a text file).
        labelled: The labelled images' COCO file (the few shots), part of every round's labels.
        labelled_image_dir: Their images.
        out: Output folder, one ``round-<r>`` folder per round.
        rounds: Review rounds; the loop fits ``rounds + 1`` times (the last on the last export).
        model: Base SAM 3.
        anchor_json: Anchor data mixed into every fit at the recipe's ratio (``None``: no mixing).
        anchor_image_dir: Its images.
        truth_json: Ground truth of the pool (COCO, ``file_name`` relative to ``pool``) for the simulated
            annotator; ``None``: a person answers ``review_queue.jsonl`` through the review page.
        review_budget: Most actions per round, as a share of labelling the pool from scratch.
        target_json: Held-out target set for the per-round figures.
        target_image_dir: Its images.
        anchor_val_json: Held-out anchor set (forgetting).
        anchor_val_image_dir: Its images.
        recipe: Recipe of every fit.
        max_steps: Optimizer steps of every fit.
        seed: Seed of training.
        negatives_per_positive: Most machine-confirmed negative pairs of the pool kept per positive
            pair, per phrase, lowest presence first (`sam3_adapt.engine.export.balance_negatives`;
            negatives a person confirmed are all kept): ``labelled`` the labelled images' own ratio,
            a number, or ``None`` (default) to keep every one. In the README's study it removed every
            wrong confirmed negative but did not raise AP beyond the fit-to-fit spread.

    Returns:
        One row per fit: ``round``, ``human_actions`` (spent before it), and the held-out figures.
    """
    phrase_list = read_phrases(phrases)
    read_pool(pool)  # an empty or unreadable pool fails here, not after the first fit
    root = Path(out)
    pool_dir = Path(pool) if Path(pool).is_dir() else Path(pool).parent
    image_root = Path(os.path.commonpath([Path(labelled_image_dir).resolve(), pool_dir.resolve()]))
    prefix = os.path.relpath(pool_dir.resolve(), image_root)
    shots = labelled_pairs(labelled, labelled_image_dir, image_root)
    ratio = negative_ratio(shots) if negatives_per_positive == "labelled" else negatives_per_positive
    sets = {}
    if target_json is not None:
        sets["target"] = (target_json, target_image_dir or str(Path(target_json).parent / "images"))
    if anchor_val_json is not None:
        sets["anchor"] = (
            anchor_val_json,
            anchor_val_image_dir or str(Path(anchor_val_json).parent / "images"),
        )
    truth = truth_of(truth_json, pool_dir) if truth_json is not None else None
    info = coco_info(labelled)
    first = {**info, "round": 0, "labels": "labelled images only"}
    labels = write_pairs(shots, root / "labels-0.json", first)
    human: dict[tuple[str, str], LabelledPair] = {}
    spent, scratch, verifiers, rows = 0, None, Verifiers(), []
    for r in range(rounds + 1):
        folder = root / f"round-{r}"
        adapter = fit_labels(
            labels,
            image_root,
            folder,
            recipe=recipe,
            base=model,
            anchor_json=anchor_json,
            anchor_image_dir=anchor_image_dir,
            max_steps=max_steps,
            seed=seed,
        )
        row = {"round": r, "human_actions": spent, "labels": str(labels)}
        row.update(_evaluate(adapter, sets, folder / "evaluation") if sets else {})
        (folder / "metrics.json").write_text(json.dumps(row, indent=1) + "\n")
        rows.append(row)
        if r == rounds:
            break
        propose(
            pool,
            phrase_list,
            str(folder / "proposals"),
            model=model,
            adapter=str(adapter),
            labelled=labelled,
            labelled_image_dir=labelled_image_dir,
            progress=False,
        )
        records = read_proposals(folder / "proposals")
        journal = Journal(folder / "journal.sqlite", run_info(folder / "proposals")["run_id"])
        sorted_out = triage(records, verifiers, r)
        if not len(journal):
            journal.append(sorted_out.decisions)
        queue = [q for q in sorted_out.queue if (q.file_name, q.phrase) not in human]
        if truth is None:
            with open(folder / "review_queue.jsonl", "w") as f:
                f.writelines(json.dumps(asdict(q)) + "\n" for q in queue)
            if not journal.reviewed_pairs():
                print(
                    f"round {r}: {len(queue)} pair(s) await review in {folder / 'review_queue.jsonl'}; "
                    f"decisions go to {folder / 'journal.sqlite'}, then run the same command again"
                )
                journal.close()
                return rows
            people = [d for d in journal.decisions("human") if d.round == r]
            spent += sum(ACTION_COST.get(d.kind, 0) for d in people)  # made on the review page
        else:
            scratch = from_scratch_actions(truth, sum(len(rec["pairs"]) for rec in records.values()))
            budget = None if review_budget is None else int(review_budget * scratch)
            annotator = SimulatedAnnotator(truth, masker=model_masker(model, adapter, pool_dir))
            spent += work_queue(queue, annotator.answer, journal, r, budget)
        decisions = journal.decisions()
        closed = journal.reviewed_pairs()
        pairs = engine_pairs(records, decisions, "verified", prefix, unreviewed="positives")
        for pair in pairs:
            key = (os.path.relpath(pair.file_name, prefix), pair.phrase)
            if key in closed:
                human[key] = pair
        kept = [p for p in pairs if (os.path.relpath(p.file_name, prefix), p.phrase) not in human]
        found = list(human.values()) + kept
        found = found if ratio is None else balance_negatives(found, ratio)
        labels = write_pairs(shots + found, folder / "labels.json", {**info, "round": r})
        verifiers, comparisons = learned_verifiers(records, decisions, seed)
        (folder / "verifiers.json").write_text(json.dumps([asdict(c) for c in comparisons], indent=1) + "\n")
        journal.close()
    _summary(root, rows, scratch)
    return rows


def _summary(root: Path, rows: list[dict[str, Any]], scratch: int | None) -> None:
    """``summary.md`` (a table per round) and ``summary.png`` (target AP against human actions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in ("target_AP", "target_cgF1", "anchor_AP") if k in rows[0]]
    lines = [
        "| round | human actions | share of scratch | " + " | ".join(keys) + " |",
        "|---" * (3 + len(keys)) + "|",
    ]
    for row in rows:
        share = f"{row['human_actions'] / scratch:.1%}" if scratch else "n/a"
        values = " | ".join(f"{row[k]:.3f}" for k in keys)
        lines.append(f"| {row['round']} | {row['human_actions']} | {share} | {values} |")
    (root / "summary.md").write_text("\n".join(lines) + "\n")
    if "target_AP" in rows[0]:
        figure, axis = plt.subplots(figsize=(4, 3))
        axis.plot([r["human_actions"] for r in rows], [r["target_AP"] for r in rows], marker="o")
        for row in rows:
            axis.annotate(f"round {row['round']}", (row["human_actions"], row["target_AP"]), fontsize=7)
        axis.set_xlabel("human actions spent")
        axis.set_ylabel("target segm AP")
        figure.tight_layout()
        figure.savefig(root / "summary.png", dpi=100)
        plt.close(figure)
