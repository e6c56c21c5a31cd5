"""Training progress as plain lines, for logs: CI, ``nohup``, ``> log.txt``, a notebook's output file.

Lightning's progress bars redraw one line in place, which a log file keeps as nothing useful until
the run ends. :class:`LineProgress` prints a line every few steps instead; the kit's LightningCLI
chooses it by itself when standard output is not a terminal.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class LineProgress(Callback):
    """Print ``step N/total  loss x  elapsed m:ss  eta m:ss`` every few optimizer steps.

    Args:
        every_n_steps: Steps between lines; ``None`` prints about 20 lines over the run (every 5%),
            but at least one every ``max_seconds``.
        max_seconds: Longest time between two lines, so that a slow run still shows it is alive.
    """

    def __init__(self, every_n_steps: int | None = None, max_seconds: float = 60.0) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.max_seconds = max_seconds
        self._start = self._last = 0.0
        self._first_step = 0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the clock (at the resumed step when a run resumes)."""
        self._start = self._last = time.monotonic()
        self._first_step = trainer.global_step

    @rank_zero_only
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Print a line when the step interval or the time interval has passed, and at the last step."""
        step = trainer.global_step
        total = self._total(trainer)
        every = self.every_n_steps or max(1, math.ceil((total or 100) / 20))
        now = time.monotonic()
        last_step = total is not None and step >= total
        if not (step % every == 0 or last_step or now - self._last >= self.max_seconds):
            return
        self._last = now
        print(self.line(trainer, step, total, now - self._start), file=sys.stdout, flush=True)

    def line(self, trainer: Trainer, step: int, total: int | None, elapsed: float) -> str:
        """The progress line of ``step``."""
        parts = [f"step {step}/{total}" if total else f"step {step}", f"epoch {trainer.current_epoch}"]
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            parts.append(f"loss {float(loss):.4f}")
        parts.append(f"elapsed {_clock(elapsed)}")
        done = step - self._first_step
        if total and done > 0:
            parts.append(f"eta {_clock(elapsed / done * (total - step))}")
        return "  ".join(parts)

    @staticmethod
    def _total(trainer: Trainer) -> int | None:
        try:
            total = trainer.estimated_stepping_batches
        except Exception:  # a loader without a length: no total to show
            return None
        return int(total) if math.isfinite(total) else None
