"""Cost of evaluating along a curve, relative to one plain evaluation pass, measured side by side.

For the digits SmallCNN between two models, this prints the time of ``evaluate_curve`` per
t point divided by the time of one ``evaluate_model`` pass of a plain network over the same
evaluation loaders, for several grid sizes and BatchNorm-recalibration budgets. The cost of
a point is one recalibration (``bn_batches`` batches of the retain set) plus one pass.

    .venv/bin/python benchmarks/curve_evaluation.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from unlearn_mc.curves import CurveModule, evaluate_curve
from unlearn_mc.data import UnlearningDataModule
from unlearn_mc.evaluation import evaluate_model
from unlearn_mc.models import SmallCNN


def _timed(function, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for index in range(2):
            path = Path(folder) / f"end{index}.pt"
            torch.save(SmallCNN(in_channels=1, num_classes=10).state_dict(), path)
            paths.append(str(path))
        datamodule = UnlearningDataModule(dataset="digits", split_file=str(Path(folder) / "split.json"))
        loaders = datamodule.eval_dataloaders()
        net = SmallCNN(in_channels=1, num_classes=10).eval()
        curve = CurveModule(SmallCNN(in_channels=1, num_classes=10), paths[0], paths[1], curve="bezier", num_bends=3).eval()
        one_pass = _timed(lambda: evaluate_model(net, loaders))
        samples = sum(len(loader.dataset) for loader in loaders.values())
        print(f"one evaluation pass (plain SmallCNN, {samples} samples over {len(loaders)} splits): {one_pass * 1000:.0f} ms")
        print(f"{'points':>6} {'bn_batches':>10} {'total s':>8} {'per point / one pass':>21}")
        for points in (3, 11, 31):
            for bn_batches in (1, 4, None):
                seconds = _timed(lambda p=points, b=bn_batches: evaluate_curve(curve, loaders, p, bn_loader=loaders["retain"], bn_batches=b), repeats=1)
                label = "all" if bn_batches is None else str(bn_batches)
                print(f"{points:>6} {label:>10} {seconds:>8.2f} {seconds / points / one_pass:>21.2f}")


if __name__ == "__main__":
    main()
