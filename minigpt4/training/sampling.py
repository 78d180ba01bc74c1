"""The training data order: samplers (shuffled or class-balanced, sharded by rank) and per-epoch loaders whose
order depends on (seed, epoch) only, so a resumed run sees exactly the batches an uninterrupted one would."""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from transformers.trainer_pt_utils import get_length_grouped_indices

from minigpt4.config import ConfigError, RunConfig
from minigpt4.data.collate import Collator
from minigpt4.data.dataset import EmotionDataset, class_weights
from minigpt4.runtime import dist


class SeededShardSampler(Sampler[int]):
    """A rank's ``per_rank`` indices of an order drawn from (seed, epoch) only (see :meth:`generator`)."""

    def __init__(self, per_rank: int, seed: int, rank: int, world: int) -> None:
        self.per_rank, self.seed, self.rank, self.world, self.epoch = per_rank, seed, rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + self.epoch)


class WeightedShardSampler(SeededShardSampler):
    """Inverse-class-frequency sampling with replacement (``run.balance: sampler``), sharded across ranks.

    The draw depends on (seed, epoch) only: every rank draws the same global sequence and keeps its stride.
    """

    def __init__(self, labels: list[str], seed: int, rank: int, world: int) -> None:
        super().__init__(math.ceil(len(labels) / world), seed, rank, world)
        weights = class_weights(labels)
        self.weights = torch.tensor([weights[label] for label in labels], dtype=torch.double)

    def __iter__(self) -> Iterator[int]:
        drawn = torch.multinomial(self.weights, self.per_rank * self.world, replacement=True,
                                  generator=self.generator())
        return iter(drawn[self.rank::self.world].tolist())


class LengthGroupedShardSampler(SeededShardSampler):
    """``run.group_by_length``: a seeded shuffle cut into mega-batches sorted by length (transformers'
    ``get_length_grouped_indices``), so each batch pads to about its own length. Sharded batch-wise: rank ``r``
    takes the ``r``-th ``batch_size`` slice of every ``world * batch_size`` run, so every rank's batches stay
    grouped. The order depends on (seed, epoch) only."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, rank: int, world: int) -> None:
        super().__init__(len(lengths) // (batch_size * world) * batch_size, seed, rank, world)
        self.lengths, self.batch_size = lengths, batch_size

    def __iter__(self) -> Iterator[int]:
        order = get_length_grouped_indices(self.lengths, self.batch_size * self.world, generator=self.generator())
        span, bs = self.batch_size * self.world, self.batch_size
        mine = [order[i + self.rank * bs:i + (self.rank + 1) * bs] for i in range(0, self.per_rank * self.world, span)]
        return iter([i for batch in mine for i in batch])


def make_sampler(dataset: EmotionDataset, run: RunConfig, info: dist.DistInfo) -> Sampler[int]:
    """``run.balance: sampler`` draws by inverse class frequency; ``run.group_by_length`` groups similar lengths;
    otherwise a seeded shuffle, sharded by rank."""
    if run.group_by_length:
        if run.balance == "sampler":
            raise ConfigError("run.group_by_length and run.balance=sampler both choose the batches: use one "
                              "(run.balance=loss balances classes with length grouping)")
        return LengthGroupedShardSampler(dataset.text_lengths(), run.batch_size, run.seed, info.rank,
                                         info.world_size)
    if run.balance == "sampler":
        return WeightedShardSampler([s.label for s in dataset.samples], run.seed, info.rank, info.world_size)
    return DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                              seed=run.seed, drop_last=False)


def epoch_loader(dataset: EmotionDataset, sampler: Sampler[int], epoch: int, skip: int, run: RunConfig,
                 collate: Collator) -> DataLoader:
    """Micro-batches of one epoch, whole ones only, the first ``skip`` left out (resume mid-epoch).

    The order depends on (seed, epoch) only; the loader gets its own generator so creating it never moves the
    global RNG (which would make a resumed run diverge).
    """
    sampler.set_epoch(epoch)
    dataset.set_epoch(epoch)
    order = list(sampler)
    bs = run.batch_size
    batches = [order[i:i + bs] for i in range(0, len(order) - bs + 1, bs)]
    return DataLoader(dataset, batch_sampler=batches[skip:], collate_fn=collate, num_workers=run.num_workers,
                      generator=torch.Generator().manual_seed(run.seed + epoch))
