"""``ServesLoaders``: the loaders of ``UnlearningDataModule``, built from its datasets and loader settings."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset

from unlearn_mc.data.sharding import distributed_eval_loader


class ServesLoaders(L.LightningDataModule):
    """A LightningDataModule mixin: the training loader of the requested streams and the evaluation loaders.

    The DataModule supplies ``train_dataset(stream)``, ``eval_datasets()``, ``source.collate_fn`` and the
    settings ``train_streams``, ``combined_mode``, ``batch_size``, ``eval_batch_size`` and ``num_workers``.
    """

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.source.collate_fn,
        )

    def requested_streams(self) -> tuple[str, ...]:
        """The training streams to serve: this module's override, else the LightningModule's declaration, else ``full``."""
        if self.train_streams:
            return tuple(self.train_streams)
        module = self.trainer.lightning_module if self.trainer is not None else None
        return tuple(getattr(module, "train_streams", ("full",)))

    def train_dataloader(self):
        streams = self.requested_streams()
        loaders = {name: self._loader(self.train_dataset(name), train=True) for name in streams}
        if len(loaders) == 1:
            return next(iter(loaders.values()))
        return CombinedLoader(loaders, mode=self.combined_mode)

    def eval_dataloaders(self) -> dict[str, DataLoader]:
        """Evaluation loaders by split name (no augmentation, no shuffling)."""
        return {name: self._loader(dataset, train=False) for name, dataset in self.eval_datasets().items()}

    def val_dataloader(self) -> list[DataLoader]:
        """The evaluation loaders; under DDP each process reads its share of every split, none repeated."""
        return [distributed_eval_loader(loader) for loader in self.eval_dataloaders().values()]

    def test_dataloader(self) -> list[DataLoader]:
        return self.val_dataloader()
