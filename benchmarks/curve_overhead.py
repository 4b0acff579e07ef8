"""Cost of a curve training step relative to a plain training step of the same network and batch.

A curve step (3-point Bezier, t ~ U(0, 1)) builds φ(t) from the control points, runs the network
with ``functional_call``, back-propagates into the bend and takes an SGD step on it; a plain step
runs the network, back-propagates into its weights and takes an SGD step on them. Both are timed
side by side in one process, alternating, and the ratio of their medians is printed.

    python benchmarks/curve_overhead.py                 # SmallCNN (width 32) and CIFAR ResNet-18
    python benchmarks/curve_overhead.py --nets smallcnn --rounds 40 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from unlearn_mc.checkpoints import save_state_dict_atomically
from unlearn_mc.curves import CurveModule
from unlearn_mc.models import ResNet18, SmallCNN

NETS = {
    "smallcnn": lambda: SmallCNN(in_channels=3, num_classes=10, width=32),
    "resnet18": lambda: ResNet18(num_classes=10),
}
DEFAULT_ROUNDS = {"smallcnn": 30, "resnet18": 6}


def _timed(step, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def measure(name: str, batch_size: int, rounds: int, steps_per_round: int) -> dict[str, float]:
    """Median seconds per plain and per curve step over ``rounds`` alternating rounds."""
    torch.manual_seed(0)
    build = NETS[name]
    with tempfile.TemporaryDirectory() as folder:
        start, end = Path(folder) / "start.pt", Path(folder) / "end.pt"
        save_state_dict_atomically(build().state_dict(), start)
        save_state_dict_atomically(build().state_dict(), end)
        curve = CurveModule(build(), str(start), str(end), curve="bezier", num_bends=3).train()
    net = build().train()
    inputs, targets = torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))
    plain_optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    curve_optimizer = torch.optim.SGD(curve.parameters(), lr=0.01, momentum=0.9)

    def plain_step() -> None:
        plain_optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(inputs), targets).backward()
        plain_optimizer.step()

    def curve_step() -> None:
        curve_optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(curve(inputs), targets).backward()  # t drawn from U(0, 1)
        curve_optimizer.step()

    for _ in range(2):
        plain_step()
        curve_step()
    plain, curved = [], []
    for index in range(rounds):
        order = (plain_step, curve_step) if index % 2 == 0 else (curve_step, plain_step)
        for step in order:
            (plain if step is plain_step else curved).append(_timed(step, steps_per_round))
    plain_s, curve_s = statistics.median(plain), statistics.median(curved)
    return {"plain_ms": 1000 * plain_s, "curve_ms": 1000 * curve_s, "ratio": curve_s / plain_s,
            "parameters": sum(p.numel() for p in net.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", choices=sorted(NETS), default=["smallcnn", "resnet18"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 30 for SmallCNN, 6 for ResNet-18)")
    parser.add_argument("--steps-per-round", type=int, default=None, help="steps timed together (default 5 for SmallCNN, 1 for ResNet-18)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size} of 3x32x32, 3-point Bezier, SGD")
    print(f"{'network':<10} {'parameters':>11} {'plain step':>11} {'curve step':>11} {'ratio':>7}")
    for name in args.nets:
        rounds = args.rounds or DEFAULT_ROUNDS[name]
        steps = args.steps_per_round or (5 if name == "smallcnn" else 1)
        result = measure(name, args.batch_size, rounds, steps)
        print(f"{name:<10} {result['parameters']:>11,} {result['plain_ms']:>9.1f}ms {result['curve_ms']:>9.1f}ms {result['ratio']:>7.3f}")


if __name__ == "__main__":
    main()
