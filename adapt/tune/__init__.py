"""Automatic search of few-shot recipes with Optuna (``sam3-adapt tune``)."""

from sam3_adapt.tune.pruning import PruningSettings
from sam3_adapt.tune.run import TuneResult, tune
from sam3_adapt.tune.space import Distribution, SearchSpace

__all__ = ["Distribution", "PruningSettings", "SearchSpace", "TuneResult", "tune"]
