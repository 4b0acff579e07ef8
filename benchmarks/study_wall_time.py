"""Wall time of the digits study (what `make demo` runs), by kind of stage, and of a second run that reuses them.

Runs configs/digits/study.yaml into a temporary folder, then prints each kind of stage's total time
and its ratio to the original model's training (the unit of work every study starts with), the
analyses and report, and the whole study; then runs the same study again in the same process,
where every stage is reused, and prints that run's time relative to the first.

    .venv/bin/python benchmarks/study_wall_time.py [--config configs/digits/study.yaml]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import yaml

from unlearn_mc.study import run_study
from unlearn_mc.study.spec import read_study_file


def kind_of(result: dict) -> str:
    """``base``, ``method`` or ``curve-<family>``."""
    return f"curve-{result['info']['family']}" if result["kind"] == "curve" else result["kind"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/digits/study.yaml")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest for these tiny nets)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        config = read_study_file(Path(args.config))  # with what it extends (`extends:`), so the copy stands alone
        config["output_dir"] = str(Path(folder) / "study")
        study_file = Path(folder) / "study.yaml"
        study_file.write_text(yaml.safe_dump(config, sort_keys=False))

        started = time.perf_counter()
        run_study(study_file, say=lambda line: None)
        first = time.perf_counter() - started
        started = time.perf_counter()
        run_study(study_file, say=lambda line: None)
        second = time.perf_counter() - started

        results = [json.loads(path.read_text()) for path in sorted((Path(folder) / "study" / "stages").rglob("result.json"))]
        walls = {result["stage"]: result["wall_s"] for result in results}
        original = walls["original"]
        by_kind: dict[str, list[float]] = defaultdict(list)
        for result in results:
            by_kind[kind_of(result)].append(result["wall_s"])
        print(f"{'stages':<16}{'count':>6}{'total s':>10}{'each s':>9}{'each / original':>17}")
        for kind, values in by_kind.items():
            print(f"{kind:<16}{len(values):>6}{sum(values):>10.1f}{sum(values) / len(values):>9.1f}{sum(values) / len(values) / original:>17.2f}")
        stages = sum(walls.values())
        print(f"{'analyses+report':<16}{'':>6}{first - stages:>10.1f}")
        print(f"{'whole study':<16}{len(walls):>6}{first:>10.1f}{'':>9}{first / original:>17.2f}")
        print(f"second run, every stage reused: {second:.1f} s = {second / first:.3f} of the first")


if __name__ == "__main__":
    main()
