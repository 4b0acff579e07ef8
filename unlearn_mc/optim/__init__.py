"""Training dynamics: optimiser set-up, the SuperLoss and data-ordering curricula, second-order optimisation."""

from unlearn_mc.optim.configure import build_optimizers
from unlearn_mc.optim.data_curriculum import DataCurriculum
from unlearn_mc.optim.dynamics import read_dynamics, setting_between, training_dynamics
from unlearn_mc.optim.hessian import GaussNewtonBartlett, gauss_newton_bartlett
from unlearn_mc.optim.hooks import DynamicsHooks
from unlearn_mc.optim.lambert_w import lambert_w0
from unlearn_mc.optim.second_order import needs_create_graph, optimizer_order
from unlearn_mc.optim.sophia import SophiaG
from unlearn_mc.optim.superloss import SuperLoss, superloss_confidence

__all__ = [
    "build_optimizers",
    "DataCurriculum",
    "DynamicsHooks",
    "GaussNewtonBartlett",
    "gauss_newton_bartlett",
    "lambert_w0",
    "needs_create_graph",
    "optimizer_order",
    "read_dynamics",
    "setting_between",
    "SophiaG",
    "SuperLoss",
    "superloss_confidence",
    "training_dynamics",
]
