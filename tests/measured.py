"""Trained quantities checked against bounds, and the seed the suite trains with.

A bound on a trained metric is a claim about behaviour, not about one machine's rounding: it must hold
for every seed and every CPU kernel set. ``TEST_SEED`` (``UNLEARN_MC_TEST_SEED``, default 0) seeds every
trained model of the suite, so running the suite under other seeds is the closest proxy for another
machine's rounding (AVX2 and AVX-512 kernels sum in other orders, and a trajectory that differs in the
last bit at step 1 differs in the metrics at the end).

``at_least`` / ``at_most`` / ``within`` assert a bound and, when ``UNLEARN_MC_MEASURE_FILE`` names a file,
first append the measured value to it as one JSON line (name, value, bound, seed, kernel set).
With ``UNLEARN_MC_MEASURE_ONLY=1`` the bounds are recorded but not asserted, so that one quantity out of bounds
does not hide the ones checked after it. ``tests/measure_bounds.py`` runs the trained tests under several seeds and kernel sets and prints, for
every named quantity, the spread over the runs and the margin to its bound; each bound's comment in the
tests quotes that table.
"""

from __future__ import annotations

import json
import os

TEST_SEED = int(os.environ.get("UNLEARN_MC_TEST_SEED", "0"))
_MEASURE_ONLY = os.environ.get("UNLEARN_MC_MEASURE_ONLY") == "1"


def _record(name: str, value: float, low: float | None, high: float | None) -> None:
    path = os.environ.get("UNLEARN_MC_MEASURE_FILE")
    if not path:
        return
    line = json.dumps({"name": name, "value": float(value), "at_least": low, "at_most": high, "seed": TEST_SEED,
                       "kernels": os.environ.get("ATEN_CPU_CAPABILITY", "native")})
    with open(path, "a") as file:  # one short write per line: lines of parallel writers do not interleave
        file.write(line + "\n")


def at_least(name: str, value: float, bound: float, context: object = "") -> None:
    """Assert ``value >= bound`` for the trained quantity ``name``, recording it first."""
    _record(name, value, bound, None)
    assert _MEASURE_ONLY or value >= bound, f"{name} = {value:.4f} < {bound} {context}"


def at_most(name: str, value: float, bound: float, context: object = "") -> None:
    """Assert ``value <= bound`` for the trained quantity ``name``, recording it first."""
    _record(name, value, None, bound)
    assert _MEASURE_ONLY or value <= bound, f"{name} = {value:.4f} > {bound} {context}"


def within(name: str, difference: float, tolerance: float, context: object = "") -> None:
    """Assert ``|difference| <= tolerance`` for the trained quantity ``name``, recording ``|difference|`` first."""
    at_most(name, abs(difference), tolerance, context)
