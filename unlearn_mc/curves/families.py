"""Curve families: the coefficients c_j(t) of φ(t) = Σ_j c_j(t)·θ_j over n control points θ_0 … θ_{n−1}.

θ_0 and θ_{n−1} are the endpoints, the n − 2 points between them are the bends. Every family
satisfies c(0) = e_0 and c(1) = e_{n−1} exactly, so φ(0) = θ_0 and φ(1) = θ_{n−1} bit for bit.
Coefficients are computed in fp32 whatever the training precision.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from unlearn_mc.errors import UnlearnMCError


class CurveFamily:
    """A family of curves over ``num_bends`` control points (endpoints included, at least 2)."""

    name = "curve"

    def __init__(self, num_bends: int) -> None:
        if not isinstance(num_bends, int) or isinstance(num_bends, bool) or num_bends < 2:
            raise UnlearnMCError(
                f"num_bends={num_bends!r} is not a number of control points; use an integer ≥ 2 (the two endpoints count)."
            )
        self.num_bends = num_bends

    def coefficients(self, t: float) -> Tensor:
        """The fp32 vector c(t) of length ``num_bends``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_bends={self.num_bends})"


class Bezier(CurveFamily):
    """Bernstein coefficients c_j(t) = C(n−1, j)·t^j·(1−t)^(n−1−j), j = 0 … n−1 (Garipov et al. 2018)."""

    name = "bezier"

    def __init__(self, num_bends: int = 3) -> None:
        super().__init__(num_bends)
        degree = num_bends - 1
        self._binomials = torch.tensor([math.comb(degree, j) for j in range(num_bends)], dtype=torch.float32)
        self._powers = torch.arange(num_bends, dtype=torch.float32)

    def coefficients(self, t: float) -> Tensor:
        t = torch.tensor(float(t), dtype=torch.float32)
        degree = self.num_bends - 1
        return self._binomials * t.pow(self._powers) * (1.0 - t).pow(degree - self._powers)


class PolyChain(CurveFamily):
    """Hat functions c_j(t) = max(0, 1 − |t·(n−1) − j|): a polygonal chain through the control points."""

    name = "polychain"

    def __init__(self, num_bends: int = 3) -> None:
        super().__init__(num_bends)
        self._knots = torch.arange(num_bends, dtype=torch.float32)

    def coefficients(self, t: float) -> Tensor:
        t = torch.tensor(float(t), dtype=torch.float32)
        return torch.clamp(1.0 - torch.abs(t * (self.num_bends - 1) - self._knots), min=0.0)


class Linear(CurveFamily):
    """The straight line φ(t) = (1−t)·θ_0 + t·θ_1: c(t) = (1 − t, t), no bends."""

    name = "linear"

    def __init__(self, num_bends: int = 2) -> None:
        if num_bends != 2:
            raise UnlearnMCError(f"num_bends={num_bends!r} does not fit the linear curve; it has exactly 2 control points (use bezier or polychain for more).")
        super().__init__(2)

    def coefficients(self, t: float) -> Tensor:
        t = torch.tensor(float(t), dtype=torch.float32)
        return torch.stack([1.0 - t, t])


FAMILIES: dict[str, type[CurveFamily]] = {"linear": Linear, "bezier": Bezier, "polychain": PolyChain}


def build_family(name: str, num_bends: int | None = None) -> CurveFamily:
    """The family called ``name`` (``linear``, ``bezier``, ``polychain``, any case) with ``num_bends`` control points.

    ``num_bends=None`` means 2 for ``linear`` and 3 (one bend) for the others.
    """
    key = str(name).lower()
    if key not in FAMILIES:
        raise UnlearnMCError(f"curve={name!r} is not a curve family; use one of {', '.join(FAMILIES)}.")
    if num_bends is None:
        num_bends = 2 if key == "linear" else 3
    return FAMILIES[key](num_bends)
