"""``CurveModule``: the Lightning side of a curve: it trains the bends of a ``Curve`` on an objective averaged over t.

The curve itself, its control points and φ(t) in every form, is the plain ``nn.Module`` ``module.curve``
(``curve.py``); this module adds what training needs: the objective and its step, the optimiser, the ``val/*`` and
``test/*`` metrics at ``eval_t``, the ``CurveEvaluation`` callback and loading from a checkpoint. Its ``network_at``,
``state_dict_at``, ``network_fn``, ``parameters_at`` and ``recalibrate_bn`` are the curve's, read with its ``label_key``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from unlearn_mc.checkpoints import describe_source, network_state_from_source
from unlearn_mc.curves.checkpoint import curve_module_from_checkpoint, under_curve
from unlearn_mc.curves.curve import Curve
from unlearn_mc.curves.families import build_family
from unlearn_mc.curves.loaders import bn_loader, evaluation_loaders
from unlearn_mc.curves.objectives import BUILT_IN, build_objective
from unlearn_mc.curves.point import PointForward
from unlearn_mc.curves.t_sampler import TSampler
from unlearn_mc.data.batches import ModelInputs, split_batch, stream_batches
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.evaluation.lightning_hooks import EvaluatesUnlearning
from unlearn_mc.optim.configure import build_optimizers
from unlearn_mc.dynamics.hooks import DynamicsHooks
from unlearn_mc.resume import ResumesRandomness


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
        family = build_family(curve, num_bends)
        self.t_sampler = TSampler(t_sampler)
        if not float(l2) >= 0.0:
            raise UnlearnMCError(f"l2={l2!r} must be a non-negative number.")
        if not 0.0 <= float(eval_t) <= 1.0:
            raise UnlearnMCError(f"eval_t={eval_t!r} must lie in [0, 1].")
        if bn_batches is not None and bn_batches < 1:
            raise UnlearnMCError(f"bn_batches={bn_batches!r} must be at least 1 (or null for the whole split).")
        self.l2, self.eval_t, self.bn_split, self.bn_batches = float(l2), float(eval_t), bn_split, bn_batches
        self.label_key = label_key
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.curve = Curve(net, start_source, end_source, family, init=init_source, trainable=trainable)
        # a module or state_dict is kept as a snapshot of its tensors, outside the module's submodules and state
        in_memory = isinstance(retrain_source, (nn.Module, Mapping))
        self.retrain_source = network_state_from_source(net, retrain_source, "retrain") if in_memory else retrain_source
        # the built-in objectives take no network; a method is built on the start model (its net as built is θ_0)
        self.objective = build_objective(objective, objective_source, net if str(objective).lower() in BUILT_IN else self._start_network(net))
        self.register_load_state_dict_pre_hook(under_curve)  # checkpoints of the earlier layout, keys without "curve."

    def _start_network(self, net: nn.Module) -> nn.Module:
        """A copy of the architecture holding θ_0 = φ(0) (an unlearning method objective is built on it)."""
        net = copy.deepcopy(net)
        if self.curve.has_endpoints:
            net.load_state_dict(self.curve.state_dict_at(0.0))
        return net

    @classmethod
    def load_curve(cls, path: str | os.PathLike, net: nn.Module) -> CurveModule:
        """A curve saved by ``trainer.save_checkpoint`` (or ModelCheckpoint), from that file and the architecture ``net``
        alone (see ``curve_module_from_checkpoint``)."""
        return curve_module_from_checkpoint(cls, path, net)

    @property
    def net(self) -> nn.Module:
        """The architecture the curve runs, its slots emptied (``curve.net``; the network at φ(t) is ``network_at(t)``)."""
        return self.curve.net

    @property
    def num_bends(self) -> int:
        return self.curve.family.num_bends

    @property
    def train_streams(self) -> tuple[str, ...]:
        return self.objective.train_streams

    @property
    def _ddp_params_and_buffers_to_ignore(self) -> list[str]:
        return [f"curve.{name}" for name in self.curve._ddp_params_and_buffers_to_ignore]

    # ------------------------------------------------------------ the curve's forms (see Curve), with this module's label_key
    def forward(self, *args, t: float | None = None, **kwargs) -> Any:
        """The network's output of ``net(*args, **kwargs)`` at φ(t); t is drawn from ``t_sampler`` when not given."""
        return self.curve(*args, t=self.t_sampler() if t is None else t, **kwargs)

    def network_fn(self, t: float) -> PointForward:
        return self.curve.network_fn(t)

    def parameters_at(self, t: float) -> dict[str, Tensor]:
        return self.curve.parameters_at(t)

    def state_dict_at(self, t: float) -> dict[str, Tensor]:
        return self.curve.state_dict_at(t)

    def network_at(self, t: float, bn_loader=None, bn_batches: int | None = None) -> nn.Module:
        return self.curve.network_at(t, bn_loader, bn_batches, self.label_key)

    def recalibrate_bn(self, t: float, loader, num_batches: int | None = None) -> int:
        return self.curve.recalibrate_bn(t, loader, num_batches, self.label_key)

    # ------------------------------------------------------------ training
    def on_fit_start(self) -> None:
        self.objective.to(self.device)
        if self.objective.needs_reference:  # CurveEvaluation.on_fit_start gave it the retrain reference, if there is one
            raise UnlearnMCError("objective_args beta='adaptive' needs the retrain reference: set the curve's retrain checkpoint or reference_forget_acc/reference_retain_acc.")
        super().on_fit_start()

    def training_step(self, batch, batch_idx: int) -> Tensor:
        curve, t = self.curve, self.t_sampler()
        chunks = curve.point_chunks(curve.coefficients(t))
        batches = stream_batches(batch, self.train_streams, self.label_key)
        loss, extras = self.objective(curve.network_fn(t, curve.layout.shaped(chunks)), batches)
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
        if self.trainer.state.fn == "fit" and self.curve.bends is None:
            raise UnlearnMCError(
                f"the {self.curve.family.name} curve with num_bends={self.num_bends} has no bends to train; "
                "evaluate it with `unlearn-mc validate`, or use bezier/polychain with num_bends ≥ 3 to fit."
            )
        if any(isinstance(callback, CurveEvaluation) for callback in self.trainer.callbacks):
            return []
        return [CurveEvaluation()]

    # ------------------------------------------------------------ validation / test at eval_t
    def _prepare_eval(self) -> None:
        loaders = evaluation_loaders(self._trainer)
        self.recalibrate_bn(self.eval_t, bn_loader(loaders, self.bn_split), self.bn_batches)
        with torch.no_grad():
            self._eval_forward = self.curve.network_fn(self.eval_t)

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
