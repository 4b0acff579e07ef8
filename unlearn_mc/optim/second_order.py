"""What an optimiser needs from the training loop: its order, and whether its backward must keep the graph."""

from __future__ import annotations

from typing import Literal

from torch.optim import Optimizer

# pytorch-optimizer's optimisers that estimate the Hessian diagonal themselves by Hutchinson's
# method, ĥ = z ⊙ (∇²L·z), from the gradients' graph (loss.backward(create_graph=True))
HUTCHINSON_OPTIMIZERS = {"SophiaH", "AdaHessian"}


def _unwrap(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # LightningOptimizer wraps the torch optimiser


def _hutchinson(optimizer: Optimizer) -> bool:
    cls = type(optimizer)
    return cls.__name__ in HUTCHINSON_OPTIMIZERS and cls.__module__.startswith("pytorch_optimizer")


def needs_create_graph(optimizer: Optimizer) -> bool:
    """Whether the coming ``step`` of ``optimizer`` needs Hessian-vector products, i.e. ``backward(create_graph=True)``.

    An optimiser says so with a ``needs_create_graph`` attribute (a bool or a method). pytorch-optimizer's
    ``SophiaH`` and ``AdaHessian`` estimate the Hessian at steps s with (s − 1) mod ``update_period`` = 0
    (s counted from 1), so the graph is kept on those steps only.
    """
    optimizer = _unwrap(optimizer)
    declared = getattr(optimizer, "needs_create_graph", None)
    if declared is not None:
        return bool(declared() if callable(declared) else declared)
    if _hutchinson(optimizer):
        steps_done = optimizer.param_groups[0].get("step", 0)
        return int(steps_done) % int(getattr(optimizer, "update_period", 1)) == 0
    return False


def optimizer_order(optimizer: Optimizer) -> Literal["first", "second"]:
    """``second`` for optimisers that precondition with curvature (``second_order = True``, e.g. SophiaG, or a Hutchinson one), else ``first``."""
    optimizer = _unwrap(optimizer)
    if getattr(optimizer, "second_order", False) or _hutchinson(optimizer) or getattr(optimizer, "needs_create_graph", None) is not None:
        return "second"
    return "first"
