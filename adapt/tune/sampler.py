"""The TPE sampler of ``tune``, seeded per trial so that workers sharing a study never draw alike."""

from __future__ import annotations

from typing import Any

from optuna import Study
from optuna.samplers import TPESampler
from optuna.trial import FrozenTrial


class TrialSeededTPESampler(TPESampler):
    """Optuna's TPE sampler whose random draws for trial ``n`` come from ``seed + n``.

    Each worker of a shared study builds its own sampler. Seeded once, two workers started together
    would draw the same values for their first trials; seeded by the trial's number, which the
    storage hands out once, they cannot, and a study run by one worker stays reproducible. The
    ``constant_liar`` option (on by default here) makes TPE treat running trials as poor ones, so
    parallel workers also spread out once TPE takes over from random sampling.

    Args:
        seed: Base seed; trial ``n`` draws from ``seed + n``.
        **kwargs: Further `optuna.samplers.TPESampler` arguments.
    """

    def __init__(self, seed: int = 0, **kwargs: Any) -> None:
        kwargs.setdefault("constant_liar", True)
        super().__init__(seed=seed, **kwargs)
        self.seed = seed

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        """Reseed both of TPE's random streams (its own and its start-up random sampler) for this trial."""
        self._rng.rng.seed(self.seed + trial.number)
        self._random_sampler._rng.rng.seed(self.seed + trial.number)
        super().before_trial(study, trial)
