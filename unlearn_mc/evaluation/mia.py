"""Membership-inference attacks on per-sample statistics (plain functions, any model).

``mia_efficacy`` follows SalUn (Fan et al. 2024) and "Model Sparsity Can Simplify Machine
Unlearning" (Jia et al. 2023): an RBF SVC learns member (retain) vs non-member (test) from the
true-class confidence, on equal counts of each; the efficacy is the fraction of the forget set
it calls non-member. Higher means the forget set looks less like training data.

``mia_loss_accuracy`` is a second attack: logistic regression on the per-sample loss, forget
(label 1) vs test (label 0) on equal counts, scored by k-fold cross-validated accuracy.
An ideal unlearned model gives ≈ 0.5 (the two sets are indistinguishable).
"""

from __future__ import annotations

import numpy as np


def _balanced(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Equal-size seeded subsets of ``a`` and ``b``. Values are sorted first, so the result does not
    depend on the order in which samples arrived (e.g. gathered from several processes)."""
    count = min(len(a), len(b))
    return rng.permutation(np.sort(a))[:count], rng.permutation(np.sort(b))[:count]


def mia_efficacy(retain_confidence: np.ndarray, test_confidence: np.ndarray, forget_confidence: np.ndarray, seed: int = 0) -> float:
    """Fraction of forget samples predicted non-member by an SVC(rbf, C=3, gamma='auto') trained on
    retain (members, label 1) vs test (non-members, label 0) true-class confidences, equal counts."""
    from sklearn.svm import SVC

    rng = np.random.default_rng(seed)
    members, non_members = _balanced(np.asarray(retain_confidence, dtype=np.float64), np.asarray(test_confidence, dtype=np.float64), rng)
    if len(members) == 0 or len(forget_confidence) == 0:
        return float("nan")
    features = np.concatenate([members, non_members])[:, None]
    labels = np.concatenate([np.ones(len(members)), np.zeros(len(non_members))])
    attack = SVC(C=3, gamma="auto", kernel="rbf").fit(features, labels)
    predicted_member = attack.predict(np.asarray(forget_confidence, dtype=np.float64)[:, None])
    return float(1.0 - predicted_member.mean())


def mia_loss_accuracy(forget_loss: np.ndarray, test_loss: np.ndarray, seed: int = 0, folds: int = 5) -> float:
    """Cross-validated accuracy of a logistic regression on log(1 + ℓ) telling forget (1) from test (0), equal counts."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    rng = np.random.default_rng(seed)
    forget, test = _balanced(np.asarray(forget_loss, dtype=np.float64), np.asarray(test_loss, dtype=np.float64), rng)
    folds = min(folds, len(forget))
    if folds < 2:
        return float("nan")
    features = np.log1p(np.maximum(np.concatenate([forget, test]), 0.0))[:, None]
    labels = np.concatenate([np.ones(len(forget)), np.zeros(len(test))])
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(LogisticRegression(), features, labels, cv=splitter).mean())
