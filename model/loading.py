"""Load SAM 3 and its processor the same way from a hub id, a local folder or a built-in tiny model."""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import torch
from torch import nn
from transformers import Sam3Model, Sam3Processor

from model.tiny import write_tiny_random_sam3

#: Short name of a randomly initialised tiny SAM 3 (seeded): every code path, no pretrained knowledge.
TINY_RANDOM = "tiny-random"
#: Short name of the tiny SAM 3 pretrained on the concept world's anchor data, shipped in the package.
TINY = "tiny"
_TINY_RANDOM_VERSION = "v1"


def cache_dir() -> Path:
    """Where sam3-adapt keeps what it builds (``$SAM3_ADAPT_CACHE``, default ``~/.cache/sam3-adapt``)."""
    return Path(os.environ.get("SAM3_ADAPT_CACHE", Path.home() / ".cache" / "sam3-adapt"))


def resolve_checkpoint(name_or_path: str | os.PathLike) -> str:
    """Turn a short name into the folder it stands for; leave hub ids and paths as they are.

    Args:
        name_or_path: ``"tiny"``, ``"tiny-random"``, a hub id such as ``"facebook/sam3"``, or a local
            folder in Hugging Face format.

    Returns:
        What ``from_pretrained`` should be given.

    Raises:
        FileNotFoundError: If ``"tiny"`` is asked for but no pretrained tiny model ships with this
            installation, or a path that looks local does not exist.
    """
    name = str(name_or_path)
    if name == TINY_RANDOM:
        return str(_ensure_tiny_random())
    if name == TINY:
        shipped = resources.files("model") / "assets" / "tiny-sam3"
        if not shipped.is_dir():
            raise FileNotFoundError(
                "the pretrained tiny SAM 3 ('tiny') is not shipped in this installation yet; "
                f"use '{TINY_RANDOM}' (random weights) or a hub id / local folder"
            )
        return str(shipped)
    path = Path(name).expanduser()
    if path.exists():
        return str(path)
    # A hub id is "name" or "org/name"; anything else is meant as a local path.
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"checkpoint folder {name!r} does not exist")
    return name


def _ensure_tiny_random() -> Path:
    """Write the seeded random tiny model once into the cache; later calls reuse it."""
    folder = cache_dir() / f"{TINY_RANDOM}-{_TINY_RANDOM_VERSION}"
    if (folder / "model.safetensors").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".staging-"))
    write_tiny_random_sam3(staging, seed=0)
    try:
        staging.rename(folder)
    except OSError:  # another process finished first: its copy is identical
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def load_sam3(
    name_or_path: str | os.PathLike = "facebook/sam3",
    adapter: str | os.PathLike | None = None,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> tuple[nn.Module, Sam3Processor]:
    """Load a SAM 3 network and its processor, optionally with a LoRA adapter on top.

    The same call serves the Hub and local copies::

        model, processor = load_sam3("facebook/sam3")             # gated: run `hf auth login` first
        model, processor = load_sam3("/data/checkpoints/sam3")     # a local HF-format folder
        model, processor = load_sam3("tiny-random")                # built-in tiny model, no download
        model, processor = load_sam3("facebook/sam3", adapter="org/sam3-cells-lora")

    Args:
        name_or_path: Hub id, local folder, or a built-in short name (``"tiny"``, ``"tiny-random"``).
        adapter: Hub id or local folder of a PEFT adapter (``adapter_config.json`` +
            ``adapter_model.safetensors``) trained on this base model.
        revision: Hub revision (branch, tag or commit) of the base model.
        token: Hub token; ``None`` uses the usual places (``HF_TOKEN``, ``hf auth login``).
        dtype: Parameter dtype, e.g. ``torch.bfloat16``; ``None`` keeps the stored one.
        device: Where to put the model; ``None`` leaves it on the CPU.

    Returns:
        ``(model, processor)``: a ``transformers.Sam3Model`` (a ``peft.PeftModel`` when an adapter is
        given) in eval mode, and its ``Sam3Processor``.

    Raises:
        OSError: If the checkpoint cannot be found or downloaded; the message says what to check.
    """
    source = resolve_checkpoint(name_or_path)
    kwargs = {"revision": revision, "token": token}
    try:
        model = Sam3Model.from_pretrained(source, dtype=dtype, **kwargs)
        processor = Sam3Processor.from_pretrained(source, **kwargs)
    except OSError as error:
        raise OSError(
            f"could not load SAM 3 from {str(name_or_path)!r}: {error}\n"
            "A hub id needs network access and, for the gated facebook/sam3, an accepted licence and a "
            "token (`hf auth login`); offline, pass a local folder that holds config.json, "
            "model.safetensors and the processor files."
        ) from error
    if adapter is not None:
        from model.persistence import load_adapter

        model = load_adapter(model, adapter, expected_base=str(name_or_path))
    if device is not None:
        model = model.to(device)
    return model.eval(), processor
