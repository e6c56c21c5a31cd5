"""``sam3-adapt evaluate``: predict a labelled set, measure it the SAM 3 way, and write a report."""

from __future__ import annotations

import json
from collections.abc import Collection
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pycocotools.cocoeval import COCOeval

from sam3_adapt.data_mix.negatives.add import add_negatives
from sam3_adapt.data_mix.readers.coco import CocoSet
from sam3_adapt.evaluation.breakdowns import breakdowns, count_errors
from sam3_adapt.evaluation.calibration import calibration, calibration_figure
from sam3_adapt.evaluation.curves import pr_figure
from sam3_adapt.evaluation.data import as_list, image_names, original_records, read_eval_set
from sam3_adapt.evaluation.pairs import PairTable
from sam3_adapt.evaluation.pictures import pairs_figure, select_pairs
from sam3_adapt.evaluation.report import write_report
from sam3_adapt.fitting.out_folder import OutFolder
from sam3_adapt.inference.loop import predict_samples
from sam3_adapt.model.detections import PHRASE_CHUNK
from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.loading import load_segmenter
from sam3_adapt.training.coco_results import write_coco_results
from sam3_adapt.training.metrics import ConceptEvaluator


@dataclass
class Run:
    """One model's predictions on the set: the evaluator (headline metrics) and the per-pair table."""

    label: str
    evaluator: ConceptEvaluator
    table: PairTable


def predict_set(
    coco: CocoSet,
    segmenter: ConceptSegmenter,
    label: str,
    *,
    image_size: int,
    batch_size: int,
    score_threshold: float,
    max_detections: int,
    num_workers: int,
    progress: bool,
    resize: Literal["letterbox", "squash"] = "letterbox",
    phrase_chunk: int | None = PHRASE_CHUNK,
    precision: Literal["32-true", "bf16-mixed"] = "32-true",
) -> Run:
    """Run a model over every (image, phrase) pair of ``coco`` and collect its detections.

    Returns:
        The :class:`Run`.
    """
    evaluator = ConceptEvaluator(coco.gt, score_threshold=score_threshold, max_dets=max_detections)
    table = PairTable(coco.gt, evaluator.cgf1_iou_type)
    results = predict_samples(
        segmenter,
        coco.samples,
        image_size=image_size,
        batch_size=batch_size,
        max_detections=max_detections,
        masks="segm" in evaluator.iou_types,
        num_workers=num_workers,
        progress=progress,
        desc=f"evaluate {label}",
        resize=resize,
        phrase_chunk=phrase_chunk,
        precision=precision,
    )
    for result in results:
        image_id, found = result.sample.image_id, result.detections
        masks = None if found.masks is None else found.masks.cpu()
        records = evaluator.add(image_id, result.category_id, found.boxes.cpu(), found.scores.cpu(), masks)
        table.add(image_id, result.category_id, result.phrase, result.sample.source, records)
    return Run(label, evaluator, table)


def analyse(
    run: Run, threshold: float, hard_negatives: Collection[tuple[int, int]] = ()
) -> tuple[dict[str, Any], COCOeval]:
    """Headline metrics, counts, calibration and breakdowns of a run.

    ``hard_negatives`` are the ``(image_id, category_id)`` of hard-negative pairs (see `hard_negative_pairs`).

    Returns:
        The run's part of ``metrics.json``, and the COCOeval of its matching IoU type (for PR curves).
    """
    evaluator, pairs = run.evaluator, run.table.pairs
    cocoeval = evaluator.cocoeval(evaluator.cgf1_iou_type)
    return {
        "label": run.label,
        "metrics": evaluator.compute(),
        "counts": count_errors(pairs, threshold),
        "calibration": calibration(pairs),
        "breakdowns": breakdowns(evaluator, cocoeval, pairs, threshold, hard_negatives),
    }, cocoeval


def draw_figures(
    run: Run, result: dict[str, Any], cocoeval: COCOeval, coco: CocoSet, folder: Path, prefix: str, count: int
) -> dict[str, Path]:
    """Write the run's PNG figures into ``folder``; returns their paths by figure key."""
    folder.mkdir(parents=True, exist_ok=True)
    threshold = run.evaluator.score_threshold
    phrases = {cat_id: phrase for cat_id, (phrase, _) in coco.phrases.items()}
    figures = {
        "calibration": calibration_figure(result["calibration"], threshold, f"threshold sweep: {run.label}"),
        "pr_curves": pr_figure(cocoeval, phrases, f"precision-recall: {run.label}"),
    }
    image_paths = {sample.image_id: sample.image_path for sample in coco.samples}
    names = image_names(coco)
    for key, pairs in select_pairs(run.table.pairs, threshold, count).items():
        if pairs:
            figures[key] = pairs_figure(pairs, run.table, image_paths, threshold, names=names)
    paths = {}
    for key, figure in figures.items():
        paths[key] = folder / f"{prefix}_{key}.png"
        figure.savefig(paths[key], dpi=90)
    return paths


def evaluate(
    data_json: str | list[str],
    image_dir: str | list[str],
    model: str = "tiny",
    adapter: str | None = None,
    baseline: bool | str = False,
    out: str = "runs/evaluate",
    image_size: int | None = None,
    resize: Literal["letterbox", "squash"] = "letterbox",
    batch_size: int = 4,
    phrase_chunk: int = PHRASE_CHUNK,
    score_threshold: float = 0.5,
    max_detections: int = 100,
    prompt_map: dict[str, str] | str | None = None,
    hard_negatives: str | list[str] | None = None,
    sibling_negatives: bool = False,
    concept_tree: str | None = None,
    pictures: int = 6,
    device: str | None = None,
    precision: Literal["32-true", "bf16-mixed"] = "32-true",
    num_workers: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate a SAM 3 model (optionally adapted) on a labelled COCO set and write a report.

    Every image is queried with every phrase of its file: phrases with instances are positive pairs,
    the others negative pairs. Writes into ``out``: ``metrics.json`` (headline metrics, counts,
    calibration sweep, breakdowns; with ``baseline`` also the base model's and the deltas),
    ``results.json`` (COCO results, masks as RLE; ``baseline_results.json`` for the baseline) with
    the image and category ids of the user's own files and each image's ``file_name`` (with several
    files, each record also names its ``source``, and ``results-1.json``, ... hold each file's records
    alone, ready for pycocotools against that file),
    ``report.html`` (a single self-contained file), the report's figures as PNG in ``figures/`` and
    ``manifest.json`` (what wrote the folder, from which inputs, and every file's size and SHA-256).
    The folder appears only when all of it is written (see `sam3_adapt.fitting.out_folder`): a run
    that fails or is killed leaves ``out`` as it was.

    Args:
        data_json: Labelled set (COCO or SA-Co JSON, Hugging Face dataset folder or Hub name), or
            several (each becomes a source in the breakdowns).
        image_dir: Folder the images' ``file_name`` values are relative to (one per file, or one for all).
        model: Base SAM 3: hub id, local HF-format folder, or ``tiny`` / ``tiny-random``.
        adapter: PEFT adapter (hub id or folder) to put on ``model``; it must have been trained on it.
        baseline: A second model to report side by side with deltas: ``true`` for ``model`` without
            its adapter, or any model spec: a base (hub id, HF-format folder, ``tiny``), merged weights
            (the folder ``export --merged true`` writes; how full fine-tuning gets its before/after),
            or a local adapter folder (``adapter_config.json``), put on ``model``.
        out: Output folder; it must be new or empty unless ``overwrite`` is given.
        image_size: Network input side in pixels; default: the checkpoint's processor size.
        resize: ``letterbox``: each image's longer side is resized to ``image_size``, its aspect ratio
            kept, and the square padded (detections map back exactly); ``squash``: stretched to the
            square, as SAM 3's reference evaluation does.
        batch_size: Images per forward pass (each brings all of its phrases).
        phrase_chunk: Phrases per detector pass: memory stays flat with hundreds of phrases per
            image, and the detections do not depend on it.
        score_threshold: Score a detection needs to count for cgF1, counts, pictures and breakdowns.
        max_detections: Detections kept per image-phrase pair and per image for AP (100 as in the paper).
            A pair never has more than the model's object slots (20 for ``tiny``, 200 for
            ``facebook/sam3``); a set with more instances in a pair gets a warning with its best
            possible recall.
        prompt_map: Phrase overrides ``{category name: phrase}`` or a JSON/YAML file with them.
        hard_negatives: YAML or CSV files of confusions (see `sam3_adapt.data_mix.negatives.files`): their
            phrases
            are queried on their images as hard negatives.
        sibling_negatives: Query each positive phrase's absent siblings from the set's vocabulary
            ("blue circle" where only red circles are) as hard negatives.
        concept_tree: A concept tree YAML whose siblings of each positive phrase are hard negatives.
        pictures: Most image-phrase pairs per picture in the report.
        device: ``cuda``, ``cpu``, ...; default: CUDA when available.
        precision: ``bf16-mixed`` runs the network under bfloat16 autocast: on a GPU, or a CPU with
            bf16 arithmetic (``amx_bf16``/``avx512_bf16`` in ``/proc/cpuinfo``; there facebook/sam3's ViT
            ran 3x faster than in float32); metrics may move in the third decimal.
        num_workers: DataLoader worker processes.
        progress: Show a progress bar.
        overwrite: Replace the results already in ``out``.

    Returns:
        The content of ``metrics.json``.

    Raises:
        ValueError: On a set without positive pairs, ``baseline=True`` without ``adapter``, an adapter
            trained on another base model, or a bad setting.
        OutFolderError: If ``out`` is not empty (without ``overwrite``) or another run writes it.
    """
    if baseline is True and adapter is None:
        raise ValueError(
            "baseline=true compares an adapted model with its base: also pass adapter, or name the baseline "
            "model (--baseline tiny, --baseline path/to/merged)"
        )
    if not 0.0 < score_threshold <= 1.0:
        raise ValueError(f"score_threshold must be in (0, 1], got {score_threshold}")
    if batch_size < 1 or max_detections < 1 or pictures < 0 or phrase_chunk < 1:
        raise ValueError(
            "batch_size, phrase_chunk and max_detections must be positive and pictures non-negative"
        )
    inputs = {
        "data_json": data_json,
        "image_dir": image_dir,
        "model": model,
        "adapter": adapter,
        "baseline": baseline,
        "hard_negatives": hard_negatives,
        "concept_tree": concept_tree,
    }
    final = Path(out).absolute()
    with OutFolder(out, "evaluate", inputs, overwrite) as root:
        coco = read_eval_set(data_json, image_dir, prompt_map)
        if hard_negatives or sibling_negatives or concept_tree:
            coco = add_negatives(
                coco, explicit=hard_negatives, siblings=sibling_negatives, concept_tree=concept_tree
            )
        hard = hard_negative_pairs(coco)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        segmenter = load_segmenter(model, adapter, device=device)
        for phrase, origin in coco.phrases.values():
            segmenter.check_phrase(phrase, origin)
        settings = {
            "image_size": image_size or segmenter.image_size,
            "resize": resize,
            "batch_size": batch_size,
            "phrase_chunk": phrase_chunk,
            "precision": precision,
            "score_threshold": score_threshold,
            "max_detections": max_detections,
            "num_workers": num_workers,
            "progress": progress,
        }
        name = model_name(model)
        runs = {
            "model": (
                segmenter,
                model,
                adapter,
                f"{name} + {Path(adapter).name}" if adapter else name,
                nullcontext(),
            )
        }
        if baseline is True:
            # The base model is the adapted one with its LoRA layers switched off: no second load.
            runs["baseline"] = (segmenter, model, None, f"{name} (base)", segmenter.network.disable_adapter())
        elif baseline:
            runs["baseline"] = baseline_run(str(baseline), model, device, coco)
        summary: dict[str, Any] = {}
        figures = {}
        for key, (run_segmenter, run_model, run_adapter, label, adapters) in runs.items():
            with adapters:
                run = predict_set(coco, run_segmenter, label, **settings)
            result, cocoeval = analyse(run, score_threshold, hard)
            result.update(model=run_model, adapter=run_adapter)
            results_file = root / ("results.json" if key == "model" else f"{key}_results.json")
            groups = original_records(run.evaluator.results, coco)
            records = [record for group in groups.values() for record in group]
            write_coco_results(results_file, records)
            result["results_file"] = str(final / results_file.name)
            if len(as_list(data_json)) > 1:
                result["results_by_source"] = {
                    source: str(
                        final / write_coco_results(root / f"{results_file.stem}-{k}.json", group).name
                    )
                    for k, (source, group) in enumerate(per_source(coco, groups).items(), 1)
                }
            figures[key] = draw_figures(run, result, cocoeval, coco, root / "figures", key, pictures)
            summary[key] = result
        if baseline:
            model_metrics, base_metrics = summary["model"]["metrics"], summary["baseline"]["metrics"]
            summary["delta"] = {k: v - base_metrics[k] for k, v in model_metrics.items() if k in base_metrics}
        summary["data"] = describe_set(coco, data_json)
        summary["settings"] = {
            "score_threshold": score_threshold,
            "max_detections": max_detections,
            "object_slots": segmenter.num_slots,
            "image_size": settings["image_size"],
            "resize": resize,
            "precision": precision,
            "match_iou_type": run.evaluator.cgf1_iou_type,
            "skipped": run.evaluator.skipped,
        }
        (root / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        write_report(root / "report.html", summary, figures)
    print(headline_text(summary) + f"\nreport: {final / 'report.html'}\nmetrics: {final / 'metrics.json'}")
    return summary


def model_name(model: str) -> str:
    """A model spec as reports name it: a local folder by its last name, hub ids and short names as given."""
    return Path(model).name if Path(model).exists() else model


def baseline_run(
    spec: str, model: str, device: str, coco: CocoSet
) -> tuple[ConceptSegmenter, str, str | None, str, nullcontext]:
    """Load the baseline a model spec names: a local adapter folder goes on ``model``, anything else loads.

    Returns:
        ``(segmenter, model, adapter, label, context)`` as `evaluate` runs it.
    """
    if (Path(spec) / "adapter_config.json").is_file():
        base, adapter, label = model, spec, f"{model_name(model)} + {Path(spec).name}"
    else:
        base, adapter, label = spec, None, model_name(spec)
    segmenter = load_segmenter(base, adapter, device=device)
    for phrase, origin in coco.phrases.values():
        segmenter.check_phrase(phrase, origin)
    return segmenter, base, adapter, f"{label} (baseline)", nullcontext()


def per_source(coco: CocoSet, groups: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """``groups`` for every source of a merged set, in file order, empty for a source without results."""
    sources = list(dict.fromkeys(image["source"] for image in coco.gt["images"]))
    return {source: groups.get(source, []) for source in sources}


def hard_negative_pairs(coco: CocoSet) -> set[tuple[int, int]]:
    """``(image_id, category_id)`` of every hard-negative query of the set (explicit, generated, mined).

    Implicit negatives (categories absent from an exhaustively labelled image) are not hard.
    """
    return {(s.image_id, q.category_id) for s in coco.samples for q in s.queries if q.is_hard_negative}


def describe_set(coco: CocoSet, data_json: str | list[str]) -> dict[str, Any]:
    """Size of the evaluated set: images, pairs, positives, negatives, instances, phrases, sources."""
    queries = [q for sample in coco.samples for q in sample.queries]
    positives = sum(not q.is_negative for q in queries)
    return {
        "json": [str(p) for p in as_list(data_json)],
        "images": len(coco.samples),
        "pairs": len(queries),
        "positive_pairs": positives,
        "negative_pairs": len(queries) - positives,
        "instances": sum(len(q.instances) for q in queries),
        "phrases": [phrase for phrase, _ in coco.phrases.values()],
        "sources": sorted({sample.source for sample in coco.samples}),
    }


def headline_text(summary: dict[str, Any]) -> str:
    """The headline metrics as a plain-text table (with the baseline and deltas when present)."""
    runs = [r for r in ("model", "baseline") if r in summary]
    lines = [f"{'metric':<14}" + "".join(f"{summary[r]['label'][:28]:>30}" for r in runs)]
    for key, value in summary["model"]["metrics"].items():
        cells = [value] + ([summary["baseline"]["metrics"][key]] if "baseline" in summary else [])
        line = f"{key:<14}" + "".join(f"{c:>30.4f}" for c in cells)
        if "delta" in summary:
            line += f"  ({summary['delta'][key]:+.4f})"
        lines.append(line)
    return "\n".join(lines)
