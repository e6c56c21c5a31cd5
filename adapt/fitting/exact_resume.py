"""What a resumed fit needs beyond Lightning's checkpoint to continue exactly as if never stopped.

Lightning saves the weights, the optimiser, the schedulers and the loops; the training loader saves
its own place in the data (`sam3_adapt.data_mix.resumable.ResumableLoader`). This callback adds the
rest:

- the training loader's saved place, handed to it after the checkpoint is restored: Lightning 2.6
  loads a loader's ``state_dict`` only when it builds the loader, and a task whose optimiser setup
  asks for ``trainer.estimated_stepping_batches`` (ours: the schedule needs the run's length) has
  the loader built before the checkpoint is read, so the saved state would be ignored;
- the global random streams (torch, CUDA, numpy, Python), which dropout and any random op in the
  step draw from, restored just before the first resumed step;
- the logs up to the checkpoint, flushed to ``metrics.csv`` when it is saved, so that a kill loses
  no row the resumed run will not write again;
- a checkpoint of the final step: with ``every_n_train_steps`` a run can end between two saves, and
  ``last.ckpt`` would then hold older weights than the run's.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint


class ExactResume(Callback):
    """Save the random streams with every checkpoint, flush the logs, and always save the last step."""

    def __init__(self) -> None:
        self._streams: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        """The global random streams at the time of the checkpoint, as tensors and plain data.

        Checkpoints are loaded with ``weights_only=True``, so numpy's state goes in as a tensor.
        """
        name, keys, position, has_gauss, gauss = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {
                "name": str(name),
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "position": int(position),
                "has_gauss": int(has_gauss),
                "gauss": float(gauss),
            },
            "python": random.getstate(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the streams of a checkpoint until the first resumed step (Lightning draws none before)."""
        self._streams = state_dict

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Give the training loader the state the checkpoint saved for it, then start its epoch again.

        A no-op when Lightning has loaded the state itself (the loader was built after the restore).
        """
        loop = trainer.fit_loop
        states = getattr(loop, "_combined_loader_states_to_load", None)
        if not states or loop._combined_loader is None or loop._data_fetcher is None:
            return
        loop._combined_loader._load_state_dicts(states)
        loop._combined_loader_states_to_load = []
        iter(loop._data_fetcher)  # a fresh iterator: the loader replays its epoch up to the checkpoint

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Put the checkpoint's random streams back, once, before the first resumed step."""
        if self._streams is None:
            return
        streams, self._streams = self._streams, None
        torch.set_rng_state(torch.as_tensor(streams["torch"], dtype=torch.uint8))
        if streams["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(streams["cuda"])
        numpy = streams["numpy"]
        keys = numpy["keys"].numpy().astype(np.uint32)
        np.random.set_state((numpy["name"], keys, numpy["position"], numpy["has_gauss"], numpy["gauss"]))
        random.setstate(streams["python"])

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Write the logged rows to disk with the checkpoint, so a kill after it loses none of them."""
        for logger in trainer.loggers:
            logger.save()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Save ``last.ckpt`` at the final step when the periodic saves stopped short of it."""
        for callback in trainer.checkpoint_callbacks:
            if not isinstance(callback, ModelCheckpoint) or not callback.save_last or not callback.dirpath:
                continue
            if getattr(callback, "_last_global_step_saved", None) == trainer.global_step:
                continue
            path = Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
            trainer.save_checkpoint(path, weights_only=False)  # the whole state: resumable
            callback.last_model_path = str(path)
