"""Turning the ``optimizer`` / ``lr_scheduler`` callables of a config into Lightning's return value."""

from __future__ import annotations

from collections.abc import Iterable

from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from unlearn_mc.errors import UnlearnMCError


def build_optimizers(optimizer: OptimizerCallable, lr_scheduler: LRSchedulerCallable | None, parameters: Iterable[nn.Parameter]):
    """``optimizer(params)`` and, if given, ``lr_scheduler(optimizer)`` stepped once per epoch."""
    parameters = [p for p in parameters if p.requires_grad]
    if not parameters:
        raise UnlearnMCError("nothing to train: the module has no parameter that requires a gradient.")
    built = optimizer(parameters)
    if lr_scheduler is None:
        return built
    return {"optimizer": built, "lr_scheduler": {"scheduler": lr_scheduler(built), "interval": "epoch"}}
