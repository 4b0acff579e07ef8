"""Cost of a plane's grid point against one evaluation pass, measured side by side in one process.

For the digits SmallCNN (width 16, class-3 forgetting, BatchNorm recalibrated on 4 retain batches at every point, as in
the demo), each round times one plain ``evaluate_model`` pass, one point evaluated the way a curve evaluates its t
(``recalibrate_batchnorm`` + ``evaluate_model``) and the points of a small ``evaluate_plane`` with 16 points per
forward (vmap) and with one point per forward; it prints each per-point time divided by that round's pass, and the
medians over the rounds (interleaved, so that the load of shared cores weighs on every variant alike).

    .venv/bin/python benchmarks/plane_cost.py                       # three random-init models
    .venv/bin/python benchmarks/plane_cost.py --study configs/digits/study.yaml   # the finished demo's original, retrain, salun
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from unlearn_mc.checkpoints import load_network_weights
from unlearn_mc.config_objects import instantiate
from unlearn_mc.data import UnlearningDataModule
from unlearn_mc.evaluation import evaluate_model
from unlearn_mc.evaluation.batchnorm import recalibrate_batchnorm
from unlearn_mc.models import SmallCNN
from unlearn_mc.plane import evaluate_plane
from unlearn_mc.study import load_study
from unlearn_mc.study.datamodule import study_datamodule

BN_BATCHES = 4


def _best(function, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", help="a finished study YAML (the demo's): use its original, retrain and salun models and its data")
    parser.add_argument("--grid", type=int, default=3, help="grid of each round's planes (G×G + 3 points)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mia_loss_acc", action="store_true", help="also the loss attack, in the pass and at every point")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        if args.study:
            study = load_study(args.study)
            stages = study.output_dir / "stages"
            nets = [load_network_weights(instantiate(study.net), stages / stage / "model.ckpt") for stage in ("original", "retrain", "method-salun")]
            datamodule = study_datamodule(study)
        else:
            nets = [SmallCNN(1, 10, 16) for _ in range(3)]
            datamodule = UnlearningDataModule(dataset="digits", forget_rule="class", forget_classes=[3], split_file=str(Path(folder) / "split.json"))
            datamodule.setup()
        loaders = datamodule.eval_dataloaders()
        plain = copy.deepcopy(nets[0]).eval()

        def curve_point() -> None:
            net = copy.deepcopy(nets[0]).eval()
            recalibrate_batchnorm(net, loaders["retain"], num_batches=BN_BATCHES)
            evaluate_model(net, loaders, loss_attack=args.mia_loss_acc)

        def plane_point(batch: int) -> float:
            result = evaluate_plane(copy.deepcopy(nets[0]), nets, loaders, grid=args.grid, bn_loader=loaders["retain"],
                                    bn_batches=BN_BATCHES, points_per_batch=batch, mia_loss_acc=args.mia_loss_acc)
            return result.timing["per_point_s"]

        evaluate_model(plain, loaders)  # imports and first-call costs, paid by neither side
        print(f"threads {torch.get_num_threads()}; {sum(len(loader.dataset) for loader in loaders.values())} samples over "
              f"{len(loaders)} splits; {'with' if args.mia_loss_acc else 'without'} mia_loss_acc; grid {args.grid}×{args.grid} + 3 models per round")
        rounds = []
        for number in range(args.rounds):  # interleaved, so that the load of shared cores weighs on every variant alike
            one_pass = _best(lambda: evaluate_model(plain, loaders, loss_attack=args.mia_loss_acc), 1)
            row = {"pass_s": one_pass, "curve_point": _best(curve_point, 1) / one_pass,
                   "plane_vmap16": plane_point(16) / one_pass, "plane_one": plane_point(1) / one_pass}
            rounds.append(row)
            print(f"round {number}: one pass {one_pass:.3f} s; per point / one pass: curve-style {row['curve_point']:.2f}, "
                  f"plane 16 per forward {row['plane_vmap16']:.2f}, plane 1 per forward {row['plane_one']:.2f}", flush=True)
        median = {key: float(np.median([row[key] for row in rounds])) for key in rounds[0]}
        print(f"median over {args.rounds} rounds: one pass {median['pass_s']:.3f} s; per point / one pass: a curve's point "
              f"{median['curve_point']:.2f}, plane with 16 points per forward (vmap) {median['plane_vmap16']:.2f}, "
              f"plane one point per forward {median['plane_one']:.2f}")


if __name__ == "__main__":
    main()
