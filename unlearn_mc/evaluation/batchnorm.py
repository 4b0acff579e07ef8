"""BatchNorm recalibration: recompute running statistics for the weights a model has now.

Weights that were never trained as such (a point φ(t) of a curve, an average of models) come
without matching BatchNorm statistics. ``recalibrate_batchnorm`` resets them and recomputes them
as a cumulative average over a dataset, exactly as ``torch.optim.swa_utils.update_bn`` does, and
additionally combines the averages of all processes under DDP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from unlearn_mc.data.batches import DEFAULT_LABEL_KEYS, ModelInputs, call_with, split_batch


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of ``model`` that track running statistics."""
    return [module for module in model.modules() if isinstance(module, _BatchNorm) and module.track_running_stats]


def _inputs(batch, label_key: str | int | None = None):
    """The network inputs of a recalibration batch: a bare tensor or ``(x,)`` gives x; other batches the inputs of
    ``split_batch`` (a dict without labels: all its entries as keyword arguments)."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and len(batch) == 1:
        return batch[0]
    if isinstance(batch, Mapping) and not any(key in batch for key in (label_key, *DEFAULT_LABEL_KEYS)):
        return ModelInputs((), dict(batch))
    return split_batch(batch, label_key)[0]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def _average_across_processes(layers: list[_BatchNorm], local_batches: int, device: torch.device) -> int:
    """μ = Σ_p n_p·μ_p / Σ_p n_p (same for σ²), n_p the batches process p averaged over."""
    count = torch.tensor(float(local_batches), device=device)
    dist.all_reduce(count)
    total = int(count.item())
    if total == 0:
        return 0
    for layer in layers:
        for stat in (layer.running_mean, layer.running_var):
            weighted = stat.float() * local_batches
            dist.all_reduce(weighted)
            stat.copy_(weighted / total)
        layer.num_batches_tracked.fill_(total)
    return total


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    loader: Iterable,
    forward: Callable[..., Tensor] | None = None,
    num_batches: int | None = None,
    device: torch.device | str | None = None,
    label_key: str | int | None = None,
) -> int:
    """Reset the running statistics of every BatchNorm layer of ``model`` and recompute them.

    With momentum ``None`` each layer keeps the cumulative average over the batches b = 1 … B
    of the batch statistics: μ = (1/B)·Σ_b μ_b and σ² = (1/B)·Σ_b σ²_b (unbiased σ²_b), which is
    what ``torch.optim.swa_utils.update_bn`` computes. Only the BatchNorm layers are switched to
    training mode during the pass (dropout and the like stay as they are); modes and momenta are
    restored afterwards. Under DDP each process passes over its own batches and the averages are
    combined weighted by batch counts.

    Args:
        model: the module whose BatchNorm layers are recalibrated.
        loader: batches of inputs, ``(inputs, targets)`` pairs, or any batch ``split_batch`` splits
            (a dict's entries other than the labels are passed as keyword arguments).
        forward: the function to run on the inputs (default ``model``), e.g. a curve at a fixed t.
        num_batches: use at most this many batches per process (``None``: all of them).
        device: where the inputs go (default: the device of the first BatchNorm buffer).
        label_key: where the labels of a batch are (see ``unlearn_mc.data.batches.split_batch``).

    Returns:
        the number of batches averaged (over all processes).
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    device = torch.device(device) if device is not None else layers[0].running_mean.device
    forward = model if forward is None else forward
    saved = [(layer, layer.momentum, layer.training) for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
        layer.train()
    seen = 0
    try:
        for batch in loader:
            if num_batches is not None and seen >= num_batches:
                break
            call_with(forward, _inputs(batch, label_key).to(device))
            seen += 1
    finally:
        for layer, momentum, training in saved:
            layer.momentum = momentum
            layer.train(training)
    if _distributed():
        return _average_across_processes(layers, seen, device)
    return seen
