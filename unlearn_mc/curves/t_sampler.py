"""Distributions of the curve parameter t drawn at each training step, written as short strings for configs.

- ``uniform``: t ~ U(0, 1) (Garipov et al. 2018);
- ``uniform(a, b)``: t ~ U(a, b) with 0 ≤ a < b ≤ 1;
- ``normal``: t ~ N(0.5, 0.1²) clipped to [0, 1]; ``normal(mean, std)`` sets both, still clipped.

Draws use torch's global generator, so ``seed_everything`` makes them reproducible.
"""

from __future__ import annotations

import re

import torch

from unlearn_mc.errors import UnlearnMCError

_NUMBER = r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
_PATTERN = re.compile(rf"^\s*(uniform|normal)\s*(?:\(\s*(?:{_NUMBER},{_NUMBER})?\))?\s*$")
VALID = "'uniform', 'uniform(a, b)' with 0 ≤ a < b ≤ 1, 'normal' or 'normal(mean, std)' with std > 0"


class TSampler:
    """Draws t ∈ [0, 1] from the distribution named by ``spec`` (see the module docstring)."""

    def __init__(self, spec: str = "uniform") -> None:
        match = _PATTERN.match(str(spec).lower())
        if match is None:
            raise UnlearnMCError(f"t_sampler={spec!r} is not a distribution of t; use {VALID}.")
        kind, first, second = match.group(1), match.group(2), match.group(3)
        self.spec = str(spec)
        self.kind = kind
        if kind == "uniform":
            self.low, self.high = (float(first), float(second)) if first is not None else (0.0, 1.0)
            if not 0.0 <= self.low < self.high <= 1.0:
                raise UnlearnMCError(f"t_sampler={spec!r} has bounds outside 0 ≤ a < b ≤ 1; use {VALID}.")
        else:
            self.mean, self.std = (float(first), float(second)) if first is not None else (0.5, 0.1)
            if not self.std > 0.0:
                raise UnlearnMCError(f"t_sampler={spec!r} needs a positive standard deviation; use {VALID}.")

    def __call__(self) -> float:
        if self.kind == "uniform":
            return float(self.low + (self.high - self.low) * torch.rand(()))
        return float(torch.clamp(self.mean + self.std * torch.randn(()), 0.0, 1.0))

    def __repr__(self) -> str:
        return f"TSampler({self.spec!r})"
