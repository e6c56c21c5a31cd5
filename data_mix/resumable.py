"""A training DataLoader whose place in the data stream survives a kill: exact resume mid-epoch.

Lightning saves the ``state_dict`` of a train loader that has one in its checkpoints and hands it
back through ``load_state_dict`` on ``--ckpt_path``, before it asks for the first batch. What the
loader must restore is everything random that decides the batches: the shuffle and the DataLoader
workers' seeds (the loader's ``generator``), the epoch of an epoch-keyed sampler
(`sam3_adapt.data_mix.mixing.WeightedMixSampler`), and the random streams of the datasets and the
collate function (augmentation, query capping, exemplar prompts).

The state kept is the one at the start of the current epoch, with the number of batches the trainer
had finished. On resume the epoch is replayed from its start up to there, reading those batches
again and dropping them: data work only, no model step. Replaying (rather than saving the streams
at the moment of the checkpoint) keeps the result exact whatever the workers had prefetched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader

from sam3_adapt.data_mix.rng import WorkerAwareRng

#: ``() -> (batches finished in the current epoch, batches per epoch)``, read from the trainer.
Progress = Callable[[], tuple[int, int]]


class ResumableLoader(DataLoader):
    """A DataLoader that saves and restores its place in the epoch (see the module docstring).

    Args:
        *args: As for ``torch.utils.data.DataLoader``.
        progress: Where the trainer is in the epoch (`Progress`); without it a checkpoint records
            the start of the epoch and resuming replays nothing.
        **kwargs: As for ``torch.utils.data.DataLoader``; a ``generator`` is needed for exact resume
            of a shuffled loader.
    """

    def __init__(self, *args: Any, progress: Progress | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.progress = progress
        self._epoch_start: dict[str, Any] | None = None
        self._pending: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[Any]:
        skip = 0
        if self._pending is not None:
            state, self._pending = self._pending, None
            self._restore(state["epoch_start"])
            skip = state["batches_done"]
            if skip >= state["batches_per_epoch"]:
                # The checkpoint closed its epoch: replay it whole, so the next one starts where it would.
                for _ in zip(range(state["batches_per_epoch"]), super().__iter__()):
                    pass
                self._set_epoch(state["epoch_start"]["epoch"] + 1)
                skip = 0
        self._epoch_start = self._snapshot()
        iterator = super().__iter__()
        for _ in range(skip):
            next(iterator)
        return iterator

    def state_dict(self) -> dict[str, Any]:
        """The state at the start of the current epoch and the batches the trainer has finished since."""
        done, per_epoch = self.progress() if self.progress else (0, len(self))
        return {
            "epoch_start": self._epoch_start or self._snapshot(),
            "batches_done": done,
            "batches_per_epoch": per_epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from a `state_dict` at the next ``iter()``."""
        self._pending = state

    def _random_parts(self) -> list[WorkerAwareRng]:
        """The random streams of the datasets (also inside a ConcatDataset) and of the collate function."""
        datasets = self.dataset.datasets if isinstance(self.dataset, ConcatDataset) else [self.dataset]
        parts = [getattr(part, "rng", None) for part in [*datasets, self.collate_fn]]
        return [rng for rng in parts if isinstance(rng, WorkerAwareRng)]

    def _snapshot(self) -> dict[str, Any]:
        return {
            "generator": None if self.generator is None else self.generator.get_state(),
            "epoch": getattr(self.sampler, "epoch", 0),
            "streams": [rng.state_dict() for rng in self._random_parts()],
        }

    def _restore(self, snapshot: dict[str, Any]) -> None:
        if self.generator is not None and snapshot["generator"] is not None:
            self.generator.set_state(torch.as_tensor(snapshot["generator"], dtype=torch.uint8))
        self._set_epoch(snapshot["epoch"])
        for rng, state in zip(self._random_parts(), snapshot["streams"], strict=True):
            rng.load_state_dict(state)

    def _set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
