"""The data a curve is evaluated on during a Lightning run: the DataModule's evaluation loaders and the BatchNorm split."""

from __future__ import annotations

from collections.abc import Mapping

from torch.utils.data import DataLoader

from unlearn_mc.data.sharding import shard_loader
from unlearn_mc.errors import UnlearnMCError


def evaluation_loaders(trainer, shard: bool = True) -> dict[str, DataLoader]:
    """The evaluation loaders (no augmentation) of the Trainer's DataModule, by split name; under DDP, with ``shard``,
    each process's share (``shard_loader``)."""
    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    if datamodule is None or not hasattr(datamodule, "eval_dataloaders"):
        raise UnlearnMCError("the curve needs a DataModule with eval_dataloaders() (such as UnlearningDataModule) to evaluate along t.")
    loaders = datamodule.eval_dataloaders()
    if shard and trainer.world_size > 1:
        loaders = {name: shard_loader(loader, trainer.global_rank, trainer.world_size) for name, loader in loaders.items()}
    return loaders


def bn_loader(loaders: Mapping[str, DataLoader], split: str) -> DataLoader:
    """The loader of ``split``, over which BatchNorm is recalibrated (a module's ``bn_split``)."""
    if split not in loaders:
        raise UnlearnMCError(f"bn_split={split!r} is not an evaluation split; use one of {', '.join(loaders)}.")
    return loaders[split]
