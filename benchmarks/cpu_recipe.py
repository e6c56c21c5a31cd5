"""``recipes/cpu-lora.yaml`` on this machine: the full-size SAM 3 adapted to 10 images on a CPU.

Speed and memory do not depend on the weights, so the benchmark writes a randomly initialised
full-size network (``Sam3Model(Sam3Config())``, facebook/sam3's architecture, 840M parameters) into a
local folder once and runs the recipe on it exactly as a user would, ``sam3-adapt fit --config
recipes/cpu-lora.yaml --model.checkpoint <folder>``, on 10 images of the concept world with 8
phrases each (``--data.max_queries_per_image 8``). For each image size it writes:

* ``components``: seconds of each part of a step, measured apart in one process (ViT + neck per
  image, text encoder per phrase, detector forward + loss + backward per image of 8 phrases at each
  chunk size, in fp32 and under CPU bf16 autocast, AdamW step), so a user can predict their machine;
* ``fit``: the recipe's own run in a fresh process: loading, each pass over the 10 images (the first
  fills the feature cache), total wall time, the process's peak resident memory, the load average;
* ``predict``: images per second of the predict loop with 8 phrases per image at that size.

A fit with fewer steps than the recipe's (``--fit_steps``) gives the recipe's total by its measured
parts: load + first pass + (steps - 10) x the median later step; the output says which figures were
measured and which extrapolated.

Usage::

    python -m benchmarks.cpu_recipe                                        # 504 px, the whole recipe
    python -m benchmarks.cpu_recipe --image_sizes '[1008]' --fit_steps 20  # 1008 px, 2 passes, extrapolated

Results go to ``benchmarks/results/cpu_recipe.json`` (merged across runs, by image size) and ``.md``.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning import Callback, LightningModule, Trainer

OUT = Path(__file__).resolve().parent / "results"
RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "cpu-lora.yaml"
IMAGES, PHRASES = 10, 8


class EpochClock(Callback):
    """Write each pass's and step's wall time and the process's peak memory to a JSON file.

    Args:
        path: The JSON file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.epochs: list[float] = []
        self.steps: list[float] = []
        self._epoch = self._step = 0.0
        self.train_start = self.train_end = 0.0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Note when the first step starts (after loading and the fit-health check of the base)."""
        self.train_start = time.time()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the pass's clock."""
        self._epoch = time.perf_counter()

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, index: int
    ) -> None:
        """Start the step's clock."""
        self._step = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        """Record the step's seconds."""
        self.steps.append(time.perf_counter() - self._step)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Record the pass's seconds and write the file."""
        self.epochs.append(time.perf_counter() - self._epoch)
        self._write(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Write the file once more at the end (a fit can end mid-pass)."""
        self.train_end = time.time()
        self._write(trainer, pl_module)

    def _write(self, trainer: Trainer, pl_module: LightningModule) -> None:
        segmenter = pl_module.segmenter
        caches = {"vision": segmenter.vision_cache, "text": segmenter.text_cache}
        record = {
            "epochs_s": self.epochs,
            "steps_s": self.steps,
            "threads": torch.get_num_threads(),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "cache": {
                k: None if c is None else {"hits": c.hits, "misses": c.misses} for k, c in caches.items()
            },
            "global_step": trainer.global_step,
            "phrase_chunk": pl_module.chunk,
            "train_start": self.train_start,
            "train_end": self.train_end,
        }
        Path(self.path).write_text(json.dumps(record, indent=1))


def prepare(folder: Path) -> tuple[Path, Path, Path]:
    """A random full-size checkpoint and 10 concept-world images, written once into ``folder``."""
    from transformers import Sam3Config, Sam3Model

    from sam3_adapt.data_mix.synthetic.concept_world import write_world
    from sam3_adapt.model.tiny import sam3_processor

    checkpoint = folder / "sam3-random"
    if not (checkpoint / "model.safetensors").exists():
        torch.manual_seed(0)
        Sam3Model(Sam3Config()).save_pretrained(checkpoint)
        sam3_processor(1008).save_pretrained(checkpoint)
    json_path, image_dir = write_world(folder / "data", "anchor", IMAGES, image_size=640)
    return checkpoint, json_path, image_dir


def _seconds(function, repeats: int = 3) -> float:
    """Median wall seconds of ``function()`` over ``repeats`` runs after one warm-up run."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def components(
    checkpoint: Path,
    json_path: Path,
    image_dir: Path,
    size: int,
    chunks: list[int | None] | None = None,
    predict_images: int = IMAGES,
) -> dict[str, Any]:
    """Seconds of each part of a training step of the recipe (at each chunk size), and of its predict loop."""
    from sam3_adapt.data_mix.datamodule import ConceptDataModule
    from sam3_adapt.data_mix.readers.coco import read_coco
    from sam3_adapt.inference.loop import predict_samples
    from sam3_adapt.model.adaptation import LoraSettings, apply_lora
    from sam3_adapt.model.loading import load_segmenter
    from sam3_adapt.training.chunked_step import objective_step
    from sam3_adapt.training.loss import ConceptObjective

    recipe = yaml.safe_load(RECIPE.read_text())["model"]
    start = time.perf_counter()
    segmenter = load_segmenter(str(checkpoint))
    load_s = time.perf_counter() - start
    segmenter.network = apply_lora(segmenter.network, LoraSettings(**recipe["lora"]))
    segmenter.train()
    samples = [replace(s, queries=s.queries[:PHRASES]) for s in read_coco(json_path, image_dir)]
    data = ConceptDataModule(
        str(json_path),
        str(image_dir),
        image_size=size,
        batch_size=1,
        augment=False,
        max_queries_per_image=PHRASES,
    )
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))  # what the recipe's training step gets
    pixels = batch["pixel_values"]
    text = segmenter.sam3.text_encoder
    tokens = segmenter.tokenizer(batch["phrases"], padding="max_length", max_length=32, return_tensors="pt")
    result: dict[str, Any] = {"load_s": load_s, "threads": torch.get_num_threads()}
    with torch.no_grad():
        result["vision_per_image_s"] = _seconds(lambda: segmenter.encode_images(pixels), repeats=2)
        result["text_per_phrase_s"] = _seconds(lambda: text(**tokens)) / len(batch["phrases"])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            result["vision_per_image_bf16_s"] = _seconds(lambda: segmenter.encode_images(pixels), repeats=2)
    segmenter.use_feature_cache("memory")
    objective = ConceptObjective()
    trainable = [p for p in segmenter.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)

    def step(chunk: int | None, dtype: torch.dtype | None = None) -> None:
        segmenter.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss = objective_step(segmenter, objective, batch, chunk).loss
        loss.backward()

    steps: dict[str, dict[str, float]] = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        steps[name] = {
            str(chunk or "all"): _seconds(lambda chunk=chunk, dtype=dtype: step(chunk, dtype), repeats=2)
            for chunk in chunks or (None, 4, 2, 1)
        }
    result["detector_step_per_image_s"] = steps
    step(None)
    result["optimizer_step_s"] = _seconds(optimizer.step)
    result["positive_phrases"] = sum(bool(len(t["boxes"])) for t in batch["targets"])
    segmenter.use_feature_cache(None)
    start = time.perf_counter()
    for _ in predict_samples(segmenter, samples[:predict_images], image_size=size, batch_size=1):
        pass
    result["predict_images_per_s"] = len(samples[:predict_images]) / (time.perf_counter() - start)
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return result


def fit(
    checkpoint: Path,
    json_path: Path,
    image_dir: Path,
    size: int,
    steps: int | None,
    root: Path,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """Run ``sam3-adapt fit --config recipes/cpu-lora.yaml`` in a fresh process and time it."""
    clock = root / f"clock-{size}.json"
    command = [
        sys.executable,
        "-m",
        "sam3_adapt.cli",
        "fit",
        "--config",
        str(RECIPE),
        f"--model.checkpoint={checkpoint}",
        f"--data.train_json={json_path}",
        f"--data.image_dir={image_dir}",
        f"--data.image_size={size}",
        f"--data.max_queries_per_image={PHRASES}",
        f"--trainer.default_root_dir={root / f'run-{size}'}",
        "--trainer.enable_progress_bar=false",
        "--trainer.callbacks+="
        + json.dumps({"class_path": "benchmarks.cpu_recipe.EpochClock", "init_args": {"path": str(clock)}}),
    ]
    if steps is not None:
        command.append(f"--trainer.max_steps={steps}")
    command.extend(extra or [])
    load_before = os.getloadavg()
    started = time.time()
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - start
    record = json.loads(clock.read_text())
    record.update(wall_s=wall, load_average_before=load_before, load_average_after=os.getloadavg())
    # Before the first step: start-up, loading, the base's fit-health check (which fills the cache for
    # the 8 training images it predicts); after the last: the trained model's check, saving.
    record["before_steps_s"] = record["train_start"] - started
    record["after_steps_s"] = started + wall - record["train_end"]
    recipe_steps = yaml.safe_load(RECIPE.read_text())["trainer"]["max_steps"]
    summarise(record, wall, recipe_steps)
    overhead = wall - sum(record["steps_s"])  # start-up, loading, saving: all but the steps
    record["overhead_s"] = overhead
    return record


def summarise(record: dict[str, Any], wall: float, recipe_steps: int) -> None:
    """Add the per-image figures and the recipe's total (measured, or extrapolated) to a fit's record.

    A step is one image (batch 1). The typical step is the median of every step after the first:
    the fit-health check fills the cache for most images before step 1, and a median ignores the
    few that fill it and any step slowed by another job.
    """
    steps = record["steps_s"]
    typical = statistics.median(steps[1:]) if len(steps) > 1 else steps[0]
    record["first_pass_s_per_image"] = record["epochs_s"][0] / IMAGES
    record["later_pass_s_per_image"] = record["typical_step_s"] = typical
    record["recipe_steps"] = recipe_steps
    if record["global_step"] >= recipe_steps:
        record["recipe_total_s"], record["recipe_total_is"] = wall, "measured"
    else:
        record["recipe_total_s"] = wall + (recipe_steps - record["global_step"]) * typical
        record["recipe_total_is"] = f"extrapolated from {record['global_step']} steps"


def markdown(results: dict[str, Any]) -> str:
    """The README's table of the results."""
    lines = [
        "| | " + " | ".join(f"{size} px" for size in results) + " |",
        "|---|" + "---|" * len(results),
    ]

    def row(label: str, get) -> None:
        cells = []
        for r in results.values():
            try:
                cells.append(get(r))
            except (KeyError, TypeError):
                cells.append("-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row(
        "recipe total (load, cache fill, all steps, save)",
        lambda r: f"{r['fit']['recipe_total_s'] / 60:.1f} min ({r['fit']['recipe_total_is']})",
    )
    row(
        "before the first step: start, load, base's fit-health check",
        lambda r: f"{r['fit']['before_steps_s']:.0f} s",
    )
    row("first pass, s per image (fills the cache)", lambda r: f"{r['fit']['first_pass_s_per_image']:.1f}")
    row("later passes, s per image (median step)", lambda r: f"{r['fit']['later_pass_s_per_image']:.1f}")
    row("after the last step: fit-health check, saving", lambda r: f"{r['fit']['after_steps_s']:.0f} s")
    row("peak RAM of the fit", lambda r: f"{r['fit']['peak_rss_gb']:.1f} GB")
    row("load average during the fit (1 min, after)", lambda r: f"{r['fit']['load_average_after'][0]:.2f}")
    c = "components"
    row("load facebook/sam3-sized weights", lambda r: f"{r[c]['load_s']:.0f} s")
    row("ViT + neck, per image (once)", lambda r: f"{r[c]['vision_per_image_s']:.1f} s")
    row("text encoder, per phrase (once)", lambda r: f"{r[c]['text_per_phrase_s']:.2f} s")
    row("ViT + neck, per image, bf16 autocast", lambda r: f"{r[c]['vision_per_image_bf16_s']:.1f} s")
    for precision in ("fp32", "bf16"):
        row(
            f"detector fwd+bwd, 8 phrases, {precision}: whole / chunks of 4 / 2 / 1",
            lambda r, p=precision: (
                " / ".join(f"{r[c]['detector_step_per_image_s'][p][k]:.1f}" for k in ("all", "4", "2", "1"))
                + " s"
            ),
        )
    row("AdamW step (LoRA weights)", lambda r: f"{r[c]['optimizer_step_s']:.2f} s")
    row("predict, images/s with 8 phrases", lambda r: f"{r[c]['predict_images_per_s']:.2f}")
    return "\n".join(lines) + "\n"


def main(
    image_sizes: list[int] | None = None,
    fit_steps: int | None = None,
    work: str = "/tmp/sam3-adapt-cpu-recipe",
    skip_components: bool = False,
    skip_fit: bool = False,
    chunks: list[int | None] | None = None,
    predict_images: int = IMAGES,
    fit_args: list[str] | None = None,
) -> dict[str, Any]:
    """Measure the CPU recipe at each image size and write the results.

    Args:
        image_sizes: Sides to measure; default ``[504]`` (the recipe's).
        fit_steps: Steps of the timed fit; ``None`` runs the recipe's own ``max_steps``.
        work: Folder for the random checkpoint (3.4 GB), the data and the runs.
        skip_components: Time only the fit.
        skip_fit: Time only the components.
        chunks: Chunk sizes the components time (``None``: the whole batch); default whole, 4, 2, 1.
        predict_images: Images the predict loop is timed on.
        fit_args: More arguments of the fit, e.g. ``['--model.phrase_chunk=1']`` (recorded).

    Returns:
        The results by image size.
    """
    root = Path(work)
    root.mkdir(parents=True, exist_ok=True)
    checkpoint, json_path, image_dir = prepare(root)
    path = OUT / "cpu_recipe.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for size in image_sizes or [504]:
        entry = results.setdefault(str(size), {})
        entry["machine"] = {"cores": os.cpu_count(), "torch": torch.__version__}
        if not skip_components:
            # In a process of its own: what it holds must not stay in this one while the fit runs.
            with get_context("spawn").Pool(1) as pool:
                entry["components"] = pool.apply(
                    components, (checkpoint, json_path, image_dir, size, chunks, predict_images)
                )
            path.write_text(json.dumps(results, indent=1))
        if not skip_fit:
            entry["fit"] = fit(checkpoint, json_path, image_dir, size, fit_steps, root, fit_args)
            entry["fit"]["fit_args"] = fit_args or []
        path.write_text(json.dumps(results, indent=1))
        print(json.dumps(entry, indent=1))  # noqa: T201
    (OUT / "cpu_recipe.md").write_text(markdown(dict(sorted(results.items(), key=lambda kv: int(kv[0])))))
    return results


if __name__ == "__main__":
    from jsonargparse import CLI

    CLI(main, as_positional=False)
