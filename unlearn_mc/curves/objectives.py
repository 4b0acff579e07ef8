"""What a curve minimises at φ(t): a function of the model ``forward`` (inputs → logits) and the training batches.

- ``retain_ce``: classic mode connectivity on D_r, L = CE(φ(t); B_r) (Garipov et al. 2018).
- ``retain_minus_forget``: L = CE(φ(t); B_r) − β·CE(φ(t); B_f) with a fixed β or the adaptive β of
  MCU (Shi & Wang 2025, see ``RetainMinusForget``).
- any unlearning method (``GradDiff``, ``unlearn_mc.unlearning.SCRUB``, a user's class …): its own
  ``loss(forward, batches)`` evaluated at φ(t) (Cheng & Amiri 2025).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from unlearn_mc.checkpoints import network_state_from_source
from unlearn_mc.data.batches import Batches, Forward, cat_inputs
from unlearn_mc.evaluation.sequence import correct_per_sample, cross_entropy_per_sample
from unlearn_mc.errors import UnlearnMCError

BUILT_IN = ("retain_ce", "retain_minus_forget")


class CurveObjective:
    """Base of the objectives: ``train_streams`` to ask the DataModule for, and the loss."""

    train_streams: tuple[str, ...] = ("retain",)
    needs_reference = False

    def __call__(self, forward: Forward, batches: Batches) -> tuple[Tensor, dict[str, Tensor]]:
        """The scalar loss and extra values to log (name → scalar tensor)."""
        raise NotImplementedError

    def set_reference(self, forget_acc: float, retain_acc: float) -> None:
        """Accuracies of the retrain reference on D_f and D_r, for objectives that adapt to them."""

    def to(self, device: torch.device) -> CurveObjective:
        return self


class RetainCE(CurveObjective):
    """L = (1/|B_r|)·Σ_{(x,y) ∈ B_r} −log softmax(f(x))[y]."""

    train_streams = ("retain",)

    def __call__(self, forward: Forward, batches: Batches) -> tuple[Tensor, dict[str, Tensor]]:
        inputs, targets = batches["retain"]
        return cross_entropy_per_sample(forward(inputs), targets).mean(), {}


class RetainMinusForget(CurveObjective):
    """L = CE(B_r) − β·CE(B_f), both terms from one forward pass over the concatenated batch.

    ``beta`` is a number, or ``"adaptive"`` for MCU's rule, applied per batch with a_f, a_r the
    batch accuracies on B_f, B_r at φ(t) and A_f, A_r the retrain reference's accuracies on D_f, D_r:

    - β = 0 if a_f ≤ A_f (forgetting is already at the reference's level: only keep D_r);
    - β = 0.01 if (a_f − A_f)/A_f < (a_r − A_r)/A_r (forget excess smaller than retain excess, relatively);
    - β = 0.5 otherwise.

    A relative excess over a reference accuracy of 0 counts as +∞ (so class forgetting, A_f = 0,
    takes β = 0.5 while any forget sample is still recognised). The reference comes from the curve
    module's ``retrain`` checkpoint, or from ``reference_forget_acc`` and ``reference_retain_acc``.
    """

    train_streams = ("forget", "retain")
    ADAPTIVE_VALUES = (0.0, 0.01, 0.5)

    def __init__(self, beta: float | str = 1.0, reference_forget_acc: float | None = None, reference_retain_acc: float | None = None) -> None:
        self.adaptive = isinstance(beta, str)
        if self.adaptive and beta != "adaptive":
            raise UnlearnMCError(f"beta={beta!r} is not valid; use a non-negative number or 'adaptive'.")
        if not self.adaptive and not float(beta) >= 0.0:
            raise UnlearnMCError(f"beta={beta!r} is not valid; use a non-negative number or 'adaptive'.")
        self.beta = beta if self.adaptive else float(beta)
        self.reference: tuple[float, float] | None = None
        if (reference_forget_acc is None) != (reference_retain_acc is None):
            raise UnlearnMCError("give both reference_forget_acc and reference_retain_acc, or neither (then the retrain checkpoint is used).")
        if reference_forget_acc is not None:
            self.set_reference(reference_forget_acc, reference_retain_acc)

    @property
    def needs_reference(self) -> bool:
        return self.adaptive and self.reference is None

    def set_reference(self, forget_acc: float, retain_acc: float) -> None:
        self.reference = (float(forget_acc), float(retain_acc))

    @staticmethod
    def _relative_excess(accuracy: Tensor, reference: float) -> Tensor:
        if reference > 0.0:
            return (accuracy - reference) / reference
        return torch.where(accuracy > reference, torch.full_like(accuracy, float("inf")), torch.zeros_like(accuracy))

    def adaptive_beta(self, forget_acc: Tensor, retain_acc: Tensor) -> Tensor:
        """MCU's β ∈ {0, 0.01, 0.5} for batch accuracies ``forget_acc``, ``retain_acc`` (0-d tensors)."""
        if self.reference is None:
            raise UnlearnMCError("beta='adaptive' needs the retrain reference: set the curve's retrain checkpoint or reference_forget_acc/reference_retain_acc.")
        reference_forget, reference_retain = self.reference
        small = torch.where(
            self._relative_excess(forget_acc, reference_forget) < self._relative_excess(retain_acc, reference_retain),
            torch.full_like(forget_acc, 0.01),
            torch.full_like(forget_acc, 0.5),
        )
        return torch.where(forget_acc <= reference_forget, torch.zeros_like(forget_acc), small)

    def __call__(self, forward: Forward, batches: Batches) -> tuple[Tensor, dict[str, Tensor]]:
        (forget_x, forget_y), (retain_x, retain_y) = batches["forget"], batches["retain"]
        logits = forward(cat_inputs([retain_x, forget_x])).float()
        retain_logits, forget_logits = logits[: len(retain_x)], logits[len(retain_x) :]
        if logits.ndim == 3:  # token batches were padded to a common length: score each at its own
            retain_logits, forget_logits = retain_logits[:, : retain_y.shape[1]], forget_logits[:, : forget_y.shape[1]]
        retain_ce = cross_entropy_per_sample(retain_logits, retain_y).mean()
        forget_ce = cross_entropy_per_sample(forget_logits, forget_y).mean()
        if self.adaptive:
            with torch.no_grad():
                forget_acc = correct_per_sample(forget_logits, forget_y).mean()
                retain_acc = correct_per_sample(retain_logits, retain_y).mean()
                beta = self.adaptive_beta(forget_acc, retain_acc)
        else:
            beta = torch.tensor(self.beta, device=logits.device)
        loss = retain_ce - beta * forget_ce
        return loss, {"retain_ce": retain_ce.detach(), "forget_ce": forget_ce.detach(), "beta": beta}


class MethodObjective(CurveObjective):
    """The loss of an unlearning method, ``method.loss(forward, batches)``, with ``forward`` = φ(t).

    The method instance is kept out of the curve module's parameters: it is frozen
    (``requires_grad=False`` everywhere, teachers included) and in eval mode, so only the bends
    train and DDP never sees it.
    """

    def __init__(self, method: Any) -> None:
        if not callable(getattr(method, "loss", None)) or not getattr(method, "train_streams", None):
            raise UnlearnMCError(f"{type(method).__name__} is not an unlearning method: it needs loss(forward, batches) and train_streams.")
        self.method = method
        if isinstance(method, nn.Module):
            method.requires_grad_(False)
            method.eval()
        self.train_streams = tuple(method.train_streams)

    def __call__(self, forward: Forward, batches: Batches) -> tuple[Tensor, dict[str, Tensor]]:
        return self.method.loss(forward, batches), {}

    def to(self, device: torch.device) -> MethodObjective:
        if isinstance(self.method, nn.Module):
            self.method.to(device)
        return self


def resolve_method(name: str) -> type:
    """The class ``name``: a dotted path (``package.module.Class``) or a class of ``unlearn_mc.unlearning``."""
    from unlearn_mc.unlearning.registry import METHOD_NAMES, METHODS

    if "." in name:
        module_name, _, class_name = name.rpartition(".")
        try:
            found = getattr(importlib.import_module(module_name), class_name, None)
        except ImportError:
            found = None
    else:
        found = METHODS.get(name)
    if not isinstance(found, type):
        known = ", ".join(METHOD_NAMES)
        raise UnlearnMCError(
            f"objective={name!r} is neither {' nor '.join(BUILT_IN)} nor an unlearning method class; use one of those, "
            f"a class of unlearn_mc.unlearning ({known}) or a dotted path to your own class."
        )
    return found


def build_objective(name: str, args: Mapping[str, Any] | None, net: nn.Module) -> CurveObjective:
    """The objective called ``name`` with keyword arguments ``args``.

    For an unlearning method the arguments are its own init arguments except ``net``, which is a
    copy of the curve's architecture (e.g. ``{"original": "checkpoints/digits/original.ckpt"}``; ``original`` may
    also be an ``nn.Module`` or a state_dict).
    """
    args = dict(args or {})
    key = str(name).lower()
    if key == "retain_ce":
        if args:
            raise UnlearnMCError(f"objective 'retain_ce' takes no objective_args, got {sorted(args)}.")
        return RetainCE()
    if key == "retain_minus_forget":
        try:
            inspect.signature(RetainMinusForget).bind(**args)
        except TypeError as error:
            raise UnlearnMCError(f"objective_args={args} do not fit 'retain_minus_forget' ({error}); it takes beta, reference_forget_acc, reference_retain_acc.") from None
        return RetainMinusForget(**args)
    method_class = resolve_method(str(name))
    try:
        inspect.signature(method_class).bind(net=net, **args)
    except TypeError as error:
        raise UnlearnMCError(f"objective_args={args} do not fit {method_class.__name__} ({error}); give its init arguments except net.") from None
    if not isinstance(args.get("original"), (nn.Module, Mapping)):
        return MethodObjective(method_class(net=copy.deepcopy(net), **args))
    # the methods read their original model from a file: an in-memory one is written to a temporary file for that
    state = network_state_from_source(net, args["original"], "objective_args original")
    with tempfile.TemporaryDirectory() as folder:
        args["original"] = os.path.join(folder, "original.pt")
        torch.save(state, args["original"])
        return MethodObjective(method_class(net=copy.deepcopy(net), **args))
