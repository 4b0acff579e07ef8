"""Method recipes as their references define them (issue 12): NPO's reference in the student's BatchNorm
mode, SCRUB's CIFAR-10 max-step epochs, RandomLabel/SalUn's two pass schedules, the runtime terms, resuming
with the runtime and avg_gap, the SuperLoss value, the divergence guard's last finite weights and
``best_by=auto`` under random forgetting without a retrain reference.

Fast: a width-8 digits SmallCNN with random weights and data-set BatchNorm statistics stands for the original.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import make_datamodule, quiet_trainer
from torch.utils.data import DataLoader

from unlearn_mc.lightning_cli import resolved_config
from unlearn_mc.models import SmallCNN
from unlearn_mc.unlearning import NPO

pytestmark = pytest.mark.numerics
ROOT = Path(__file__).resolve().parents[1]


def tiny_net() -> SmallCNN:
    return SmallCNN(in_channels=1, num_classes=10, width=8)


@dataclass
class Tiny:
    workdir: Path
    original: Path  # random weights, BatchNorm running statistics of all of D

    def datamodule(self, rule: str = "random", **overrides):
        return make_datamodule(self.workdir, rule, **overrides)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Tiny:
    workdir = tmp_path_factory.mktemp("recipes")
    torch.manual_seed(0)
    net = tiny_net().train()
    datamodule = make_datamodule(workdir, "class")
    datamodule.setup()
    with torch.no_grad():  # running statistics of the whole training set, as a trained original has
        for inputs, _ in DataLoader(datamodule.train_dataset("full"), batch_size=256):
            net(inputs)
    path = workdir / "original.pt"
    torch.save(net.state_dict(), path)
    return Tiny(workdir, path)


def forget_batch(tiny: Tiny, rule: str = "class", size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    datamodule = tiny.datamodule(rule)
    datamodule.setup()
    inputs, targets = next(iter(DataLoader(datamodule.train_dataset("forget"), batch_size=size)))
    return inputs, targets


# ------------------------------------------------------------------ 1. NPO
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_npo_weight_is_exactly_one_at_the_start_in_either_mode(tiny, mode):
    module = NPO(tiny_net(), str(tiny.original), beta=0.1).train(mode == "train")
    inputs, targets = forget_batch(tiny)  # one class: its batch statistics are far from the running ones
    running = {name: b.clone() for name, b in module.reference.named_buffers()}
    current, reference = module.forget_losses(module.net, inputs, targets)
    assert torch.equal(current, reference)
    weight = 2 * torch.sigmoid(module.beta * (reference - current.detach()))
    assert torch.equal(weight, torch.ones_like(weight))
    # the reference's running statistics are untouched and it is back in eval mode
    assert all(torch.equal(b, running[name]) for name, b in module.reference.named_buffers())
    assert not any(m.training for m in module.reference.modules())
    if mode == "train":  # the eval-mode reference (the old convention) would not have matched
        with torch.no_grad():
            eval_reference = torch.nn.functional.cross_entropy(module.reference(inputs), targets, reduction="none")
        assert not torch.allclose(eval_reference, current.detach())


# ------------------------------------------------------------------ 2. SCRUB's CIFAR-10 recipe
def cifar_recipe(name: str) -> dict:
    """The shipped config as ``fit`` reads it (with what it takes from ``configs/cifar10/defaults/``)."""
    return resolved_config(ROOT / "configs/cifar10/unlearn" / f"{name}.yaml")


def test_scrub_cifar10_recipe_max_steps_in_epochs_one_and_two_only(tiny):
    config = cifar_recipe("scrub")
    args = config["model"]["init_args"]
    assert config["trainer"]["max_epochs"] == 3
    assert args["max_steps_epochs"] == 2  # the repository's `epoch <= msteps`, msteps = 2, epochs counted from 1
    # its forget batch 512: 4,500 forget images give ceil(4500 / 512) = 9 max-steps per max epoch
    assert args["max_steps_per_epoch"] == math.ceil(4500 / 512) == 9
    assert config["data"]["init_args"]["batch_size"] == 256
    from unlearn_mc.unlearning import SCRUB

    module = SCRUB(tiny_net(), str(tiny.original), max_steps_epochs=args["max_steps_epochs"], max_steps_per_epoch=args["max_steps_per_epoch"])
    steps_per_epoch = math.ceil(40500 / 256)  # one pass over D_r
    max_steps = [sum(module.phase_at(epoch, step) == "max" for step in range(steps_per_epoch)) for epoch in range(3)]
    assert max_steps == [9, 9, 0]


# ------------------------------------------------------------------ 3. RandomLabel / SalUn passes
def spying(cls):
    """``cls`` recording, at every training step, which part of the dict batch each network call saw."""

    class Spy(cls):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.calls: list[tuple[int, int, list[str]]] = []  # (epoch, batch_idx, parts seen)
            self._batch = None
            self.net.register_forward_pre_hook(self._see)

        def _see(self, _module, args) -> None:
            if self._batch is None:
                return
            x = args[0]
            forget, retain = self._batch["forget"][0], self._batch["retain"][0]
            seen = "forget" if torch.equal(x, forget) else "retain" if torch.equal(x, retain) else \
                "joint" if torch.equal(x, torch.cat([forget, retain])) else "other"
            self.calls[-1][2].append(seen)

        def training_step(self, batch, batch_idx: int):
            self._batch = batch
            self.calls.append((self.current_epoch, batch_idx, []))
            try:
                return super().training_step(batch, batch_idx)
            finally:
                self._batch = None

    return Spy


@pytest.mark.parametrize("method", ["RandomLabel", "SalUn"])
@pytest.mark.parametrize("passes", ["concatenated", "forget_then_retain"])
def test_random_label_passes_train_on_what_they_say(tiny, method, passes):
    import unlearn_mc.unlearning as methods

    module = spying(getattr(methods, method))(
        tiny_net(), str(tiny.original), optimizer=lambda p: torch.optim.SGD(p, lr=0.01), passes=passes, label_draw="all_classes",
    )
    datamodule = tiny.datamodule("random")
    quiet_trainer(max_epochs=2, limit_val_batches=0).fit(module, datamodule=datamodule)
    forget_steps = math.ceil(len(datamodule.train_dataset("forget")) / 64)
    retain_steps = math.ceil(len(datamodule.train_dataset("retain")) / 64)
    assert len(module.calls) == 2 * retain_steps
    for epoch, batch_idx, seen in module.calls:
        if passes == "concatenated":
            expected = ["joint"]
        else:  # a pass over the forget loader, then the rest of the epoch on retain batches
            expected = ["forget"] if batch_idx < forget_steps else ["retain"]
        assert seen == expected, (epoch, batch_idx)
    assert all(torch.isfinite(p).all() for p in module.net.parameters())


def test_forget_then_retain_steps_are_each_one_term(tiny):
    from unlearn_mc.unlearning import RandomLabel

    module = RandomLabel(tiny_net(), str(tiny.original), passes="forget_then_retain", forget_weight=0.3, retain_weight=0.7).eval()
    forget, retain = forget_batch(tiny, "random", 32), forget_batch(tiny, "class", 32)
    batches = {"forget": forget, "retain": retain}
    ce = torch.nn.functional.cross_entropy
    module.phase = "retain"
    torch.testing.assert_close(module.loss(module.net, batches), 0.7 * ce(module.net(retain[0]), retain[1]))
    module.phase = "forget"
    torch.manual_seed(3)
    got = module.loss(module.net, batches)
    torch.manual_seed(3)
    wrong = forget[1].add(torch.randint(1, 10, forget[1].shape)) % 10  # other_classes: ỹ ≠ y
    torch.testing.assert_close(got, 0.3 * ce(module.net(forget[0]), wrong))


def test_label_draws_exclude_or_include_the_true_class():
    from unlearn_mc.unlearning.random_label import random_labels

    targets = torch.arange(10).repeat(500)
    other = random_labels(targets, 10, "other_classes")
    anything = random_labels(targets, 10, "all_classes")
    assert not (other == targets).any()
    assert set(other.tolist()) == set(range(10))
    hits = (anything == targets).float().mean().item()
    assert 0.07 < hits < 0.13  # ỹ = y with probability 1/C
    assert set(anything.tolist()) == set(range(10))


# ------------------------------------------------------------------ 4. runtime terms
def test_salun_mask_time_is_its_own_term_and_part_of_the_runtime(tiny):
    from unlearn_mc.unlearning import SalUn

    module = SalUn(tiny_net(), str(tiny.original), optimizer=lambda p: torch.optim.SGD(p, lr=0.01))
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(module, datamodule=tiny.datamodule("random"))
    logged = trainer.callback_metrics
    assert "unlearn/mask_s" in logged and "unlearn/hessian_s" not in logged
    assert 0 < float(logged["unlearn/mask_s"]) <= float(logged["unlearn/runtime_s"])
    assert module.runtime_s > module.runtime_terms["mask_s"] > 0  # the two training steps count too


def test_sophia_hessian_refresh_time_is_its_own_term_and_part_of_the_runtime(tiny):
    from unlearn_mc.optim import GaussNewtonBartlett, SophiaG
    from unlearn_mc.unlearning import FineTune

    module = FineTune(tiny_net(), str(tiny.original), optimizer=lambda p: SophiaG(p, lr=1e-3, update_period=1))
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, callbacks=[GaussNewtonBartlett()])
    trainer.fit(module, datamodule=tiny.datamodule("random"))
    logged = trainer.callback_metrics
    assert 0 < float(logged["unlearn/hessian_s"]) <= float(logged["unlearn/runtime_s"])
    assert trainer.optimizers[0].hessian_updates == 3


# ------------------------------------------------------------------ 5. resume
@pytest.mark.parametrize("reference", ["restored", "recomputed"])
def test_a_resumed_run_keeps_its_runtime_and_avg_gap(tiny, tmp_path, reference):
    from unlearn_mc.unlearning import FineTune

    def module() -> FineTune:
        return FineTune(tiny_net(), str(tiny.original), retrain=str(tiny.original), optimizer=lambda p: torch.optim.SGD(p, lr=0.01))

    settings = dict(limit_train_batches=3, limit_val_batches=1)
    first = module()
    quiet_trainer(max_epochs=1, **settings).fit(first, datamodule=tiny.datamodule("random"))
    path = tmp_path / "mid.ckpt"
    first.trainer.save_checkpoint(path)
    if reference == "recomputed":  # a checkpoint without the saved metrics (e.g. from before they were saved)
        checkpoint = torch.load(path, weights_only=True)
        del checkpoint["unlearn_mc_unlearning"]
        torch.save(checkpoint, path)
    assert first.runtime_s > 0
    resumed = module()
    trainer = quiet_trainer(max_epochs=2, **settings)
    trainer.fit(resumed, datamodule=tiny.datamodule("random"), ckpt_path=str(path))
    assert trainer.global_step == 6
    assert "val/avg_gap" in trainer.callback_metrics
    assert resumed.retrain_metrics == pytest.approx(first.retrain_metrics)
    if reference == "restored":
        assert float(trainer.callback_metrics["unlearn/runtime_s"]) > first.runtime_s  # accumulated, not restarted at 0
    else:
        assert float(trainer.callback_metrics["unlearn/runtime_s"]) > 0


# ------------------------------------------------------------------ 7. divergence guard
class PoisonedSGD(torch.optim.SGD):
    """SGD that writes NaN into its first parameter at its ``poison_at``-th step (counted from 1)."""

    def __init__(self, params, lr: float, poison_at: int) -> None:
        super().__init__(params, lr=lr)
        self.poison_at, self.calls = poison_at, 0

    def step(self, closure=None):
        loss = super().step(closure)
        self.calls += 1
        if self.calls == self.poison_at:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return loss


class StateAt(__import__("lightning").Callback):
    """Keeps a copy of the net's state after training batch ``batch_idx``."""

    def __init__(self, batch_idx: int) -> None:
        self.batch_idx, self.state = batch_idx, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx == self.batch_idx:
            self.state = {name: value.clone() for name, value in pl_module.net.state_dict().items()}


@pytest.mark.parametrize("what", ["weights", "loss"])
@pytest.mark.filterwarnings("ignore:`training_step` returned `None`")
def test_divergence_guard_keeps_the_weights_from_before_the_non_finite_step(tiny, what):
    from unlearn_mc.unlearning import FineTune

    class NaNLossAtStep2(FineTune):
        def loss(self, forward, batches):
            loss = super().loss(forward, batches)
            return loss * float("nan") if self.global_step == 2 else loss

    if what == "weights":
        module = FineTune(tiny_net(), str(tiny.original), optimizer=lambda p: PoisonedSGD(p, lr=0.05, poison_at=3))
    else:
        module = NaNLossAtStep2(tiny_net(), str(tiny.original), optimizer=lambda p: torch.optim.SGD(p, lr=0.05))
    original = {name: value.clone() for name, value in module.net.state_dict().items()}
    last_finite = StateAt(batch_idx=1)  # after the 2nd step; the 3rd (batch 2) is the non-finite one
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=6, limit_val_batches=0, callbacks=[last_finite])
    with pytest.warns(UserWarning, match="weights from before that step were kept"):
        trainer.fit(module, datamodule=tiny.datamodule("random"))
    assert module.stop_reason.startswith("the weights became non-finite" if what == "weights" else "the loss became nan")
    state = module.net.state_dict()
    assert state.keys() == last_finite.state.keys()
    for name, value in state.items():
        assert torch.equal(value, last_finite.state[name]), name  # bit for bit, BatchNorm statistics included
    assert any(not torch.equal(state[name], original[name]) for name in state)  # not the epoch-start weights


# ------------------------------------------------------------------ 6. SuperLoss value
def test_superloss_returns_the_superloss_value_with_the_gradient_of_sigma_times_loss():
    from unlearn_mc.curricula import SuperLoss, superloss_confidence

    losses = torch.tensor([0.05, 0.7, 2.3, 4.0, 9.0], dtype=torch.float64, requires_grad=True)
    tau, lam = 2.0, 10.0
    value = SuperLoss(lam=lam, tau=tau)(losses, "forget")
    sigma = superloss_confidence(losses.detach(), tau, lam)
    expected = ((losses.detach() - tau) * sigma + lam * torch.log(sigma) ** 2).mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-14)
    assert value.item() != pytest.approx((sigma * losses.detach()).mean().item(), rel=1e-3)  # not mean(σ·ℓ)
    (gradient,) = torch.autograd.grad(value, losses)
    torch.testing.assert_close(gradient, sigma / len(losses), rtol=1e-14, atol=0)


# ------------------------------------------------------------------ 8. best_by=auto without a retrain reference
def test_best_by_auto_without_retrain_does_not_reward_over_forgetting_under_random_forgetting():
    from unlearn_mc.curves.summary import best_point

    ts = [0.0, 0.25, 0.5, 0.75, 1.0]
    rows = [  # original-like → retrain-like (forget ≈ test) → over-forgetting that costs retain and test accuracy
        {"forget_acc": 0.99, "retain_acc": 0.99, "test_acc": 0.95},
        {"forget_acc": 0.97, "retain_acc": 0.985, "test_acc": 0.95},
        {"forget_acc": 0.95, "retain_acc": 0.98, "test_acc": 0.95},
        {"forget_acc": 0.80, "retain_acc": 0.94, "test_acc": 0.90},
        {"forget_acc": 0.60, "retain_acc": 0.91, "test_acc": 0.85},
    ]
    best = best_point(ts, rows, "auto")
    lowest_forget = min(range(len(rows)), key=lambda k: rows[k]["forget_acc"])
    assert best["criterion"] == "proxy_gap" and best["floor_met"]
    assert best["t"] == 0.5 and best["index"] != lowest_forget
    assert best["value"] == pytest.approx((0.0 + 0.01 + 0.0) / 3)
    # under class forgetting (its rows have test_forget_class_acc) lower forget accuracy is the goal
    class_rows = [{**row, "test_forget_class_acc": row["forget_acc"]} for row in rows]
    assert best_point(ts, class_rows, "auto")["t"] == 1.0
    # with the retrain reference, avg_gap decides
    gap_rows = [{**row, "avg_gap": abs(t - 0.75)} for t, row in zip(ts, rows)]
    assert best_point(ts, gap_rows, "auto")["t"] == 0.75
