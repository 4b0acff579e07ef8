"""Shadow training sets for per-example membership inference: seeded halves of the shadow pool.

The shadow pool is P = D ∪ V (the training set and the validation set, in ascending pool-index order). No model of
the study trains on V, so V's examples are the attacked non-members, and shadows may train on them: each example of
P then has IN and OUT shadows, which online LiRA needs for members and non-members alike. Under class forgetting
the attacked non-members are V's examples of the forgotten classes (members and non-members of the same classes).
Under the memorised rule they are V's most memorised examples, as many in proportion as D_f is of D. The test
set stays out of every shadow.

Membership is balanced (Carlini et al. 2022): with K shadows, draw u ~ U(0, 1) of shape (n, K) with the seed;
shadow k trains on example i iff the rank of u[i, k] within row i is below K/2 (rounded down), so every example is
in exactly ⌊K/2⌋ shadows and out of the others, and each shadow holds about half of P.

A shadow's own forget set (the U-LiRA shadows unlearn it) is its members among D_f ∪ V_neg (V_neg the attacked
non-members): exactly the examples U-LiRA needs "trained on, then unlearned" shadows for.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unlearn_mc.data.splits import Split
from unlearn_mc.errors import UnlearnMCError


def shadow_pool(split: Split) -> np.ndarray:
    """P = D ∪ V as sorted pool indices."""
    return np.sort(np.asarray(split.train + split.val, dtype=np.int64))


def attack_non_members(split: Split, labels: np.ndarray, forget_classes: Sequence[int] | None = None,
                       memorisation: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
    """The attacked non-members, chosen from V by the rule that chose D_f from D, so that members and non-members
    are alike but for membership: all of V (random forgetting), V's examples of ``forget_classes`` (class
    forgetting), or V's most memorised round(|V|·|D_f|/|D|) examples by the same scores (``memorisation``, the
    memorised rule: atypical members against typical non-members would be told apart by difficulty alone)."""
    from unlearn_mc.data.memorised import memorised_forget

    val = np.asarray(split.val, dtype=np.int64)
    if forget_classes:
        val = val[np.isin(np.asarray(labels)[val], np.asarray(list(forget_classes)))]
    if memorisation is not None and len(val):
        val = memorised_forget(val, memorisation, max(1, int(round(len(val) * len(split.forget) / len(split.train)))))
    if len(val) == 0:
        raise UnlearnMCError("membership inference needs held-out non-members, but the validation set has none"
                             + (" of the forgotten classes" if forget_classes else "") + "; raise data.val_fraction.")
    return np.sort(val)


def shadow_membership(pool_size: int, count: int, seed: int) -> np.ndarray:
    """(K, n) booleans: ``members[k, i]`` iff shadow k trains on pool position i (each i in exactly ⌊K/2⌋ shadows)."""
    if count < 2:
        raise UnlearnMCError(f"shadows={count} is too few: each example needs shadows with and without it; use at least 2.")
    ranks = np.argsort(np.argsort(np.random.default_rng(seed).random((pool_size, count)), axis=1), axis=1)
    return (ranks < count // 2).T


def shadow_streams(split: Split, labels: np.ndarray, forget_classes: Sequence[int] | None, count: int, index: int,
                   seed: int, memorisation: tuple[np.ndarray, ...] | None = None) -> dict[str, list[int]]:
    """Pool indices of shadow ``index``'s streams: ``full`` (its half of P), ``forget`` (its members among D_f ∪ V_neg)
    and ``retain`` (the rest of its half)."""
    if not 0 <= index < count:
        raise UnlearnMCError(f"shadow_index={index} must lie in 0..{count - 1} (shadow_count={count}).")
    pool = shadow_pool(split)
    full = pool[shadow_membership(len(pool), count, seed)[index]]
    unlearnable = np.union1d(np.asarray(split.forget, dtype=np.int64), attack_non_members(split, labels, forget_classes, memorisation))
    forget = full[np.isin(full, unlearnable)]
    return {"full": full.tolist(), "forget": forget.tolist(), "retain": np.setdiff1d(full, forget).tolist()}
