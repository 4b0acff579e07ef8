"""SophiaG (Liu et al. 2024, "Sophia: A Scalable Stochastic Second-order Optimizer"), the optimiser of SOUL (Jia et al. 2024)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

from unlearn_mc.errors import UnlearnMCError


class SophiaG(torch.optim.Optimizer):
    """Clipped, diagonally preconditioned momentum with decoupled weight decay.

    For each parameter θ with gradient g, at every ``step``:

    θ ← θ·(1 − lr·weight_decay)
    m ← β₁·m + (1 − β₁)·g
    θ ← θ − lr·sign(m)·min(|m| / (ρ·h + ε), 1)

    where h is an exponential moving average of diagonal Hessian estimates ĥ, refreshed from
    outside every ``update_period`` steps by ``update_hessian``: h ← β₂·h + (1 − β₂)·ĥ (h = 0
    before the first estimate, where the step is lr·sign(m)). In this package the estimates come
    from the ``GaussNewtonBartlett`` callback (ĥ = B·ĝ⊙ĝ, ĝ the mean gradient of the
    cross-entropy at labels sampled from the model). ``second_order = True`` marks it for the
    recorded training dynamics.

    Args:
        params: parameters or parameter groups.
        lr: learning rate; every coordinate moves by at most lr per step (plus weight decay).
        betas: (β₁, β₂), the momentum and Hessian averaging factors.
        rho: ρ, the scale of the Hessian in the denominator (the clipping threshold is |m| = ρ·h).
        weight_decay: decoupled weight decay, applied as θ·(1 − lr·weight_decay).
        eps: ε of the denominator.
        update_period: k, the number of steps between Hessian refreshes (read by ``GaussNewtonBartlett``).
        maximize: ascend instead of descend (g → −g).
    """

    second_order = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.95),
        rho: float = 0.04,
        weight_decay: float = 0.0,
        eps: float = 1e-15,
        update_period: int = 10,
        maximize: bool = False,
    ) -> None:
        if not lr >= 0.0:
            raise UnlearnMCError(f"SophiaG lr={lr!r} must be non-negative.")
        if len(betas) != 2 or not all(0.0 <= beta < 1.0 for beta in betas):
            raise UnlearnMCError(f"SophiaG betas={betas!r} must be two numbers in [0, 1).")
        if not rho > 0.0:
            raise UnlearnMCError(f"SophiaG rho={rho!r} must be positive.")
        if not weight_decay >= 0.0:
            raise UnlearnMCError(f"SophiaG weight_decay={weight_decay!r} must be non-negative.")
        if not eps > 0.0:
            raise UnlearnMCError(f"SophiaG eps={eps!r} must be positive.")
        if isinstance(update_period, bool) or not isinstance(update_period, int) or update_period < 1:
            raise UnlearnMCError(f"SophiaG update_period={update_period!r} must be a positive integer (steps between Hessian refreshes).")
        defaults = dict(lr=lr, betas=tuple(betas), rho=rho, weight_decay=weight_decay, eps=eps, maximize=maximize)
        super().__init__(params, defaults)
        self.update_period = update_period
        self.steps_taken = 0
        self.hessian_updates = 0
        self._warned = False

    def hessian_parameters(self) -> list[Tensor]:
        """The parameters whose Hessian ``update_hessian`` expects, in order (every group's, requiring grad)."""
        return [p for group in self.param_groups for p in group["params"] if p.requires_grad]

    def _state(self, p: Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["hessian"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def update_hessian(self, estimates: Sequence[Tensor]) -> None:
        """h ← β₂·h + (1 − β₂)·ĥ for every parameter of ``hessian_parameters()``, given its estimate ĥ in that order."""
        parameters = self.hessian_parameters()
        if len(estimates) != len(parameters):
            raise UnlearnMCError(f"SophiaG.update_hessian got {len(estimates)} estimates for {len(parameters)} parameters.")
        beta2_of = {id(p): group["betas"][1] for group in self.param_groups for p in group["params"]}
        for p, estimate in zip(parameters, estimates):
            if estimate.shape != p.shape:
                raise UnlearnMCError(f"SophiaG.update_hessian: an estimate of shape {tuple(estimate.shape)} was given for a parameter of shape {tuple(p.shape)}.")
            beta2 = beta2_of[id(p)]
            self._state(p)["hessian"].mul_(beta2).add_(estimate.to(p.dtype), alpha=1.0 - beta2)
        self.hessian_updates += 1

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, _), rho, eps = group["lr"], group["betas"], group["rho"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise UnlearnMCError("SophiaG does not support sparse gradients.")
                grad = -p.grad if group["maximize"] else p.grad
                state = self._state(p)
                state["step"] += 1
                p.mul_(1.0 - lr * group["weight_decay"])
                exp_avg = state["exp_avg"]
                exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                ratio = (exp_avg.abs() / (rho * state["hessian"] + eps)).clamp_(max=1.0)
                p.addcmul_(exp_avg.sign(), ratio, value=-lr)
        self.steps_taken += 1
        if self.steps_taken > self.update_period and self.hessian_updates == 0 and not self._warned:
            self._warned = True
            warnings.warn(
                f"SophiaG took {self.steps_taken} steps without a Hessian estimate, so it is sign-momentum descent; add "
                "unlearn_mc.optim.GaussNewtonBartlett to trainer.callbacks to refresh the Hessian.",
                stacklevel=2,
            )
        return loss

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["sophia"] = {"steps_taken": self.steps_taken, "hessian_updates": self.hessian_updates}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        counters = state_dict.pop("sophia", {})
        super().load_state_dict(state_dict)
        self.steps_taken = int(counters.get("steps_taken", 0))
        self.hessian_updates = int(counters.get("hessian_updates", 0))
