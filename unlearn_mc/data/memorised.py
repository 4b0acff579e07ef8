"""The ``memorised`` forget rule: the examples the shadow models find hardest to generalise to (Zhao et al. 2024).

mem_i = P(correct | i ∈ train) − P(correct | i ∉ train) is estimated from the IN and OUT shadows of a study with
``analyses.lira`` (its ``lira_shadows.npz``); the rule forgets the top-ranked examples of D, and membership inference
attacks them against V's top-ranked examples by the same scores (``unlearn_mc.data.shadows.attack_non_members``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unlearn_mc.errors import UnlearnMCError


def masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per example i (column): the mean of ``values[k, i]`` over the rows k with ``mask[k, i]``; NaN where there is none."""
    values, mask = np.asarray(values, dtype=np.float64), np.asarray(mask, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mask, values, 0.0).sum(axis=0) / mask.sum(axis=0)


def memorisation(correct: np.ndarray, members: np.ndarray) -> np.ndarray:
    """mem_i = P(correct | i ∈ train) − P(correct | i ∉ train), estimated as the mean of ``correct[k, i]`` over the IN
    and the OUT shadows (Feldman & Zhang 2020; Zhao et al. 2024 rank forget sets by it). NaN where a side is empty."""
    members = np.asarray(members, dtype=bool)
    return masked_mean(correct, members) - masked_mean(correct, ~members)


def memorised_forget(train: np.ndarray, memorisation: tuple[np.ndarray, ...], count: int) -> np.ndarray:
    """The ``count`` examples of ``train`` with the highest memorisation score mem_i, sorted. ``memorisation`` =
    (pool indices, mem_i[, a tie-break score]): with few shadows mem_i takes few values (multiples of 1/⌊K/2⌋), so ties
    are broken by the second score (higher first; ``lira_shadows.npz`` gives the confidence gap μ_in(φ) − μ_out(φ)),
    then by the lower index."""
    indices, scores = (np.asarray(a) for a in memorisation[:2])
    second = np.asarray(memorisation[2]) if len(memorisation) > 2 else np.zeros(len(indices))
    position = {int(i): p for p, i in enumerate(indices)}
    missing = [int(i) for i in train if int(i) not in position]
    if missing:
        raise UnlearnMCError(f"the memorisation scores cover {len(indices)} pool samples but not training sample {missing[0]} "
                             f"(and {len(missing) - 1} more); compute them with the same data and split settings.")
    where = [position[int(i)] for i in train]
    values, ties = (np.nan_to_num(np.asarray(a, dtype=np.float64)[where], nan=-np.inf) for a in (scores, second))
    order = np.lexsort((train, -ties, -values))
    return np.sort(train[order[:count]])


def read_memorisation(path: str) -> tuple[tuple[np.ndarray, ...], str]:
    """((pool indices, mem_i, confidence gap μ_in(φ) − μ_out(φ)), sha256 of those three arrays) from a
    ``lira_shadows.npz``; the digest is of the scores, not of the file's bytes, so rewriting the same scores keeps it."""
    import hashlib

    file = Path(path)
    if not file.is_file():
        raise UnlearnMCError(f"memorisation_file {path!r} does not exist; run a study with analyses.lira first (it writes lira_shadows.npz).")
    try:
        with np.load(file) as data:
            members = data["members"]
            pool, scores = data["pool"].astype(np.int64), memorisation(data["correct"], members)
            gap = masked_mean(data["scores"], members) - masked_mean(data["scores"], ~members)
    except (OSError, ValueError, KeyError) as error:
        raise UnlearnMCError(f"memorisation_file {path!r} is not a lira_shadows.npz ({error}).") from None
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(a, dtype=dtype).tobytes()
                                     for a, dtype in ((pool, np.int64), (scores, np.float64), (gap, np.float64))))
    return (pool, scores, gap), digest.hexdigest()
