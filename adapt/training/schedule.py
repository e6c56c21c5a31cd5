"""Learning-rate schedules: linear warm-up, then inverse square root (SAM 3 fine-tuning) or cosine."""

from __future__ import annotations

import math

import torch


def inverse_sqrt_factor(step: int, warmup_steps: int) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (counted from 0).

    Rises linearly to 1 over ``warmup_steps`` steps, then decays as ``sqrt(warmup_steps / step)``,
    so it is continuous at the end of warm-up.

    Args:
        step: Optimizer step.
        warmup_steps: Length of the warm-up; 0 starts decaying at once (from step 1).

    Returns:
        The factor.
    """
    step = step + 1
    if warmup_steps <= 0:
        return 1.0 / math.sqrt(step)
    if step <= warmup_steps:
        return step / warmup_steps
    return math.sqrt(warmup_steps / step)


def inverse_sqrt_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` applying :func:`inverse_sqrt_factor` to every parameter group, once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: inverse_sqrt_factor(step, warmup_steps))


def cosine_factor(step: int, warmup_steps: int, total_steps: int, final_factor: float = 0.05) -> float:
    """Multiplier at optimizer step ``step``: linear warm-up, then cosine decay to ``final_factor``.

    Args:
        step: Optimizer step (counted from 0).
        warmup_steps: Length of the linear warm-up.
        total_steps: Step at which the decay reaches ``final_factor`` (it stays there afterwards).
        final_factor: Multiplier at the end of the decay.

    Returns:
        The factor.
    """
    step = step + 1
    if step <= warmup_steps:
        return step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final_factor + (1 - final_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def cosine_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, final_factor: float = 0.05
) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` applying :func:`cosine_factor` to every parameter group, once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cosine_factor(step, warmup_steps, total_steps, final_factor)
    )
