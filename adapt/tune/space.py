"""The search space of ``sam3-adapt tune``: dotted recipe keys mapped to Optuna distributions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import optuna

#: A dotted recipe key: ``model.lr_detector``, ``model.lora.rank``, ``trainer.max_epochs``, ...
KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
#: Values Optuna can store for a categorical parameter.
CHOICE_TYPES = (type(None), bool, int, float, str)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Distribution:
    """The values one recipe key may take: a numeric range or a list of choices.

    Integer ``low``/``high`` (and ``step``) give integer values (``suggest_int``), otherwise floats.

    Attributes:
        key: Dotted recipe key, e.g. ``model.lr_detector``.
        low: Smallest value of a range (inclusive).
        high: Largest value of a range (inclusive); must be above ``low``.
        step: Grid step of a range; ``None`` samples continuously (floats) or every integer.
        log: Sample the range on a log scale (``low`` must be positive; no ``step``).
        choices: Values of a categorical key (numbers, strings, booleans, ``null``).
    """

    key: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    def __post_init__(self) -> None:
        def fail(message: str) -> None:
            raise ValueError(f"search key {self.key!r}: {message}")

        if not isinstance(self.key, str) or not KEY.match(self.key):
            fail("not a dotted recipe key such as model.lr_detector")
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                fail("give either choices or a range (low/high/step/log), not both")
            if not isinstance(self.choices, list) or not self.choices:
                fail(f"choices must be a non-empty list, got {self.choices!r}")
            for choice in self.choices:
                if not isinstance(choice, CHOICE_TYPES):
                    fail(f"choice {choice!r} is not a number, string, boolean or null")
            return
        if self.low is None or self.high is None:
            fail("give choices, or both low and high")
        for name in ("low", "high", "step"):
            value = getattr(self, name)
            if value is not None and not _is_number(value):
                fail(f"{name} must be a number, got {value!r} (write floats as 1.0e-4, not 1e-4)")
        if not self.low < self.high:
            fail(f"empty range: low={self.low!r} must be below high={self.high!r}")
        if not isinstance(self.log, bool):
            fail(f"log must be true or false, got {self.log!r}")
        if self.log and (self.low <= 0 or self.step is not None):
            fail("a log range needs low > 0 and no step")
        if self.step is not None and not 0 < self.step <= self.high - self.low:
            fail(f"step={self.step!r} must be positive and at most high - low")

    @property
    def is_int(self) -> bool:
        """Whether the range holds integers (integer low, high and step)."""
        return self.choices is None and all(
            isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high, self.step or 1)
        )

    def edges(self) -> list[Any]:
        """The values a recipe must accept for this key: both ends of the range, or every choice."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]

    def suggest(self, trial: optuna.Trial) -> Any:
        """Sample this key's value for ``trial``."""
        if self.choices is not None:
            return trial.suggest_categorical(self.key, self.choices)
        if self.is_int:
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class SearchSpace:
    """Every searched recipe key with its distribution.

    Attributes:
        distributions: One distribution per key; no key may lie inside another (``model.lora`` and
            ``model.lora.rank``), since a trial sets each one in the recipe.
    """

    distributions: tuple[Distribution, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.distributions:
            raise ValueError("the search space is empty: give at least one key under `search`")
        keys = [d.key for d in self.distributions]
        for key in keys:
            for other in keys:
                if other.startswith(key + "."):
                    raise ValueError(f"search key {other!r} lies inside search key {key!r}: keep one of them")
        if len(set(keys)) != len(keys):
            raise ValueError(f"search keys repeat: {sorted(keys)}")

    @classmethod
    def from_dict(cls, search: Mapping[str, Any]) -> SearchSpace:
        """Read ``{dotted key: {low, high, step, log} | {choices}}`` as written in a tune YAML.

        Raises:
            ValueError: Naming the key, if an entry is not a mapping, has an unknown field, or an
                empty or malformed range.
        """
        if not isinstance(search, Mapping):
            raise ValueError(f"search must map recipe keys to distributions, got {search!r}")
        allowed = {f.name for f in fields(Distribution)} - {"key"}
        distributions = []
        for key, spec in search.items():
            if not isinstance(spec, Mapping):
                raise ValueError(
                    f"search key {key!r}: expected {{low, high, ...}} or {{choices}}, got {spec!r}"
                )
            unknown = sorted(set(spec) - allowed)
            if unknown:
                raise ValueError(
                    f"search key {key!r}: unknown field(s) {unknown}; allowed: {sorted(allowed)}"
                )
            distributions.append(Distribution(key=key, **spec))
        return cls(tuple(distributions))

    @property
    def keys(self) -> list[str]:
        """The searched keys, in declaration order."""
        return [d.key for d in self.distributions]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample one value per key for ``trial``: ``{dotted key: value}``."""
        return {d.key: d.suggest(trial) for d in self.distributions}
