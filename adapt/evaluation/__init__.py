"""Paper-style evaluation with a report: COCO AP, cgF1, counts, breakdowns, calibration and pictures."""

from sam3_adapt.evaluation.run import evaluate

__all__ = ["evaluate"]
