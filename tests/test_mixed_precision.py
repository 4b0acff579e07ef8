"""``bf16-mixed`` on CPU for base training, an unlearning method and a curve fit: each runs and ends within
BF16_TOLERANCE (absolute, on forget/retain/test accuracy) of the same run in fp32 with the same seed.

bf16 keeps 8 bits of mantissa, so logits and gradients differ from fp32 by ~0.4% relative per operation and
the trajectories drift apart a little; the weights, the optimiser state and the curve's combination stay fp32.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import digits_net, quiet_trainer
from measured import TEST_SEED, at_least, within

from unlearn_mc.curves import CurveEvaluation, CurveModule, evaluate_curve
from unlearn_mc.evaluation import evaluate_model
from unlearn_mc.training import BaseTraining
from unlearn_mc.unlearning import GradDiff

pytestmark = pytest.mark.trained
# Measured by tests/measure_bounds.py over seeds 0–4 × native/default kernels (10 runs): at most 0.032 (base training),
# 0.008 (GradDiff at lr 0.01; at lr 0.03 its ascent amplified the rounding differences to 0.16) and 0 (curve fit).
BF16_TOLERANCE = 0.05
ACCURACIES = ("forget_acc", "retain_acc", "test_acc")


def sgd(lr: float):
    return lambda params: torch.optim.SGD(params, lr=lr, momentum=0.9)


def fit(module: L.LightningModule, datamodule, precision: str, **trainer_args) -> L.LightningModule:
    L.seed_everything(TEST_SEED, verbose=False)
    quiet_trainer(precision=precision, limit_val_batches=0, **trainer_args).fit(module, datamodule=datamodule)
    return module


def assert_close(fp32: dict[str, float], bf16: dict[str, float], what: str) -> None:
    for name in ACCURACIES:
        within(f"bf16 vs fp32/{what}.{name}", fp32[name] - bf16[name], BF16_TOLERANCE, f"{fp32[name]:.4f} in fp32, {bf16[name]:.4f} in bf16-mixed")


def test_base_training_in_bf16_mixed_stays_close_to_fp32(digits_models):
    datamodule = digits_models.datamodule("random")
    results = {}
    for precision in ("32-true", "bf16-mixed"):
        L.seed_everything(TEST_SEED, verbose=False)
        module = fit(BaseTraining(digits_net(), stage="original", optimizer=sgd(0.05)), datamodule, precision, max_epochs=10)
        assert all(p.dtype == torch.float32 for p in module.parameters())
        results[precision] = evaluate_model(module.net.eval(), datamodule.eval_dataloaders())
    at_least("bf16 vs fp32/base training.fp32 test_acc", results["32-true"]["test_acc"], 0.9)
    assert_close(results["32-true"], results["bf16-mixed"], "base training")


def test_an_unlearning_method_in_bf16_mixed_stays_close_to_fp32(digits_models):
    datamodule = digits_models.datamodule("random")
    results = {}
    for precision in ("32-true", "bf16-mixed"):
        module = GradDiff(digits_net(), str(digits_models.original), optimizer=sgd(0.01), alpha=0.7)
        fit(module, datamodule, precision, max_epochs=2)
        results[precision] = evaluate_model(module.net.eval(), datamodule.eval_dataloaders())
    original = evaluate_model(GradDiff(digits_net(), str(digits_models.original)).net.eval(), datamodule.eval_dataloaders())
    assert results["bf16-mixed"]["forget_loss"] > original["forget_loss"]
    assert_close(results["32-true"], results["bf16-mixed"], "GradDiff")


def test_a_curve_fit_in_bf16_mixed_stays_close_to_fp32(digits_models, tmp_path):
    datamodule = digits_models.datamodule("random")
    datamodule.setup()
    loaders = datamodule.eval_dataloaders()
    rows = {}
    for precision in ("32-true", "bf16-mixed"):
        curve = CurveModule(digits_net(), digits_models.original, digits_models.retrain, optimizer=sgd(0.05))
        fit(curve, datamodule, precision, max_epochs=2, default_root_dir=tmp_path / precision,
            callbacks=[CurveEvaluation(t_grid=3, figure=False)])
        assert curve.curve.bends.dtype == torch.float32
        rows[precision] = evaluate_curve(curve.eval(), loaders, t_grid=3, bn_loader=loaders["retain"]).rows
    for t, fp32, bf16 in zip((0.0, 0.5, 1.0), rows["32-true"], rows["bf16-mixed"]):
        assert_close(fp32, bf16, f"curve at t={t}")
