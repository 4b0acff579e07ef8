"""How far a model's unlearning metrics are from the retrain model's: the average gap."""

from __future__ import annotations

from collections.abc import Mapping

GAP_METRICS = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")


def average_gap(metrics: Mapping[str, float], reference: Mapping[str, float]) -> float:
    """avg_gap = (1/|M|)·Σ_{m ∈ M} |metrics[m] − reference[m]| over M = forget, retain, test accuracy and MIA efficacy."""
    return sum(abs(metrics[name] - reference[name]) for name in GAP_METRICS) / len(GAP_METRICS)
