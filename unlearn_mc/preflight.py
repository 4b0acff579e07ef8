"""Checks run before a ``fit``/``validate``/``test`` writes anything: what Lightning or torch would otherwise
reject later with a traceback (after the log folder exists) is refused here with one sentence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import nn

from unlearn_mc.errors import UnlearnMCError

# Trainer arguments that Lightning accepts at construction and only divides by (or loops over) once running.
_POSITIVE_TRAINER_INTS = ("check_val_every_n_epoch", "accumulate_grad_batches", "log_every_n_steps")
_LOADER_HOOKS = {"fit": "train_dataloader", "validate": "val_dataloader", "test": "test_dataloader"}


def check_trainer_settings(settings: Mapping[str, Any]) -> None:
    """Refuse trainer integers that must be at least 1 (Lightning would divide by zero in the first epoch)."""
    for name in _POSITIVE_TRAINER_INTS:
        value = settings.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise UnlearnMCError(f"trainer.{name}={value} must be at least 1.")


def check_datamodule_serves(datamodule: L.LightningDataModule, stage: str) -> None:
    """Refuse a user's DataModule that lacks the loader ``stage`` needs (``train_dataloader`` for ``fit`` …)."""
    hook = _LOADER_HOOKS[stage]
    if not is_overridden(hook, datamodule, L.LightningDataModule):
        raise UnlearnMCError(f"the DataModule {type(datamodule).__name__} has no {hook}() method, which {stage} needs; define it.")


def _probe_forward(module: L.LightningModule):
    """The callable that maps a batch of inputs to logits: the module's own network where it holds one
    whole (every parameter slot filled), else the module itself (e.g. a curve, which fills its network)."""
    net = getattr(module, "net", None)
    if isinstance(net, nn.Module) and all(p is not None for m in net.modules() for p in m._parameters.values()):
        return net
    return module


@torch.no_grad()
def check_network_takes_data(module: L.LightningModule, sample: torch.Tensor, num_classes: int | None, dataset: str) -> None:
    """Run the network once on two copies of one evaluation sample (modes restored): refuse inputs it cannot
    take (e.g. another channel count) and an output with another number of logits than the data has classes.
    With ``num_classes=None`` (a causal LM's data) the output may also be next-token logits (batch, length, vocab)."""
    forward = _probe_forward(module)
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    inputs = torch.stack([sample, sample]).to(module.device)
    try:
        logits = forward(inputs)
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        reason = str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else type(error).__name__
        name = type(getattr(module, "net", module)).__name__
        raise UnlearnMCError(
            f"the network {name} cannot take the {dataset} inputs of shape {tuple(sample.shape)} per sample ({reason}); "
            "make the net's input settings (e.g. in_channels) match the data."
        ) from None
    finally:
        for m, training in modes:
            m.train(training)
    if num_classes is None and isinstance(logits, torch.Tensor) and logits.ndim == 3 and logits.shape[:2] == (2, len(sample)):
        return
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise UnlearnMCError(f"the network must return logits of shape (batch, classes), but on 2 {dataset} samples it returned {shape}.")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise UnlearnMCError(
            f"the {dataset} labels run from 0 to {num_classes - 1} but the network outputs {logits.shape[1]} logits; "
            f"set the net's num_classes to {num_classes}."
        )
