"""Measure every bounded trained quantity of the suite over seeds and CPU kernel sets.

    .venv/bin/python tests/measure_bounds.py --seeds 0 1 2 3 4 --kernels native default [--jobs 2] [pytest args…]

Runs ``pytest -m trained`` (or the pytest arguments given) once per (seed, kernel set) with
``UNLEARN_MC_TEST_SEED`` and ``ATEN_CPU_CAPABILITY`` set, collects what ``tests/measured.py`` records,
with ``UNLEARN_MC_MEASURE_ONLY=1`` (every bound recorded, none asserted), and prints per quantity: the bound, the number of runs, min / mean / max, and the margin of the worst run
to the bound (negative: some run broke it). A failing run is data here, not an error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_one(seed: int, kernels: str, pytest_args: list[str], out: Path) -> tuple[int, str, int]:
    env = {**os.environ, "UNLEARN_MC_TEST_SEED": str(seed), "UNLEARN_MC_MEASURE_FILE": str(out), "UNLEARN_MC_MEASURE_ONLY": "1"}
    if kernels != "native":
        env["ATEN_CPU_CAPABILITY"] = kernels
    else:
        env.pop("ATEN_CPU_CAPABILITY", None)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    return seed, kernels, result.returncode


def summarise(lines: list[dict]) -> str:
    by_name: dict[str, list[dict]] = defaultdict(list)
    for line in lines:
        by_name[line["name"]].append(line)
    rows = [f"{'quantity':<58} {'bound':>10} {'n':>3} {'min':>8} {'mean':>8} {'max':>8} {'margin':>8}"]
    for name in sorted(by_name):
        records = by_name[name]
        values = [r["value"] for r in records]
        low, high = records[0]["at_least"], records[0]["at_most"]
        if low is not None:
            bound, margin = f">= {low:g}", min(values) - low
        else:
            bound, margin = f"<= {high:g}", high - max(values)
        rows.append(f"{name:<58} {bound:>10} {len(values):>3} {min(values):8.4f} {sum(values) / len(values):8.4f} "
                    f"{max(values):8.4f} {margin:8.4f}")
        broken = [f"seed {r['seed']}/{r['kernels']}" for r in records
                  if (low is not None and r["value"] < low) or (high is not None and r["value"] > high)]
        if broken:
            rows.append(f"{'':<4}broken by: {', '.join(broken)}")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--kernels", nargs="+", default=["native"], help="native (torch's choice), default, avx2, avx512")
    parser.add_argument("--jobs", type=int, default=2, help="pytest runs at once (each uses one thread)")
    parser.add_argument("--keep", help="also write the raw JSON lines here")
    args, pytest_args = parser.parse_known_args()
    pytest_args = pytest_args or ["-m", "trained"]
    with tempfile.TemporaryDirectory() as folder:
        runs = [(seed, kernels, Path(folder) / f"{seed}-{kernels}.jsonl") for seed in args.seeds for kernels in args.kernels]
        with ThreadPoolExecutor(args.jobs) as pool:
            for seed, kernels, status in pool.map(lambda run: run_one(run[0], run[1], pytest_args, run[2]), runs):
                print(f"seed {seed} kernels {kernels}: pytest exit {status}", flush=True)
        lines = [json.loads(line) for _, _, path in runs if path.exists() for line in path.read_text().splitlines()]
    if args.keep:
        Path(args.keep).write_text("".join(json.dumps(line) + "\n" for line in lines))
    print(summarise(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
