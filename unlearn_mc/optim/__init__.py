"""Optimisers: building them from a config, SophiaG, its Gauss-Newton-Bartlett Hessian estimates, second-order set-up.

The curricula (SuperLoss, DataCurriculum) live in ``unlearn_mc.curricula``, the record of a run's training
dynamics in ``unlearn_mc.dynamics``.
"""

from unlearn_mc.optim.configure import build_optimizers
from unlearn_mc.optim.hessian import GaussNewtonBartlett, gauss_newton_bartlett
from unlearn_mc.optim.second_order import needs_create_graph, optimizer_order
from unlearn_mc.optim.sophia import SophiaG

__all__ = ["build_optimizers", "GaussNewtonBartlett", "gauss_newton_bartlett", "needs_create_graph", "optimizer_order", "SophiaG"]
