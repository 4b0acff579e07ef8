"""LiRA / U-LiRA statistics on cases with known answers, the shadow halves, and ``analyses.lira`` validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from unlearn_mc.data.shadows import attack_non_members, shadow_membership, shadow_pool, shadow_streams
from unlearn_mc.data.splits import Split, SplitSettings
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.evaluation.lira import (GaussianFit, attack_metrics, fit_gaussians, likelihood_ratio, logit_confidence,
                                        logit_confidence_from_logits, memorisation, offline_lira, online_lira, ulira)
from unlearn_mc.study.lira_spec import check_lira


def _known_shadows(n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Four shadows; per example two IN scores 1 ± 1/√2 and two OUT scores ±1/√2: μ_in = 1, μ_out = 0 and the pooled
    σ² = Σ dev² / (N − n) = n·2·(1/2) / n = 1 on both sides."""
    a = 1.0 / math.sqrt(2.0)
    scores = np.array([[1 - a] * n, [1 + a] * n, [-a] * n, [a] * n], dtype=np.float64)
    members = np.array([[True] * n, [True] * n, [False] * n, [False] * n])
    return scores, members


def test_online_likelihood_ratio_matches_the_closed_form():
    """IN ~ N(1, 1), OUT ~ N(0, 1): Λ(φ) = −(φ−1)²/2 + φ²/2 = φ − 1/2 exactly."""
    scores, members = _known_shadows()
    phi = np.array([-3.0, -0.5, 0.0, 0.5, 4.0])
    np.testing.assert_allclose(online_lira(phi, scores, members), phi - 0.5, rtol=0, atol=1e-12)


def test_likelihood_ratio_with_unequal_variances():
    """Λ = log(σ_out/σ_in) − (φ−μ_in)²/(2σ_in²) + (φ−μ_out)²/(2σ_out²)."""
    phi = np.linspace(-2, 3, 7)
    inside, outside = GaussianFit(np.full(7, 2.0), np.full(7, 0.5)), GaussianFit(np.full(7, -1.0), np.full(7, 2.0))
    expected = math.log(2.0 / 0.5) - (phi - 2.0) ** 2 / (2 * 0.25) + (phi + 1.0) ** 2 / (2 * 4.0)
    np.testing.assert_allclose(likelihood_ratio(phi, inside, outside), expected, rtol=1e-12, atol=1e-12)


def test_offline_and_ulira_on_the_known_case():
    scores, members = _known_shadows()
    phi = np.array([-1.0, 0.0, 0.3, 1.0, 2.5])
    np.testing.assert_allclose(offline_lira(phi, scores, members), stats.norm.logcdf(phi), atol=1e-12)
    # U-LiRA: the "unlearned" shadows play IN, the never-trained ones OUT
    np.testing.assert_allclose(ulira(phi, scores, members, ~members), phi - 0.5, atol=1e-12)


def test_gaussian_fits_global_and_per_example():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(6, 4))
    mask = np.array([[1, 1, 0, 1], [1, 0, 1, 1], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0]], dtype=bool)
    per = fit_gaussians(scores, mask, "per_example")
    for i in range(4):
        column = scores[mask[:, i], i]
        assert per.mean[i] == pytest.approx(column.mean())
        assert per.std[i] == pytest.approx(column.std(ddof=1))
    pooled = fit_gaussians(scores, mask, "global")
    squares = sum(((scores[mask[:, i], i] - scores[mask[:, i], i].mean()) ** 2).sum() for i in range(4))
    assert pooled.std[0] == pytest.approx(math.sqrt(squares / (mask.sum() - 4)))
    assert np.isnan(fit_gaussians(scores, np.zeros_like(mask), "global").mean).all()


def test_logit_confidence():
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0], [40.0, 0.0, 0.0]])
    targets = np.array([0, 2, 0])
    z = logits[:2] - logits[:2].max(1, keepdims=True)
    p = np.exp(z)[np.arange(2), targets[:2]] / np.exp(z).sum(1)
    phi = logit_confidence_from_logits(logits, targets)
    np.testing.assert_allclose(phi[:2], np.log(p / (1 - p)), rtol=1e-12)
    assert phi[2] == pytest.approx(40.0 - math.log(2.0))  # p rounds to 1 in float64, φ does not saturate
    assert logit_confidence(np.array([1.0]))[0] == pytest.approx(math.log((1 - 1e-12) / 1e-12))


@pytest.mark.parametrize("separation", [0.5, 1.0, 2.0])
def test_auc_and_tpr_of_two_gaussians(separation):
    """Members ~ N(d, 1), non-members ~ N(0, 1): AUC = Φ(d/√2), TPR at FPR α = 1 − Φ(z_{1−α} − d)."""
    rng = np.random.default_rng(1)
    n = 50000
    scores = np.concatenate([rng.normal(separation, 1, n), rng.normal(0, 1, n)])
    labels = np.concatenate([np.ones(n), np.zeros(n)])
    metrics = attack_metrics(scores, labels, bootstrap=0)
    assert metrics["auc"] == pytest.approx(stats.norm.cdf(separation / math.sqrt(2)), abs=0.01)
    assert metrics["tpr_at_1pct_fpr"] == pytest.approx(1 - stats.norm.cdf(stats.norm.ppf(0.99) - separation), abs=0.02)
    # the 0.1% tail holds only n/1000 non-members: its threshold, and so the TPR, is the noisier one
    assert metrics["tpr_at_0.1pct_fpr"] == pytest.approx(1 - stats.norm.cdf(stats.norm.ppf(0.999) - separation), abs=0.03)
    # the best balanced accuracy of two unit Gaussians is Φ(d/2) (threshold at d/2)
    assert metrics["balanced_accuracy"] == pytest.approx(stats.norm.cdf(separation / 2), abs=0.01)
    assert metrics["n_members"] == n and metrics["n_non_members"] == n


def test_bootstrap_interval_covers_the_true_auc():
    rng = np.random.default_rng(2)
    truth = stats.norm.cdf(1.0 / math.sqrt(2))
    scores = np.concatenate([rng.normal(1.0, 1, 300), rng.normal(0, 1, 300)])
    labels = np.concatenate([np.ones(300), np.zeros(300)])
    metrics = attack_metrics(scores, labels, bootstrap=300, seed=0)
    assert metrics["auc_low"] <= truth <= metrics["auc_high"]
    assert metrics["auc_ci"] == pytest.approx((metrics["auc_high"] - metrics["auc_low"]) / 2)
    assert 0.02 < metrics["auc_ci"] < 0.06  # ≈ 1.96·sqrt(AUC(1−AUC)/n)-sized
    assert attack_metrics(scores, labels, bootstrap=300, seed=0) == metrics  # seeded


def test_metrics_at_the_extremes():
    labels = np.array([1, 1, 1, 0, 0, 0])
    perfect = attack_metrics(np.array([3.0, 2.0, 1.5, 0.0, -1.0, -np.inf]), labels, bootstrap=0)
    assert perfect["auc"] == 1.0 and perfect["tpr_at_1pct_fpr"] == 1.0 and perfect["balanced_accuracy"] == 1.0
    assert attack_metrics(np.zeros(6), labels, bootstrap=0)["auc"] == 0.5
    with pytest.raises(ValueError):
        attack_metrics(np.zeros(3), np.ones(3))


def test_memorisation():
    correct = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1], [1, 0, 1]], dtype=float)
    members = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 0], [0, 0, 1]], dtype=bool)
    np.testing.assert_allclose(memorisation(correct, members), [1.0 - 0.5, 0.5 - 0.0, 0.5 - 0.5])


def test_shadow_membership_is_balanced_and_seeded():
    members = shadow_membership(101, 8, seed=3)
    assert members.shape == (8, 101)
    assert (members.sum(axis=0) == 4).all()
    assert (np.abs(members.sum(axis=1) - 50.5) < 15).all()
    np.testing.assert_array_equal(members, shadow_membership(101, 8, seed=3))
    assert not np.array_equal(members, shadow_membership(101, 8, seed=4))
    with pytest.raises(UnlearnMCError, match="shadows=1"):
        shadow_membership(10, 1, seed=0)


def _split() -> tuple[Split, np.ndarray]:
    settings = SplitSettings("toy", 40, "", "random", 0.1, None, None, 0, 0.2, 0.1)
    labels = np.arange(40) % 4
    return Split(settings, forget=[1, 5, 9, 13], retain=[i for i in range(4, 32) if i not in (5, 9, 13)], val=list(range(32, 40)),
                 test=[0, 2, 3]), labels


def test_shadow_streams_cover_their_half_of_the_pool():
    split, labels = _split()
    pool = np.array(sorted(split.train + split.val))
    members = shadow_membership(len(pool), 4, seed=0)
    for k in range(4):
        streams = shadow_streams(split, labels, None, 4, k, seed=0)
        assert streams["full"] == pool[members[k]].tolist()
        assert not set(streams["full"]) & set(split.test)
        assert set(streams["forget"]) == set(streams["full"]) & (set(split.forget) | set(split.val))
        assert sorted(streams["forget"] + streams["retain"]) == streams["full"]
    assert attack_non_members(split, labels, [1]).tolist() == [33, 37]
    # the memorised rule: V's most memorised |V|·|D_f|/|D| = 8·4/31 -> 1 example, by the same scores
    scores = (np.arange(40), np.where(np.arange(40) == 35, 1.0, 0.0))
    assert attack_non_members(split, labels, None, scores).tolist() == [35]
    with pytest.raises(UnlearnMCError, match="val_fraction"):
        attack_non_members(split, labels, [7])


@pytest.mark.parametrize(("raw", "message"), [
    ({"shadows": 1}, "shadows=1"),
    ({"shadows": True}, "shadows=True"),
    ({"attacks": ["online", "nope"]}, "attacks="),
    ({"methods": ["other"]}, "methods="),
    ({"attacks": ["ulira"], "methods": []}, "methods is empty"),
    ({"curves": ["curve-x"]}, "curves="),
    ({"points": [0.5, 1.5]}, "points="),
    ({"variance": "local"}, "variance="),
    ({"variance": "per_example", "shadows": 2}, "per_example"),
    ({"bootstrap": -1}, "bootstrap="),
    ({"shadow": 4}, "unknown key"),
    ("yes", "must be a mapping"),
])
def test_bad_lira_settings_are_one_sentence(raw, message):
    with pytest.raises(UnlearnMCError, match=message):
        check_lira(raw, ["ft"], ["curve-line-original--ft"])


def test_lira_defaults():
    spec = check_lira({"shadows": 4, "curves": "all"}, ["ft"], ["curve-line-original--ft"])
    assert spec == {"shadows": 4, "attacks": ["online", "offline", "ulira"], "methods": ["ft"], "curves": ["curve-line-original--ft"],
                    "points": [0.0, 0.25, 0.5, 0.75, 1.0], "variance": "global", "bootstrap": 500, "seed": 0}
    assert check_lira({"attacks": ["online"]}, ["ft"], [])["methods"] == []


def test_the_bootstrap_roc_is_sklearns_on_the_resampled_examples():
    from sklearn.metrics import roc_auc_score, roc_curve

    from unlearn_mc.evaluation.lira import _roc_metrics, _weighted_roc

    rng = np.random.default_rng(5)
    scores = np.round(rng.normal(size=200), 1)  # many ties
    labels = (rng.random(200) < 0.4).astype(np.int64)
    order = np.argsort(-scores, kind="stable")
    last_of_tie = np.flatnonzero(np.r_[scores[order][1:] != scores[order][:-1], True])
    chosen = rng.choice(200, 200)
    fast = _roc_metrics(*_weighted_roc(order, last_of_tie, labels, np.bincount(chosen, minlength=200).astype(float)))
    fpr, tpr, _ = roc_curve(labels[chosen], scores[chosen])
    assert fast["auc"] == pytest.approx(roc_auc_score(labels[chosen], scores[chosen]), abs=1e-12)
    assert fast == pytest.approx(_roc_metrics(fpr, tpr), abs=1e-12)


def test_memorised_forget_ranks_by_mem_then_the_tie_break():
    from unlearn_mc.data.memorised import memorised_forget

    pool = np.array([0, 2, 3, 5, 7, 8])
    mem = np.array([0.5, 0.0, 0.5, 1.0, 0.0, np.nan])
    gap = np.array([1.0, 3.0, 2.0, 0.0, 3.0, 9.0])
    train = np.array([2, 3, 5, 7, 8])  # 0 is not a training sample (e.g. validation)
    assert memorised_forget(train, (pool, mem, gap), 2).tolist() == [3, 5]
    assert memorised_forget(train, (pool, mem, gap), 4).tolist() == [2, 3, 5, 7]  # 2 and 7 tie on mem and gap: lower index
    with pytest.raises(UnlearnMCError, match="not training sample 9"):
        memorised_forget(np.array([2, 9]), (pool, mem, gap), 1)


def test_memorised_rule_persists_its_split_with_the_scores_digest(tmp_path):
    from unlearn_mc.data import UnlearningDataModule
    from unlearn_mc.data.splits import read_split, settings_dict

    plain = UnlearningDataModule(dataset="digits", split_file=str(tmp_path / "plain.json"))
    plain.setup()
    assert "memorisation_sha256" not in settings_dict(plain.split.settings)  # older split files keep their fingerprint
    pool = shadow_pool(plain.split)
    members = shadow_membership(len(pool), 4, seed=0)
    correct = np.ones((4, len(pool)))
    favoured = np.asarray(plain.split.train[:5])
    correct[:, np.isin(pool, favoured)] = members[:, np.isin(pool, favoured)]  # right only when trained on: mem = 1
    scores_file = tmp_path / "lira_shadows.npz"
    np.savez(scores_file, pool=pool, members=members, correct=correct, scores=np.zeros((4, len(pool))))
    settings = dict(dataset="digits", forget_rule="memorised", forget_count=5, memorisation_file=str(scores_file),
                    split_file=str(tmp_path / "memorised.json"))
    module = UnlearningDataModule(**settings)
    module.setup()
    assert module.split.forget == sorted(favoured.tolist())
    assert read_split(tmp_path / "memorised.json").forget == module.split.forget
    correct[:, 0] = 0.5
    np.savez(scores_file, pool=pool, members=members, correct=correct, scores=np.zeros((4, len(pool))))
    with pytest.raises(UnlearnMCError, match="other memorisation scores"):
        UnlearningDataModule(**settings).setup()
    with pytest.raises(UnlearnMCError, match="needs memorisation_file"):
        UnlearningDataModule(dataset="digits", forget_rule="memorised")
    with pytest.raises(UnlearnMCError, match="does not exist"):
        UnlearningDataModule(**{**settings, "memorisation_file": str(tmp_path / "none.npz"), "split_file": str(tmp_path / "x.json")}).setup()


def test_lira_rows_across_seeds_take_the_interval_across_seeds():
    from unlearn_mc.study.seeds import ROW_KEYS, aggregate_rows

    seeds = [[{"curve": "", "model": "original", "attack": "online", "auc": auc, "auc_ci": 0.06}] for auc in (0.6, 0.7, 0.8)]
    (row,) = aggregate_rows(seeds, ROW_KEYS["lira"])
    assert row["auc"] == pytest.approx(0.7)
    assert row["auc_ci"] == pytest.approx(stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3))
    assert "auc_ci_ci" not in row and row["n_seeds"] == 3


def test_shadow_set_files_are_byte_stable(tmp_path):
    from unlearn_mc.study.lira import ShadowSet

    rng = np.random.default_rng(0)
    shadows = ShadowSet(np.arange(6), shadow_membership(6, 4, 0), rng.normal(size=(4, 6)), np.ones((4, 6)), np.array([0, 3]),
                        np.array([1, 0]), {"ft": rng.normal(size=(4, 6))})
    shadows.save(tmp_path / "a.npz")
    shadows.save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()  # a rerun keeps a memorised split valid
    loaded = ShadowSet.load(tmp_path / "a.npz")
    np.testing.assert_array_equal(loaded.unlearned["ft"], shadows.unlearned["ft"])
    np.testing.assert_array_equal(loaded.members, shadows.members)
