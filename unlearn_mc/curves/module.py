"""``CurveModule``: a LightningModule that trains the bends of a curve φ(t) between two frozen models.

φ(t) = Σ_j c_j(t)·θ_j over the control points θ_0 (``start``), the bends θ_1 … θ_{n−2} and
θ_{n−1} (``end``), with the coefficients c(t) of a curve family (Garipov et al. 2018). The
endpoints are buffers and the bends ``nn.Parameter``s, so a saved checkpoint is
self-contained. All bent control points are kept as rows of flat fp32 matrices (see ``FlatLayout``):
φ(t) is three BLAS calls whatever the number of tensors (``combination.curve_point``, which also
writes the bends' gradient in one pass), viewed back per tensor and run through the network
with ``torch.func.functional_call``. Every parameter slot of the network is emptied, so nothing
but the bends trains.

One rule per kind of tensor (``layout``): trainable parameters are bent, each tied group one
control point filled under all its names; frozen parameters and buffers other than BatchNorm's
follow lerp(θ_0, θ_{n−1}, t) (one shared copy where both endpoints agree) and are passed to every
call, so a forward never changes them; BatchNorm running statistics are each endpoint's own at
t = 0 and t = 1 and are recalibrated for any other t (``recalibrate_bn``); training at a sampled t
uses batch statistics.
"""

from __future__ import annotations

import copy
import inspect
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils.data import DataLoader

from unlearn_mc.checkpoints import describe_source, network_state_from_source, raw_state_dict, read_checkpoint
from unlearn_mc.curves.combination import ReusableBuffer, combine_flat, curve_point
from unlearn_mc.curves.families import build_family
from unlearn_mc.curves.layout import FlatLayout
from unlearn_mc.curves.objectives import build_objective
from unlearn_mc.data.sharding import shard_loader
from unlearn_mc.curves.t_sampler import TSampler
from unlearn_mc.data.batches import ModelInputs, split_batch, stream_batches
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.evaluation.batchnorm import batchnorm_layers, recalibrate_batchnorm
from unlearn_mc.evaluation.evaluate import evaluate_model
from unlearn_mc.evaluation.lightning_hooks import EvaluatesUnlearning
from unlearn_mc.optim.configure import build_optimizers
from unlearn_mc.optim.hooks import DynamicsHooks
from unlearn_mc.resume import ResumesRandomness

INIT_KINDS = ("midpoint", "original: <path>", "checkpoint: <path>")
IN_MEMORY = "<in memory"
STORES = ("fixed_shared", "fixed_start", "fixed_end", "bn_start", "bn_end")


def _parse_init(init: str | Mapping[str, Any]) -> tuple[str, Any]:
    """``"midpoint"`` → (midpoint, None); ``"original: p"`` or ``{"original": p}`` → (original, p); same for checkpoint.

    In a mapping the source may also be an ``nn.Module`` or a state_dict.
    """
    if isinstance(init, Mapping):
        if len(init) != 1:
            raise UnlearnMCError(f"init={dict(init)} must name exactly one source; use one of {', '.join(INIT_KINDS)}.")
        kind, source = next(iter(init.items()))
        kind = str(kind).strip().lower()
        if kind in ("original", "checkpoint") and isinstance(source, (nn.Module, Mapping)):
            return kind, source
        path = str(source).strip() if source is not None else ""
    else:
        kind, _, path = str(init).partition(":")
        kind, path = kind.strip().lower(), path.strip()
    if kind == "midpoint" and not path:
        return "midpoint", None
    if kind in ("original", "checkpoint") and path:
        return kind, path
    raise UnlearnMCError(f"init={init!r} is not a way to place the bends; use one of {', '.join(INIT_KINDS)}.")


def _set_slot(net: nn.Module, name: str, value: Tensor | None, parameter: bool) -> None:
    """Put ``value`` (or ``None``, an empty slot ``functional_call`` fills) into the parameter or buffer slot ``name``."""
    module_name, _, leaf = name.rpartition(".")
    module = net.get_submodule(module_name)
    (module._parameters if parameter else module._buffers)[leaf] = value


def _store_key(name: str) -> str:
    return name.replace(".", "/")


class TensorStore(nn.Module):
    """Tensors keyed by network names, kept as buffers (so they move, convert and save with the curve).

    Which tensors a curve keeps where depends on its endpoints (shared or per endpoint), so loading
    adopts every saved entry under the store's prefix instead of expecting a fixed set.
    """

    def __init__(self, tensors: Mapping[str, Tensor] | None = None) -> None:
        super().__init__()
        for name, tensor in (tensors or {}).items():
            self.register_buffer(_store_key(name), tensor)

    def __contains__(self, name: str) -> bool:
        return self._buffers.get(_store_key(name)) is not None

    def __getitem__(self, name: str) -> Tensor:
        return self._buffers[_store_key(name)]

    def __len__(self) -> int:
        return len(self._buffers)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs) -> None:
        for key, value in state_dict.items():
            leaf = key[len(prefix):]
            if key.startswith(prefix) and leaf and "." not in leaf and leaf not in self._buffers and isinstance(value, Tensor):
                self.register_buffer(leaf, torch.empty_like(value))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)


def _t_bits(t: float | None) -> Tensor:
    """t as the int64 bit pattern of a float64 (NaN for none): exact, and untouched by ``.half()``/``.double()``."""
    return torch.tensor([math.nan if t is None else float(t)], dtype=torch.float64).view(torch.int64)


def _logits(output: Any) -> Tensor:
    """The logits of a network's output: the tensor itself, ``output.logits`` (Hugging Face style), ``output["logits"]`` or ``output[0]``."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, Mapping) and isinstance(output.get("logits"), Tensor):
        return output["logits"]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise UnlearnMCError(f"the network returned a {type(output).__name__}; return logits, or an object with a .logits tensor.")


class PointForward:
    """The network at one point φ of the curve as a function of the inputs (``inputs → logits``).

    ``parameters`` fills every parameter slot (all names of tied ones); ``buffers`` are the fixed
    buffers at φ, copied afresh for each call so that a forward that updates a buffer in place (a
    running mean, a step counter) never changes the curve; ``batchnorm()`` gives the BatchNorm
    statistics to pass at each call (none: the network's own). ``params`` (first name → tensor of
    the bent parameters) exposes the weights, for losses with a term on them (e.g. ‖θ‖₁, see
    ``unlearn_mc.unlearning.common.forward_parameters``).
    """

    def __init__(self, net: nn.Module, parameters: dict[str, Tensor], buffers: dict[str, Tensor], params: dict[str, Tensor], batchnorm=None) -> None:
        self.net = net
        self.parameters_and_buffers = parameters
        self.buffers = buffers
        self.params = params
        self.batchnorm = batchnorm

    def tensors(self) -> dict[str, Tensor]:
        """What ``functional_call`` receives for one call."""
        copies: dict[int, Tensor] = {}
        tensors = dict(self.parameters_and_buffers)
        for name, buffer in self.buffers.items():
            tensors[name] = copies.setdefault(id(buffer), buffer.clone())
        if self.batchnorm is not None:
            tensors.update(self.batchnorm())
        return tensors

    def output(self, *args, **kwargs) -> Any:
        """The network's own output on ``net(*args, **kwargs)`` at φ."""
        return functional_call(self.net, self.tensors(), args, kwargs)

    def __call__(self, *args, **kwargs) -> Tensor:
        """Logits at φ; one ``ModelInputs`` argument is unpacked into positional and keyword inputs."""
        if len(args) == 1 and not kwargs and isinstance(args[0], ModelInputs):
            args, kwargs = args[0].args, args[0].kwargs
        return _logits(self.output(*args, **kwargs))


class CurveModule(ResumesRandomness, DynamicsHooks, EvaluatesUnlearning):
    """A curve φ(t) between two trained models whose bends are trained on an objective averaged over t.

    Each training step draws t from ``t_sampler`` and minimises
    L(φ(t)) + (l2/2)·‖φ(t)‖² over the bends, L being the ``objective``. Validation and test
    report the ``val/*`` / ``test/*`` unlearning metrics of φ(``eval_t``) after BatchNorm
    recalibration; the whole curve is evaluated by the ``CurveEvaluation`` callback (added
    automatically unless the Trainer already has one).

    Tensors (docs/curves.md, "Tensors"): trainable parameters are bent (a tied group is one control
    point); frozen parameters (``requires_grad=False``) and buffers other than BatchNorm's follow
    lerp(θ_0, θ_{n−1}, t), stored once when both endpoints agree; an integer buffer that differs
    between the endpoints is refused. BatchNorm statistics are the endpoint's own at t = 0 and 1,
    recalibrated elsewhere. So φ(0) and φ(1) are the endpoints exactly, parameters and buffers alike.

    Args:
        net: the architecture of both endpoints (any ``nn.Module``); it is copied, never changed.
            Its ``requires_grad`` flags decide which parameters are bent.
        start: θ_0 = φ(0): a checkpoint path, an ``nn.Module`` or a state_dict. ``None`` only
            together with ``end=None`` when the weights come from a saved curve (``CurveModule.load_curve``).
        end: θ_{n−1} = φ(1), in the same forms.
        curve: the family, ``linear``, ``bezier`` or ``polychain``.
        num_bends: number of control points including both endpoints (≥ 2; default 2 for
            ``linear``, 3 otherwise). Bezier and PolyChain with 2 are the straight line.
        init: where the bends start: ``midpoint`` (bend j on the straight line at j/(n−1)),
            ``original: <path>`` (every bend = the original model, as Cheng & Amiri do) or
            ``checkpoint: <path>`` (any model); in YAML also ``{original: <path>}``, in Python the
            source may be a module or a state_dict.
        t_sampler: distribution of t per step: ``uniform``, ``uniform(a, b)``, ``normal``
            (N(0.5, 0.1²) clipped to [0, 1]) or ``normal(mean, std)``.
        objective: ``retain_ce``, ``retain_minus_forget``, or an unlearning method whose
            ``loss(forward, batches)`` is evaluated at φ(t): a class of ``unlearn_mc.unlearning``
            (``GradientAscent``, ``GradDiff`` …) or a dotted class path.
        objective_args: keyword arguments of the objective; for a method its init arguments
            except ``net`` (e.g. ``original``, a path, module or state_dict); for
            ``retain_minus_forget`` ``beta`` (a number or ``adaptive``) and optionally
            ``reference_forget_acc`` / ``reference_retain_acc``.
        l2: weight decay on the curve point, (l2/2)·‖φ(t)‖² over all bent tensors
            (not on the bends themselves).
        trainable: ``fnmatch`` patterns of parameter names whose bends train (others stay at
            their initial value); ``None`` trains every bent tensor.
        retrain: optional retrain reference (path, module or state_dict): the adaptive β and the
            ``avg_gap`` criterion of the best t use its metrics.
        eval_t: the t at which ``validate``/``test`` report ``val/*`` and ``test/*``.
        bn_split: evaluation split (no augmentation) over which BatchNorm is recalibrated.
        bn_batches: at most this many batches of ``bn_split`` per recalibration (``None``: all).
        label_key: where a batch keeps its labels (``unlearn_mc.data.batches.split_batch``): for
            dict batches a key (default ``labels`` or ``label``; the other entries are keyword
            inputs of the network), for tuple batches an index (the other elements are positional
            inputs; default: ``(x, y)``).
        optimizer: optimiser factory for the bends.
        lr_scheduler: optional scheduler factory, stepped each epoch.
    """

    def __init__(
        self,
        net: nn.Module,
        start: str | nn.Module | dict | None,
        end: str | nn.Module | dict | None,
        curve: str = "bezier",
        num_bends: int | None = None,
        init: str | dict[str, Any] = "midpoint",
        t_sampler: str = "uniform",
        objective: str = "retain_ce",
        objective_args: dict[str, Any] | None = None,
        l2: float = 0.0,
        trainable: list[str] | None = None,
        retrain: str | nn.Module | dict | None = None,
        eval_t: float = 0.5,
        bn_split: str = "retain",
        bn_batches: int | None = None,
        label_key: str | int | None = None,
        optimizer: OptimizerCallable = torch.optim.SGD,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        # plain strings in the hyperparameters (in-memory sources by a description), so the checkpoint loads with weights_only=True
        start_source, end_source, retrain_source, init_source, objective_source = start, end, retrain, init, objective_args
        start, end, retrain = (describe_source(source) for source in (start, end, retrain))
        if isinstance(init, Mapping):
            init = {str(key): describe_source(value) for key, value in init.items()}
        if objective_args is not None:
            objective_args = {
                key: describe_source(value) if isinstance(value, (os.PathLike, nn.Module, Mapping)) else value for key, value in objective_args.items()
            }
        self.save_hyperparameters(ignore=["net", "optimizer", "lr_scheduler"])
        self.family = build_family(curve, num_bends)
        self.t_sampler = TSampler(t_sampler)
        if not float(l2) >= 0.0:
            raise UnlearnMCError(f"l2={l2!r} must be a non-negative number.")
        if not 0.0 <= float(eval_t) <= 1.0:
            raise UnlearnMCError(f"eval_t={eval_t!r} must lie in [0, 1].")
        if bn_batches is not None and bn_batches < 1:
            raise UnlearnMCError(f"bn_batches={bn_batches!r} must be at least 1 (or null for the whole split).")
        if (start_source is None) != (end_source is None):
            raise UnlearnMCError("give both start and end checkpoints (or neither, only when loading a saved curve with CurveModule.load_curve).")
        init_kind, init_from = _parse_init(init_source)
        self.l2, self.eval_t, self.bn_split, self.bn_batches = float(l2), float(eval_t), bn_split, bn_batches
        self.label_key = label_key
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.retrain_path = retrain

        net = copy.deepcopy(net)
        # a module or state_dict is kept as a snapshot of its tensors, outside the curve's modules and state
        in_memory = isinstance(retrain_source, (nn.Module, Mapping))
        self._retrain_source = network_state_from_source(net, retrain_source, "retrain") if in_memory else retrain_source
        self.layout = FlatLayout(net, trainable)
        self.state_keys = list(net.state_dict().keys())
        num_inner = self.family.num_bends - 2
        size, train_size = self.layout.size, self.layout.train_size
        self._has_endpoints = start_source is not None
        stores: dict[str, dict[str, Tensor]] = {name: {} for name in STORES}
        if self._has_endpoints:
            start_state = self._endpoint_state(net, start_source, "start")
            end_state = self._endpoint_state(net, end_source, "end")
            net.load_state_dict(start_state)  # the start model's BatchNorm statistics until recalibrated
            endpoints = torch.stack([self.layout.flatten(start_state), self.layout.flatten(end_state)])
            bends = self._initial_bends(init_kind, init_from, net, endpoints, num_inner)
            stores = self._fixed_stores(net, start_state, end_state)
        else:
            endpoints = torch.zeros(2, size)
            bends = torch.zeros(num_inner, size)
        self.register_buffer("endpoints", endpoints)
        # standard strides even for one row: DDP's gradient buckets expect them
        self.register_buffer("frozen_bends", bends[:, train_size:].clone(memory_format=torch.contiguous_format))
        self.bends = nn.Parameter(bends[:, :train_size].clone(memory_format=torch.contiguous_format)) if num_inner and train_size else None
        for name in STORES:
            self.add_module(name, TensorStore(stores[name]))
        self.register_buffer("bn_calibrated_t", _t_bits(None))
        self._warned_stale = False
        # memory for φ and the bends' gradient, reused from step to step while nothing else holds it (combination.py)
        self._phi_buffer, self._grad_buffer = ReusableBuffer(), ReusableBuffer()

        self.objective = build_objective(objective, objective_source, net)
        for name in self.layout.parameter_names:
            _set_slot(net, name, None, parameter=True)
        for tensor in self.layout.fixed:
            if not tensor.is_parameter:
                for alias in tensor.aliases:
                    _set_slot(net, alias, None, parameter=False)
        self.net = net
        self._reference_metrics: dict[str, float] | None = None

    @property
    def _ddp_params_and_buffers_to_ignore(self) -> list[str]:
        # identical on every process and never changed by a step: not worth DDP's broadcast at each step
        stores = [f"{name}.{key}" for name in STORES for key in getattr(self, name)._buffers]
        return ["endpoints", "frozen_bends", "bn_calibrated_t", *stores]

    def _endpoint_state(self, net: nn.Module, source, which: str) -> dict[str, Tensor]:
        """The endpoint's state_dict, checked to hold one value for each tied parameter."""
        state = network_state_from_source(net, source, which)
        tied = [(slot.name, slot.aliases) for slot in self.layout.slots] + [(t.name, t.aliases) for t in self.layout.fixed]
        for name, aliases in tied:
            for alias in aliases[1:]:
                if alias in state and name in state and not torch.equal(state[alias], state[name]):
                    raise UnlearnMCError(
                        f"the {which} weights hold different values for {name!r} and {alias!r}, which are one tied tensor in "
                        f"{type(net).__name__}; give weights of a model whose ties hold."
                    )
        return state

    def _fixed_stores(self, net: nn.Module, start: Mapping[str, Tensor], end: Mapping[str, Tensor]) -> dict[str, dict[str, Tensor]]:
        """Where each fixed and BatchNorm tensor is kept: ``fixed_shared`` when both endpoints agree (non-persistent
        buffers: the architecture's own), else ``fixed_start``/``fixed_end``; BatchNorm statistics in ``bn_start``/``bn_end``."""
        stores: dict[str, dict[str, Tensor]] = {name: {} for name in STORES}
        own = dict(net.named_buffers(remove_duplicate=False))
        for tensor in self.layout.fixed:
            if not tensor.persistent:
                stores["fixed_shared"][tensor.name] = own[tensor.name].detach().clone()
                continue
            first, last = start[tensor.name], end[tensor.name]
            kind = "parameter (requires_grad=False)" if tensor.is_parameter else "buffer"
            if first.dtype == last.dtype and torch.equal(first, last):
                stores["fixed_shared"][tensor.name] = first.detach().clone()
            elif first.is_floating_point() and last.is_floating_point():
                stores["fixed_start"][tensor.name] = first.detach().clone()
                stores["fixed_end"][tensor.name] = last.detach().to(first.dtype, copy=True)
            else:
                raise UnlearnMCError(
                    f"{kind} {tensor.name!r} of {type(net).__name__} is a {first.dtype} tensor that differs between start and end, "
                    "so a curve can neither share nor interpolate it; make it equal in both endpoints."
                )
        for name in self.layout.batchnorm:
            if name in start:
                stores["bn_start"][name] = start[name].detach().clone()
                stores["bn_end"][name] = end[name].detach().clone()
        return stores

    def _initial_bends(self, kind: str, source, net: nn.Module, endpoints: Tensor, count: int) -> Tensor:
        if count == 0:
            return endpoints.new_zeros(0, endpoints.shape[1])
        if kind == "midpoint":
            fractions = torch.arange(1, count + 1, dtype=torch.float32) / (count + 1)
            return (1.0 - fractions)[:, None] * endpoints[0] + fractions[:, None] * endpoints[1]
        point = self.layout.flatten(network_state_from_source(net, source, f"init {kind}"))
        return point.expand(count, -1).clone()

    # ------------------------------------------------------------ loading
    @classmethod
    def load_curve(cls, path: str | os.PathLike, net: nn.Module) -> CurveModule:
        """A curve saved by ``trainer.save_checkpoint`` (or ModelCheckpoint), read with ``weights_only=True``.

        Needs only that file and the architecture ``net``: the endpoint and init files are not read.
        The objective is not rebuilt (``hparams`` still name it); to resume training use ``fit(ckpt_path=…)``.
        """
        payload = read_checkpoint(path)
        accepted = inspect.signature(cls.__init__).parameters
        kwargs = {k: v for k, v in dict(payload.get("hyper_parameters") or {}).items() if k in accepted}
        for ignored in ("self", "net", "optimizer", "lr_scheduler"):
            kwargs.pop(ignored, None)
        saved = {key: kwargs[key] for key in ("start", "end", "init", "objective", "objective_args", "retrain") if key in kwargs}
        kwargs.update(start=None, end=None, init="midpoint", objective="retain_ce", objective_args=None)
        if str(kwargs.get("retrain")).startswith(IN_MEMORY):
            kwargs["retrain"] = None  # a reference given in memory was not saved with the curve
        module = cls(net=net, **kwargs)
        module.hparams.update(saved)  # describe the saved curve, though none of these files is read
        try:
            module.load_state_dict(raw_state_dict(payload))
        except RuntimeError as error:
            raise UnlearnMCError(
                f"checkpoint {str(path)!r} is not a curve of {type(net).__name__} with these settings: {str(error).strip().splitlines()[0]}"
            ) from None
        return module

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        state_dict = dict(state_dict)
        # checkpoints written before the tensor rules had no record of where the network's statistics were calibrated
        state_dict.setdefault("bn_calibrated_t", _t_bits(None))
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        for tensor in self.layout.fixed:
            if tensor.name not in self.fixed_shared and not (tensor.name in self.fixed_start and tensor.name in self.fixed_end):
                raise RuntimeError(f"it holds no value of the tensor {tensor.name!r}")
        self._has_endpoints = True
        return result

    # ------------------------------------------------------------ the curve
    @property
    def num_bends(self) -> int:
        return self.family.num_bends

    @property
    def train_streams(self) -> tuple[str, ...]:
        return self.objective.train_streams

    def _require_endpoints(self) -> None:
        if not self._has_endpoints:
            raise UnlearnMCError("this curve has no endpoints: give start and end checkpoints, or load a saved curve with CurveModule.load_curve(path, net).")

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

    def parameters_at(self, t: float) -> dict[str, Tensor]:
        """The bent parameters of φ(t) as ``{first name: tensor}`` (differentiable w.r.t. the bends)."""
        return self.layout.shaped(self.point_chunks(self.coefficients(t)))

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

    def _calibrated_t(self) -> float | None:
        value = float(self.bn_calibrated_t.view(torch.float64)[0])
        return None if math.isnan(value) else value

    def _set_calibrated_t(self, t: float | None) -> None:
        self.bn_calibrated_t.copy_(_t_bits(t).to(self.bn_calibrated_t.device))

    def batchnorm_at(self, t: float, running: bool = False) -> dict[str, Tensor]:
        """The BatchNorm statistics to run φ(t) with, as tensors to pass to ``functional_call`` (empty: the network's own).

        - ``running`` with a BatchNorm layer in training mode: the network's own, which the forward
          updates (they are then no longer calibrated for any t);
        - the network's own if they were recalibrated at exactly this t;
        - at t = 0 or t = 1, that endpoint's own statistics;
        - otherwise the network's own, stale: warns once per curve.
        """
        if not self.layout.batchnorm:
            return {}
        if running and any(layer.training for layer in batchnorm_layers(self.net)):
            if self._calibrated_t() is not None:
                self._set_calibrated_t(None)
            return {}
        t = float(t)
        if self._calibrated_t() == t:
            return {}
        store = self.bn_start if t == 0.0 else self.bn_end if t == 1.0 else None
        if store is not None and all(name in store for name in self.layout.batchnorm):
            return {name: store[name] for name in self.layout.batchnorm}
        if not self._warned_stale:
            self._warned_stale = True
            calibrated = self._calibrated_t()
            warnings.warn(
                f"the curve runs at t={t:g} with BatchNorm statistics that were not recalibrated there "
                f"({'last recalibrated at t=' + format(calibrated, 'g') if calibrated is not None else 'never recalibrated'}); "
                "call curve.recalibrate_bn(t, loader) or use curve.network_at(t, bn_loader=loader) first.",
                stacklevel=3,
            )
        return {}

    def _point_forward(self, t: float, bent: dict[str, Tensor]) -> PointForward:
        fixed = self.fixed_at(t)
        parameters = {**self.layout.with_aliases(bent)}
        buffers: dict[str, Tensor] = {}
        for tensor in self.layout.fixed:
            for alias in tensor.aliases:
                (parameters if tensor.is_parameter else buffers)[alias] = fixed[alias]
        return PointForward(self.net, parameters, buffers, bent, batchnorm=lambda: self.batchnorm_at(t, running=True))

    def tensors_at(self, t: float) -> dict[str, Tensor]:
        """Every tensor ``functional_call`` receives to run φ(t), under every name (differentiable w.r.t. the bends)."""
        return self._point_forward(t, self.parameters_at(t)).tensors()

    def flat_at(self, t: float) -> Tensor:
        """The bent parameters of φ(t) as one flat fp32 vector in layout order."""
        return self.combine(self.coefficients(t))

    def network_fn(self, t: float) -> PointForward:
        """The network at φ(t) as a function of the inputs; φ(t) is built once, here."""
        return self._point_forward(t, self.parameters_at(t))

    def forward(self, *args, t: float | None = None, **kwargs) -> Any:
        """The network's output of ``net(*args, **kwargs)`` at φ(t); t is drawn from ``t_sampler`` when not given."""
        return self.network_fn(self.t_sampler() if t is None else t).output(*args, **kwargs)

    @torch.no_grad()
    def _full_state_at(self, t: float) -> dict[str, Tensor]:
        """Every tensor of the network at φ(t) under every name, persistent or not (detached)."""
        state = {name: value for name, value in self.net.named_buffers(remove_duplicate=False)}
        state.update(self.layout.with_aliases(self.parameters_at(t)))
        state.update(self.fixed_at(t))
        state.update(self.batchnorm_at(t))
        return {name: value.detach() for name, value in state.items()}

    @torch.no_grad()
    def state_dict_at(self, t: float) -> dict[str, Tensor]:
        """A plain state_dict of the architecture at φ(t): every key of ``net.state_dict()``, tied names included,
        with the BatchNorm statistics of ``batchnorm_at(t)`` (recalibrate first for 0 < t < 1)."""
        state = self._full_state_at(t)
        return {key: state[key].clone().contiguous() for key in self.state_keys}

    def network_at(self, t: float, bn_loader=None, bn_batches: int | None = None) -> nn.Module:
        """A standalone copy of the architecture at φ(t): ties restored (one ``nn.Parameter`` under every name),
        frozen parameters with ``requires_grad=False``. With ``bn_loader`` its BatchNorm statistics are first
        recalibrated at t over at most ``bn_batches`` batches (``recalibrate_bn``)."""
        if bn_loader is not None:
            self.recalibrate_bn(t, bn_loader, bn_batches)
        state = self._full_state_at(t)
        net = copy.deepcopy(self.net)
        for slot in self.layout.slots:
            parameter = nn.Parameter(state[slot.name].clone())
            for alias in slot.names:
                _set_slot(net, alias, parameter, parameter=True)
        for tensor in self.layout.fixed:
            value = nn.Parameter(state[tensor.name].clone(), requires_grad=False) if tensor.is_parameter else state[tensor.name].clone()
            for alias in tensor.aliases:
                _set_slot(net, alias, value, parameter=tensor.is_parameter)
        for name in self.layout.batchnorm:
            _set_slot(net, name, state[name].clone(), parameter=False)
        return net

    @torch.no_grad()
    def segment_lengths(self, ts: Sequence[float]) -> list[float]:
        """‖φ(t_{k+1}) − φ(t_k)‖₂ over the bent tensors for consecutive t; the combination is linear, so it is that of c(t_{k+1}) − c(t_k)."""
        lengths = []
        for low, high in zip(ts[:-1], ts[1:]):
            lengths.append(float(torch.linalg.vector_norm(self.combine(self.coefficients(high) - self.coefficients(low)), dtype=torch.float64)))
        return lengths

    def recalibrate_bn(self, t: float, loader, num_batches: int | None = None) -> int:
        """Recompute the BatchNorm statistics of φ(t) over ``loader`` (see ``recalibrate_batchnorm``); the network's
        statistics then belong to this t (``batchnorm_at``)."""
        with torch.no_grad():
            forward = self.network_fn(t)
        seen = recalibrate_batchnorm(self.net, loader, forward=forward, num_batches=num_batches, device=self.endpoints.device, label_key=self.label_key)
        if self.layout.batchnorm:
            self._set_calibrated_t(float(t))
        return seen

    # ------------------------------------------------------------ data for evaluation
    def _distributed(self) -> tuple[int, int]:
        trainer = self._trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def eval_loaders(self, shard: bool = True) -> dict[str, DataLoader]:
        """The DataModule's evaluation loaders (no augmentation), each process's share under DDP when ``shard``."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None or not hasattr(datamodule, "eval_dataloaders"):
            raise UnlearnMCError("the curve needs a DataModule with eval_dataloaders() (such as UnlearningDataModule) to evaluate along t.")
        loaders = datamodule.eval_dataloaders()
        rank, world = self._distributed()
        if shard and world > 1:
            loaders = {name: shard_loader(loader, rank, world) for name, loader in loaders.items()}
        return loaders

    def bn_loader(self, loaders: Mapping[str, DataLoader]) -> DataLoader:
        if self.bn_split not in loaders:
            raise UnlearnMCError(f"bn_split={self.bn_split!r} is not an evaluation split; use one of {', '.join(loaders)}.")
        return loaders[self.bn_split]

    def reference_metrics(self, loaders: Mapping[str, DataLoader] | None = None) -> dict[str, float] | None:
        """``evaluate_model`` metrics of the ``retrain`` reference (computed once; ``None`` without one)."""
        from unlearn_mc.curves.evaluate_curve import labelled

        if self._retrain_source is None:
            return None
        if self._reference_metrics is None:
            loaders = self.eval_loaders(shard=False) if loaders is None else loaders
            reference = self.network_at(0.0)
            reference.load_state_dict(network_state_from_source(reference, self._retrain_source, "retrain"))
            reference = reference.to(self.endpoints.device).eval()
            self._reference_metrics = evaluate_model(PointForward(reference, {}, {}, {}), labelled(loaders, self.label_key), self.endpoints.device)
        return self._reference_metrics

    # ------------------------------------------------------------ training
    def on_fit_start(self) -> None:
        self.objective.to(self.device)
        if self.objective.needs_reference:
            reference = self.reference_metrics()
            if reference is None:
                raise UnlearnMCError("objective_args beta='adaptive' needs the retrain reference: set the curve's retrain checkpoint or reference_forget_acc/reference_retain_acc.")
            self.objective.set_reference(reference["forget_acc"], reference["retain_acc"])
        super().on_fit_start()

    def training_step(self, batch, batch_idx: int) -> Tensor:
        t = self.t_sampler()
        chunks = self.point_chunks(self.coefficients(t))
        batches = stream_batches(batch, self.train_streams, self.label_key)
        loss, extras = self.objective(self._point_forward(t, self.layout.shaped(chunks)), batches)
        if self.l2 > 0.0:
            loss = loss + 0.5 * self.l2 * torch.stack([chunk.pow(2).sum() for chunk in chunks]).sum()
        size = len(batches[self.train_streams[0]][1])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True, batch_size=size)
        self.log("train/t", t, on_step=True, on_epoch=False, batch_size=size)
        for name, value in extras.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=True, sync_dist=True, batch_size=size)
        return loss

    def configure_optimizers(self):
        return build_optimizers(self.optimizer, self.lr_scheduler, self.parameters())

    def configure_callbacks(self):
        from unlearn_mc.curves.callback import CurveEvaluation

        # the Trainer asks for these before any setup hook, so a doomed fit stops before writing anything
        if self.trainer.state.fn == "fit" and self.bends is None:
            raise UnlearnMCError(
                f"the {self.family.name} curve with num_bends={self.num_bends} has no bends to train; "
                "evaluate it with `unlearn-mc validate`, or use bezier/polychain with num_bends ≥ 3 to fit."
            )
        if any(isinstance(callback, CurveEvaluation) for callback in self.trainer.callbacks):
            return []
        return [CurveEvaluation()]

    # ------------------------------------------------------------ validation / test at eval_t
    def _prepare_eval(self) -> None:
        loaders = self.eval_loaders()
        self.recalibrate_bn(self.eval_t, self.bn_loader(loaders), self.bn_batches)
        with torch.no_grad():
            self._eval_forward = self.network_fn(self.eval_t)

    def eval_logits(self, x: Tensor | ModelInputs) -> Tensor:
        return self._eval_forward(x)

    def _eval_step(self, batch, dataloader_idx: int) -> None:
        super()._eval_step(split_batch(batch, self.label_key), dataloader_idx)

    def on_validation_epoch_start(self) -> None:
        self._prepare_eval()
        super().on_validation_epoch_start()

    def on_test_epoch_start(self) -> None:
        self._prepare_eval()
        super().on_test_epoch_start()
