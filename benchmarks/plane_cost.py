"""Cost of a plane's grid point against one evaluation pass, measured side by side in one process.

For the digits SmallCNN (width 16, class-3 forgetting, BatchNorm recalibrated on 4 retain batches at every point, as in
the demo), this prints the seconds of one plain ``evaluate_model`` pass, of one point evaluated the way a curve
evaluates its t (recalibration + evaluation, ``recalibrate_batchnorm`` + ``evaluate_model``), and of one point of
``evaluate_plane`` with 16 points per forward (vmap) and with one point per forward, each divided by the plain pass;
first without the loss attack ``mia_loss_acc`` (the plane's default), then with it.

    .venv/bin/python benchmarks/plane_cost.py                       # three random-init models
    .venv/bin/python benchmarks/plane_cost.py --study configs/digits/study.yaml   # the finished demo's original, retrain, salun
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch

from unlearn_mc.checkpoints import load_network_weights
from unlearn_mc.config_objects import instantiate
from unlearn_mc.data import UnlearningDataModule
from unlearn_mc.evaluation import evaluate_model
from unlearn_mc.evaluation.batchnorm import recalibrate_batchnorm
from unlearn_mc.models import SmallCNN
from unlearn_mc.plane import evaluate_plane
from unlearn_mc.study import load_study
from unlearn_mc.study.run import _datamodule as study_datamodule

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
    parser.add_argument("--grid", type=int, default=9)
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

        def curve_point(loss_attack: bool) -> None:
            net = copy.deepcopy(nets[0]).eval()
            recalibrate_batchnorm(net, loaders["retain"], num_batches=BN_BATCHES)
            evaluate_model(net, loaders, loss_attack=loss_attack)

        evaluate_model(plain, loaders)  # imports and first-call costs, paid by neither side
        print(f"threads {torch.get_num_threads()}; {sum(len(loader.dataset) for loader in loaders.values())} samples over {len(loaders)} splits")
        for loss_attack, batches in ((False, (16, 1)), (True, (16,))):
            one_pass = _best(lambda: evaluate_model(plain, loaders, loss_attack=loss_attack), 5)
            one_point = _best(lambda: curve_point(loss_attack), 5)
            what = "with" if loss_attack else "without"
            print(f"{what} mia_loss_acc: one evaluation pass {one_pass:.3f} s; one point as a curve evaluates it "
                  f"(recalibration + pass) {one_point:.3f} s = {one_point / one_pass:.2f} × one pass")
            for batch in batches:
                result = evaluate_plane(copy.deepcopy(nets[0]), nets, loaders, grid=args.grid, bn_loader=loaders["retain"],
                                        bn_batches=BN_BATCHES, points_per_batch=batch, mia_loss_acc=loss_attack)
                timing = result.timing
                print(f"  plane {args.grid}×{args.grid} + 3 models, {batch:>2} point(s) per forward: {timing['wall_s']:.1f} s, "
                      f"{timing['per_point_s']:.3f} s per point = {timing['per_point_s'] / one_pass:.2f} × one pass "
                      f"({timing['per_point_s'] / one_point:.2f} × a curve's point)")


if __name__ == "__main__":
    main()
