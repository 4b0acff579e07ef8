"""``DynamicsHooks``: the two things a LightningModule does for the training dynamics of this package."""

from __future__ import annotations

import lightning as L
from torch import Tensor

from unlearn_mc.dynamics.record import DYNAMICS_HPARAM, training_dynamics
from unlearn_mc.optim.second_order import needs_create_graph


class DynamicsHooks(L.LightningModule):
    """A LightningModule mixin (put it first among the bases):

    - ``backward`` keeps the graph (``create_graph=True``) on the steps where an optimiser needs
      Hessian-vector products (``needs_create_graph``: pytorch-optimizer's SophiaH/AdaHessian);
    - ``on_fit_start`` records ``training_dynamics(self)`` as ``hparams["dynamics"]``, so the
      logger's hyper-parameters and every checkpoint say which seed, optimiser (and its order)
      and curriculum produced the weights. Subclasses overriding ``on_fit_start`` call ``super()``.
    """

    def backward(self, loss: Tensor, *args, **kwargs) -> None:
        if any(needs_create_graph(optimizer) for optimizer in self.trainer.optimizers):
            kwargs.setdefault("create_graph", True)
        super().backward(loss, *args, **kwargs)

    def on_fit_start(self) -> None:
        dynamics = training_dynamics(self)
        self.hparams[DYNAMICS_HPARAM] = dynamics
        # Lightning logs the hyper-parameters as they were at save_hyperparameters(); add the record there too
        initial = getattr(self, "_hparams_initial", None)
        if initial is not None:
            initial[DYNAMICS_HPARAM] = dynamics
        super().on_fit_start()
