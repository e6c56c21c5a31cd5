"""The tables of ``benchmarks/phrase_batching.py``: the lever rows and the Markdown report."""

from __future__ import annotations

from typing import Any

from benchmarks.levers import LEVERS

#: The letter of each lever in the report, ``(a)`` to ``(d)``.
LETTERS = dict(zip(LEVERS, "abcd"))


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the table: the fastest epoch (of those after the first for ``cached``).

    The fastest of a few epochs is the figure least disturbed by other jobs on a shared machine.
    """
    rows = []
    for run in runs:
        seconds = run["seconds_per_epoch"]
        steady = seconds[1:] if run["lever"] == "cached" and len(seconds) > 1 else seconds
        per_epoch = min(steady)
        rows.append(
            {
                "config": run["config"],
                "lever": f"({LETTERS[run['lever']]}) {run['lever']}",
                "seconds_per_epoch": per_epoch,
                "first_epoch_seconds": seconds[0],
                "images_per_s": run["images"] / per_epoch,
                "queries_per_s": 8 * run["images"] / per_epoch,
                "peak_memory_mb": run["peak_memory_mb"],
                "cache_mb": run["cache_mb"],
            }
        )
    for row in rows:
        naive = next(r for r in rows if r["config"] == row["config"] and r["lever"].startswith("(a)"))
        row["speedup_vs_a"] = row["queries_per_s"] / naive["queries_per_s"]
    return rows


def markdown(rows: list[dict[str, Any]], full: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    """The Markdown report: the lever table, the full-size memory table and the machine."""
    lines = [
        "| config | lever | images/s | queries/s | speed-up vs (a) | s/epoch | peak memory (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        note = f" (epoch 1: {r['first_epoch_seconds']:.1f} s)" if r["lever"].startswith("(d)") else ""
        lines.append(
            f"| {r['config']} | {r['lever']} | {r['images_per_s']:.2f} | {r['queries_per_s']:.1f} | "
            f"{r['speedup_vs_a']:.1f}x | {r['seconds_per_epoch']:.2f}{note} | {r['peak_memory_mb']:.0f} |"
        )
    if full:
        lines += [
            "",
            "| full-size architecture | resolution | trainable params | weights + grads + AdamW (MiB) "
            "| peak, forward + backward (MiB) | peak, whole step (MiB) | s (fwd + bwd) |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in full:
            lines.append(
                f"| {f['recipe']} | {f['image_size']} px | {_mega(f.get('trainable'))} | "
                f"{_mib(f.get('states_mb'))} | {_mib(f.get('backward_peak_mb'))} | {_step_peak(f)} | "
                f"{f['seconds']:.0f} |"
                if "seconds" in f
                else f"| {f['recipe']} | {f['image_size']} px | - | - | {f['error']} | - | - |"
            )
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items())]
    return "\n".join(lines) + "\n"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _mega(count: int | None) -> str:
    return "-" if count is None else f"{count / 1e6:.1f}M"


def _step_peak(run: dict[str, Any]) -> str:
    """The measured peak, or, when AdamW's state did not fit, the lower bound it implies."""
    if "peak_memory_mb" in run:
        return _mib(run["peak_memory_mb"])
    bound = max(run["backward_peak_mb"], run["states_mb"])
    return f">= {bound:.0f} (AdamW state did not fit under the memory limit)"
