"""Splitting evaluation data between processes without duplicating any sample."""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Subset


class UnpaddedDistributedSampler(DistributedSampler):
    """Process ``rank`` of ``num_replicas`` reads samples rank, rank + num_replicas, rank + 2·num_replicas, … in order.

    ``DistributedSampler`` pads every process to the same length by repeating samples, which biases
    gathered metrics; this one does not, so the union over processes is exactly the dataset (the
    processes may then run different numbers of batches, which evaluation allows). Being a
    ``DistributedSampler``, Lightning keeps it instead of inserting its own.
    """

    def __init__(self, dataset: Sized, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))


def distributed_eval_loader(loader: DataLoader) -> DataLoader:
    """``loader`` with an ``UnpaddedDistributedSampler`` when torch.distributed runs with several processes, else ``loader``."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return loader
    sampler = UnpaddedDistributedSampler(loader.dataset, dist.get_world_size(), dist.get_rank())
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler, num_workers=loader.num_workers,
                      persistent_workers=loader.persistent_workers, collate_fn=loader.collate_fn)


def shard_loader(loader: DataLoader, rank: int, world_size: int) -> DataLoader:
    """A loader over samples rank, rank + world_size, rank + 2·world_size, … of ``loader``'s dataset (nothing padded).

    Same batch size and workers; used where evaluation runs outside Lightning's loops (along a curve).
    """
    dataset = loader.dataset
    indices = list(range(rank, len(dataset), world_size))
    return DataLoader(Subset(dataset, indices), batch_size=loader.batch_size, shuffle=False, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn)
