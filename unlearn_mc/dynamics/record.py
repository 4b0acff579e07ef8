"""The training dynamics of a run (seed, optimiser and its order, curriculum), recorded in its hyper-parameters.

A checkpoint's ``hyper_parameters["dynamics"]`` says how it was produced, so that curves between
two checkpoints can be grouped by the MCU setting they belong to (``setting_between``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import nn

from unlearn_mc.optim.second_order import optimizer_order

DYNAMICS_HPARAM = "dynamics"  # the hyper-parameter holding the record: set when training starts, never a constructor argument

SCALARS = (bool, int, float, str, type(None))


def _plain(value: Any) -> Any:
    """Hyper-parameter-friendly copy: scalars, lists and dicts of them (tensors become numbers)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, SCALARS):
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    return repr(value)


def _qualified(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _curriculum(module: nn.Module, trainer: L.Trainer | None) -> tuple[str, dict[str, Any]]:
    """(``none`` | ``superloss`` | ``data`` | ``superloss+data`` …, their settings)."""
    from unlearn_mc.curricula.data_curriculum import DataCurriculum

    kinds: dict[str, Any] = {}
    reweighting = getattr(module, "curriculum", None)
    if reweighting is not None:
        describe = getattr(reweighting, "describe", None)
        kinds[type(reweighting).__name__.lower()] = _plain(describe()) if callable(describe) else {}
    for callback in getattr(trainer, "callbacks", None) or []:
        if isinstance(callback, DataCurriculum):
            kinds["data"] = _plain(callback.describe())
    return ("+".join(kinds) or "none"), kinds


def training_dynamics(module: L.LightningModule) -> dict[str, Any]:
    """``{method, seed, optimizer, optimizer_order, optimizer_args, curriculum, curriculum_args}`` of a module about to train.

    ``seed`` is the one of ``seed_everything`` (``PL_GLOBAL_SEED``), ``None`` if unseeded; the
    optimiser is the first of the trainer's (its class path, ``first``/``second`` order and
    ``defaults``); ``curriculum`` names the module's per-sample reweighting and any ``DataCurriculum``.
    """
    trainer = module._trainer
    optimizers = list(getattr(trainer, "optimizers", None) or [])
    optimizer = optimizers[0] if optimizers else None
    seed = os.environ.get("PL_GLOBAL_SEED")
    curriculum, curriculum_args = _curriculum(module, trainer)
    return {
        "method": _qualified(module),
        "seed": int(seed) if seed is not None else None,
        "optimizer": _qualified(optimizer) if optimizer is not None else None,
        "optimizer_order": optimizer_order(optimizer) if optimizer is not None else None,
        "optimizer_args": _plain({k: v for k, v in optimizer.defaults.items() if k not in ("foreach", "fused", "capturable", "differentiable")})
        if optimizer is not None
        else {},
        "curriculum": curriculum,
        "curriculum_args": curriculum_args,
    }


def read_dynamics(path: str | os.PathLike) -> dict[str, Any] | None:
    """The recorded dynamics of a Lightning checkpoint (read with ``weights_only=True``), ``None`` if it has none."""
    from unlearn_mc.checkpoints import read_checkpoint

    dynamics = (read_checkpoint(path).get("hyper_parameters") or {}).get(DYNAMICS_HPARAM)
    return dict(dynamics) if isinstance(dynamics, Mapping) else None


def setting_between(start: Mapping[str, Any] | None, end: Mapping[str, Any] | None) -> str:
    """The MCU setting two endpoints' dynamics form: ``seed`` (a), ``curriculum`` (b), ``optimizer_order``
    (c), ``method`` (d), or these joined by ``+`` when several differ; ``same`` when none differs and
    ``unknown`` when either has no record (e.g. an original or retrain model saved before recording)."""
    if start is None or end is None:
        return "unknown"
    differing = [key for key in ("seed", "curriculum", "optimizer_order", "method") if start.get(key) != end.get(key)]
    if "optimizer_order" not in differing and start.get("optimizer") != end.get("optimizer"):
        differing.append("optimizer")
    return "+".join(differing) or "same"
