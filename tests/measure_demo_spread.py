"""The spread of the demo's headline numbers over seeds: what a user should expect from `make demo` on any CPU.

    .venv/bin/python tests/measure_demo_spread.py --seeds 42 1 2 3 4 [--jobs 2] [--out /tmp/demo-spread]

Runs ``configs/digits/study.yaml`` once per seed (the study's ``seed``; the second gradient-ascent endpoint gets
``seed + 45``, as 87 = 42 + 45 in the shipped file) in its own output folder, then prints, per model and metric
of ``methods.csv`` and per curve of ``curves.csv``, the mean and the [min, max] over the seeds. Exact values
differ with the CPU's kernel set (AVX2 or AVX-512) as they differ with the seed; the README quotes these ranges.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
METHOD_COLUMNS = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy", "avg_gap")
CURVE_COLUMNS = ("retain_barrier", "forget_barrier")


def run_seed(seed: int, out: Path) -> Path:
    study = yaml.safe_load((ROOT / "configs/digits/study.yaml").read_text())
    folder = out / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    study["seed"], study["output_dir"] = seed, str(folder / "study")
    for entry in study["methods"].values():
        if "seed" in entry:
            entry["seed"] = seed + 45
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    result = subprocess.run([sys.executable, "-m", "unlearn_mc.cli", "study", "--config", str(path)], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"seed {seed} failed:\n{result.stderr[-3000:]}")
    return folder / "study"


def spread(rows_by_seed: list[list[dict]], key: str, columns: tuple[str, ...]) -> list[str]:
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    order: list[str] = []
    for rows in rows_by_seed:
        for row in rows:
            if row[key] not in order:
                order.append(row[key])
            for column in columns:
                if row.get(column) not in (None, ""):
                    values[row[key], column].append(float(row[column]))
    lines = [f"| {key} | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name in order:
        cells = []
        for column in columns:
            seen = values[name, column]
            cells.append(f"{sum(seen) / len(seen):.3f} [{min(seen):.3f}, {max(seen):.3f}]" if seen else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3, 4])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="/tmp/unlearn-mc-demo-spread")
    args = parser.parse_args()
    out = Path(args.out)
    with ThreadPoolExecutor(args.jobs) as pool:
        folders = list(pool.map(lambda seed: run_seed(seed, out), args.seeds))

    def read(folder: Path, name: str) -> list[dict]:
        with open(folder / f"{name}.csv") as file:
            return list(csv.DictReader(file))

    print(f"mean [min, max] over seeds {args.seeds}\n")
    print("\n".join(spread([read(folder, "methods") for folder in folders], "model", METHOD_COLUMNS)))
    print()
    print("\n".join(spread([read(folder, "curves") for folder in folders], "curve", CURVE_COLUMNS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
