"""SuperLoss (Castells, Weinzaepfel & Revaud, NeurIPS 2020): a per-sample confidence curriculum."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor, nn

from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.curricula.lambert_w import lambert_w0


def superloss_confidence(losses: Tensor, tau: float, lam: float) -> Tensor:
    """σ_i = exp(−W₀(½·max(−2/e, β_i))), β_i = (ℓ_i − τ)/λ: the minimiser over σ of (ℓ_i − τ)·σ + λ·(log σ)².

    σ = 1 at ℓ = τ, σ > 1 (up to e) for easier samples (ℓ < τ), σ < 1 for harder ones. Computed
    in float64 without gradient; returned in the dtype of ``losses``.
    """
    beta = (losses.detach().to(torch.float64) - tau) / lam
    return torch.exp(-lambert_w0(0.5 * beta.clamp(min=-2.0 / math.e))).to(losses.dtype)


class SuperLoss(nn.Module):
    """Reduces per-sample losses ℓ_1 … ℓ_n to the SuperLoss SL = (1/n)·Σ_i [(ℓ_i − τ)·σ_i + λ·(log σ_i)²],
    with the confidences σ_i held constant (no gradient through them).

    σ_i = exp(−W₀(½·max(−2/e, (ℓ_i − τ)/λ))) is the optimal confidence of (ℓ_i − τ)·σ + λ·(log σ)²,
    so SL is the value of the SuperLoss itself; its gradient is ∂SL = (1/n)·Σ_i σ_i·∂ℓ_i (τ and σ_i
    constant; the envelope theorem says the same of the optimised objective). The value differs from
    (1/n)·Σ_i σ_i·ℓ_i by a constant of the batch, so the gradient w.r.t. the model is the same. Easy
    samples (ℓ_i < τ) weigh more than 1, hard ones less (Cheng & Amiri 2025 use it as the curriculum of
    an unlearning run).

    The threshold τ is kept per loss term (the ``key`` the module is called with: ``"train"``,
    ``"forget"``, ``"retain"`` …). With ``tau`` given it is that constant. Otherwise it is an
    exponential moving average of the batch means m_t = (1/n)·Σ_i ℓ_i of that key:
    τ_1 = m_1 and τ_t = μ·τ_{t−1} + (1 − μ)·m_t, updated *before* σ is computed, so the
    current batch counts. Under ``torch.distributed`` m_t is the mean over every process's
    samples (one all-reduce), so τ is the same everywhere. τ is saved in the module's state_dict
    (``get_extra_state``) and so survives checkpointing. Half-precision losses (autocast) are
    reduced in fp32; σ is computed in fp64.

    Args:
        lam: λ > 0, the regularisation of the confidences (10 in Cheng & Amiri).
        tau: a fixed threshold (e.g. log C for C classes), or ``None`` for the running mean.
        momentum: μ ∈ [0, 1) of the running mean; 0 makes τ the current batch mean.
    """

    def __init__(self, lam: float = 10.0, tau: float | None = None, momentum: float = 0.9) -> None:
        super().__init__()
        if not lam > 0.0:
            raise UnlearnMCError(f"SuperLoss lam={lam!r} must be positive.")
        if not 0.0 <= momentum < 1.0:
            raise UnlearnMCError(f"SuperLoss momentum={momentum!r} must lie in [0, 1).")
        self.lam = float(lam)
        self.fixed_tau = None if tau is None else float(tau)
        self.momentum = float(momentum)
        self.taus: dict[str, float] = {}

    def forward(self, per_sample: Tensor, key: str = "train") -> Tensor:
        losses = per_sample if per_sample.dtype in (torch.float32, torch.float64) else per_sample.float()
        if losses.numel() == 0:
            return losses.sum()
        tau = self.update_tau(losses, key) if self.fixed_tau is None else self.fixed_tau
        sigma = superloss_confidence(losses, tau, self.lam)
        regulariser = self.lam * torch.log(sigma.to(torch.float64)) ** 2  # a constant of the batch: no gradient
        return ((losses - tau) * sigma + regulariser.to(losses.dtype)).mean()

    @torch.no_grad()
    def update_tau(self, losses: Tensor, key: str) -> float:
        """τ_key ← μ·τ_key + (1 − μ)·mean(ℓ) (τ_key = mean(ℓ) at the key's first batch); returns the new τ_key."""
        total = torch.stack([losses.detach().double().sum(), torch.tensor(float(losses.numel()), dtype=torch.float64, device=losses.device)])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(total)
        mean = float(total[0] / total[1])
        previous = self.taus.get(key)
        self.taus[key] = mean if previous is None else self.momentum * previous + (1.0 - self.momentum) * mean
        return self.taus[key]

    def tau(self, key: str) -> float | None:
        """The τ currently used for ``key`` (``None`` before its first batch when τ is a running mean)."""
        return self.fixed_tau if self.fixed_tau is not None else self.taus.get(key)

    def describe(self) -> dict[str, float | str | None]:
        """The settings, for the run's recorded training dynamics."""
        return {"lam": self.lam, "tau": "running_mean" if self.fixed_tau is None else self.fixed_tau, "momentum": self.momentum}

    def get_extra_state(self) -> dict[str, dict[str, float]]:
        return {"taus": dict(self.taus)}

    def set_extra_state(self, state: dict[str, dict[str, float]]) -> None:
        self.taus = {str(key): float(value) for key, value in dict(state.get("taus", {})).items()}

    def extra_repr(self) -> str:
        tau = "running mean" if self.fixed_tau is None else self.fixed_tau
        return f"lam={self.lam}, tau={tau}, momentum={self.momentum}"
