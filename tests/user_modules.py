"""A user's own DataModules, as the CLI tests load them by class path (``user_modules.<Name>``)."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


def _digits_like(count: int = 64) -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(count, 1, 8, 8, generator=generator), torch.randint(0, 10, (count,), generator=generator))


class OnlyValidation(L.LightningDataModule):
    """Serves evaluation loaders (forget, retain, test) but no training loader."""

    def val_dataloader(self):
        return [DataLoader(_digits_like(), batch_size=32) for _ in range(3)]


class PlainBatches(OnlyValidation):
    """Serves plain ``(x, y)`` training batches, not the dict of streams a two-stream method needs."""

    def train_dataloader(self):
        return DataLoader(_digits_like(), batch_size=32)
