"""Saved curves: a ``CurveModule`` from its checkpoint alone, and the state_dict keys of earlier formats.

A curve's tensors live in the ``Curve`` held as ``CurveModule.curve``, so their keys start with ``curve.``;
checkpoints written before that (keys ``bends``, ``endpoints``, ``fixed_shared.…``, ``net.…``) and before the tensor
rules (no ``bn_calibrated_t``) load as well.
"""

from __future__ import annotations

import inspect
import os

from torch import nn

from unlearn_mc.checkpoints import raw_state_dict, read_checkpoint
from unlearn_mc.curves.stores import t_bits
from unlearn_mc.errors import UnlearnMCError

IN_MEMORY = "<in memory"


def record_missing_calibration(curve: nn.Module, state_dict, prefix: str, *args) -> None:
    """Load pre-hook of a ``Curve``: a checkpoint without ``bn_calibrated_t`` (written before the tensor rules) had
    no record of where the network's statistics were calibrated; it reads as none."""
    state_dict.setdefault(f"{prefix}bn_calibrated_t", t_bits(None))


def check_loaded(curve: nn.Module, incompatible_keys) -> None:
    """Load post-hook of a ``Curve``: every fixed tensor has a value (shared, or at both endpoints); the curve has endpoints."""
    for tensor in curve.layout.fixed:
        if tensor.name not in curve.fixed_shared and not (tensor.name in curve.fixed_start and tensor.name in curve.fixed_end):
            raise RuntimeError(f"it holds no value of the tensor {tensor.name!r}")
    curve.has_endpoints = True


def under_curve(module: nn.Module, state_dict, prefix: str, *args) -> None:
    """Load pre-hook of a ``CurveModule``: a key that names none of the module's own tensors or submodules (an earlier
    checkpoint's ``bends``, ``net.…``) is the curve's, and moves under ``curve.``."""
    own = {*module._modules, *module._parameters, *module._buffers}
    for key in [key for key in state_dict if key.startswith(prefix)]:
        if key[len(prefix):].split(".", 1)[0] not in own:
            state_dict[f"{prefix}curve.{key[len(prefix):]}"] = state_dict.pop(key)


def curve_module_from_checkpoint(cls: type, path: str | os.PathLike, net: nn.Module):
    """The ``CurveModule`` (class ``cls``) saved at ``path`` by ``trainer.save_checkpoint`` (or ModelCheckpoint), read
    with ``weights_only=True``. Needs only that file and the architecture ``net``: the endpoint and init files are not
    read. The objective is not rebuilt (``hparams`` still name it); to resume training use ``fit(ckpt_path=…)``."""
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
