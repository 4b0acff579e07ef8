"""One network run at many points of a plane, K points per forward: θ = c_A·θ_A + c_B·θ_B + c_C·θ_C.

The network is built once. Its tensors follow the rules of ``unlearn_mc.curves.layout``: the bent ones (parameters
with ``requires_grad``) are the rows of one (3, P) fp32 matrix M, and K points are the rows of C·M for coefficients
C (K × 3), in one matrix product (a row e_j gives θ_j exactly); frozen parameters and other buffers are shared when
the three models agree, else combined with the same coefficients; BatchNorm statistics are recalibrated at every
point with ``recalibrate_batchnorm``, as along a curve. ``torch.func.vmap`` over the stacked tensors runs the K
points on the same inputs in one forward (the BatchNorm statistics are stacked too, so each point recalibrates its
own); a network vmap cannot run is evaluated one point after another with the same tensors.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import vmap
from torch.nn.modules.batchnorm import _BatchNorm

from unlearn_mc.curves.evaluate_curve import labelled
from unlearn_mc.curves.layout import FlatLayout
from unlearn_mc.curves.point import PointForward
from unlearn_mc.data.batches import call_with
from unlearn_mc.errors import UnlearnMCError, one_sentence
from unlearn_mc.evaluation.batchnorm import recalibrate_batchnorm
from unlearn_mc.evaluation.metrics import UnlearningMetrics


def default_points_per_batch(size: int) -> int:
    """K = min(16, ⌊2²⁶ / P⌋), at least 1: up to 16 points per forward while the K stacked weight vectors take at most
    256 MB (P = number of bent values)."""
    return max(1, min(16, (1 << 26) // max(size, 1)))


class PlaneNetwork:
    """``net`` at points of the plane through the three models ``states`` (state_dicts of ``net``)."""

    def __init__(self, net: nn.Module, states: Sequence[Mapping[str, Tensor]], names: Sequence[str]) -> None:
        net = copy.deepcopy(net)
        self.layout = FlatLayout(net)
        self.matrix = torch.stack([self.layout.flatten(state) for state in states])  # (3, P) fp32
        self.varying: dict[str, tuple[tuple[str, ...], Tensor, torch.dtype]] = {}  # fixed tensors the models disagree on: (3, …) float64
        for tensor in self.layout.fixed:
            if tensor.name not in states[0]:
                continue  # non-persistent: the architecture's own, shared
            values = [state[tensor.name] for state in states]
            if all(torch.equal(values[0], value) for value in values[1:]):
                continue
            if not values[0].is_floating_point():
                raise UnlearnMCError(f"{'parameter' if tensor.is_parameter else 'buffer'} {tensor.name!r} differs between models "
                                     f"{', '.join(map(repr, names))} and is not floating point, so it cannot be combined on a plane.")
            self.varying[tensor.name] = (tensor.aliases, torch.stack([value.to(torch.float64) for value in values]), values[0].dtype)
        net.load_state_dict(states[0])  # the shared tensors; every other one is passed at each call
        self.statistics = [(f"{name}.{leaf}" if name else leaf, getattr(module, leaf))
                           for name, module in net.named_modules() if isinstance(module, _BatchNorm) and module.track_running_stats
                           for leaf in ("running_mean", "running_var")]
        self.net = net.eval()
        self.vmap_error: str | None = None

    @property
    def has_batchnorm(self) -> bool:
        return bool(self.statistics)

    def to(self, device: torch.device) -> PlaneNetwork:
        self.net.to(device)
        self.matrix = self.matrix.to(device)
        self.varying = {name: (aliases, values.to(device), dtype) for name, (aliases, values, dtype) in self.varying.items()}
        self.statistics = [(name, value.to(device)) for name, value in self.statistics]
        return self

    def tensors(self, coefficients: np.ndarray) -> dict[str, Tensor]:
        """The tensors of K points under every name, stacked (K, …): bent ones = rows of C·M (fp32), differing fixed
        ones = Σ_j c_j·value_j (float64, cast back), BatchNorm statistics reset (mean 0, variance 1) for recalibration."""
        device = self.matrix.device
        c64 = torch.as_tensor(np.asarray(coefficients), dtype=torch.float64, device=device)
        flat = c64.to(torch.float32) @ self.matrix
        chunks = flat.split(self.layout.train_sizes + self.layout.frozen_sizes, dim=1)
        tensors = {}
        for slot, chunk in zip(self.layout.slots, chunks):
            value = chunk.reshape(len(c64), *slot.shape)
            tensors.update({alias: value for alias in slot.names})
        for aliases, values, dtype in self.varying.values():
            value = torch.tensordot(c64, values, dims=1).to(dtype)
            tensors.update({alias: value for alias in aliases})
        for name, statistic in self.statistics:
            fill = torch.zeros if name.endswith("running_mean") else torch.ones
            tensors[name] = fill(len(c64), *statistic.shape, dtype=statistic.dtype, device=device)
        return tensors

    def function(self, tensors: dict[str, Tensor], vmapped: bool) -> Callable[..., Tensor]:
        """inputs → logits of shape (K, batch, classes) at the K points of ``tensors`` (vmapped, or K = 1 without vmap)."""
        if vmapped:
            return lambda *args, **kwargs: vmap(lambda point: PointForward(self.net, point, {}, {})(*args, **kwargs))(tensors)
        single = {name: value[0] for name, value in tensors.items()}
        return lambda *args, **kwargs: PointForward(self.net, single, {}, {})(*args, **kwargs)[None]

    @torch.no_grad()
    def evaluate_chunk(self, coefficients: np.ndarray, loaders: Mapping, bn_loader, bn_batches: int | None,
                       vmapped: bool, label_key=None, loss_attack: bool = True, mia_seed: int = 0) -> list[dict[str, float]]:
        """``UnlearningMetrics`` of each of K points, after recalibrating each point's BatchNorm statistics over
        ``bn_loader`` (at most ``bn_batches`` batches), the cumulative average μ = (1/B)·Σ_b μ_b, σ² = (1/B)·Σ_b σ²_b."""
        device = self.matrix.device
        forward = self.function(self.tensors(coefficients), vmapped)
        if bn_loader is not None and self.has_batchnorm:
            recalibrate_batchnorm(self.net, bn_loader, forward=forward, num_batches=bn_batches, device=device, label_key=label_key)
        metrics = [UnlearningMetrics(mia_seed, sync=False, loss_attack=loss_attack) for _ in range(len(coefficients))]
        for split, loader in labelled(loaders, label_key).items():
            for inputs, targets in loader:
                logits, targets = call_with(forward, inputs.to(device)), targets.to(device)
                for point, metric in enumerate(metrics):
                    metric.update(split, logits[point], targets)
        return [metric.compute() for metric in metrics]

    def evaluate(self, coefficients: np.ndarray, loaders: Mapping, bn_loader, bn_batches: int | None, points_per_batch: int,
                 label_key=None, loss_attack: bool = True, progress: Callable[[int], None] = lambda count: None) -> list[dict[str, float]]:
        """The metrics at every point (rows of ``coefficients``), ``points_per_batch`` per forward through vmap; when the
        first vmapped forward fails, every point is evaluated on its own (``vmap_error`` says why)."""
        rows: list[dict[str, float]] = []
        vmapped = points_per_batch > 1
        while len(rows) < len(coefficients):
            chunk = coefficients[len(rows):len(rows) + (points_per_batch if vmapped else 1)]
            try:
                rows += self.evaluate_chunk(chunk, loaders, bn_loader, bn_batches, vmapped, label_key, loss_attack)
            except Exception as error:  # noqa: BLE001 - vmap's limits are many; the plain loop then raises any real error again
                if not vmapped or rows or isinstance(error, UnlearnMCError):
                    raise
                vmapped, self.vmap_error = False, one_sentence(f"{type(error).__name__}: {error}")
                continue
            progress(len(chunk))
        return rows
