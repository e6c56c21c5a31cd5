"""Training speed and memory of the kit's levers at 8 phrases per image: a script, not a test.

Compares, for a tiny and a mid-size SAM 3 (random weights, LoRA detector recipe, so both towers
are frozen and every lever trains the same weights):

* (a) ``naive``: the full network once per (image, phrase), every query's masks decoded;
* (b) ``batched``: vision once per image, text once per distinct phrase;
* (c) ``masks_needed``: (b), the mask decoder only for queries with masks to learn;
* (d) ``cached``: (c) with the frozen towers' outputs cached in memory; epoch 1 fills the cache and
  the figure is for the epochs after it.

Each image has 1 positive phrase (with masks) and 7 negatives. Every measurement runs in a fresh
process; peak memory is the growth over the memory held before the first training step (resident
set size sampled every 2 ms on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU), so the
model's weights are not in it. It also measures one training step (1 image, 8 phrases) of the
full-size architecture (``Sam3Config()`` defaults, random weights) at a reduced resolution under
full fine-tuning and under the LoRA detector recipe; there the peak counts everything the model
holds (weights, gradients, AdamW state, activations).

Usage::

    python -m benchmarks.phrase_batching                      # everything, about 10 min on 2 CPU cores
    python -m benchmarks.phrase_batching --configs '[tiny]' --epochs 2 --full_size_recipes '[]'
    python -m benchmarks.phrase_batching --device cuda --full_size_image 1008

Results go to ``benchmarks/results/phrase_batching.json`` and ``.md``.
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

from benchmarks.levers import LEVERS, lever_outputs
from benchmarks.peak_memory import PeakMemory
from benchmarks.phrase_batching_report import markdown, summarise
from sam3_adapt.model.adaptation import LoraSettings, apply_full_finetune, apply_lora
from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.memory import enable_activation_checkpointing
from sam3_adapt.model.tiny import tiny_sam3_config
from sam3_adapt.model.tokenizer import clip_tokenizer
from sam3_adapt.training.loss import ConceptObjective

#: Overrides of :func:`sam3_adapt.model.tiny.tiny_sam3_config` per named config, plus ``detr_heads``.
CONFIGS: dict[str, dict[str, int]] = {
    "tiny": {"image_size": 224},
    # The vision encoder dominates a forward pass, as in the real model. Detector attention heads are
    # 32 wide as in facebook/sam3 (256 wide, 8 heads); the tiny model's 8-wide heads would make the
    # CPU attention kernels, not the architecture, decide the timings.
    "mid": {
        "image_size": 448,
        "vision_hidden": 256,
        "vision_layers": 8,
        "text_hidden": 128,
        "text_layers": 4,
        "detr_hidden": 32,
        "detr_heads": 1,
    },
}
FULL_SIZE_RECIPES = ["full", "lora-detector"]
VOCABULARY = [
    f"{colour} {shape}"
    for colour in ("red", "green", "blue", "yellow")
    for shape in ("circle", "square", "triangle", "cross")
]
OUT = Path(__file__).resolve().parent / "results"


def config_of(name: str):
    """The ``Sam3Config`` of a named config."""
    overrides = dict(CONFIGS[name])
    heads = overrides.pop("detr_heads", None)
    config = tiny_sam3_config(**overrides)
    if heads is not None:
        for sub in ("geometry_encoder_config", "detr_encoder_config", "detr_decoder_config"):
            getattr(config, sub).num_attention_heads = heads
        config.mask_decoder_config.num_attention_heads = heads
    return config


def make_batches(
    image_size: int, images: int, batch_size: int, phrases_per_image: int, seed: int
) -> list[dict[str, Any]]:
    """Synthetic batches in the ``data_mix`` layout: per image one positive phrase and the rest negatives.

    Args:
        image_size: Side of the square images.
        images: Number of images (an epoch).
        batch_size: Images per batch.
        phrases_per_image: Queries per image; the first is positive with one or two masked instances.
        seed: Seed of pixels, phrases and boxes.

    Returns:
        The batches.
    """
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for start in range(0, images, batch_size):
        count = min(batch_size, images - start)
        phrases, image_index, targets = [], [], []
        for b in range(count):
            picks = torch.randperm(len(VOCABULARY), generator=generator)[:phrases_per_image].tolist()
            for k, pick in enumerate(picks):
                phrases.append(VOCABULARY[pick])
                image_index.append(b)
                instances = 1 + int(torch.randint(2, (1,), generator=generator))
                targets.append(_target(image_size, instances, positive=k == 0))
        batches.append(
            {
                "pixel_values": torch.randn(count, 3, image_size, image_size, generator=generator),
                "phrases": phrases,
                "query_image_index": torch.tensor(image_index),
                "exemplar_boxes": [torch.zeros(0, 4)] * len(phrases),
                "exemplar_labels": [torch.zeros(0, dtype=torch.long)] * len(phrases),
                "targets": targets,
            }
        )
    return batches


def _target(size: int, instances: int, positive: bool) -> dict[str, torch.Tensor]:
    if not positive:
        return {
            "boxes": torch.zeros(0, 4),
            "masks": torch.zeros(0, size, size, dtype=torch.bool),
            "has_mask": torch.zeros(0, dtype=torch.bool),
        }
    boxes = torch.tensor([[0.1, 0.1, 0.4, 0.5], [0.55, 0.5, 0.9, 0.85]][:instances])
    masks = torch.zeros(instances, size, size, dtype=torch.bool)
    for mask, (x0, y0, x1, y1) in zip(masks, (boxes * size).long().tolist()):
        mask[y0:y1, x0:x1] = True
    return {"boxes": boxes, "masks": masks, "has_mask": torch.ones(instances, dtype=torch.bool)}


def _step(segmenter, objective, optimizer, batch, lever) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss = objective(lever_outputs(segmenter, batch, lever), batch["targets"])["loss"]
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _segmenter(network: torch.nn.Module, device: torch.device) -> ConceptSegmenter:
    return ConceptSegmenter(network.to(device).train(), clip_tokenizer())


def measure_lever(spec: dict[str, Any]) -> dict[str, Any]:
    """One (config, lever) measurement, in its own process: seconds per epoch and peak memory."""
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    torch.manual_seed(0)
    from transformers import Sam3Model

    network = apply_lora(Sam3Model(config_of(spec["config"])), LoraSettings())
    segmenter = _segmenter(network, device)
    lever = spec["lever"]
    if lever == "cached":
        segmenter.use_feature_cache("memory")
    objective = ConceptObjective()
    trainable = [p for p in segmenter.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, foreach=device.type == "cpu" or None)
    size = CONFIGS[spec["config"]]["image_size"]
    move = _mover(device)
    epoch = [move(b) for b in make_batches(size, spec["images"], spec["batch_size"], 8, seed=1)]
    warmup = move(make_batches(size, spec["batch_size"], spec["batch_size"], 8, seed=2)[0])
    seconds, losses = [], []
    with PeakMemory(device) as memory:
        _step(segmenter, objective, optimizer, warmup, lever)
        for _ in range(spec["epochs"]):
            _sync(device)
            start = time.perf_counter()
            losses.append([_step(segmenter, objective, optimizer, b, lever) for b in epoch])
            _sync(device)
            seconds.append(time.perf_counter() - start)
    caches = [c for c in (segmenter.vision_cache, segmenter.text_cache) if c is not None]
    return {
        **spec,
        "seconds_per_epoch": seconds,
        "peak_memory_mb": memory.growth_mb,
        "cache_mb": sum(c.memory_bytes for c in caches) / 2**20,
        "first_loss": losses[0][0],
    }


def measure_full_size(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak memory of one training step of the full-size architecture, in its own process."""
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    # Everything the model and the step hold: weights, gradients, optimizer state, activations.
    initial = PeakMemory.in_use() if device.type == "cpu" else 0
    if device.type == "cpu" and spec["memory_limit_gb"]:
        # Fail with an allocation error instead of pushing a shared machine into swap or the OOM killer.
        limit = int(spec["memory_limit_gb"] * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from transformers import Sam3Config, Sam3Model

    config = Sam3Config()
    size = spec["image_size"]
    backbone = config.vision_config.backbone_config
    backbone.image_size = size
    grid = size // backbone.patch_size
    config.vision_config.backbone_feature_sizes = [[grid * 4] * 2, [grid * 2] * 2, [grid] * 2]
    torch.manual_seed(0)
    result: dict[str, Any] = {}
    try:
        network = Sam3Model(config)
        if spec["recipe"].startswith("full"):
            network = apply_full_finetune(network)
        else:
            network = apply_lora(network, LoraSettings())
        if spec["recipe"].endswith("checkpointing"):
            enable_activation_checkpointing(network)
        segmenter = _segmenter(network, device)
        trainable = [p for p in segmenter.parameters() if p.requires_grad]
        # Per-tensor updates, like the fused AdamW of a GPU run: foreach would add a model-sized temporary.
        optimizer = torch.optim.AdamW(trainable, lr=1e-5, foreach=False, fused=device.type == "cuda" or None)
        batch = _mover(device)(make_batches(size, 1, 1, 8, seed=1)[0])
        start = time.perf_counter()
        with PeakMemory(device) as memory:
            loss = ConceptObjective()(lever_outputs(segmenter, batch, "masks_needed"), batch["targets"])
            loss["loss"].backward()
        result = {"backward_peak_mb": (memory.peak - initial) / 2**20, "seconds": time.perf_counter() - start}
        del loss
        with PeakMemory(device) as memory:
            optimizer.step()  # creates AdamW's two moments per trained weight
        result["peak_memory_mb"] = max(result["backward_peak_mb"], (memory.peak - initial) / 2**20)
    except (MemoryError, RuntimeError) as error:
        result["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
    parameters = sum(p.numel() for p in network.parameters()) if "network" in locals() else None
    trained = sum(p.numel() for p in network.parameters() if p.requires_grad) if parameters else None
    # float32 weights, plus gradient and two AdamW moments per trained weight.
    states = None if parameters is None else (4 * parameters + 12 * trained) / 2**20
    return {**spec, **result, "parameters": parameters, "trainable": trained, "states_mb": states}


def _mover(device: torch.device):
    def move(batch: dict[str, Any]) -> dict[str, Any]:
        moved = dict(batch)
        moved["pixel_values"] = batch["pixel_values"].to(device)
        moved["targets"] = [{k: v.to(device) for k, v in t.items()} for t in batch["targets"]]
        return moved

    return move


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _isolated(function, spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``function(spec)`` in a fresh process, so that peak memory is that of one measurement."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, spec).result()


def main(
    configs: list[str] | None = None,
    images: int = 4,
    batch_size: int = 2,
    epochs: int = 3,
    device: str = "cpu",
    threads: int = 1,
    full_size_recipes: list[str] | None = None,
    full_size_image: int = 336,
    memory_limit_gb: float = 17.0,
    out: str = str(OUT / "phrase_batching"),
) -> list[dict[str, Any]]:
    """Measure every lever on each config, then the full-size memory, and write JSON and Markdown.

    Args:
        configs: Named configs to run (``tiny``, ``mid``); both when unset.
        images: Images per epoch.
        batch_size: Images per training step.
        epochs: Timed epochs per lever; the table shows the fastest (for ``cached``, of those after the
            first, so it needs 2 or more).
        device: ``cpu`` or ``cuda``.
        threads: CPU threads of torch (1 keeps timings steady on a machine shared with other jobs).
        full_size_recipes: Recipes measured on the full-size architecture, from ``full``,
            ``full+checkpointing`` and ``lora-detector``; ``[]`` skips it. Default: ``full`` and
            ``lora-detector``.
        full_size_image: Input side of the full-size measurement (a multiple of 336 keeps whole windows).
        memory_limit_gb: Address-space limit of a full-size process on the CPU (it fails instead of
            exhausting the machine); 0 for none.
        out: Output path without suffix.

    Returns:
        The table rows.
    """
    configs = list(CONFIGS) if configs is None else configs
    recipes = FULL_SIZE_RECIPES if full_size_recipes is None else full_size_recipes
    processor = torch.cuda.get_device_name() if device == "cuda" else f"CPU {platform.machine()}"
    machine = {
        "device": processor,
        "cores": os.cpu_count(),
        "torch threads": threads,
        "torch": torch.__version__,
        "load average at start": f"{os.getloadavg()[0]:.1f}",
    }
    runs = []
    for name in configs:
        for lever in LEVERS:
            spec = {
                "config": name,
                "lever": lever,
                "images": images,
                "batch_size": batch_size,
                "epochs": epochs,
                "device": device,
                "threads": threads,
            }
            runs.append(_isolated(measure_lever, spec))
            seconds = ", ".join(f"{s:.2f}" for s in runs[-1]["seconds_per_epoch"])
            peak = runs[-1]["peak_memory_mb"]
            print(f"{name} {lever}: s/epoch [{seconds}], peak {peak:.0f} MiB", flush=True)
    full = []
    for recipe in recipes:
        spec = {
            "recipe": recipe,
            "image_size": full_size_image,
            "device": device,
            "threads": threads,
            "memory_limit_gb": memory_limit_gb,
        }
        full.append(_isolated(measure_full_size, spec))
        print(f"full-size {recipe}: {full[-1]}", flush=True)
    rows = summarise(runs)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine, "configs": {n: CONFIGS[n] for n in configs}, "rows": rows, "runs": runs}
    report["full_size"] = full
    Path(f"{out}.json").write_text(json.dumps(report, indent=2))
    Path(f"{out}.md").write_text(markdown(rows, full, machine))
    print(markdown(rows, full, machine))
    return rows


if __name__ == "__main__":
    from jsonargparse import CLI

    CLI(main, as_positional=False)
