"""Random streams that are reproducible in the main process and in DataLoader workers."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import get_worker_info


class WorkerAwareRng:
    """A numpy generator seeded from ``seed`` and, inside a DataLoader worker, from the worker's seed.

    In the main process the stream starts from ``seed`` and runs on across epochs. In a worker,
    PyTorch gives each worker a seed drawn from the loader's generator at every new iterator
    (each epoch); mixing it in keeps workers from repeating each other's draws and keeps the whole
    run reproducible when the loader has a seeded ``generator``.

    Args:
        seed: Base seed.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._worker_seed: int | None = None
        self._rng = np.random.default_rng(seed)

    def get(self) -> np.random.Generator:
        """The generator to draw from in the current process."""
        info = get_worker_info()
        if info is not None and info.seed != self._worker_seed:
            self._worker_seed = info.seed
            self._rng = np.random.default_rng([self.seed, info.seed])
        return self._rng

    def state_dict(self) -> dict[str, Any]:
        """The main process's stream position (what a resumed run needs to draw the same again)."""
        return {"bit_generator": self._rng.bit_generator.state, "worker_seed": self._worker_seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the stream from a `state_dict`."""
        self._rng = np.random.default_rng(self.seed)
        self._rng.bit_generator.state = state["bit_generator"]
        self._worker_seed = state["worker_seed"]
