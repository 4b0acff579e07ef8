"""``CurveModule``: a LightningModule that trains the bends of a curve φ(t) between two frozen models.

φ(t) = Σ_j c_j(t)·θ_j over the control points θ_0 (``start``), the bends θ_1 … θ_{n−2} and
θ_{n−1} (``end``), with the coefficients c(t) of a curve family (Garipov et al. 2018). The
endpoints are buffers and the bends ``nn.Parameter``s, so a saved checkpoint is
self-contained. All control points are kept as rows of flat fp32 matrices (see ``FlatLayout``):
φ(t) is three BLAS calls whatever the number of tensors (``combination.curve_point``, which also
writes the bends' gradient in one pass), viewed back per tensor and run through the network
with ``torch.func.functional_call``. The network's own parameters are removed (its
buffers, e.g. BatchNorm statistics, stay), so nothing but the bends trains.

BatchNorm running statistics are not interpolated: training at a sampled t uses batch
statistics, and every evaluation at a t first recalibrates them (``recalibrate_bn``).
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils.data import DataLoader

from unlearn_mc.checkpoints import load_network_weights, network_state_from_file, raw_state_dict, read_checkpoint
from unlearn_mc.curves.combination import combine_flat, curve_point
from unlearn_mc.curves.families import build_family
from unlearn_mc.curves.layout import FlatLayout
from unlearn_mc.curves.objectives import build_objective
from unlearn_mc.data.sharding import shard_loader
from unlearn_mc.curves.t_sampler import TSampler
from unlearn_mc.data.batches import stream_batches
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.evaluation.batchnorm import recalibrate_batchnorm
from unlearn_mc.evaluation.evaluate import evaluate_model
from unlearn_mc.evaluation.lightning_hooks import EvaluatesUnlearning
from unlearn_mc.optim.configure import build_optimizers
from unlearn_mc.optim.hooks import DynamicsHooks
from unlearn_mc.resume import ResumesRandomness

INIT_KINDS = ("midpoint", "original: <path>", "checkpoint: <path>")


def _parse_init(init: str | Mapping[str, str]) -> tuple[str, str | None]:
    """``"midpoint"`` → (midpoint, None); ``"original: p"`` or ``{"original": p}`` → (original, p); same for checkpoint."""
    if isinstance(init, Mapping):
        if len(init) != 1:
            raise UnlearnMCError(f"init={dict(init)} must name exactly one source; use one of {', '.join(INIT_KINDS)}.")
        kind, path = next(iter(init.items()))
    else:
        kind, _, path = str(init).partition(":")
    kind, path = str(kind).strip().lower(), (str(path).strip() if path is not None else "")
    if kind == "midpoint" and not path:
        return "midpoint", None
    if kind in ("original", "checkpoint") and path:
        return kind, path
    raise UnlearnMCError(f"init={init!r} is not a way to place the bends; use one of {', '.join(INIT_KINDS)}.")


def _strip_parameters(net: nn.Module, names: Sequence[str]) -> nn.Module:
    """Empty the parameter slots ``names`` of ``net`` (set to ``None``): ``functional_call`` fills them at each call."""
    for name in names:
        module_name, _, leaf = name.rpartition(".")
        net.get_submodule(module_name)._parameters[leaf] = None
    return net


class PointForward:
    """The network at one point φ of the curve as a function of the inputs.

    ``params`` (name → tensor) exposes the weights, for losses with a term on them (e.g. ‖θ‖₁,
    see ``unlearn_mc.unlearning.common.forward_parameters``).
    """

    def __init__(self, net: nn.Module, params: dict[str, Tensor]) -> None:
        self.net = net
        self.params = params

    def __call__(self, inputs: Tensor) -> Tensor:
        return functional_call(self.net, self.params, (inputs,))


class CurveModule(ResumesRandomness, DynamicsHooks, EvaluatesUnlearning):
    """A curve φ(t) between two trained models whose bends are trained on an objective averaged over t.

    Each training step draws t from ``t_sampler`` and minimises
    L(φ(t)) + (l2/2)·‖φ(t)‖² over the bends, L being the ``objective``. Validation and test
    report the ``val/*`` / ``test/*`` unlearning metrics of φ(``eval_t``) after BatchNorm
    recalibration; the whole curve is evaluated by the ``CurveEvaluation`` callback (added
    automatically unless the Trainer already has one).

    Args:
        net: the architecture of both endpoints (any ``nn.Module``); it is copied, never changed.
        start: checkpoint of θ_0 = φ(0). ``None`` only together with ``end=None`` when the
            weights come from a saved curve (``CurveModule.load_curve``).
        end: checkpoint of θ_{n−1} = φ(1).
        curve: the family, ``linear``, ``bezier`` or ``polychain``.
        num_bends: number of control points including both endpoints (≥ 2; default 2 for
            ``linear``, 3 otherwise). Bezier and PolyChain with 2 are the straight line.
        init: where the bends start: ``midpoint`` (bend j on the straight line at j/(n−1)),
            ``original: <path>`` (every bend = the original model, as Cheng & Amiri do) or
            ``checkpoint: <path>`` (any model); in YAML also ``{original: <path>}``.
        t_sampler: distribution of t per step: ``uniform``, ``uniform(a, b)``, ``normal``
            (N(0.5, 0.1²) clipped to [0, 1]) or ``normal(mean, std)``.
        objective: ``retain_ce``, ``retain_minus_forget``, or an unlearning method whose
            ``loss(forward, batches)`` is evaluated at φ(t): a class of ``unlearn_mc.unlearning``
            (``GradientAscent``, ``GradDiff`` …) or a dotted class path.
        objective_args: keyword arguments of the objective; for a method its init arguments
            except ``net`` (e.g. ``original``); for ``retain_minus_forget`` ``beta`` (a number or
            ``adaptive``) and optionally ``reference_forget_acc`` / ``reference_retain_acc``.
        l2: weight decay on the curve point, (l2/2)·‖φ(t)‖² over all interpolated tensors
            (not on the bends themselves).
        trainable: ``fnmatch`` patterns of parameter names whose bends train (others stay at
            their initial value); ``None`` trains every tensor.
        retrain: optional checkpoint of the retrain reference: the adaptive β and the
            ``avg_gap`` criterion of the best t use its metrics.
        eval_t: the t at which ``validate``/``test`` report ``val/*`` and ``test/*``.
        bn_split: evaluation split (no augmentation) over which BatchNorm is recalibrated.
        bn_batches: at most this many batches of ``bn_split`` per recalibration (``None``: all).
        optimizer: optimiser factory for the bends.
        lr_scheduler: optional scheduler factory, stepped each epoch.
    """

    def __init__(
        self,
        net: nn.Module,
        start: str | None,
        end: str | None,
        curve: str = "bezier",
        num_bends: int | None = None,
        init: str | dict[str, str] = "midpoint",
        t_sampler: str = "uniform",
        objective: str = "retain_ce",
        objective_args: dict[str, Any] | None = None,
        l2: float = 0.0,
        trainable: list[str] | None = None,
        retrain: str | None = None,
        eval_t: float = 0.5,
        bn_split: str = "retain",
        bn_batches: int | None = None,
        optimizer: OptimizerCallable = torch.optim.SGD,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        # plain strings in the hyperparameters, so the checkpoint loads with weights_only=True
        start, end, retrain = (os.fspath(p) if p is not None else None for p in (start, end, retrain))
        if isinstance(init, Mapping):
            init = {str(key): os.fspath(value) for key, value in init.items()}
        if objective_args is not None:
            objective_args = {key: os.fspath(value) if isinstance(value, os.PathLike) else value for key, value in objective_args.items()}
        self.save_hyperparameters(ignore=["net", "optimizer", "lr_scheduler"])
        self.family = build_family(curve, num_bends)
        self.t_sampler = TSampler(t_sampler)
        if not float(l2) >= 0.0:
            raise UnlearnMCError(f"l2={l2!r} must be a non-negative number.")
        if not 0.0 <= float(eval_t) <= 1.0:
            raise UnlearnMCError(f"eval_t={eval_t!r} must lie in [0, 1].")
        if bn_batches is not None and bn_batches < 1:
            raise UnlearnMCError(f"bn_batches={bn_batches!r} must be at least 1 (or null for the whole split).")
        if (start is None) != (end is None):
            raise UnlearnMCError("give both start and end checkpoints (or neither, only when loading a saved curve with CurveModule.load_curve).")
        init_kind, init_path = _parse_init(init)
        self.l2, self.eval_t, self.bn_split, self.bn_batches = float(l2), float(eval_t), bn_split, bn_batches
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.retrain_path = retrain

        net = copy.deepcopy(net)
        self.layout = FlatLayout(net, trainable)
        self.state_keys = list(net.state_dict().keys())
        num_inner = self.family.num_bends - 2
        size, train_size = self.layout.size, self.layout.train_size
        self._has_endpoints = start is not None
        if self._has_endpoints:
            start_state = network_state_from_file(net, start)
            end_state = network_state_from_file(net, end)
            net.load_state_dict(start_state)  # the start model's buffers (BatchNorm statistics) until recalibrated
            endpoints = torch.stack([self.layout.flatten(start_state), self.layout.flatten(end_state)])
            bends = self._initial_bends(init_kind, init_path, net, endpoints, num_inner)
        else:
            endpoints = torch.zeros(2, size)
            bends = torch.zeros(num_inner, size)
        self.register_buffer("endpoints", endpoints)
        # standard strides even for one row: DDP's gradient buckets expect them
        self.register_buffer("frozen_bends", bends[:, train_size:].clone(memory_format=torch.contiguous_format))
        self.bends = nn.Parameter(bends[:, :train_size].clone(memory_format=torch.contiguous_format)) if num_inner and train_size else None
        # identical on every process and never changed: not worth DDP's broadcast at each step
        self._ddp_params_and_buffers_to_ignore = ["endpoints", "frozen_bends"]

        self.objective = build_objective(objective, objective_args, net)
        self.net = _strip_parameters(net, self.layout.names)
        self._reference_metrics: dict[str, float] | None = None

    def _initial_bends(self, kind: str, path: str | None, net: nn.Module, endpoints: Tensor, count: int) -> Tensor:
        if count == 0:
            return endpoints.new_zeros(0, endpoints.shape[1])
        if kind == "midpoint":
            fractions = torch.arange(1, count + 1, dtype=torch.float32) / (count + 1)
            return (1.0 - fractions)[:, None] * endpoints[0] + fractions[:, None] * endpoints[1]
        point = self.layout.flatten(network_state_from_file(net, path))
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
        saved = {key: kwargs[key] for key in ("start", "end", "init", "objective", "objective_args") if key in kwargs}
        kwargs.update(start=None, end=None, init="midpoint", objective="retain_ce", objective_args=None)
        module = cls(net=net, **kwargs)
        module.hparams.update(saved)  # describe the saved curve, though none of these files is read
        try:
            module.load_state_dict(raw_state_dict(payload))
        except RuntimeError as error:
            raise UnlearnMCError(
                f"checkpoint {str(path)!r} is not a curve of {type(net).__name__} with these settings: {str(error).splitlines()[0]}"
            ) from None
        return module

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
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
        """Σ_j c_j·θ_j as flat chunks, one per tensor, differentiable w.r.t. the trainable bends (see ``curve_point``).

        Autocast is off: the combination stays in fp32 under 16-mixed and bf16-mixed.
        """
        self._require_endpoints()
        with torch.autocast(device_type=self.endpoints.device.type, enabled=False):
            return curve_point(coefficients, self.endpoints, self._bends(), self.frozen_bends, self.layout.train_sizes, self.layout.frozen_sizes)

    def parameters_at(self, t: float) -> dict[str, Tensor]:
        """φ(t) as ``{parameter name: tensor}`` (differentiable w.r.t. the bends)."""
        return self.layout.shaped(self.point_chunks(self.coefficients(t)))

    def flat_at(self, t: float) -> Tensor:
        """φ(t) as one flat fp32 vector in layout order."""
        return self.combine(self.coefficients(t))

    def network_fn(self, t: float) -> PointForward:
        """The network at φ(t) as a function of the inputs; φ(t) is built once, here."""
        return PointForward(self.net, self.parameters_at(t))

    def forward(self, x: Tensor, t: float | None = None) -> Tensor:
        """Logits of φ(t) on ``x``; t is drawn from ``t_sampler`` when not given."""
        return self.network_fn(self.t_sampler() if t is None else t)(x)

    @torch.no_grad()
    def state_dict_at(self, t: float) -> dict[str, Tensor]:
        """A plain state_dict of the architecture at φ(t): interpolated parameters and the network's current buffers."""
        parameters = self.parameters_at(t)
        buffers = self.net.state_dict()
        return {key: (parameters[key] if key in parameters else buffers[key]).detach().clone().contiguous() for key in self.state_keys}

    def network_at(self, t: float) -> nn.Module:
        """A standalone copy of the architecture holding φ(t) and the network's current buffers."""
        net = copy.deepcopy(self.net)
        for name, tensor in self.parameters_at(t).items():
            module_name, _, leaf = name.rpartition(".")
            net.get_submodule(module_name)._parameters[leaf] = nn.Parameter(tensor.detach().clone())
        return net

    @torch.no_grad()
    def segment_lengths(self, ts: Sequence[float]) -> list[float]:
        """‖φ(t_{k+1}) − φ(t_k)‖₂ for consecutive t; the combination is linear, so it is that of c(t_{k+1}) − c(t_k)."""
        lengths = []
        for low, high in zip(ts[:-1], ts[1:]):
            lengths.append(float(torch.linalg.vector_norm(self.combine(self.coefficients(high) - self.coefficients(low)), dtype=torch.float64)))
        return lengths

    def recalibrate_bn(self, t: float, loader, num_batches: int | None = None) -> int:
        """Recompute the BatchNorm statistics of φ(t) over ``loader`` (see ``recalibrate_batchnorm``)."""
        with torch.no_grad():
            forward = self.network_fn(t)
        return recalibrate_batchnorm(self.net, loader, forward=forward, num_batches=num_batches, device=self.endpoints.device)

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
        """``evaluate_model`` metrics of the ``retrain`` checkpoint (computed once; ``None`` without one)."""
        if self.retrain_path is None:
            return None
        if self._reference_metrics is None:
            loaders = self.eval_loaders(shard=False) if loaders is None else loaders
            reference = load_network_weights(self.network_at(0.0), self.retrain_path).to(self.endpoints.device).eval()
            self._reference_metrics = evaluate_model(reference, loaders, self.endpoints.device)
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
        batches = stream_batches(batch, self.train_streams)
        loss, extras = self.objective(PointForward(self.net, self.layout.shaped(chunks)), batches)
        if self.l2 > 0.0:
            loss = loss + 0.5 * self.l2 * torch.stack([chunk.pow(2).sum() for chunk in chunks]).sum()
        size = len(batches[self.train_streams[0]][0])
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

    def eval_logits(self, x: Tensor) -> Tensor:
        return self._eval_forward(x)

    def on_validation_epoch_start(self) -> None:
        self._prepare_eval()
        super().on_validation_epoch_start()

    def on_test_epoch_start(self) -> None:
        self._prepare_eval()
        super().on_test_epoch_start()
