"""The principal branch W₀ of the Lambert W function, in torch, to float64 precision."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from unlearn_mc.errors import UnlearnMCError

BRANCH_POINT = -math.exp(-1.0)  # float64(−1/e), where W₀(−1/e) = −1
_ONE_OVER_E_LOW = -1.2428753672788363e-17  # 1/e − float64(1/e), so that x + 1/e = (x − BRANCH_POINT) + this
# W₀ = Σ_k μ_k·p^k around the branch point, p = √(2(e·x + 1)) (Corless et al. 1996, eq. 4.22)
_BRANCH_SERIES = (-1.0, 1.0, -1 / 3, 11 / 72, -43 / 540, 769 / 17280, -221 / 8505, 680863 / 43545600,
                  -1963 / 204120, 226287557 / 37623398400)
_SERIES_ONLY_BELOW = 0.03  # p^10 ≲ 6e-16: the truncated series is exact to float64 there
_EPS64 = torch.finfo(torch.float64).eps


@torch.no_grad()
def lambert_w0(x: Tensor, max_iterations: int = 30) -> Tensor:
    """W₀(x) for real x ≥ −1/e: the solution w ≥ −1 of w·e^w = x, elementwise, in the dtype of ``x``.

    Computed in float64. Near the branch point (p = √(2(e·x+1)) < 0.03, with x + 1/e formed in
    double-double so that no digit cancels) W₀ is the branch-point series Σ_{k≤9} μ_k·p^k, exact
    there to float64. Elsewhere Halley's iteration
    w ← w − f / (e^w·(w+1) − (w+2)·f / (2w+2)), f = w·e^w − x,
    starts from that series (x < −1/4), log(1+x) (−1/4 ≤ x ≤ 3) or log x − log log x (x > 3) and
    stops once every step is below 4 float64 epsilons relative to |w| (cubic convergence: about
    three steps). No gradient flows.
    """
    z = x.detach().to(torch.float64)
    # −1/e rounded to the input's precision may lie a rounding error below −1/e
    slack = 4 * (torch.finfo(x.dtype).eps if x.is_floating_point() else _EPS64)
    if z.numel() and bool((z < BRANCH_POINT * (1.0 + slack)).any()):
        raise UnlearnMCError(f"the Lambert W₀ function is real only for x ≥ −1/e; got min(x) = {float(z.min()):.6g}.")
    z = z.clamp(min=BRANCH_POINT)
    above_branch = ((z - BRANCH_POINT) + _ONE_OVER_E_LOW).clamp(min=0.0)  # x + 1/e; the difference is exact near −1/e
    p = torch.sqrt(2.0 * math.e * above_branch)
    series = torch.zeros_like(p)
    for coefficient in reversed(_BRANCH_SERIES):
        series = series * p + coefficient
    large = torch.log(z.clamp(min=3.0)) - torch.log(torch.log(z.clamp(min=3.0)))
    w = torch.where(z < -0.25, series, torch.where(z > 3.0, large, torch.log1p(z.clamp(min=-0.25))))
    refine = p >= _SERIES_ONLY_BELOW
    for _ in range(max_iterations):
        exp_w = torch.exp(w)
        f = w * exp_w - z
        step = torch.where(refine, f / (exp_w * (w + 1.0) - (w + 2.0) * f / (2.0 * w + 2.0)), torch.zeros_like(w))
        w = w - step
        if not bool((step.abs() > 4 * _EPS64 * (1.0 + w.abs())).any()):
            break
    return torch.where(refine, w, series).to(x.dtype)
