"""Original and retrain models on digits: accuracy, and what the retrain model never saw."""

from __future__ import annotations

from conftest import digits_net

from unlearn_mc.checkpoints import load_network_weights
from unlearn_mc.evaluation import evaluate_model


def _metrics(digits_models, checkpoint, rule="random"):
    datamodule = digits_models.datamodule(rule)
    datamodule.setup()
    net = load_network_weights(digits_net(), checkpoint).eval()
    return evaluate_model(net, datamodule.eval_dataloaders())


def test_original_fits_forget_set_and_generalises(digits_models):
    metrics = _metrics(digits_models, digits_models.original)
    assert metrics["test_acc"] >= 0.95
    assert metrics["forget_acc"] >= 0.99
    assert metrics["retain_acc"] >= 0.99


def test_retrain_forget_accuracy_is_like_test_accuracy(digits_models):
    metrics = _metrics(digits_models, digits_models.retrain)
    assert metrics["test_acc"] >= 0.95
    assert abs(metrics["forget_acc"] - metrics["test_acc"]) < 0.04


def test_class_retrain_never_predicts_the_forgotten_class(digits_models):
    metrics = _metrics(digits_models, digits_models.retrain_class, rule="class")
    assert metrics["forget_acc"] < 0.05
    assert metrics["test_forget_class_acc"] < 0.05
    assert metrics["retain_acc"] >= 0.99
