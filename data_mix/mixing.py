"""Mix several training sources by weight, epoch by epoch, reproducibly and across processes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import DistributedSampler


class WeightedMixSampler(DistributedSampler):
    """Each epoch, a fresh draw from every source in proportion to its weight; each process gets a shard.

    Indices refer to ``ConcatDataset(sources)``: source ``s`` holds ``[offset_s, offset_s + size_s)``.

    The epoch's quotas: by default the first source is seen once (``size_0`` draws) and source ``s``
    gets ``round(size_0 * weight_s / weight_0)`` draws; with ``epoch_size`` the draws are split by
    weight (largest remainders). A source whose quota equals its size is taken whole; otherwise its
    samples are drawn without replacement while they last (small sources repeat, each sample at most
    once more than any other). The sources' draws are shuffled together. The draw depends only on
    ``seed`` and the epoch (:meth:`set_epoch`), so every process computes the same one.

    Several processes: the draw is padded by repeating its start to a multiple of ``num_replicas``,
    as `torch.utils.data.DistributedSampler` pads, and process ``rank`` takes every
    ``num_replicas``-th index from position ``rank``: the shards are disjoint (but for the padding)
    and together make the single-process draw. ``num_replicas`` and ``rank`` default to those of
    the initialised process group (1 and 0 without one).

    With Lightning: the sampler is a ``DistributedSampler``, so ``Trainer(use_distributed_sampler=True)``
    (the default) keeps it instead of wrapping it in a ``DistributedSamplerWrapper`` (which would
    re-shard the already sharded draw), and the trainer calls :meth:`set_epoch` every epoch. Build
    it once the process group exists: in ``train_dataloader``, as `ConceptDataModule` does.

    Args:
        sizes: Number of samples of each source.
        weights: Relative share of each source in an epoch (>= 0).
        epoch_size: Draws per epoch over all processes; ``None`` sees the first source once.
        seed: Seed of the draws.
        names: Names of the sources, for messages.
        num_replicas: Number of processes.
        rank: This process's rank.

    Raises:
        ValueError: On mismatched lengths, negative weights, or a source that is asked for but empty.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float],
        epoch_size: int | None = None,
        seed: int = 0,
        names: Sequence[str] | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        names = list(names) if names is not None else [f"source {i}" for i in range(len(sizes))]
        if not len(sizes) == len(weights) == len(names) or not sizes:
            raise ValueError(f"need as many sizes, weights and names (>= 1), got {sizes}, {weights}, {names}")
        if any(not w >= 0 for w in weights) or not sum(weights) > 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {dict(zip(names, weights))}")
        self.sizes = [int(n) for n in sizes]
        self.weights = [float(w) for w in weights]
        self.quotas = self._quotas(epoch_size, names)
        for name, size, quota in zip(names, self.sizes, self.quotas, strict=True):
            if quota and not size:
                raise ValueError(f"{name} is empty but its weight asks for {quota} draws per epoch")
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        super().__init__(
            range(sum(self.quotas)), num_replicas=num_replicas, rank=rank, shuffle=False, seed=seed
        )

    def _quotas(self, epoch_size: int | None, names: list[str]) -> list[int]:
        if epoch_size is None:
            if not (self.sizes[0] > 0 and self.weights[0] > 0):
                raise ValueError(
                    f"{names[0]} sets the epoch (seen once): it needs samples and a positive weight, "
                    "or give epoch_size"
                )
            return [round(self.sizes[0] * w / self.weights[0]) for w in self.weights]
        if epoch_size < 1:
            raise ValueError(f"epoch_size must be >= 1, got {epoch_size}")
        exact = np.array(self.weights) * epoch_size / sum(self.weights)
        quotas = np.floor(exact).astype(int)
        # Largest remainders; ties go to the earlier source.
        order = np.argsort(-(exact - quotas), kind="stable")
        quotas[order[: epoch_size - quotas.sum()]] += 1
        return quotas.tolist()

    def draw(self) -> list[int]:
        """The whole epoch's draw, before sharding: the same on every process."""
        rng = np.random.default_rng([self.seed, self.epoch])
        parts, offset = [], 0
        for size, quota in zip(self.sizes, self.quotas, strict=True):
            if quota == size:
                parts.append(offset + np.arange(size))
            elif quota:
                pool = np.concatenate([rng.permutation(size) for _ in range(-(-quota // size))])
                parts.append(offset + pool[:quota])
            offset += size
        return rng.permutation(np.concatenate(parts or [np.zeros(0, int)])).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self.draw()
        padding = self.total_size - len(order)
        if padding and order:
            order += (order * -(-padding // len(order)))[:padding]
        return iter(order[self.rank : self.total_size : self.num_replicas])


class AnchorMixSampler(WeightedMixSampler):
    """Every domain sample once per epoch, plus ``ratio`` anchor samples per domain sample.

    The two-source case of `WeightedMixSampler` (weights ``1 : ratio``): indices refer to
    ``ConcatDataset([domain, anchor])``, each epoch draws a fresh subset of the anchor set (without
    replacement while it lasts) and shuffles it in with the domain samples.

    Args:
        num_domain: Size of the domain set.
        num_anchor: Size of the anchor set.
        ratio: Anchor samples per domain sample (1.0 = the paper's 1:1 mix).
        seed: Seed of the draws.
        num_replicas: Number of processes (see `WeightedMixSampler`).
        rank: This process's rank.

    Raises:
        ValueError: If there are no domain samples, or anchor samples are asked for but there are none.
    """

    def __init__(
        self,
        num_domain: int,
        num_anchor: int,
        ratio: float = 1.0,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if num_domain < 1:
            raise ValueError("the domain set is empty")
        if ratio < 0:
            raise ValueError(f"anchor ratio must be >= 0, got {ratio}")
        if ratio > 0 and num_anchor < 1:
            raise ValueError("anchor mixing asked for (ratio > 0) but the anchor set is empty")
        super().__init__(
            [num_domain, num_anchor],
            [1.0, ratio],
            seed=seed,
            names=["the domain set", "the anchor set"],
            num_replicas=num_replicas,
            rank=rank,
        )
