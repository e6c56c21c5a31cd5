"""A CPU fit's settings: the cores it may use, shared between its processes, and whether bf16 pays."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

#: /proc/cpuinfo flags of CPUs with bf16 arithmetic (Intel AMX, AVX512-BF16; AMD Zen 4 and later).
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_has_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """Whether the CPU computes in bf16 natively, from the kernel's CPU flags.

    Args:
        cpuinfo: The kernel's CPU description (Linux).

    Returns:
        ``True`` or ``False`` on Linux; ``None`` where the flags cannot be read (other systems).
    """
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split()}
    return any(flag in flags for flag in BF16_FLAGS)


class CpuThreads(Callback):
    """Set torch's intra-op threads of a CPU fit before the first step, and check bf16 pays there.

    PyTorch's default is the machine's physical cores, whatever the process is allowed and however
    many processes share them; under DDP on a CPU, or in a container given fewer cores, that
    oversubscribes and slows every step. ``bf16-mixed`` on a CPU without bf16 arithmetic (most
    laptops before 2023) converts every operand and runs slower than fp32: that gets one warning.
    On a GPU this does nothing.

    Args:
        threads: Threads per process; ``None`` divides the usable cores (CPU affinity) evenly among
            the processes on this machine, at least one each.
    """

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 (or null for the usable cores), got {threads}")
        self.threads = threads

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Set the threads when the trainer runs on the CPU; warn when bf16 would run emulated."""
        if trainer.strategy.root_device.type != "cpu":
            return
        local = max(1, trainer.world_size // max(1, trainer.num_nodes))
        threads = self.threads or max(1, usable_cores() // local)
        torch.set_num_threads(threads)
        rank_zero_info(
            f"CPU threads: {threads} per process ({local} process(es), {usable_cores()} usable cores)"
        )
        if str(trainer.precision).startswith("bf16") and cpu_has_bf16() is False:
            rank_zero_warn(
                f"precision {trainer.precision} on a CPU without bf16 arithmetic (no "
                f"{' or '.join(BF16_FLAGS)} in /proc/cpuinfo): every operation converts its operands "
                "and runs slower than fp32; "
                "use --trainer.precision 32-true"
            )
