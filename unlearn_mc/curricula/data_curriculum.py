"""A data-ordering curriculum: a training stream ranked by a model's per-sample loss and released in stages."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torch.utils.data import DataLoader

from unlearn_mc.checkpoints import load_network_weights
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.models.frozen import frozen_copy
from unlearn_mc.models.modes import module_mode

ORDERS = ("easy_to_hard", "hard_to_easy")


def stage_of_epoch(epoch: int, stages: int, max_epochs: int | None = None, epochs_per_stage: int | None = None) -> int:
    """The stage k ∈ {1 … K} of epoch e (from 0): min(K, ⌊e / epochs_per_stage⌋ + 1), or, spreading
    ``max_epochs`` E evenly, min(K, ⌊e·K / E⌋ + 1)."""
    if epochs_per_stage is not None:
        return min(stages, epoch // epochs_per_stage + 1)
    if not max_epochs or max_epochs < 1:
        raise UnlearnMCError("DataCurriculum needs trainer.max_epochs ≥ 1 to spread its stages, or epochs_per_stage.")
    return min(stages, epoch * stages // max_epochs + 1)


def released_positions(ranking: Sequence[int], stage: int, stages: int) -> list[int]:
    """The first ⌈k·n/K⌉ positions of ``ranking`` (easiest first for easy→hard) at stage k of K, sorted."""
    count = math.ceil(stage * len(ranking) / stages)
    return sorted(int(position) for position in ranking[:count])


@torch.no_grad()
def per_sample_losses(forward: nn.Module, loader: DataLoader, device: torch.device) -> Tensor:
    """ℓ_i = −log softmax(f(x_i))[y_i] for every sample of ``loader``, in its order (fp32, no autocast)."""
    losses = []
    for inputs, targets in loader:
        with torch.autocast(device_type=device.type, enabled=False):
            logits = forward(inputs.to(device)).float()
        losses.append(F.cross_entropy(logits, targets.to(device), reduction="none").cpu())
    return torch.cat(losses) if losses else torch.zeros(0)


def rank_by_loss(losses: Tensor, order: str) -> list[int]:
    """Positions sorted by loss, ascending for ``easy_to_hard`` and descending for ``hard_to_easy``; ties keep their order."""
    return torch.sort(losses, descending=order == "hard_to_easy", stable=True).indices.tolist()


class DataCurriculum(L.Callback):
    """Releases each chosen training stream in K stages, ordered by a model's per-sample loss.

    At fit start the stream is scored once, without augmentation, by the cross-entropy
    ℓ_i of ``checkpoint`` if given, else of the module's own model as it starts training (for an
    unlearning method: the original model) in eval mode, and ranked (easy→hard: ascending ℓ).
    At epoch e of stage k = ``stage_of_epoch(e)`` the DataModule serves the first ⌈k·n/K⌉ ranked
    samples, shuffled as usual; the last stage serves the whole stream. The ranking is saved in
    the checkpoint, so a resumed run keeps it. The DataModule must offer ``scoring_dataset`` and
    ``stream_schedules`` (``UnlearningDataModule`` does); ``trainer.reload_dataloaders_every_n_epochs``
    is set to 1 when left at 0.

    Args:
        streams: streams to order (``None``: every stream the module trains on).
        stages: K ≥ 1.
        order: ``easy_to_hard`` or ``hard_to_easy``.
        epochs_per_stage: epochs per stage before the last; ``None`` spreads ``max_epochs`` evenly.
        checkpoint: the scoring model's weights (for the module's ``net``); ``None``: the module itself.
        batch_size: batch size of the scoring pass.
    """

    def __init__(
        self,
        streams: list[str] | None = None,
        stages: int = 3,
        order: Literal["easy_to_hard", "hard_to_easy"] = "easy_to_hard",
        epochs_per_stage: int | None = None,
        checkpoint: str | None = None,
        batch_size: int = 256,
    ) -> None:
        super().__init__()
        if isinstance(stages, bool) or not isinstance(stages, int) or stages < 1:
            raise UnlearnMCError(f"DataCurriculum stages={stages!r} must be a positive integer.")
        if order not in ORDERS:
            raise UnlearnMCError(f"DataCurriculum order={order!r} is not an order; use 'easy_to_hard' or 'hard_to_easy'.")
        if epochs_per_stage is not None and epochs_per_stage < 1:
            raise UnlearnMCError(f"DataCurriculum epochs_per_stage={epochs_per_stage!r} must be at least 1 (or null to spread max_epochs).")
        self.streams = streams
        self.stages = stages
        self.order = order
        self.epochs_per_stage = epochs_per_stage
        self.checkpoint = checkpoint
        self.batch_size = batch_size
        self.rankings: dict[str, list[int]] = {}
        self._max_epochs: int | None = None

    def describe(self) -> dict:
        """The settings, for the run's recorded training dynamics."""
        return {"streams": self.streams, "stages": self.stages, "order": self.order, "epochs_per_stage": self.epochs_per_stage}

    def stage(self, epoch: int) -> int:
        return stage_of_epoch(epoch, self.stages, self._max_epochs, self.epochs_per_stage)

    def released(self, stream: str, epoch: int) -> list[int]:
        """Positions within ``stream`` served at ``epoch``."""
        return released_positions(self.rankings[stream], self.stage(epoch), self.stages)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule
        if not (hasattr(datamodule, "scoring_dataset") and hasattr(datamodule, "stream_schedules")):
            raise UnlearnMCError(
                f"DataCurriculum needs a DataModule with scoring_dataset() and stream_schedules, such as UnlearningDataModule; got {type(datamodule).__name__}."
            )
        if trainer.reload_dataloaders_every_n_epochs == 0:
            trainer.reload_dataloaders_every_n_epochs = 1
            rank_zero_info("DataCurriculum: reloading the training data every epoch (reload_dataloaders_every_n_epochs=1).")
        elif trainer.reload_dataloaders_every_n_epochs != 1:
            raise UnlearnMCError(
                f"DataCurriculum releases new samples each epoch, but trainer.reload_dataloaders_every_n_epochs="
                f"{trainer.reload_dataloaders_every_n_epochs}; set it to 1 (or leave it at 0)."
            )
        self._max_epochs = trainer.max_epochs
        if self.epochs_per_stage is None:
            self.stage(0)  # fails now, clearly, without max_epochs

    def _scorer(self, pl_module: L.LightningModule) -> nn.Module:
        if self.checkpoint is None:
            return pl_module
        net = getattr(pl_module, "net", None)
        if not isinstance(net, nn.Module):
            raise UnlearnMCError(f"DataCurriculum checkpoint={self.checkpoint!r} needs a module with a `net` to load it into; {type(pl_module).__name__} has none.")
        return load_network_weights(frozen_copy(net), self.checkpoint).to(pl_module.device)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        streams = self.streams or list(datamodule.requested_streams() if hasattr(datamodule, "requested_streams") else getattr(pl_module, "train_streams", ("full",)))
        missing = [stream for stream in streams if stream not in self.rankings]
        if missing:
            scorer = self._scorer(pl_module)
            with module_mode(scorer, training=False):
                for stream in missing:
                    collate = getattr(getattr(datamodule, "source", None), "collate_fn", None)
                    loader = DataLoader(datamodule.scoring_dataset(stream), batch_size=self.batch_size, shuffle=False, collate_fn=collate)
                    self.rankings[stream] = rank_by_loss(per_sample_losses(scorer, loader, pl_module.device), self.order)
        for stream in streams:
            datamodule.stream_schedules[stream] = partial(self.released, stream)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log("curriculum/stage", float(self.stage(trainer.current_epoch)), on_step=False, on_epoch=True)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        schedules = getattr(trainer.datamodule, "stream_schedules", None)
        if schedules:
            for stream in list(schedules):
                if getattr(schedules[stream], "func", None) == self.released:
                    del schedules[stream]

    def state_dict(self) -> dict:
        return {"rankings": {stream: list(ranking) for stream, ranking in self.rankings.items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rankings = {str(stream): [int(p) for p in ranking] for stream, ranking in dict(state_dict.get("rankings", {})).items()}
