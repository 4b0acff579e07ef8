"""Original and retrain models on digits: accuracy, and what the retrain model never saw.

Bounds: measured by ``tests/measure_bounds.py`` over seeds 0–4 × native/default kernels (10 runs, cosine-annealed
training): the original's forget and retain accuracy and the class retrain model's retain accuracy were 1.000 in every
run, test accuracies 0.983–0.997, the retrain model's |forget − test| gap 0.002–0.017, the class retrain model's forget
accuracy 0. Each bound leaves at least 0.01 (accuracies near 1) or 0.02 below the worst run.
"""

from __future__ import annotations

import pytest
from conftest import digits_net
from measured import at_least, at_most, within

from unlearn_mc.checkpoints import load_network_weights
from unlearn_mc.evaluation import evaluate_model

pytestmark = pytest.mark.trained


def _metrics(digits_models, checkpoint, rule="random"):
    datamodule = digits_models.datamodule(rule)
    datamodule.setup()
    net = load_network_weights(digits_net(), checkpoint).eval()
    return evaluate_model(net, datamodule.eval_dataloaders())


def test_original_fits_forget_set_and_generalises(digits_models):
    metrics = _metrics(digits_models, digits_models.original)
    at_least("original.test_acc", metrics["test_acc"], 0.95, metrics)
    at_least("original.forget_acc", metrics["forget_acc"], 0.99, metrics)
    at_least("original.retain_acc", metrics["retain_acc"], 0.99, metrics)


def test_retrain_forget_accuracy_is_like_test_accuracy(digits_models):
    metrics = _metrics(digits_models, digits_models.retrain)
    at_least("retrain.test_acc", metrics["test_acc"], 0.95, metrics)
    within("retrain.|forget_acc - test_acc|", metrics["forget_acc"] - metrics["test_acc"], 0.04, metrics)


def test_class_retrain_never_predicts_the_forgotten_class(digits_models):
    metrics = _metrics(digits_models, digits_models.retrain_class, rule="class")
    at_most("retrain_class.forget_acc", metrics["forget_acc"], 0.05, metrics)
    at_most("retrain_class.test_forget_class_acc", metrics["test_forget_class_acc"], 0.05, metrics)
    at_least("retrain_class.retain_acc", metrics["retain_acc"], 0.99, metrics)
