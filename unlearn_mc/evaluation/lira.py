"""Per-example membership inference with shadow models: LiRA (Carlini et al. 2022) and U-LiRA (Hayes et al. 2025).

The functional core: score arrays in, per-example likelihood ratios and metrics out (numpy/scipy/sklearn, float64).
The model and shadow plumbing lives in ``unlearn_mc.study.lira``.

Score. Each example i is read through the logit-scaled true-class confidence
    φ_i = log(p_i / (1 − p_i)),  p_i = softmax(z_i)[y_i],
which is close to Gaussian across training runs (Carlini et al., §IV). From logits it is computed exactly as
φ_i = z_{i,y} − log Σ_{j≠y} exp(z_{i,j}) (no saturation at p = 1 in float32); from probabilities p is clipped to
[ε, 1 − ε] first.

Shadows. K shadow models give a (K, n) matrix of scores S[k, i] and a boolean mask IN[k, i] (shadow k trained on i).
For each example the IN and OUT scores are fitted by Gaussians, per-example means μ_in,i, μ_out,i and, by default,
one *global* standard deviation per side, pooled over all examples (σ² = Σ (S − μ_i)² / (N − n), N the number of
(shadow, example) pairs of that side): Carlini et al. recommend it below ~64 shadows, where per-example variances
are too noisy. ``variance="per_example"`` fits σ_i from each example's own scores instead (at least 2 per side).

Attacks (higher = "member"):
- online LiRA:  Λ_i = log N(φ_i; μ_in,i, σ_in²) − log N(φ_i; μ_out,i, σ_out²),
- offline LiRA: Λ_i = log Φ((φ_i − μ_out,i) / σ_out), the log-probability that an OUT model scores i below φ_i
  (a one-sided test against the OUT distribution alone; it needs no IN shadows, so it suits small K),
- U-LiRA: the online ratio with the IN distribution replaced by "unlearned" shadows (trained on i, then i unlearned
  by the method under test) and OUT by shadows that never trained on i: is i's behaviour under the target like a
  model that unlearned it (Λ > 0) or like one that never saw it (Λ < 0)?

Metrics on member (label 1) vs non-member (label 0) scores: ROC AUC (``sklearn.metrics.roc_auc_score``), TPR at
FPR α for α = 1% and 0.1% (the ROC from ``roc_curve``, linearly interpolated at α), and balanced accuracy at the
best threshold, max_τ ½·(TPR(τ) + 1 − FPR(τ)) (threshold chosen on the same data, as in Carlini et al.: an upper
bound on what one threshold achieves). Intervals: percentile bootstrap over examples, resampling members and
non-members separately (``B`` seeded resamples); ``*_ci`` is the half-width (high − low)/2 of the 95% interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from unlearn_mc.data.memorised import memorisation  # noqa: F401 (re-exported: the shadows' memorisation score)

EPSILON = 1e-12
ATTACKS = ("online", "offline", "ulira")
FPR_LEVELS = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.001}
METRICS = ("auc", "balanced_accuracy", *FPR_LEVELS)


def logit_confidence(probability: np.ndarray, epsilon: float = EPSILON) -> np.ndarray:
    """φ = log(p / (1 − p)) of the true-class probability p, with p clipped to [ε, 1 − ε]."""
    p = np.clip(np.asarray(probability, dtype=np.float64), epsilon, 1.0 - epsilon)
    return np.log(p) - np.log1p(-p)


def logit_confidence_from_logits(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """φ_i = z_{i,y_i} − log Σ_{j≠y_i} exp(z_{i,j}) = log(p_i / (1 − p_i)) exactly, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(z))
    true = z[rows, np.asarray(targets)]
    others = z.copy()
    others[rows, np.asarray(targets)] = -np.inf
    top = others.max(axis=1, keepdims=True)
    return true - (top[:, 0] + np.log(np.exp(others - top).sum(axis=1)))


@dataclass
class GaussianFit:
    """Per-example means ``mean`` (n,) and standard deviations ``std`` (n,) of one side (IN or OUT)."""

    mean: np.ndarray
    std: np.ndarray


def fit_gaussians(scores: np.ndarray, mask: np.ndarray, variance: str = "global", min_std: float = 1e-3) -> GaussianFit:
    """Gaussian fit of each example's scores S[k, i] over the shadows k with mask[k, i].

    μ_i = mean_k S[k, i]; σ global: sqrt(Σ_{k,i} (S[k, i] − μ_i)² / (N − n)) over the masked pairs (N pairs, n examples
    with at least one), or per example: the sample standard deviation of each example's scores (NaN below 2 scores;
    with a single shadow in all, the global σ is undefined and NaN). σ is floored at ``min_std``.
    An example without any masked score has μ_i = NaN.
    """
    if variance not in ("global", "per_example"):
        raise ValueError(f"variance={variance!r} must be 'global' or 'per_example'.")
    scores = np.asarray(scores, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    count = mask.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(mask, scores, 0.0).sum(axis=0) / count
        squares = np.where(mask, (scores - mean) ** 2, 0.0)
        if variance == "global":
            present = count > 0
            dof = count[present].sum() - present.sum()
            std = np.full(scores.shape[1], math.sqrt(squares.sum() / dof) if dof > 0 else math.nan)
        else:
            std = np.where(count >= 2, np.sqrt(squares.sum(axis=0) / (count - 1)), math.nan)
    mean = np.where(count > 0, mean, math.nan)
    return GaussianFit(mean, np.maximum(std, min_std))


def likelihood_ratio(target: np.ndarray, inside: GaussianFit, outside: GaussianFit) -> np.ndarray:
    """Λ_i = log N(φ_i; μ_in,i, σ_in,i²) − log N(φ_i; μ_out,i, σ_out,i²) (natural log, float64)."""
    phi = np.asarray(target, dtype=np.float64)
    return stats.norm.logpdf(phi, inside.mean, inside.std) - stats.norm.logpdf(phi, outside.mean, outside.std)


def online_lira(target: np.ndarray, scores: np.ndarray, members: np.ndarray, variance: str = "global") -> np.ndarray:
    """Online LiRA: ``likelihood_ratio`` with IN = the shadows that trained on i, OUT = the others."""
    members = np.asarray(members, dtype=bool)
    return likelihood_ratio(target, fit_gaussians(scores, members, variance), fit_gaussians(scores, ~members, variance))


def offline_lira(target: np.ndarray, scores: np.ndarray, members: np.ndarray, variance: str = "global") -> np.ndarray:
    """Offline LiRA: Λ_i = log Φ((φ_i − μ_out,i) / σ_out,i), from the OUT shadows only."""
    outside = fit_gaussians(scores, ~np.asarray(members, dtype=bool), variance)
    return stats.norm.logcdf((np.asarray(target, dtype=np.float64) - outside.mean) / outside.std)


def ulira(target: np.ndarray, unlearned_scores: np.ndarray, unlearned: np.ndarray, never_seen: np.ndarray,
          variance: str = "global") -> np.ndarray:
    """U-LiRA: ``likelihood_ratio`` with IN = shadows that trained on i and unlearned it (``unlearned[k, i]``) and
    OUT = shadows that never trained on i (``never_seen[k, i]``), both read from the unlearned shadows' scores."""
    return likelihood_ratio(target, fit_gaussians(unlearned_scores, unlearned, variance),
                            fit_gaussians(unlearned_scores, never_seen, variance))


def _weighted_roc(order: np.ndarray, last_of_tie: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC of scores whose descending order ``order`` and tie-group ends ``last_of_tie`` are given, each example
    counted ``weights[i]`` times: the same points as ``sklearn.metrics.roc_curve`` on the repeated examples (without
    dropping collinear ones), in O(n) per call, so a bootstrap resample costs one bincount."""
    w = weights[order]
    positive = labels[order] == 1
    tps = np.cumsum(np.where(positive, w, 0))[last_of_tie]
    fps = np.cumsum(np.where(positive, 0, w))[last_of_tie]
    return np.concatenate([[0.0], fps / fps[-1]]), np.concatenate([[0.0], tps / tps[-1]])


def _roc_metrics(fpr: np.ndarray, tpr: np.ndarray) -> dict[str, float]:
    out = {"auc": float(np.trapezoid(tpr, fpr)), "balanced_accuracy": float(np.max((tpr + 1.0 - fpr) / 2.0))}
    for name, level in FPR_LEVELS.items():
        out[name] = float(np.interp(level, fpr, tpr))
    return out


def attack_metrics(scores: np.ndarray, labels: np.ndarray, bootstrap: int = 500, confidence: float = 0.95,
                   seed: int = 0) -> dict[str, float]:
    """AUC, balanced accuracy and TPR at 1% / 0.1% FPR of member scores (label 1) against non-member scores (label 0),
    each with a percentile-bootstrap interval: ``m_low``, ``m_high`` and ``m_ci`` = (high − low)/2.

    The point values come from ``roc_auc_score`` and ``roc_curve``; each of the B resamples draws members and
    non-members separately with replacement (both counts kept) and evaluates the same ROC on the resampled counts.
    Non-finite scores are ranked lowest (an example the attack cannot score is called non-member); ``bootstrap=0``
    skips the intervals (NaN).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if not ((labels == 1).any() and (labels == 0).any()):
        raise ValueError("attack_metrics needs both members (label 1) and non-members (label 0).")
    finite = np.isfinite(scores)
    scores = np.where(finite, scores, (scores[finite].min() - 1.0) if finite.any() else 0.0)
    fpr, tpr, _ = roc_curve(labels, scores)
    out = {**_roc_metrics(fpr, tpr), "auc": float(roc_auc_score(labels, scores))}
    out.update(n_members=int(labels.sum()), n_non_members=int((labels == 0).sum()))
    if bootstrap <= 0:
        for name in METRICS:
            out[f"{name}_low"] = out[f"{name}_high"] = out[f"{name}_ci"] = math.nan
        return out
    rng = np.random.default_rng(seed)
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    last_of_tie = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    draws = {name: np.empty(bootstrap) for name in METRICS}
    for b in range(bootstrap):
        chosen = np.concatenate([rng.choice(positives, len(positives)), rng.choice(negatives, len(negatives))])
        weights = np.bincount(chosen, minlength=len(scores)).astype(np.float64)
        for name, value in _roc_metrics(*_weighted_roc(order, last_of_tie, labels, weights)).items():
            draws[name][b] = value
    tail = 100.0 * (1.0 - confidence) / 2.0
    for name in METRICS:
        low, high = np.percentile(draws[name], [tail, 100.0 - tail])
        out[f"{name}_low"], out[f"{name}_high"], out[f"{name}_ci"] = float(low), float(high), float(high - low) / 2.0
    return out
