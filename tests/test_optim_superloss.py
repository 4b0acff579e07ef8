"""SuperLoss: the exact Lambert W, the closed-form confidences, the running threshold τ and its checkpointing."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import scipy.special
import torch

from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.curricula import SuperLoss, lambert_w0, superloss_confidence

pytestmark = pytest.mark.numerics


def test_lambert_w0_matches_scipy_to_float64_precision():
    x = torch.cat([
        torch.tensor([-0.3, -0.25, -0.1, 0.0, 1e-9, 0.5, 1.0, math.e, 3.0, 10.0, 1e4, 1e100], dtype=torch.float64),
        torch.linspace(-1 / math.e + 1e-6, 60.0, 20001, dtype=torch.float64),
    ])
    w = lambert_w0(x).numpy()
    reference = scipy.special.lambertw(x.numpy()).real
    assert np.max(np.abs(w - reference) / np.maximum(1.0, np.abs(reference))) < 1e-13
    assert np.max(np.abs(w * np.exp(w) - x.numpy()) / np.maximum(1.0, np.abs(x.numpy()))) < 1e-14  # w·e^w = x


def test_lambert_w0_near_the_branch_point_matches_50_digit_arithmetic():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    gaps = [1e-17, 1e-15, 1e-12, 1e-9, 1e-6, 1e-4, 1e-3]  # x − (−1/e), where W₀ is ill-conditioned
    x = [float(-mpmath.exp(-1) + gap) for gap in gaps]
    w = lambert_w0(torch.tensor(x, dtype=torch.float64)).tolist()
    exact = [float(mpmath.lambertw(mpmath.mpf(value)).real) for value in x]
    assert w == pytest.approx(exact, rel=4e-15)


def test_lambert_w0_at_the_branch_point_in_any_precision_and_refuses_below_it():
    for dtype in (torch.float32, torch.float64):
        assert lambert_w0(torch.tensor([-1 / math.e, 0.0, math.e], dtype=dtype)).tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-7)
    with pytest.raises(UnlearnMCError, match="−1/e"):
        lambert_w0(torch.tensor([-0.5]))


def test_confidence_is_the_closed_form_minimiser():
    tau, lam = 2.0, 10.0
    losses = torch.tensor([2.0, 0.0, 0.5, 1.9, 2.1, 5.0, 40.0], dtype=torch.float64)
    sigma = superloss_confidence(losses, tau, lam)
    beta = ((losses - tau) / lam).numpy()
    expected = np.exp(-scipy.special.lambertw(0.5 * np.maximum(-2 / math.e, beta)).real)
    assert sigma.numpy() == pytest.approx(expected, rel=1e-12)
    assert sigma[0].item() == pytest.approx(1.0, abs=1e-15)  # σ = 1 at ℓ = τ
    assert (sigma[1:4] > 1.0).all() and (sigma[4:] < 1.0).all()  # easy samples weigh more, hard ones less
    assert torch.all(sigma[1:4].diff() < 0) and torch.all(sigma[4:].diff() < 0)  # monotone in the loss
    # σ minimises (ℓ − τ)·σ + λ·(log σ)²: the derivative (ℓ − τ) + 2λ·log(σ)/σ vanishes there
    stationarity = (losses - tau) + 2 * lam * torch.log(sigma) / sigma
    assert stationarity.abs().max().item() < 1e-12


def test_very_easy_samples_are_capped_at_e():
    sigma = superloss_confidence(torch.tensor([0.0, 0.1]), tau=50.0, lam=10.0)  # β < −2/e
    assert sigma.tolist() == pytest.approx([math.e, math.e], rel=1e-6)


def test_weighted_mean_with_fixed_tau_and_its_gradient_is_sigma_over_n_times_the_loss_gradient():
    torch.manual_seed(0)
    inputs, targets = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, dtype=torch.float64) * 3
    weights = torch.randn(3, dtype=torch.float64, requires_grad=True)
    per_sample = (inputs @ weights - targets) ** 2
    superloss = SuperLoss(lam=10.0, tau=4.0)
    value = superloss(per_sample, "train")
    sigma = superloss_confidence(per_sample.detach(), 4.0, 10.0)
    superloss_value = ((per_sample.detach() - 4.0) * sigma + 10.0 * torch.log(sigma) ** 2).mean()  # (ℓ−τ)σ + λ(log σ)²
    assert value.item() == pytest.approx(superloss_value.item(), rel=1e-14)
    (gradient,) = torch.autograd.grad(value, weights, retain_graph=True)
    per_sample_grads = torch.stack([torch.autograd.grad(per_sample[i], weights, retain_graph=True)[0] for i in range(6)])
    expected = (sigma[:, None] / 6 * per_sample_grads).sum(0)
    assert torch.allclose(gradient, expected, rtol=1e-12)


def test_tau_is_an_exponential_moving_average_of_batch_means_kept_per_key():
    superloss = SuperLoss(lam=10.0, momentum=0.9)
    assert superloss.tau("forget") is None
    superloss(torch.tensor([1.0, 3.0]), "forget")  # first batch: τ = its mean
    assert superloss.tau("forget") == pytest.approx(2.0)
    superloss(torch.tensor([6.0, 6.0, 9.0]), "forget")  # mean 7
    assert superloss.tau("forget") == pytest.approx(0.9 * 2.0 + 0.1 * 7.0)
    superloss(torch.tensor([10.0]), "retain")
    assert superloss.tau("retain") == pytest.approx(10.0)
    assert superloss.tau("forget") == pytest.approx(2.5)
    # the current batch counts before σ is computed: a batch at its own mean gets σ = 1 with momentum 0, so
    # (ℓ−τ)σ + λ(log σ)² = 0
    batch = torch.tensor([3.0, 3.0])
    assert SuperLoss(momentum=0.0)(batch, "x").item() == pytest.approx(0.0, abs=1e-12)


def test_fixed_tau_never_moves_and_bad_settings_are_refused():
    superloss = SuperLoss(tau=math.log(10))
    superloss(torch.tensor([5.0, 7.0]), "train")
    assert superloss.tau("train") == pytest.approx(math.log(10)) and superloss.taus == {}
    with pytest.raises(UnlearnMCError, match="lam"):
        SuperLoss(lam=0.0)
    with pytest.raises(UnlearnMCError, match="momentum"):
        SuperLoss(momentum=1.0)


def test_tau_survives_a_checkpoint_read_with_weights_only():
    holder = torch.nn.Module()
    holder.curriculum = SuperLoss()
    holder.curriculum(torch.tensor([1.0, 2.0]), "forget")
    holder.curriculum(torch.tensor([4.0]), "retain")
    buffer = io.BytesIO()
    torch.save(holder.state_dict(), buffer)
    buffer.seek(0)
    restored = torch.nn.Module()
    restored.curriculum = SuperLoss()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.curriculum.taus == {"forget": pytest.approx(1.5), "retain": pytest.approx(4.0)}


def test_half_precision_losses_are_reduced_in_fp32():
    losses = torch.tensor([0.5, 1.0, 4.0], dtype=torch.bfloat16, requires_grad=True)
    value = SuperLoss()(losses, "train")
    assert value.dtype == torch.float32
    value.backward()
    assert losses.grad is not None and torch.isfinite(losses.grad.float()).all()


def test_an_empty_batch_gives_zero_and_leaves_tau_alone():
    superloss = SuperLoss()
    assert superloss(torch.zeros(0), "forget").item() == 0.0
    assert superloss.tau("forget") is None


def test_tau_goes_through_an_all_reduce_when_distributed(monkeypatch):
    import socket

    import torch.distributed as dist

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    reduced = []
    real_all_reduce = dist.all_reduce
    monkeypatch.setattr(dist, "all_reduce", lambda tensor, *a, **k: (reduced.append(tensor.tolist()), real_all_reduce(tensor, *a, **k))[1])
    try:
        superloss = SuperLoss()
        superloss(torch.tensor([1.0, 2.0, 6.0]), "forget")
    finally:
        dist.destroy_process_group()
    assert reduced == [[9.0, 3.0]]  # the sum and the count, so τ is the global mean
    assert superloss.tau("forget") == pytest.approx(3.0)
