"""Tracing a training step on fake tensors as a GPU would run it: its live bytes, without a GPU.

``FakeTensorMode`` gives every operation its real output shape and dtype without computing or
allocating anything. :class:`LiveBytes` follows every storage an operation creates until it is
freed (as ``torch.distributed._tools.mem_tracker`` does; that tracker hooks every parameter, which
a frozen weight refuses). :func:`cuda_kernels` swaps in the GPU's own kernels where the CPU's keep
more or less for the backward pass, and :func:`fake_segmenter` builds a network with fake weights.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch._guards import detect_fake_mode
from torch._subclasses import fake_tensor
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from sam3_adapt.model.forward import ConceptSegmenter


class LiveBytes(TorchDispatchMode):
    """Bytes of the tensor storages created inside it and still alive, and their peak.

    Storages are counted once (views share one), rounded up to CUDA's 512-byte allocation unit.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._seen: set[int] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self._track(tensor.untyped_storage())
        self.peak = max(self.peak, self.current)
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = id(storage)
        if key in self._seen:
            return
        size = math.ceil(storage.nbytes() / 512) * 512
        self._seen.add(key)
        self.current += size
        weakref.finalize(storage, self._free, key, size)

    def _free(self, key: int, size: int) -> None:
        self._seen.discard(key)
        self.current -= size


@contextlib.contextmanager
def small_constants(limit: int = 64) -> Any:
    """Let fake mode keep the values of small tensors made from Python numbers.

    SAM 3's DETR layers build a tensor of feature-map shapes and read it back with ``.item()``; a fake
    tensor has no values unless fake mode keeps them as constants, which it does for tensors of at
    most ``CONSTANT_NUMEL_LIMIT`` elements (1 by default).
    """
    previous = fake_tensor.CONSTANT_NUMEL_LIMIT
    fake_tensor.CONSTANT_NUMEL_LIMIT = max(previous, limit)
    try:
        yield
    finally:
        fake_tensor.CONSTANT_NUMEL_LIMIT = previous


@contextlib.contextmanager
def cuda_kernels(dtype: torch.dtype | None) -> Any:
    """Trace the memory-saving kernels a GPU runs where the CPU's differ.

    Two kernels keep less for the backward pass on a GPU than on a CPU: dropout (CUDA's fused kernel
    keeps a 1-byte mask; the CPU's keeps a float noise tensor, 4 bytes per element under LoRA's fp32
    dropout) and attention with a bias that learns (CUDA's memory-efficient kernel keeps the output
    and a log-sum-exp; the CPU falls back to the math kernel and keeps every attention weight).
    During the trace both functions call the GPU kernels' own operators, whose fake versions give
    their outputs and saved tensors. And CUDA's autocast runs normalisation and softmax in float32
    (its fp32 op list), where the CPU's keeps bfloat16: their outputs, and the float32 residual
    stream that follows a normalisation, are twice as large on a GPU.
    """
    dropout, attention = F.dropout, F.scaled_dot_product_attention
    norms = {name: getattr(F, name) for name in ("layer_norm", "group_norm", "softmax", "log_softmax")}

    def in_float32(function: Any) -> Any:
        def run(input: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            if dtype is None or not torch.is_autocast_enabled("cpu"):
                return function(input, *args, **kwargs)
            with torch.autocast("cpu", enabled=False):
                args = [
                    a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args
                ]
                kwargs = {
                    k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
                    for k, v in kwargs.items()
                }
                if function in (norms["softmax"], norms["log_softmax"]):
                    kwargs.setdefault("dtype", torch.float32)
                return function(input.float(), *args, **kwargs)

        return run

    def fused_dropout(input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False):
        if not training or p == 0:
            return input
        return torch.ops.aten.native_dropout(input, p, True)[0]

    def efficient_attention(
        query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw
    ):
        if kw.get("enable_gqa") or (attn_mask is not None and attn_mask.dtype == torch.bool):
            return attention(query, key, value, attn_mask, dropout_p, is_causal, scale=scale, **kw)
        if dtype is not None:
            query, key, value = (t.to(dtype) for t in (query, key, value))
            attn_mask = None if attn_mask is None else attn_mask.to(dtype)
        return torch.ops.aten._scaled_dot_product_efficient_attention(
            query, key, value, attn_mask, True, dropout_p, is_causal, scale=scale
        )[0]

    F.dropout, F.scaled_dot_product_attention = fused_dropout, efficient_attention
    for name, function in norms.items():
        setattr(F, name, in_float32(function))
    try:
        yield
    finally:
        F.dropout, F.scaled_dot_product_attention = dropout, attention
        for name, function in norms.items():
            setattr(F, name, function)


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a Lightning precision setting (``None``: no autocast)."""
    return {"bf16": torch.bfloat16, "16": torch.float16}.get(precision.split("-")[0])


def autocast(precision: str) -> contextlib.AbstractContextManager:
    """Autocast as Lightning's ``precision`` setting does, on the CPU's fake tensors."""
    if precision.startswith("bf16"):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast("cpu", dtype=torch.float16)
    return contextlib.nullcontext()


def fake_mode_of(segmenter: nn.Module) -> FakeTensorMode:
    """The fake mode of a segmenter with fake weights, or a new one for real weights."""
    mode = detect_fake_mode(list(segmenter.parameters()))
    return mode if mode is not None else FakeTensorMode(allow_non_fake_inputs=True)


def fake_segmenter(build: Any, device: str = "cpu") -> ConceptSegmenter:
    """Build a segmenter whose weights are fake tensors, for an estimate without the memory they need.

    ``build()`` runs on the meta device (shapes only, no initialisation cost); every parameter and
    buffer then becomes a fake tensor on ``device``, so that autocast treats it as there.

    Args:
        build: A callable returning the segmenter (e.g. a full-size ``Sam3Model`` with LoRA applied).
        device: The device the fake weights claim to be on.
    """
    with torch.device("meta"):
        segmenter = build()
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    target = torch.device(device)
    for module in segmenter.modules():
        for name, param in module._parameters.items():
            if param is not None:
                fake = fake_tensor.FakeTensor(mode, param.detach(), target)
                module._parameters[name] = nn.Parameter(fake, requires_grad=param.requires_grad)
        for name, buffer in module._buffers.items():
            if buffer is not None:
                module._buffers[name] = fake_tensor.FakeTensor(mode, buffer, target)
    return segmenter
