"""``Curve``: a curve φ(t) between two trained networks, as a plain ``nn.Module`` (no Lightning).

φ(t) = Σ_j c_j(t)·θ_j over the control points θ_0 (``start``), the bends θ_1 … θ_{n−2} and θ_{n−1} (``end``), with
the coefficients c(t) of a curve family (Garipov et al. 2018). The endpoints are buffers and the bends one
``nn.Parameter``, all rows of flat fp32 matrices (``FlatLayout``): φ(t) is three BLAS calls whatever the number of
tensors (``combination.curve_point``, which also writes the bends' gradient in one pass), viewed back per tensor and
run through the network, whose slots are all emptied, with ``torch.func.functional_call``. One rule per kind of tensor
(``layout``, docs/curves.md "Tensors"): trainable parameters are bent; frozen parameters and buffers other than
BatchNorm's follow lerp(θ_0, θ_{n−1}, t), or one shared copy; BatchNorm statistics are each endpoint's own at t = 0 and
1 and recalibrated for any other t (``recalibrate_bn``); a forward in training mode uses batch statistics.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from unlearn_mc.curves.checkpoint import check_loaded, record_missing_calibration
from unlearn_mc.curves.combination import ReusableBuffer, combine_flat, curve_point
from unlearn_mc.curves.control_points import STORES, endpoint_state, fixed_stores, initial_bends, parse_init
from unlearn_mc.curves.families import CurveFamily, build_family
from unlearn_mc.curves.layout import FlatLayout
from unlearn_mc.curves.point import PointForward
from unlearn_mc.curves.slots import empty_slots, filled_copy
from unlearn_mc.curves.stores import TensorStore, t_bits, t_from_bits
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.evaluation.batchnorm import batchnorm_layers, recalibrate_batchnorm


class Curve(nn.Module):
    """φ(t) between the networks ``start`` and ``end`` of the architecture ``net``, in each form it is used in:

    - ``parameters_at(t)``: the bent parameters, differentiable w.r.t. the bends;
    - ``network_fn(t)``: the network at φ(t) as a function of its inputs (``curve(*inputs, t=t)`` calls it);
    - ``state_dict_at(t)``: a plain state_dict of ``net`` at φ(t), the export;
    - ``network_at(t, bn_loader)``: a standalone copy of ``net`` at φ(t), its BatchNorm recalibrated first;
    - ``recalibrate_bn(t, loader)``: the BatchNorm statistics of φ(t), as ``torch.optim.swa_utils.update_bn``;
    - ``segment_lengths(ts)``: ‖φ(t_{k+1}) − φ(t_k)‖₂ along a grid.

    Underneath, ``combine(c)`` (flat, no autograd) and ``point_chunks(c)`` (differentiable) give Σ_j c_j·θ_j for any
    coefficients c, ``coefficients(t)`` is c(t) and ``fixed_at(t)`` the tensors that are not bent.

    Args:
        net: the architecture of both endpoints (any ``nn.Module``); it is copied, never changed. Its
            ``requires_grad`` flags decide which parameters are bent.
        start: θ_0 = φ(0): a checkpoint path, an ``nn.Module`` or a state_dict. ``None`` only together with
            ``end=None``, for a curve whose tensors then come from ``load_state_dict``.
        end: θ_{n−1} = φ(1), in the same forms.
        family: ``linear``, ``bezier``, ``polychain`` (with ``num_bends`` control points including both endpoints;
            default 2 for ``linear``, 3 otherwise) or a ``CurveFamily``.
        init: where the bends start: ``midpoint`` (bend j on the straight line at j/(n−1)), ``original: <path>`` or
            ``checkpoint: <path>`` (every bend = that model), ``{original: source}`` with a path, module or state_dict.
        trainable: ``fnmatch`` patterns of parameter names whose bends train (``None``: every bent tensor).
    """

    def __init__(self, net: nn.Module, start, end, family: str | CurveFamily = "bezier", num_bends: int | None = None,
                 init: str | Mapping[str, Any] = "midpoint", trainable: Sequence[str] | None = None) -> None:
        super().__init__()
        self.family = family if isinstance(family, CurveFamily) else build_family(family, num_bends)
        if (start is None) != (end is None):
            raise UnlearnMCError("give both start and end checkpoints (or neither, only when loading a saved curve with CurveModule.load_curve).")
        init_kind, init_from = parse_init(init)
        net = copy.deepcopy(net)
        self.layout = FlatLayout(net, trainable)
        self.state_keys = list(net.state_dict().keys())
        num_inner, train_size = self.family.num_bends - 2, self.layout.train_size
        self.has_endpoints = start is not None
        stores: dict[str, dict[str, Tensor]] = {name: {} for name in STORES}
        if self.has_endpoints:
            start_state = endpoint_state(net, self.layout, start, "start")
            end_state = endpoint_state(net, self.layout, end, "end")
            net.load_state_dict(start_state)  # the start model's BatchNorm statistics until recalibrated
            endpoints = torch.stack([self.layout.flatten(start_state), self.layout.flatten(end_state)])
            bends = initial_bends(self.layout, init_kind, init_from, net, endpoints, num_inner)
            stores = fixed_stores(net, self.layout, start_state, end_state)
        else:
            endpoints, bends = torch.zeros(2, self.layout.size), torch.zeros(num_inner, self.layout.size)
        self.register_buffer("endpoints", endpoints)
        # standard strides even for one row: DDP's gradient buckets expect them
        self.register_buffer("frozen_bends", bends[:, train_size:].clone(memory_format=torch.contiguous_format))
        self.bends = nn.Parameter(bends[:, :train_size].clone(memory_format=torch.contiguous_format)) if num_inner and train_size else None
        for name in STORES:
            self.add_module(name, TensorStore(stores[name]))
        self.register_buffer("bn_calibrated_t", t_bits(None))
        self._warned_stale = False
        # memory for φ and the bends' gradient, reused from step to step while nothing else holds it (combination.py)
        self._phi_buffer, self._grad_buffer = ReusableBuffer(), ReusableBuffer()
        self.net = empty_slots(net, self.layout)
        self.register_load_state_dict_pre_hook(record_missing_calibration)
        self.register_load_state_dict_post_hook(check_loaded)

    @property
    def device(self) -> torch.device:
        return self.endpoints.device

    @property
    def _ddp_params_and_buffers_to_ignore(self) -> list[str]:
        # identical on every process and never changed by a step: not worth DDP's broadcast at each step
        stores = [f"{name}.{key}" for name in STORES for key in getattr(self, name)._buffers]
        return ["endpoints", "frozen_bends", "bn_calibrated_t", *stores]

    def _require_endpoints(self) -> None:
        if not self.has_endpoints:
            raise UnlearnMCError("this curve has no endpoints: give start and end checkpoints, or load a saved curve with CurveModule.load_curve(path, net).")

    # ------------------------------------------------------------ Σ_j c_j·θ_j
    def coefficients(self, t: float) -> Tensor:
        """c(t) of the family on the device and in the dtype of the control points."""
        return self.family.coefficients(t).to(device=self.endpoints.device, dtype=self.endpoints.dtype)

    def _bends(self) -> Tensor:
        return self.bends if self.bends is not None else self.endpoints.new_empty(0, self.layout.train_size)

    def combine(self, coefficients: Tensor) -> Tensor:
        """Σ_j c_j·θ_j as one flat fp32 vector in layout order, without autograd (see ``combine_flat``)."""
        self._require_endpoints()
        with torch.no_grad(), torch.autocast(device_type=self.endpoints.device.type, enabled=False):
            return combine_flat(coefficients, self.endpoints, self._bends(), self.frozen_bends)

    def point_chunks(self, coefficients: Tensor) -> tuple[Tensor, ...]:
        """Σ_j c_j·θ_j as flat chunks, one per bent tensor, differentiable w.r.t. the trainable bends (see ``curve_point``).

        Autocast is off: the combination stays in fp32 under 16-mixed and bf16-mixed. φ and the bends'
        gradient are written into memory reused across calls while nothing else references it.
        """
        self._require_endpoints()
        with torch.autocast(device_type=self.endpoints.device.type, enabled=False):
            return curve_point(
                coefficients, self.endpoints, self._bends(), self.frozen_bends, self.layout.train_sizes, self.layout.frozen_sizes,
                phi_buffer=self._phi_buffer, grad_buffer=self._grad_buffer,
            )

    def fixed_at(self, t: float) -> dict[str, Tensor]:
        """The fixed tensors at t under every name: the shared copy, or lerp(θ_0, θ_{n−1}, t) = θ_0 + t·(θ_{n−1} − θ_0),
        which ``torch.lerp`` evaluates exactly at t = 0 and t = 1. Shared tensors are returned as stored (not copied)."""
        out: dict[str, Tensor] = {}
        for tensor in self.layout.fixed:
            if tensor.name in self.fixed_shared:
                value = self.fixed_shared[tensor.name]
            else:
                value = torch.lerp(self.fixed_start[tensor.name], self.fixed_end[tensor.name], float(t))
            out.update({alias: value for alias in tensor.aliases})
        return out

    # ------------------------------------------------------------ φ(t)
    def parameters_at(self, t: float) -> dict[str, Tensor]:
        """The bent parameters of φ(t) = Σ_j c_j(t)·θ_j as ``{first name: tensor}`` (differentiable w.r.t. the bends)."""
        return self.layout.shaped(self.point_chunks(self.coefficients(t)))

    def network_fn(self, t: float, bent: Mapping[str, Tensor] | None = None) -> PointForward:
        """The network at φ(t) as a function of its inputs; φ(t) is built once, here.

        ``bent``: the bent parameters to run with, ``{first name: tensor}`` (default ``parameters_at(t)``), e.g. the
        views of ``point_chunks`` whose chunks a loss also uses."""
        bent = self.parameters_at(t) if bent is None else dict(bent)
        fixed = self.fixed_at(t)
        parameters = {**self.layout.with_aliases(bent)}
        buffers: dict[str, Tensor] = {}
        for tensor in self.layout.fixed:
            for alias in tensor.aliases:
                (parameters if tensor.is_parameter else buffers)[alias] = fixed[alias]
        return PointForward(self.net, parameters, buffers, bent, batchnorm=lambda: self._batchnorm_at(t, running=True))

    def forward(self, *args, t: float, **kwargs) -> Any:
        """The network's output of ``net(*args, **kwargs)`` at φ(t)."""
        return self.network_fn(t).output(*args, **kwargs)

    @torch.no_grad()
    def state_dict_at(self, t: float) -> dict[str, Tensor]:
        """A plain state_dict of the architecture at φ(t): every key of ``net.state_dict()``, tied names included,
        with the BatchNorm statistics of φ(t) (recalibrate first for 0 < t < 1, ``recalibrate_bn``)."""
        state = self._full_state_at(t)
        return {key: state[key].clone().contiguous() for key in self.state_keys}

    def network_at(self, t: float, bn_loader=None, bn_batches: int | None = None, label_key: str | int | None = None) -> nn.Module:
        """A standalone copy of the architecture at φ(t): ties restored (one ``nn.Parameter`` under every name),
        frozen parameters with ``requires_grad=False``. With ``bn_loader`` its BatchNorm statistics are first
        recalibrated at t over at most ``bn_batches`` batches (``recalibrate_bn``)."""
        if bn_loader is not None:
            self.recalibrate_bn(t, bn_loader, bn_batches, label_key)
        return filled_copy(self.net, self.layout, self._full_state_at(t))

    @torch.no_grad()
    def _full_state_at(self, t: float) -> dict[str, Tensor]:
        """Every tensor of the network at φ(t) under every name, persistent or not (detached)."""
        state = {name: value for name, value in self.net.named_buffers(remove_duplicate=False)}
        state.update(self.layout.with_aliases(self.parameters_at(t)))
        state.update(self.fixed_at(t))
        state.update(self._batchnorm_at(t))
        return {name: value.detach() for name, value in state.items()}

    @torch.no_grad()
    def segment_lengths(self, ts: Sequence[float]) -> list[float]:
        """‖φ(t_{k+1}) − φ(t_k)‖₂ over the bent tensors for consecutive t; the combination is linear, so it is that of c(t_{k+1}) − c(t_k)."""
        return [float(torch.linalg.vector_norm(self.combine(self.coefficients(high) - self.coefficients(low)), dtype=torch.float64))
                for low, high in zip(ts[:-1], ts[1:])]

    # ------------------------------------------------------------ BatchNorm statistics
    def recalibrate_bn(self, t: float, loader, num_batches: int | None = None, label_key: str | int | None = None) -> int:
        """Recompute the BatchNorm statistics of φ(t) over at most ``num_batches`` batches of ``loader`` (split by
        ``label_key``, see ``recalibrate_batchnorm``); the network's statistics then belong to this t."""
        with torch.no_grad():
            forward = self.network_fn(t)
        seen = recalibrate_batchnorm(self.net, loader, forward=forward, num_batches=num_batches, device=self.device, label_key=label_key)
        if self.layout.batchnorm:
            self.bn_calibrated_t.copy_(t_bits(float(t)).to(self.bn_calibrated_t.device))
        return seen

    def _batchnorm_at(self, t: float, running: bool = False) -> dict[str, Tensor]:
        """The BatchNorm statistics to run φ(t) with, as tensors to pass to ``functional_call`` (empty: the network's own).

        ``running`` with a BatchNorm layer in training mode: the network's own, which the forward updates (they are then
        calibrated for no t); the network's own if recalibrated at exactly this t; at t = 0 or 1 that endpoint's own;
        otherwise the network's own, stale, with a warning once per curve.
        """
        if not self.layout.batchnorm:
            return {}
        calibrated = t_from_bits(self.bn_calibrated_t)
        if running and any(layer.training for layer in batchnorm_layers(self.net)):
            if calibrated is not None:
                self.bn_calibrated_t.copy_(t_bits(None).to(self.bn_calibrated_t.device))
            return {}
        t = float(t)
        if calibrated == t:
            return {}
        store = self.bn_start if t == 0.0 else self.bn_end if t == 1.0 else None
        if store is not None and all(name in store for name in self.layout.batchnorm):
            return {name: store[name] for name in self.layout.batchnorm}
        if not self._warned_stale:
            self._warned_stale = True
            warnings.warn(
                f"the curve runs at t={t:g} with BatchNorm statistics that were not recalibrated there "
                f"({'last recalibrated at t=' + format(calibrated, 'g') if calibrated is not None else 'never recalibrated'}); "
                "call curve.recalibrate_bn(t, loader) or use curve.network_at(t, bn_loader=loader) first.",
                stacklevel=3,
            )
        return {}


def curve_of(curve, label_key: str | int | None = None) -> tuple[Curve, str | int | None]:
    """The ``Curve`` and the ``label_key`` its batches are read with, given a ``Curve`` or a ``CurveModule`` (its curve and,
    unless ``label_key`` is given, its label_key)."""
    if isinstance(curve, Curve):
        return curve, label_key
    return curve.curve, curve.label_key if label_key is None else label_key
