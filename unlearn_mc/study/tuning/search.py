"""The search: Optuna's TPE sampler over a ``TuneSettings`` space, and the choice among its trials.

Each trial's setting is trained and scored by a runner (``objective.TrialRunner``, or any callable
``runner(number, params) -> TrialOutcome``). The choice is

    chosen = argmin { gap_i : trial i feasible },   feasible ⇔ R_i ≥ floor = retain_floor · R_r

(R the retain accuracy, R_r the retrain model's; ties go to the earlier trial); no feasible trial, no choice. A trial
trained with several seeds s has gap_i = mean_s gap_i,s, its metrics the means over its seeds, and is feasible only
when every seed is (R_i = min_s R_i,s, the column ``retain_acc_min``): a setting must hold on each seed, not on average.
What the sampler minimises is gap_i for a feasible trial and 1 + (floor − R_i) for an infeasible one: the gap is
at most 1 (a mean of differences of values in [0, 1]), so every infeasible trial ranks below every feasible one,
and of two infeasible trials the one closer to the floor ranks higher, the order Optuna's constrained TPE uses, on
every Optuna version. A non-finite gap is a failed trial (the sampler ignores it).

The sampler is ``TPESampler(seed=<study seed>)`` in an in-memory Optuna study: the same settings propose the same
sequence of settings given the same trial values, so a re-run (whose trials are reused) or a run in a fresh folder
(whose trials train to the same values on the same machine) gives the same table, and a search asked for more
trials than before reproduces its first trials and goes on. There is no pruning: a trial here is a few epochs of
seconds, and scoring a partly trained model each epoch (MIA included) would cost about what stopping it saves; a
pruned trial would also leave no finished stage to reuse.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from unlearn_mc.study.tables import Row
from unlearn_mc.study.tuning.objective import TrialOutcome, validation_gap
from unlearn_mc.study.tuning.outputs import TEST_METRICS, describe
from unlearn_mc.study.tuning.space import TuneSettings
from unlearn_mc.unlearning.base import average_gap


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's own per-trial log lines off (the search prints one line per trial itself)."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def trial_row(number: int, params: dict[str, Any], outcome: TrialOutcome, reference_val: dict[str, float],
              reference_test: dict[str, float], floor: float) -> Row:
    """One row of ``trials.csv`` (``chosen`` is set once every trial has finished); metrics are means over the seeds."""
    runs = outcome.runs
    gap = _mean([validation_gap(run.val, reference_val) for run in runs])
    test_gap = _mean([average_gap(run.test, reference_test) for run in runs])
    retain_min = min(run.test["retain_acc"] for run in runs)
    finished = math.isfinite(gap)
    return {"number": number, **params, **{m: _mean([run.test[m] for run in runs]) for m in TEST_METRICS},
            "val_acc": _mean([run.val["val_acc"] for run in runs]), "val_mia_efficacy": _mean([run.val["val_mia_efficacy"] for run in runs]),
            "retain_acc_min": retain_min, "n_seeds": len(runs), "gap": gap, "test_gap": test_gap,
            "feasible": int(finished and retain_min >= floor), "state": "complete" if finished else "fail",
            "stop_reason": "; ".join(run.stop_reason for run in runs if run.stop_reason), "chosen": 0}


def sampler_value(row: Row, floor: float) -> float:
    """What TPE minimises: the gap when feasible, else 1 + the shortfall below the floor; NaN fails the trial."""
    if row["state"] != "complete":
        return math.nan
    return row["gap"] if row["feasible"] else 1.0 + (floor - row["retain_acc_min"])


def choose(rows: list[Row]) -> int | None:
    """Index of the feasible row with the lowest gap (the earliest on ties), or None; marks it ``chosen``."""
    feasible = [i for i, row in enumerate(rows) if row["feasible"]]
    if not feasible:
        return None
    best = min(feasible, key=lambda i: (rows[i]["gap"], rows[i]["number"]))
    rows[best]["chosen"] = 1
    return best


def run_search(runner: Callable[[int, dict[str, Any]], TrialOutcome], settings: TuneSettings, seed: int, floor: float,
               reference_val: dict[str, float], reference_test: dict[str, float], say: Callable[[str], None] = print) -> list[Row]:
    """Run ``settings.trials`` trials with a seeded TPE sampler and return their rows, the chosen one marked."""
    import optuna

    rows: list[Row] = []
    width = len(str(settings.trials))

    def objective(trial) -> float:
        number = trial.number + 1  # trials are numbered from 1, in the table, the folders and the progress lines
        params = settings.suggest(trial)
        started = time.perf_counter()
        outcome = runner(number, params)
        row = trial_row(number, params, outcome, reference_val, reference_test, floor)
        rows.append(row)
        how = (f"same setting as trial {outcome.same_as}" if outcome.same_as is not None else "reused" if outcome.reused
               else f"{time.perf_counter() - started:.1f} s")
        verdict = "feasible" if row["feasible"] else ("failed" if row["state"] == "fail" else f"retain below {floor:.3f}")
        worst = f" (worst seed {row['retain_acc_min']:.3f})" if row["n_seeds"] > 1 else ""
        say(f"trial {number:>{width}}/{settings.trials}: {describe(params, settings.weight)} -> gap {row['gap']:.4f}, "
            f"forget {row['forget_acc']:.3f}, retain {row['retain_acc']:.3f}{worst} ({verdict}; {how})")
        return sampler_value(row, floor)

    with quiet_optuna():
        sampler = optuna.samplers.TPESampler(seed=seed)
        optuna.create_study(direction="minimize", sampler=sampler).optimize(objective, n_trials=settings.trials)
    choose(rows)
    return rows
