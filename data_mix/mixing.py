"""Mix a small domain set with anchor data, epoch by epoch, reproducibly."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class AnchorMixSampler(Sampler[int]):
    """Every domain sample once per epoch, plus ``ratio`` anchor samples per domain sample.

    Indices refer to ``ConcatDataset([domain, anchor])``: ``[0, num_domain)`` are domain samples and
    ``[num_domain, num_domain + num_anchor)`` anchor samples. Each epoch draws a fresh subset of the
    anchor set (without replacement while it lasts) and shuffles it in with the domain samples; the
    order depends only on ``seed`` and the epoch, which Lightning sets through :meth:`set_epoch`
    (and wraps the sampler for several processes).

    Args:
        num_domain: Size of the domain set.
        num_anchor: Size of the anchor set.
        ratio: Anchor samples per domain sample (1.0 = the paper's 1:1 mix).
        seed: Seed of the draws.

    Raises:
        ValueError: If there are no domain samples, or anchor samples are asked for but there are none.
    """

    def __init__(self, num_domain: int, num_anchor: int, ratio: float = 1.0, seed: int = 0) -> None:
        if num_domain < 1:
            raise ValueError("the domain set is empty")
        if ratio < 0:
            raise ValueError(f"anchor ratio must be >= 0, got {ratio}")
        if ratio > 0 and num_anchor < 1:
            raise ValueError("anchor mixing asked for (ratio > 0) but the anchor set is empty")
        self.num_domain = num_domain
        self.num_anchor = num_anchor
        self.num_drawn = round(ratio * num_domain)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose draw :meth:`__iter__` yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_domain + self.num_drawn

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        repeats = -(-self.num_drawn // self.num_anchor) if self.num_drawn else 0
        pool = np.concatenate(
            [rng.permutation(self.num_anchor) for _ in range(repeats)] or [np.zeros(0, int)]
        )
        anchor = self.num_domain + pool[: self.num_drawn]
        order = rng.permutation(np.concatenate([np.arange(self.num_domain), anchor]))
        return iter(order.tolist())
