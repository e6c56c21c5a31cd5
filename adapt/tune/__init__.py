"""Automatic search of few-shot recipes with Optuna (``sam3-adapt tune``)."""

from adapt.tune.pruning import PruningSettings
from adapt.tune.run import TuneResult, tune
from adapt.tune.space import Distribution, SearchSpace

__all__ = ["Distribution", "PruningSettings", "SearchSpace", "TuneResult", "tune"]
