"""Memory and time of one training step of the full-size SAM 3 at 1008 px, by phrases and chunk.

Each row runs one step (the kit's chunked step, the real objective, forward and backward) of a
randomly initialised full-size architecture (``Sam3Model(Sam3Config())``, 840M parameters; speed and
memory do not depend on the weights) on this machine's CPU in float32, in its own process, and
measures the heap's peak growth and the wall time. Beside it, the estimated GPU peak under
``bf16-mixed`` (:mod:`sam3_adapt.training.memory_estimate`), which every row gets, measured or not.
On a GPU (``--device cuda``) the measured figures are CUDA's allocator peak and the step time.

Run: ``python -m benchmarks.memory_table`` (about half an hour on 2 cores); it writes
``benchmarks/results/memory_table.{json,md}``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from benchmarks.peak_memory import PeakMemory
from sam3_adapt.training.memory_estimate import estimate_batch, estimate_step_memory, recipe_segmenter

OUT = Path(__file__).resolve().parent / "results"
#: The recipes' trainable weights: LoRA on the detector (``lora-10shot``) and full fine-tuning.
RECIPES = {"lora-detector": {"adaptation": "lora"}, "full": {"adaptation": "full"}}
#: (recipe, activation checkpointing, phrases per image, chunk, measured on this CPU?)
ROWS: list[tuple[str, bool, int, int | None, bool]] = [
    ("lora-detector", True, 1, None, True),
    ("lora-detector", True, 4, None, True),
    ("lora-detector", True, 8, None, False),
    ("lora-detector", True, 20, None, False),
    ("lora-detector", True, 20, 4, False),
    ("lora-detector", True, 20, 2, True),
    ("lora-detector", True, 20, 1, True),
    ("lora-detector", True, 4, 1, True),
    ("lora-detector", False, 20, None, False),
    ("full", True, 1, None, True),
    ("full", True, 4, None, False),
    ("full", True, 8, None, False),
    ("full", True, 20, None, False),
    ("full", True, 20, 4, False),
    ("full", True, 20, 1, True),
    ("full", False, 4, None, False),
    ("full", False, 20, None, False),
    ("full", False, 20, 1, True),
]
POSITIVES = 2


def _config(image_size: int):
    from transformers import Sam3Config

    config = Sam3Config()
    if image_size != config.vision_config.backbone_config.image_size:
        raise ValueError("the memory table is measured at the full-size model's own 1008 px")
    return config


def measure_row(spec: dict[str, Any]) -> dict[str, Any]:
    """One step of one row in this process: wall time and heap peak growth (MiB)."""
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    if device.type == "cpu" and spec["memory_limit_gb"]:
        limit = int(spec["memory_limit_gb"] * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from sam3_adapt.training.chunked_step import objective_step
    from sam3_adapt.training.loss import ConceptObjective

    initial = PeakMemory.in_use() if device.type == "cpu" else 0
    torch.manual_seed(0)
    try:
        segmenter = recipe_segmenter(
            _config(spec["image_size"]),
            activation_checkpointing=spec["checkpointing"],
            fake=False,
            **RECIPES[spec["recipe"]],
        ).to(device)
        batch = estimate_batch(spec["image_size"], spec["phrases"], 1, min(POSITIVES, spec["phrases"]))
        batch["pixel_values"] = torch.randn_like(batch["pixel_values"]).to(device)
        batch["targets"] = [{k: v.to(device) for k, v in t.items()} for t in batch["targets"]]
        precision = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None
        start = time.perf_counter()
        with PeakMemory(device) as memory:
            with precision or torch.autocast("cpu", enabled=False):
                step = objective_step(segmenter, ConceptObjective(), batch, spec["chunk"])
            step.loss.backward()
        return {"measured_gib": (memory.peak - initial) / 2**30, "seconds": time.perf_counter() - start}
    except (MemoryError, RuntimeError) as error:
        return {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"}


def _isolated(spec: dict[str, Any]) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(measure_row, spec).result()


def estimate_row(recipe: str, checkpointing: bool, phrases: int, chunk: int | None, image_size: int) -> float:
    """The estimated GPU peak (GiB, bf16-mixed) of a row."""
    segmenter = recipe_segmenter(
        _config(image_size), activation_checkpointing=checkpointing, **RECIPES[recipe]
    )
    return estimate_step_memory(segmenter, image_size, phrases, chunk, positives_per_image=POSITIVES).peak_gib


def markdown(rows: list[dict[str, Any]], machine: str) -> str:
    """The table as Markdown."""
    lines = [
        "| recipe | activation checkpointing | phrases per image | chunk | CPU fp32 peak, measured (GiB) "
        "| s/step (CPU) | estimated GPU bf16 peak (GiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        measured = f"{row['measured_gib']:.1f}" if "measured_gib" in row else row.get("error", "not run")
        seconds = f"{row['seconds']:.0f}" if "seconds" in row else ""
        lines.append(
            f"| {row['recipe']} | {'on' if row['checkpointing'] else 'off'} | {row['phrases']} "
            f"| {row['chunk'] or 'all'} | {measured} | {seconds} | {row['estimated_gib']:.1f} |"
        )
    return "\n".join(lines) + f"\n\n{machine}\n"


def main(
    device: str = "cpu",
    threads: int = 1,
    image_size: int = 1008,
    measure: bool = True,
    memory_limit_gb: float = 18.0,
    rows_to_measure: list[int] | None = None,
    out: str = str(OUT / "memory_table"),
) -> list[dict[str, Any]]:
    """Estimate every row, measure the rows marked for it, and write JSON and Markdown.

    Args:
        device: ``cpu`` or ``cuda`` (on a GPU every row is measured).
        threads: CPU threads of torch.
        image_size: Input side (any multiple of 14; facebook/sam3 is built for 1008 px).
        measure: Measure the marked rows (``false``: estimates only, in seconds).
        memory_limit_gb: Address-space limit of a measuring process on the CPU (it fails instead of
            exhausting the machine); 0 for none.
        rows_to_measure: Indices into :data:`ROWS` to measure instead of those marked for the CPU.
        out: Output path without suffix.

    Returns:
        The rows.
    """
    rows = []
    for index, (recipe, checkpointing, phrases, chunk, on_cpu) in enumerate(ROWS):
        if rows_to_measure is not None:
            on_cpu = index in rows_to_measure
        row: dict[str, Any] = {
            "recipe": recipe,
            "checkpointing": checkpointing,
            "phrases": phrases,
            "chunk": chunk,
        }
        row["estimated_gib"] = estimate_row(recipe, checkpointing, phrases, chunk, image_size)
        if measure and (on_cpu or device == "cuda"):
            spec = {**row, "device": device, "threads": threads, "image_size": image_size}
            row.update(_isolated({**spec, "memory_limit_gb": memory_limit_gb}))
        print(row, flush=True)  # noqa: T201 - progress of a long run
        rows.append(row)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU {platform.machine()}"
    machine = (
        f"Machine: {name}, cores {os.cpu_count()}, torch threads {threads}, torch {torch.__version__}, "
        f"load average at start {os.getloadavg()[0]:.1f}; {POSITIVES} of the phrases per image present "
        "(4 instances each), the rest negatives; batch 1."
    )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps({"rows": rows, "machine": machine}, indent=1))
    Path(f"{out}.md").write_text(markdown(rows, machine))
    return rows


if __name__ == "__main__":
    from jsonargparse import CLI

    CLI(main, as_positional=False)
