"""Second-order optimisation: SophiaG against a hand computation, the GNB Hessian estimate and its callback,
and pytorch-optimizer's SophiaH (Hessian-vector products) inside Lightning."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from pytorch_optimizer import SophiaH
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import quiet_trainer
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.dynamics import DynamicsHooks
from unlearn_mc.optim import GaussNewtonBartlett, SophiaG, gauss_newton_bartlett, needs_create_graph, optimizer_order

pytestmark = pytest.mark.numerics


def two_parameters() -> nn.Parameter:
    return nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))


def test_sophiag_two_steps_by_hand_with_clipping_and_decoupled_weight_decay():
    theta = two_parameters()
    optimizer = SophiaG([theta], lr=0.1, betas=(0.9, 0.95), rho=0.04, weight_decay=0.1, eps=1e-15)
    optimizer.update_hessian([torch.tensor([1.0, 2.0], dtype=torch.float64)])  # h = 0.05·[1, 2] = [0.05, 0.1]
    theta.grad = torch.tensor([0.5, -0.001], dtype=torch.float64)
    optimizer.step()
    # θ·(1 − 0.1·0.1) = [0.99, −1.98]; m = 0.1·g = [0.05, −1e-4]; |m|/(ρh) = [0.05/0.002 = 25 → 1, 1e-4/0.004 = 0.025]
    assert theta.tolist() == pytest.approx([0.99 - 0.1, -1.98 + 0.1 * 0.025], abs=1e-15)
    theta.grad = torch.tensor([-0.2, 0.003], dtype=torch.float64)
    optimizer.step()
    # θ·0.99 = [0.8811, −1.957725]; m = 0.9·m + 0.1·g = [0.025, 2.1e-4]; ratio = [12.5 → 1, 0.0525]
    assert theta.tolist() == pytest.approx([0.8811 - 0.1, -1.957725 - 0.1 * 0.0525], abs=1e-15)
    state = optimizer.state[theta]
    assert state["exp_avg"].tolist() == pytest.approx([0.025, 2.1e-4], abs=1e-15)
    assert state["hessian"].tolist() == pytest.approx([0.05, 0.1], abs=1e-15)
    optimizer.update_hessian([torch.tensor([3.0, 0.0], dtype=torch.float64)])
    assert state["hessian"].tolist() == pytest.approx([0.95 * 0.05 + 0.05 * 3.0, 0.95 * 0.1], abs=1e-15)


def test_sophiag_without_hessian_moves_every_coordinate_by_lr_times_sign_and_can_maximize():
    theta = two_parameters()
    optimizer = SophiaG([theta], lr=0.01, maximize=True)
    theta.grad = torch.tensor([1e-6, -3.0], dtype=torch.float64)
    optimizer.step()
    assert theta.tolist() == pytest.approx([1.0 + 0.01, -2.0 - 0.01], abs=1e-15)


def test_sophiag_state_round_trip_and_bad_settings():
    theta = two_parameters()
    optimizer = SophiaG([theta], lr=0.1)
    optimizer.update_hessian([torch.ones(2, dtype=torch.float64)])
    theta.grad = torch.ones(2, dtype=torch.float64)
    optimizer.step()
    restored = SophiaG([theta], lr=0.1)
    restored.load_state_dict(optimizer.state_dict())
    assert (restored.steps_taken, restored.hessian_updates) == (1, 1)
    assert torch.equal(restored.state[theta]["hessian"], optimizer.state[theta]["hessian"])
    assert optimizer_order(optimizer) == "second" and optimizer_order(torch.optim.SGD([theta], lr=0.1)) == "first"
    with pytest.raises(UnlearnMCError, match="rho"):
        SophiaG([theta], rho=0.0)
    with pytest.raises(UnlearnMCError, match="update_period"):
        SophiaG([theta], update_period=0)
    with pytest.raises(UnlearnMCError, match="estimates"):
        optimizer.update_hessian([])


def test_sophiag_warns_when_no_hessian_ever_arrives():
    theta = two_parameters()
    optimizer = SophiaG([theta], update_period=2)
    theta.grad = torch.ones(2, dtype=torch.float64)
    optimizer.step()
    optimizer.step()
    with pytest.warns(UserWarning, match="GaussNewtonBartlett"):
        optimizer.step()


def test_gauss_newton_bartlett_is_batch_size_times_squared_mean_gradient_at_sampled_labels():
    torch.manual_seed(0)
    linear = nn.Linear(4, 3).double()
    inputs = torch.randn(5, 4, dtype=torch.float64)
    torch.manual_seed(1)
    estimates = gauss_newton_bartlett(linear, inputs, [linear.weight, linear.bias])
    torch.manual_seed(1)
    logits = linear(inputs).detach()
    sampled = torch.distributions.Categorical(logits=logits).sample()
    residual = torch.softmax(logits, dim=1) - F.one_hot(sampled, 3).double()  # ∂CE/∂logits per sample
    grad_weight, grad_bias = residual.T @ inputs / 5, residual.mean(0)
    assert torch.allclose(estimates[0], 5 * grad_weight**2, rtol=1e-5)
    assert torch.allclose(estimates[1], 5 * grad_bias**2, rtol=1e-5)
    assert linear.weight.grad is None  # .grad untouched


class Classifier(DynamicsHooks):
    """A tiny classifier with BatchNorm, trained on random data by any optimiser factory."""

    def __init__(self, make_optimizer) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
        self.make_optimizer = make_optimizer

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        return F.cross_entropy(self.net(inputs), targets)

    def configure_optimizers(self):
        return self.make_optimizer(self.net.parameters())


def random_loader(samples: int = 28, batch_size: int = 4) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(samples, 4, generator=generator), torch.randint(0, 3, (samples,), generator=generator))
    return DataLoader(data, batch_size=batch_size)


def test_the_callback_refreshes_every_update_period_steps_and_records_the_dynamics():
    L.seed_everything(3, verbose=False)
    module = Classifier(lambda params: SophiaG(params, lr=1e-3, update_period=3))
    trainer = quiet_trainer(max_epochs=1, callbacks=[GaussNewtonBartlett()])
    trainer.fit(module, train_dataloaders=random_loader())  # 7 steps: refreshes before steps 0, 3 and 6
    optimizer = trainer.optimizers[0]
    assert (optimizer.steps_taken, optimizer.hessian_updates) == (7, 3)
    assert all(optimizer.state[p]["hessian"].abs().sum() > 0 for p in optimizer.hessian_parameters())
    dynamics = module.hparams["dynamics"]
    assert dynamics["optimizer"] == "unlearn_mc.optim.sophia.SophiaG" and dynamics["optimizer_order"] == "second"
    assert dynamics["seed"] == 3 and dynamics["curriculum"] == "none"


def test_the_extra_forward_pass_leaves_batchnorm_statistics_alone():
    module = Classifier(lambda params: SophiaG(params))
    module.train()
    optimizer = module.configure_optimizers()
    before = {name: buffer.clone() for name, buffer in module.named_buffers()}
    trainer = SimpleNamespace(global_step=0, optimizers=[optimizer], world_size=1)
    GaussNewtonBartlett().on_train_batch_start(trainer, module, next(iter(random_loader())), 0)
    assert optimizer.hessian_updates == 1
    assert all(torch.equal(before[name], buffer) for name, buffer in module.named_buffers())


def test_sophiah_update_matches_its_formula_on_a_diagonal_quadratic():
    # L = ½·Σ a_i θ_i²: Hutchinson with Rademacher z is exact, ĥ = z ⊙ (diag(a)·z) = a
    curvature = torch.tensor([4.0, 0.5], dtype=torch.float64)
    theta = two_parameters()
    lr, (beta1, beta2), clip = 0.1, (0.96, 0.99), 0.01
    optimizer = SophiaH([theta], lr=lr, betas=(beta1, beta2), p=clip, update_period=1, hessian_distribution="rademacher")
    assert needs_create_graph(optimizer) and optimizer_order(optimizer) == "second"
    loss = 0.5 * (curvature * theta**2).sum()
    loss.backward(create_graph=True)
    start, grad = theta.detach().clone(), theta.grad.detach().clone()
    optimizer.step()
    momentum, hessian = (1 - beta1) * grad, (1 - beta2) * curvature
    expected = start - lr * (momentum / hessian).clamp(-clip, clip)
    assert theta.detach().tolist() == pytest.approx(expected.tolist(), abs=1e-14)


def test_hessian_vector_product_optimisers_get_their_graph_inside_lightning():
    L.seed_everything(0, verbose=False)
    module = Classifier(lambda params: SophiaH(params, lr=1e-2, update_period=2))
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=4)
    trainer.fit(module, train_dataloaders=random_loader())  # Hutchinson at steps 1 and 3 needs create_graph=True
    optimizer = trainer.optimizers[0]
    assert optimizer.param_groups[0]["step"] == 4
    assert all(optimizer.state[p]["hessian_moment"].abs().sum() > 0 for group in optimizer.param_groups for p in group["params"])
    assert not needs_create_graph(torch.optim.SGD(module.parameters(), lr=0.1))
