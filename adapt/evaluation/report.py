"""A self-contained HTML report of an evaluation: tables from the metrics JSON, figures embedded as PNG."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sam3_adapt.evaluation.pictures import PICTURES

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
.up { color: #17803d; } .down { color: #b42318; }
.pair { display: flex; gap: 1em; flex-wrap: wrap; align-items: flex-start; }
.pair figure { margin: 0; } figcaption { font-weight: bold; margin-bottom: 0.3em; }
img { max-width: 100%; border: 1px solid #ddd; }
.note { color: #555; font-size: 0.9em; }
"""

#: Metrics where lower is better (their deltas are coloured the other way).
LOWER_IS_BETTER = ("count_MAE", "negatives_with_FP")


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell: ``-`` for undefined, integers as they are, floats with ``digits`` decimals."""
    if value is None:
        return "&ndash;"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return html.escape(str(value))
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def _delta(key: str, model: Any, base: Any, digits: int) -> str:
    if not isinstance(model, (int, float)) or not isinstance(base, (int, float)):
        return "&ndash;"
    change = model - base
    better = change < 0 if key in LOWER_IS_BETTER else change > 0
    css = "" if change == 0 else (' class="up"' if better else ' class="down"')
    return f"<span{css}>{change:+.{digits}f}</span>"


def _table(header: list[str], rows: list[list[str]], table_id: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    attr = f' id="{table_id}"' if table_id else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def headline_table(summary: Mapping[str, Any]) -> str:
    """The headline metrics: one column per model, and the change when a baseline was evaluated."""
    model, base = summary["model"], summary.get("baseline")
    header = ["metric", html.escape(model["label"])]
    if base:
        header += [html.escape(base["label"]), "&Delta;"]
    rows = []
    for key, value in model["metrics"].items():
        row = [html.escape(key), fmt(value)]
        if base:
            row += [fmt(base["metrics"].get(key)), _delta(key, value, base["metrics"].get(key), 4)]
        rows.append(row)
    return _table(header, rows, "headline")


def counts_table(summary: Mapping[str, Any]) -> str:
    """Counting quality per model."""
    runs = [summary["model"]] + ([summary["baseline"]] if summary.get("baseline") else [])
    header = ["", *(html.escape(run["label"]) for run in runs)]
    keys = list(runs[0]["counts"])
    rows = [[html.escape(key), *(fmt(run["counts"][key], 3) for run in runs)] for key in keys]
    return _table(header, rows, "counts")


def breakdown_table(name: str, summary: Mapping[str, Any]) -> str:
    """One breakdown: a row per slice; with a baseline each metric shows its change in brackets."""
    model = summary["model"]["breakdowns"][name]
    base = summary["baseline"]["breakdowns"][name] if summary.get("baseline") else None
    columns = list(next(iter(model.values())))
    rows = []
    for label, values in model.items():
        row = [html.escape(label)]
        for column in columns:
            cell = fmt(values[column], 3)
            if base and isinstance(values[column], float) and label in base:
                cell += f" ({_delta(column, values[column], base[label][column], 3)})"
            row.append(cell)
        rows.append(row)
    return _table([name, *columns], rows, f"breakdown-{name.replace(' ', '-')}")


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _figures(key: str, summary: Mapping[str, Any], figures: Mapping[str, Mapping[str, Path]]) -> str:
    """The figure ``key`` of each model side by side, or a note where a model has none."""
    cells = []
    for run in ("model", "baseline"):
        if run not in figures:
            continue
        label = html.escape(summary[run]["label"])
        path = figures[run].get(key)
        body = _image(path, f"{key} ({label})") if path else '<p class="note">nothing to show</p>'
        cells.append(f"<figure><figcaption>{label}</figcaption>{body}</figure>")
    return f'<div class="pair">{"".join(cells)}</div>'


def operating_points_table(summary: Mapping[str, Any]) -> str:
    """The best thresholds by F1 and by cgF1, per model."""
    rows = []
    for run in ("model", "baseline"):
        if not summary.get(run):
            continue
        for which in ("best_F1", "best_cgF1"):
            point = summary[run]["calibration"][which]
            rows.append(
                [
                    html.escape(summary[run]["label"]),
                    which.replace("_", " "),
                    *(fmt(point[k], 3) for k in ("threshold", "precision", "recall", "F1", "IL_MCC", "cgF1")),
                ]
            )
    header = ["model", "operating point", "threshold", "precision", "recall", "F1", "IL_MCC", "cgF1"]
    return _table(header, rows, "operating-points")


def render_report(summary: Mapping[str, Any], figures: Mapping[str, Mapping[str, Path]]) -> str:
    """The report as one HTML document.

    Args:
        summary: The evaluation summary (the content of ``metrics.json``).
        figures: Per run (``"model"``, ``"baseline"``), PNG path of each figure: ``"calibration"``,
            ``"pr_curves"`` and the keys of :data:`sam3_adapt.evaluation.pictures.PICTURES` (absent when a
            picture has nothing to show).

    Returns:
        The HTML text; images are embedded as base64 PNG, so the file stands alone.
    """
    data, settings = summary["data"], summary["settings"]
    title = f"Evaluation of {summary['model']['label']}"
    facts = [
        ["data", html.escape(", ".join(data["json"]))],
        ["images", fmt(data["images"])],
        [
            "(image, phrase) pairs",
            f"{data['pairs']} ({data['positive_pairs']} positive, {data['negative_pairs']} negative)",
        ],
        ["true instances", fmt(data["instances"])],
        ["phrases", html.escape(", ".join(data["phrases"]))],
        ["score threshold", fmt(settings["score_threshold"], 2)],
        ["IoU used for cgF1 and matching", html.escape(settings["match_iou_type"])],
        ["input size", f"{settings['image_size']} px"],
    ]
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _table(["", ""], facts, "facts"),
        "<h2>Headline metrics</h2>",
        '<p class="note">COCO AP/AR by pycocotools (top 100 detections per image); cgF1 = pmF1 &times; '
        "IL_MCC at the score threshold, averaged over IoU 0.50:0.95 (and at 0.50 and 0.75); count_MAE: "
        "mean absolute error of predicted vs true instances per image-phrase pair.</p>",
        headline_table(summary),
        "<h2>Counting</h2>",
        counts_table(summary),
        "<h2>Breakdowns</h2>",
        '<p class="note">AP of the slice\'s pairs only; IL_MCC and cgF1 need positive and negative pairs in '
        "the slice. negatives_with_FP: fraction of negative pairs with a prediction above the threshold. "
        "Sizes are COCO's (small &lt; 32&sup2;, large &ge; 96&sup2; pixels); crowdedness is the number of "
        "instances in the image over all phrases.</p>",
    ]
    for name in summary["model"]["breakdowns"]:
        parts += [f"<h3>By {html.escape(name)}</h3>", breakdown_table(name, summary)]
    parts += [
        "<h2>Calibration</h2>",
        operating_points_table(summary),
        _figures("calibration", summary, figures),
        "<h2>Precision-recall curves</h2>",
        _figures("pr_curves", summary, figures),
        "<h2>Pictures</h2>",
        '<p class="note">Blue: prediction matched to a true instance (IoU &ge; 0.5); red: false positive; '
        "green outline: true instance found; yellow outline: true instance missed.</p>",
    ]
    for key, heading in PICTURES:
        parts += [f"<h3>{html.escape(heading)}</h3>", _figures(key, summary, figures)]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    path: str | Path, summary: Mapping[str, Any], figures: Mapping[str, Mapping[str, Path]]
) -> Path:
    """Write :func:`render_report` to ``path`` and return it."""
    path = Path(path)
    path.write_text(render_report(summary, figures), encoding="utf-8")
    return path
