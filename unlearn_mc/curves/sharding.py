"""Splitting an evaluation loader between processes without duplicating any sample."""

from __future__ import annotations

from torch.utils.data import DataLoader, Subset


def shard_loader(loader: DataLoader, rank: int, world_size: int) -> DataLoader:
    """A loader over samples rank, rank + world_size, rank + 2·world_size, … of ``loader``'s dataset.

    Unlike ``DistributedSampler`` nothing is padded, so the union over processes is exactly the
    dataset (gathered metrics are not biased by repeated samples). Same batch size and workers.
    """
    dataset = loader.dataset
    indices = list(range(rank, len(dataset), world_size))
    return DataLoader(Subset(dataset, indices), batch_size=loader.batch_size, shuffle=False, num_workers=loader.num_workers)
