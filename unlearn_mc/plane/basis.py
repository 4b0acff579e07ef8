"""The plane through three points of weight space: an orthonormal basis by Gram–Schmidt, coordinates and the grid.

For flat weight vectors θ_A, θ_B, θ_C (in float64): u = θ_B − θ_A, v = θ_C − θ_A, û = u / ‖u‖,
v' = v − (v·û)·û, v̂ = v' / ‖v'‖ (Gram–Schmidt, as Garipov et al. 2018 draw the plane of a curve's three
control points). The point at (x, y) is θ(x, y) = θ_A + x·û + y·v̂, and a weight vector θ projects to
x = (θ − θ_A)·û, y = (θ − θ_A)·v̂. So θ_A lies at (0, 0), θ_B at (‖u‖, 0) and θ_C at (v·û, ‖v'‖):
coordinates are Euclidean distances in weight space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from unlearn_mc.errors import UnlearnMCError

COLLINEAR_TOLERANCE = 1e-6  # C is on the line AB when ‖v'‖ ≤ this · ‖v‖ (fp32 weights carry ~1e-7 relative rounding)


def check_grid(grid: object, where: str = "grid") -> int:
    """``grid`` as the number G ≥ 2 of points per axis (the plane is evaluated at G×G points), else one sentence."""
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 2:
        raise UnlearnMCError(f"{where}={grid!r} is not a grid size; use an integer G ≥ 2 (the plane is evaluated at G×G points).")
    return grid


def check_margin(margin: object, where: str = "margin") -> float:
    """``margin`` as a non-negative number (the fraction of the models' spread added on each side), else one sentence."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise UnlearnMCError(f"{where}={margin!r} is not a margin; use a number ≥ 0 (the fraction of the models' spread added on each side).")
    return float(margin)


@dataclass(frozen=True)
class PlaneBasis:
    """θ_A and the orthonormal pair (û, v̂) spanning the plane through θ_A, θ_B, θ_C (float64 vectors of length P)."""

    origin: Tensor
    u_hat: Tensor
    v_hat: Tensor
    u_norm: float  # ‖u‖ = ‖θ_B − θ_A‖
    v_along_u: float  # v·û
    v_perp_norm: float  # ‖v'‖ = ‖v − (v·û)·û‖

    @classmethod
    def through(cls, a: Tensor, b: Tensor, c: Tensor, names: Sequence[str] = ("A", "B", "C")) -> PlaneBasis:
        """Gram–Schmidt on u = b − a, v = c − a; three models on one line span no plane and are refused in one sentence."""
        a, b, c = (vector.detach().reshape(-1).to(torch.float64) for vector in (a, b, c))
        u, v = b - a, c - a
        u_norm = float(torch.linalg.vector_norm(u))
        if u_norm == 0.0:
            raise UnlearnMCError(f"models {names[0]!r} and {names[1]!r} have the same weights, so the three models span no plane; choose three different models.")
        if float(torch.linalg.vector_norm(v)) == 0.0:
            raise UnlearnMCError(f"models {names[0]!r} and {names[2]!r} have the same weights, so the three models span no plane; choose three different models.")
        u_hat = u / u_norm
        v_along_u = float(v @ u_hat)
        v_perp = v - v_along_u * u_hat
        v_perp_norm = float(torch.linalg.vector_norm(v_perp))
        if v_perp_norm <= COLLINEAR_TOLERANCE * float(torch.linalg.vector_norm(v)):
            raise UnlearnMCError(f"models {', '.join(map(repr, names))} lie on one line in weight space, so they span no plane; "
                                 "choose a third model off the line through the other two.")
        return cls(a, u_hat, v_perp / v_perp_norm, u_norm, v_along_u, v_perp_norm)

    def project(self, theta: Tensor) -> tuple[float, float, float]:
        """(x, y, d) of a weight vector: x = (θ − θ_A)·û, y = (θ − θ_A)·v̂ and its distance to the plane
        d = ‖θ − θ_A − x·û − y·v̂‖ (0 for a point of the plane)."""
        offset = theta.detach().reshape(-1).to(torch.float64) - self.origin
        x, y = float(offset @ self.u_hat), float(offset @ self.v_hat)
        return x, y, float(torch.linalg.vector_norm(offset - x * self.u_hat - y * self.v_hat))

    def point(self, x: float, y: float) -> Tensor:
        """θ(x, y) = θ_A + x·û + y·v̂ (float64)."""
        return self.origin + x * self.u_hat + y * self.v_hat

    def coefficients(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(K, 3) weights c with θ(x, y) = c_A·θ_A + c_B·θ_B + c_C·θ_C for K points (float64).

        θ_A + a·u + b·v = θ_A + (a·‖u‖ + b·(v·û))·û + b·‖v'‖·v̂, so b = y / ‖v'‖, a = (x − b·(v·û)) / ‖u‖ and
        c = (1 − a − b, a, b).
        """
        x, y = np.asarray(x, dtype=np.float64).reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1)
        b = y / self.v_perp_norm
        a = (x - b * self.v_along_u) / self.u_norm
        return np.stack([1.0 - a - b, a, b], axis=1)

    @property
    def model_coordinates(self) -> list[tuple[float, float]]:
        """Where θ_A, θ_B and θ_C lie: (0, 0), (‖u‖, 0), (v·û, ‖v'‖)."""
        return [(0.0, 0.0), (self.u_norm, 0.0), (self.v_along_u, self.v_perp_norm)]


def grid_axes(points: Sequence[tuple[float, float]], grid: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """G evenly spaced x and y values spanning [min − m·Δ, max + m·Δ] of the given points' coordinates on each axis,
    Δ = the larger of the two axes' spreads (max − min) and m = ``margin``: Garipov et al.'s grid, with one margin for
    both axes, so that a thin plane (a curve whose bend lies near its chord) is still drawn with room around it."""
    check_grid(grid)
    margin = check_margin(margin)
    coordinates = np.asarray(points, dtype=np.float64)
    low, high = coordinates.min(axis=0), coordinates.max(axis=0)
    pad = margin * float((high - low).max())
    return tuple(np.linspace(low[axis] - pad, high[axis] + pad, grid) for axis in range(2))
