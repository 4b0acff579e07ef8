"""Base training: the original model (on D = D_f ∪ D_r) and the retrain reference (on D_r only)."""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from unlearn_mc.data.batches import stream_batches
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.evaluation.sequence import cross_entropy_per_sample
from unlearn_mc.evaluation.lightning_hooks import EvaluatesUnlearning
from unlearn_mc.optim.configure import build_optimizers
from unlearn_mc.dynamics.hooks import DynamicsHooks
from unlearn_mc.resume import ResumesRandomness

STAGE_STREAMS = {"original": ("full",), "retrain": ("retain",)}


class BaseTraining(ResumesRandomness, DynamicsHooks, EvaluatesUnlearning):
    """Minimises the mean cross-entropy (1/|B|)·Σ_i −log softmax(net(x_i))[y_i] on the stage's stream.

    ``stage='original'`` trains on ``full`` (D), ``stage='retrain'`` on ``retain`` (D_r): the
    exact-unlearning reference that never saw D_f. Validation logs the ``val/*`` unlearning metrics.

    Args:
        net: any classifier ``nn.Module`` mapping inputs to logits.
        stage: ``original`` or ``retrain``.
        optimizer: optimiser factory, e.g. ``torch.optim.SGD`` with its init args.
        lr_scheduler: optional scheduler factory, stepped each epoch.
        label_smoothing: passed to the cross-entropy.
        curriculum: optional per-sample reweighting of the loss (e.g. ``unlearn_mc.curricula.SuperLoss``),
            called as ``curriculum(per_sample_losses, "train")``.
    """

    def __init__(
        self,
        net: nn.Module,
        stage: Literal["original", "retrain"] = "original",
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        label_smoothing: float = 0.0,
        curriculum: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if stage not in STAGE_STREAMS:
            raise UnlearnMCError(f"stage={stage!r} is not a base-training stage; use 'original' or 'retrain'.")
        self.save_hyperparameters(ignore=["net", "optimizer", "lr_scheduler", "curriculum"])
        self.net = net
        self.stage = stage
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.label_smoothing = label_smoothing
        self.curriculum = curriculum

    @property
    def train_streams(self) -> tuple[str, ...]:
        return STAGE_STREAMS[self.stage]

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def eval_logits(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        inputs, targets = stream_batches(batch, self.train_streams)[self.train_streams[0]]
        per_sample = cross_entropy_per_sample(self.net(inputs), targets, self.label_smoothing)
        loss = self.curriculum(per_sample, "train") if self.curriculum is not None else per_sample.mean()
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True, batch_size=len(targets))
        return loss

    def configure_optimizers(self):
        return build_optimizers(self.optimizer, self.lr_scheduler, self.net.parameters())
