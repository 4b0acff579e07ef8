"""The Gauss–Newton–Bartlett (GNB) estimate of the Hessian diagonal, and the callback that feeds it to SophiaG."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.batchnorm import _NormBase

from unlearn_mc.data.padding import cat_padded
from unlearn_mc.errors import UnlearnMCError


def gauss_newton_bartlett(
    forward: Callable[[Tensor], Tensor],
    inputs: Tensor,
    parameters: Sequence[Tensor],
    average: Callable[[Tensor], Tensor] | None = None,
    world_size: int = 1,
) -> list[Tensor]:
    """ĥ = B·ĝ⊙ĝ per parameter, with ĝ = ∇_θ (1/B)·Σ_i CE(f(x_i), ŷ_i) and ŷ_i ~ Categorical(softmax(f(x_i))).

    An unbiased estimate of the Gauss–Newton diagonal of the cross-entropy (Liu et al. 2024, Alg. 2).
    The logits are computed in fp32 with autocast off; ``.grad`` is left untouched (``autograd.grad``).
    Across ``world_size`` processes, ``average`` (an all-reduce mean) turns ĝ into the gradient of
    the global batch, whose size is B·world_size.
    """
    with torch.enable_grad(), torch.autocast(device_type=inputs.device.type, enabled=False):
        logits = forward(inputs).float()
        sampled = torch.distributions.Categorical(logits=logits.detach()).sample()
        loss = F.cross_entropy(logits, sampled)
        grads = torch.autograd.grad(loss, list(parameters), allow_unused=True)
    batch = inputs.shape[0] * world_size
    estimates = []
    for p, grad in zip(parameters, grads):
        grad = torch.zeros_like(p) if grad is None else grad.detach()
        if average is not None:
            grad = average(grad)
        estimates.append(batch * grad * grad)
    return estimates


def batch_inputs(batch, streams: Sequence[str] | None = None) -> Tensor:
    """The inputs of a training batch: ``x`` of an ``(x, y)`` batch, or the ``x`` of the chosen streams of a dict batch, concatenated."""
    if isinstance(batch, Mapping):
        names = list(streams) if streams else list(batch)
        missing = [name for name in names if name not in batch]
        if missing:
            raise UnlearnMCError(f"GaussNewtonBartlett streams={list(streams)} name stream(s) {missing} that the batch does not have; it has {list(batch)}.")
        return cat_padded([batch[name][0] for name in names])
    return batch[0]


class GaussNewtonBartlett(L.Callback):
    """Refreshes the Hessian of every optimiser with ``update_hessian`` (``SophiaG``) every ``update_period`` steps.

    At each optimiser step s = 0, k, 2k, … (k the optimiser's ``update_period``), before the update
    of that step, the module's forward is run on the step's training batch and the optimiser
    receives the GNB estimate ĥ = B·ĝ⊙ĝ (see ``gauss_newton_bartlett``): h ← β₂·h + (1 − β₂)·ĥ.
    BatchNorm running statistics are restored after that extra forward pass, so it changes
    nothing but h. Under DDP ĝ is averaged over the processes. The refresh time is given to a module
    with ``record_runtime`` (an unlearning method) as its ``hessian_s`` term, so it counts in
    ``unlearn/runtime_s`` and is logged on its own as ``unlearn/hessian_s``.

    Args:
        streams: the training streams whose inputs form the batch (``None``: every stream of the batch).
    """

    def __init__(self, streams: list[str] | None = None) -> None:
        super().__init__()
        self.streams = streams
        self._refreshed_at: int | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if self._refreshed_at == step:  # gradient accumulation: one refresh per optimiser step
            return
        optimizers = [o for o in trainer.optimizers if callable(getattr(o, "update_hessian", None)) and step % o.update_period == 0]
        if not optimizers:
            return
        self._refreshed_at = step
        inputs = batch_inputs(batch, self.streams)
        average = (lambda t: trainer.strategy.reduce(t, reduce_op="mean")) if trainer.world_size > 1 else None
        norms = [m for m in pl_module.modules() if isinstance(m, _NormBase)]
        buffers = [(b, b.detach().clone()) for m in norms for b in m.buffers(recurse=False)]
        started = time.perf_counter()
        try:
            for optimizer in optimizers:
                optimizer.update_hessian(gauss_newton_bartlett(pl_module, inputs, optimizer.hessian_parameters(), average, trainer.world_size))
        finally:
            with torch.no_grad():
                for buffer, saved in buffers:
                    buffer.copy_(saved)
        record_runtime = getattr(pl_module, "record_runtime", None)
        if callable(record_runtime):
            record_runtime("hessian_s", time.perf_counter() - started)
