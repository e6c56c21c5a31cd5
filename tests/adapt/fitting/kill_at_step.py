"""A callback that kills its own process with SIGKILL after a given optimizer step (a test helper)."""

import os
import signal

from lightning import Callback


class KillAtStep(Callback):
    """``kill -9`` the process once ``trainer.global_step`` reaches ``step`` (before that step's checkpoint).

    Args:
        step: The optimizer step after which the process dies.
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
