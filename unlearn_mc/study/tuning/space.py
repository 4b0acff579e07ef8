"""What a calibration searches: a method's learning rate, epochs and, where it has one, its main weight.

A search space is three ranges: lr log-uniform on [lr_low, lr_high], epochs an integer in [epochs_low, epochs_high],
and the method's main weight (``MAIN_WEIGHTS``: GradDiff's α, RandomLabel's / SalUn's / BadTeacher's retain weight
λ_r, NPO's β, L1Sparse's α) uniform or log-uniform on its range. A range whose two ends are equal fixes that value.
Sampled values are rounded (lr and log-scale weights to 2 significant digits, other weights to 3), so a chosen
setting is a recipe one can write down, and what a trial trains with is exactly what its row of ``trials.csv`` says.

The settings come from the ``tune:`` key of a study's method entry (``trials``, ``lr_range``, ``epochs_range``,
``weight_range``, ``retain_floor``, ``seeds``) or from the flags of ``unlearn-mc tune`` (``--trials``, ``--lr-range``, …);
a flag overrides the entry, and what neither gives takes the defaults below. ``seeds`` are the training seeds each
trial is trained with (default: the method's own seed); with several, a setting is scored over all of them.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from unlearn_mc.errors import UnlearnMCError

TUNE_KEYS = ("trials", "lr_range", "epochs_range", "weight_range", "retain_floor", "seeds")
DEFAULT_TRIALS = 20
DEFAULT_EPOCHS = (1, 5)
DEFAULT_RETAIN_FLOOR = 0.9  # a trial must keep 0.9 × the retrain model's retain accuracy


@dataclass(frozen=True)
class MainWeight:
    """A method's main weight: its init argument, default search range, scale and the values it may take."""

    name: str
    low: float
    high: float
    log: bool
    minimum: float  # smallest allowed value (exclusive when ``log``)
    maximum: float | None = None


# By the class that defines the loss; a subclass (SalUn of RandomLabel, a user's own) inherits its parent's weight.
MAIN_WEIGHTS = {
    "GradDiff": MainWeight("alpha", 0.5, 0.999, log=False, minimum=0.0, maximum=1.0),
    "RandomLabel": MainWeight("retain_weight", 0.1, 10.0, log=True, minimum=0.0),  # λ_r against the entry's λ_f
    "BadTeacher": MainWeight("retain_weight", 0.1, 10.0, log=True, minimum=0.0),
    "NPO": MainWeight("beta", 0.01, 1.0, log=True, minimum=0.0),
    "L1Sparse": MainWeight("alpha", 1e-5, 1e-2, log=True, minimum=0.0),
}


def main_weight(class_path: str) -> MainWeight | None:
    """The main weight of the method class at ``class_path`` (looked up along its MRO), or None."""
    module_name, _, class_name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    for klass in cls.__mro__:
        if klass.__module__.startswith("unlearn_mc.unlearning") and klass.__name__ in MAIN_WEIGHTS:
            return MAIN_WEIGHTS[klass.__name__]
    return None


def round_significant(value: float, digits: int) -> float:
    return float(f"{value:.{digits}g}")


@dataclass(frozen=True)
class TuneSettings:
    """A validated search: ``trials`` trials over the ranges; ``retain_floor`` is a fraction of retrain's retain accuracy."""

    trials: int
    lr_range: tuple[float, float]
    epochs_range: tuple[int, int]
    weight: str | None
    weight_range: tuple[float, float] | None
    weight_log: bool
    retain_floor: float
    seeds: tuple[int, ...] | None = None  # training seeds of every trial; None: the method's own seed

    def space(self) -> dict[str, Any]:
        """The search space as plain data (what identifies a search, with the floor and the method's recipe)."""
        return {"lr_range": list(self.lr_range), "epochs_range": list(self.epochs_range), "weight": self.weight,
                "weight_range": list(self.weight_range) if self.weight_range else None, "weight_log": self.weight_log,
                "seeds": list(self.seeds) if self.seeds else None}

    def suggest(self, trial) -> dict[str, Any]:
        """One setting from an Optuna trial: ``{"lr": …, "epochs": …[, weight: …]}``, rounded and kept in range."""
        lr = _suggest_float(trial, "lr", self.lr_range, log=True, digits=2)
        low, high = self.epochs_range
        params: dict[str, Any] = {"lr": lr, "epochs": trial.suggest_int("epochs", low, high) if low < high else low}
        if self.weight is not None:
            params[self.weight] = _suggest_float(trial, self.weight, self.weight_range, log=self.weight_log, digits=2 if self.weight_log else 3)
        return params

    def apply(self, method, params: dict[str, Any]):
        """``method`` (a ``MethodSpec``) with the setting's lr (in ``optimizer.init_args``), epochs and weight (in ``args``)."""
        optimizer = copy.deepcopy(method.optimizer)
        optimizer.setdefault("init_args", {})["lr"] = params["lr"]
        args = dict(method.args)
        if self.weight is not None:
            args[self.weight] = params[self.weight]
        return dataclasses.replace(method, epochs=params["epochs"], optimizer=optimizer, args=args)

    def command_flags(self) -> str:
        """The ``unlearn-mc tune`` flags that give this search."""
        flags = [f"--trials {self.trials}", f"--lr-range {self.lr_range[0]:g} {self.lr_range[1]:g}",
                 f"--epochs-range {self.epochs_range[0]} {self.epochs_range[1]}"]
        if self.weight_range is not None:
            flags.append(f"--weight-range {self.weight_range[0]:g} {self.weight_range[1]:g}")
        flags.append(f"--retain-floor {self.retain_floor:g}")
        if self.seeds:
            flags.append(f"--seeds {' '.join(map(str, self.seeds))}")
        return " ".join(flags)


def _suggest_float(trial, name: str, bounds: tuple[float, float], log: bool, digits: int) -> float:
    low, high = bounds
    if low == high:
        return low
    return min(max(round_significant(trial.suggest_float(name, low, high, log=log), digits), low), high)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _named(label: str, value: Any) -> str:
    """``--lr-range 0.1 0.01`` for a flag, ``methods.ga.tune.lr_range=[0.1, 0.01]`` for a study key."""
    if label.startswith("--"):
        return f"{label} {' '.join(map(str, value)) if isinstance(value, (list, tuple)) else value}"
    return f"{label}={value!r}"


def _pair(value: Any, label: str, valid: str, check: Callable[[float, float], bool], integer: bool = False) -> tuple:
    kind = int if integer else (int, float)
    if (not isinstance(value, (list, tuple)) or len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, kind) for v in value)
            or not all(_number(v) for v in value) or not value[0] <= value[1] or not check(*value)):
        raise UnlearnMCError(f"{_named(label, value)} is not a valid range; give {valid}.")
    return (int(value[0]), int(value[1])) if integer else (float(value[0]), float(value[1]))


def tune_settings(class_path: str, optimizer: dict[str, Any], given: dict[str, Any], label: Callable[[str], str]) -> TuneSettings:
    """Validate ``given`` (keys of ``TUNE_KEYS``) for the method class at ``class_path`` and fill the defaults.

    ``label(key)`` names a key in the messages (``methods.ga.tune.lr_range`` or ``--lr-range``). Defaults: 20 trials,
    lr 10⁻⁴ – 10⁻¹ under SGD (10⁻⁵ – 10⁻² under any other optimiser), 1 – 5 epochs, the method's weight range,
    retain floor 0.9. Every error is one ``UnlearnMCError`` sentence naming the value and what is valid.
    """
    unknown = sorted(set(given) - set(TUNE_KEYS))
    if unknown:
        raise UnlearnMCError(f"{label('')} has unknown key(s) {unknown}; allowed: {', '.join(TUNE_KEYS)}.")
    trials = given.get("trials", DEFAULT_TRIALS)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise UnlearnMCError(f"{_named(label('trials'), trials)} must be a positive number of trials, e.g. 20.")
    default_lr = (1e-4, 1e-1) if str(optimizer.get("class_path", "")).endswith(".SGD") else (1e-5, 1e-2)
    lr_range = _pair(given.get("lr_range", default_lr), label("lr_range"), "two learning rates 0 < LOW ≤ HIGH, e.g. 0.0001 0.1",
                     lambda low, high: low > 0)
    epochs_range = _pair(given.get("epochs_range", DEFAULT_EPOCHS), label("epochs_range"),
                         "two whole numbers of epochs 1 ≤ LOW ≤ HIGH, e.g. 1 5", lambda low, high: low >= 1, integer=True)
    weight = main_weight(class_path)
    weight_range = None
    if weight is None:
        if given.get("weight_range") is not None:
            raise UnlearnMCError(f"{label('weight_range')} is given, but {class_path.rsplit('.', 1)[-1]} has no main weight to search; "
                                 f"methods with one: {', '.join(f'{k} ({w.name})' for k, w in MAIN_WEIGHTS.items())}.")
    else:
        lowest = f"> {weight.minimum:g}" if weight.log else f"≥ {weight.minimum:g}"
        highest = f" and HIGH ≤ {weight.maximum:g}" if weight.maximum is not None else ""
        weight_range = _pair(given.get("weight_range", (weight.low, weight.high)), label("weight_range"),
                             f"two values of {weight.name} with LOW {lowest}{highest}, LOW ≤ HIGH, e.g. {weight.low:g} {weight.high:g}",
                             lambda low, high: (low > weight.minimum if weight.log else low >= weight.minimum)
                             and (weight.maximum is None or high <= weight.maximum))
    floor = given.get("retain_floor", DEFAULT_RETAIN_FLOOR)
    if not _number(floor) or not 0.0 <= floor <= 1.0:
        raise UnlearnMCError(f"{_named(label('retain_floor'), floor)} must lie in [0, 1]: the fraction of the retrain model's retain "
                             "accuracy a trial must keep (0.9 by default, 0 for no floor).")
    seeds = given.get("seeds")
    if seeds is not None and (not isinstance(seeds, (list, tuple)) or not seeds or len(set(seeds)) != len(seeds)
                              or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds)):
        raise UnlearnMCError(f"{_named(label('seeds'), seeds)} must be distinct whole numbers, the training seeds of every trial, e.g. 42 87.")
    return TuneSettings(trials=trials, lr_range=lr_range, epochs_range=epochs_range, weight=weight.name if weight else None,
                        weight_range=weight_range, weight_log=bool(weight and weight.log), retain_floor=float(floor),
                        seeds=tuple(seeds) if seeds is not None else None)
