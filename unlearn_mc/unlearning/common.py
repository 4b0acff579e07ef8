"""Pieces shared by several unlearning methods: per-sample loss terms, frozen reference
networks that stay in eval mode, reading the weights (and the mode) behind a ``forward``,
and the length of the training forget loader."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from unlearn_mc.data.padding import cat_padded
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.evaluation.sequence import cross_entropy_per_sample, kl_per_sample  # noqa: F401  (re-exported for the methods)
from unlearn_mc.unlearning.base import UnlearningModule, frozen_copy




def joint_logits(forward: Callable[[Tensor], Tensor], *inputs: Tensor) -> tuple[Tensor, ...]:
    """The logits of several input batches from ONE call of ``forward`` on their concatenation.

    Methods whose papers train on a mixed forget ∪ retain batch use it, so that BatchNorm in
    training mode normalises forget and retain samples with shared batch statistics (a forget
    batch alone, e.g. one class under class forgetting, would be normalised by its own). Token
    batches of different lengths are right-padded to a common length first (``cat_padded``).
    """
    logits = forward(cat_padded(inputs))
    return tuple(logits.split([len(x) for x in inputs]))


def forward_parameters(forward: Callable[[Tensor], Tensor]) -> list[Tensor]:
    """The trainable weights θ of the model behind ``forward``, for terms such as ‖θ‖₁.

    ``forward`` is an ``nn.Module`` (its ``parameters()``), or any callable that carries its
    weights as a ``parameters`` method returning tensors, or as a ``params`` mapping
    name → tensor (e.g. the weights a curve passes to ``torch.func.functional_call``).
    """
    if isinstance(forward, nn.Module):
        return [p for p in forward.parameters() if p.requires_grad]
    parameters = getattr(forward, "parameters", None)
    if callable(parameters):
        return list(parameters())
    params = getattr(forward, "params", None)
    if isinstance(params, Mapping):
        return list(params.values())
    raise UnlearnMCError(
        f"this loss needs the weights of the model behind forward={forward!r}; pass an nn.Module, or a callable "
        "with a `parameters()` method or a `params` mapping of its weights."
    )


def forward_is_training(forward: Callable[[Tensor], Tensor], default: bool) -> bool:
    """Whether the model behind ``forward`` is in training mode: ``forward.training`` for an ``nn.Module``,
    ``forward.net.training`` for a callable carrying its module as ``net`` (a curve's ``PointForward``
    at φ(t)), else ``default``."""
    if isinstance(forward, nn.Module):
        return forward.training
    net = getattr(forward, "net", None)
    if isinstance(net, nn.Module):
        return net.training
    return default


@contextmanager
def batch_statistics(net: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every BatchNorm layer of ``net`` normalises with the statistics of the batch it
    is given, as it does in training mode, and leaves its running statistics untouched; every other
    layer keeps its mode (a frozen reference stays in eval mode: no dropout).

    It is how a frozen reference is evaluated "in the student's mode" on a batch: with equal weights,
    its outputs then equal the training-mode student's, bit for bit.
    """
    layers = [m for m in net.modules() if isinstance(m, _BatchNorm)]
    saved = [(m.training, m.track_running_stats) for m in layers]
    try:
        for m in layers:
            # training mode without tracking: F.batch_norm gets no running statistics, so it uses
            # the batch's and updates nothing
            m.training, m.track_running_stats = True, False
        yield net
    finally:
        for m, (training, tracking) in zip(layers, saved):
            m.training, m.track_running_stats = training, tracking


def forget_loader_length(trainer) -> int | None:
    """The number of batches of the trainer's training ``forget`` loader, or None if it has none or it is unsized."""
    loaders = getattr(trainer, "train_dataloader", None)
    if isinstance(loaders, Mapping) and "forget" in loaders:
        try:
            return len(loaders["forget"])
        except TypeError:
            return None
    return None


def randomly_initialised_copy(net: nn.Module, seed: int) -> nn.Module:
    """A frozen copy of ``net`` whose submodules with ``reset_parameters()`` are re-initialised
    from ``torch.manual_seed(seed)`` (the global RNG is left as it was)."""
    fresh = copy.deepcopy(net)
    reset = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
                reset += 1
            if callable(getattr(module, "reset_running_stats", None)):
                module.reset_running_stats()
    if reset == 0:
        raise UnlearnMCError(
            f"cannot build a randomly initialised copy of {type(net).__name__}: none of its submodules has reset_parameters()."
        )
    return frozen_copy(fresh)


class WithFrozenReferences(UnlearningModule):
    """An ``UnlearningModule`` holding frozen reference networks (teachers, the original model).

    A reference is a submodule, so it moves with the module's device and dtype, but its
    parameters never require gradients, the optimiser (built on ``self.net`` only) never
    sees it, and ``train()`` keeps it in eval mode whatever mode the module is put in.
    """

    def add_reference(self, name: str, net: nn.Module) -> nn.Module:
        """Register ``net`` under ``name`` as a frozen, always-eval reference and return it."""
        net = net.eval()
        for parameter in net.parameters():
            parameter.requires_grad_(False)
        setattr(self, name, net)
        self._reference_names = (*getattr(self, "_reference_names", ()), name)
        return net

    def references(self) -> Iterable[nn.Module]:
        return (getattr(self, name) for name in getattr(self, "_reference_names", ()))

    def train(self, mode: bool = True):
        super().train(mode)
        for reference in self.references():
            reference.eval()
        return self
