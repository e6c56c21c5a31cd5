"""Outputs of a frozen tower kept across epochs, keyed by content so that nothing stale is ever served.

When a recipe freezes SAM 3's vision encoder (or text encoder), its output for a given input never
changes, so later epochs can skip it. The key of an entry is a hash of the exact input bytes (for an
image: the augmented, normalised pixel tensor), of the tower's weights and configuration, and of the
numeric context (device type, autocast dtype). A new augmentation, other data or changed weights give
another key, never a stale hit. The cache refuses to run while the tower has a trainable parameter
(LoRA on it, or full fine-tuning without ``freeze``) or would act randomly (dropout in training mode).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn

Storage = Literal["memory", "disk"]
#: Changes whenever what an entry holds changes, so old disk caches are never read.
_FORMAT = b"sam3-adapt-feature-cache-v1"


def module_fingerprint(module: nn.Module) -> str:
    """Hash of a module's class, configuration and every tensor of its state dict.

    Args:
        module: Any module; a ``config`` attribute (Hugging Face models) is included when present.

    Returns:
        A hex digest that changes when any weight, buffer, dtype or shape changes.
    """
    digest = hashlib.blake2b(_FORMAT, digest_size=20)
    digest.update(type(module).__qualname__.encode())
    config = getattr(module, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        digest.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(_bytes(tensor))
    return digest.hexdigest()


def is_stochastic(module: nn.Module) -> bool:
    """Whether ``module`` would give different outputs for the same input (dropout in training mode).

    Args:
        module: The tower.

    Returns:
        True if some submodule in training mode has an ``nn.Dropout`` with ``p > 0`` or a positive
        ``attention_dropout`` / ``dropout`` rate attribute (Hugging Face attention layers).
    """
    for sub in module.modules():
        if not sub.training:
            continue
        if isinstance(sub, nn.modules.dropout._DropoutNd) and sub.p > 0:
            return True
        for attribute in ("attention_dropout", "dropout"):
            rate = getattr(sub, attribute, None)
            if isinstance(rate, float) and rate > 0:
                return True
    return False


def _bytes(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of a tensor (copied to the CPU when needed), without a dtype conversion."""
    flat = tensor.detach().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).cpu().numpy())


class FrozenFeatureCache:
    """Per-item outputs of a frozen module, in memory or on disk, keyed by input content and weights.

    Args:
        module: The frozen tower (e.g. ``Sam3Model.vision_encoder``); it is checked, never modified.
        storage: ``"memory"`` keeps entries in this process (CPU tensors); ``"disk"`` writes one
            safetensors file per entry under ``directory``, shared by processes and runs.
        directory: Folder of a disk cache; required for ``"disk"``.
        max_memory_gb: Size limit of a memory cache; the least recently used entries are dropped
            beyond it. ``None`` for no limit.

    Raises:
        ValueError: For an unknown storage, a disk cache without directory, or a non-positive limit.
    """

    def __init__(
        self,
        module: nn.Module,
        storage: Storage = "memory",
        directory: str | os.PathLike | None = None,
        max_memory_gb: float | None = None,
    ) -> None:
        if storage not in ("memory", "disk"):
            raise ValueError(f"storage must be 'memory' or 'disk', got {storage!r}")
        if storage == "disk" and directory is None:
            raise ValueError("a disk feature cache needs a directory")
        if max_memory_gb is not None and max_memory_gb <= 0:
            raise ValueError(f"max_memory_gb must be positive, got {max_memory_gb}")
        self.module = module
        self.storage = storage
        self.directory = None if directory is None else Path(directory)
        self.max_bytes = None if max_memory_gb is None else int(max_memory_gb * 2**30)
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, tuple[torch.Tensor, ...]] = OrderedDict()
        self._bytes = 0
        self._fingerprint = ""
        self._state_signature: tuple = ()

    def __getstate__(self) -> dict:
        # Entries stay with the process that made them (a spawned DDP worker starts empty).
        state = self.__dict__.copy()
        state["_entries"], state["_bytes"] = OrderedDict(), 0
        return state

    def check_usable(self) -> None:
        """Raise unless the tower is frozen and deterministic.

        Raises:
            RuntimeError: If a parameter of the tower requires grad, or dropout is active in it.
        """
        name = type(self.module).__name__
        trainable = [n for n, p in self.module.named_parameters() if p.requires_grad]
        if trainable:
            raise RuntimeError(
                f"feature cache on {name}: {len(trainable)} of its parameters train (e.g. {trainable[0]}); "
                "only a frozen tower's outputs can be cached (LoRA on it or full fine-tuning unfreezes it)"
            )
        if is_stochastic(self.module):
            raise RuntimeError(
                f"feature cache on {name}: dropout is active in it (training mode), so its outputs are "
                "random; put it in eval mode or set its dropout to 0"
            )

    def fingerprint(self) -> str:
        """Hash of the tower's weights, recomputed only when a weight tensor was replaced or changed."""
        state = self.module.state_dict()
        signature = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in state.values())
        if signature != self._state_signature:
            self._fingerprint = module_fingerprint(self.module)
            self._state_signature = signature
        return self._fingerprint

    def keys(self, inputs: Sequence[torch.Tensor]) -> list[str]:
        """Cache key of each input under the current weights and autocast context.

        Args:
            inputs: One tensor per item (an image, or a phrase's token ids and mask).

        Returns:
            One hex digest per item.
        """
        if not inputs:
            return []
        # Outputs differ (slightly) across device types and autocast dtypes: part of the key.
        device = inputs[0].device.type
        autocast = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device)
        context = hashlib.blake2b(self.fingerprint().encode(), digest_size=20)
        context.update(f"{device}:{autocast}".encode())
        keys = []
        for tensor in inputs:
            digest = context.copy()
            digest.update(f"{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(_bytes(tensor))
            keys.append(digest.hexdigest())
        return keys

    def fetch(
        self,
        inputs: Sequence[torch.Tensor],
        compute: Callable[[list[int]], Sequence[Sequence[torch.Tensor]]],
    ) -> list[tuple[torch.Tensor, ...]]:
        """The tower's outputs for each input, computing only the items not cached yet.

        Args:
            inputs: One tensor per item; the outputs come back on their device.
            compute: Given the positions of the missing items, runs the tower on them (it is called
                under ``torch.no_grad``) and returns each item's output tensors, without batch dimension.

        Returns:
            Each item's output tensors.

        Raises:
            RuntimeError: If the tower is trainable or stochastic (see :meth:`check_usable`).
        """
        self.check_usable()
        keys = self.keys(inputs)
        found: list[tuple[torch.Tensor, ...] | None] = [self._get(key) for key in keys]
        missing = [i for i, entry in enumerate(found) if entry is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            with torch.no_grad():
                computed = compute(missing)
            for i, tensors in zip(missing, computed, strict=True):
                found[i] = tuple(t.detach() for t in tensors)
                self._put(keys[i], found[i])
        device = inputs[0].device if len(inputs) else torch.device("cpu")
        return [tuple(t.to(device, non_blocking=True) for t in entry) for entry in found]

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.safetensors"

    def _get(self, key: str) -> tuple[torch.Tensor, ...] | None:
        if self.storage == "disk":
            path = self._path(key)
            if not path.is_file():
                return None
            loaded = load_file(path)
            return tuple(loaded[str(i)] for i in range(len(loaded)))
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def _put(self, key: str, tensors: tuple[torch.Tensor, ...]) -> None:
        # Entries made during validation (inference mode) must still serve training steps later.
        with torch.inference_mode(False):
            cpu = {str(i): t.to("cpu").contiguous().clone() for i, t in enumerate(tensors)}
        if self.storage == "disk":
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a reader (another DDP process) never sees half a file.
            handle, staging = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            os.close(handle)
            save_file(cpu, staging)
            os.replace(staging, path)
            return
        entry = tuple(cpu[str(i)] for i in range(len(cpu)))
        self._entries[key] = entry
        self._bytes += sum(t.numel() * t.element_size() for t in entry)
        while self.max_bytes is not None and self._bytes > self.max_bytes and self._entries:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= sum(t.numel() * t.element_size() for t in dropped)

    @property
    def memory_bytes(self) -> int:
        """Bytes held by a memory cache (0 for a disk cache)."""
        return self._bytes
