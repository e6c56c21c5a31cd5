"""Give a CPU fit the cores it may use, shared between its processes, and say how many."""

from __future__ import annotations

import os

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class CpuThreads(Callback):
    """Set torch's intra-op threads of a CPU fit, once, before the first step.

    PyTorch's default is the machine's physical cores, whatever the process is allowed and however
    many processes share them; under DDP on a CPU, or in a container given fewer cores, that
    oversubscribes and slows every step. On a GPU this does nothing.

    Args:
        threads: Threads per process; ``None`` divides the usable cores (CPU affinity) evenly among
            the processes on this machine, at least one each.
    """

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 (or null for the usable cores), got {threads}")
        self.threads = threads

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Set the threads when the trainer runs on the CPU."""
        if trainer.strategy.root_device.type != "cpu":
            return
        local = max(1, trainer.world_size // max(1, trainer.num_nodes))
        threads = self.threads or max(1, usable_cores() // local)
        torch.set_num_threads(threads)
        rank_zero_info(
            f"CPU threads: {threads} per process ({local} process(es), {usable_cores()} usable cores)"
        )
