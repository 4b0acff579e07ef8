"""Cost of a curve training step relative to a plain training step of the same network and batch.

Three steps on one batch of 32 random 3×32×32 images, SGD with momentum:

- **plain**: the network, backward into its weights, an SGD step on them;
- **generic**: ``CurveModule`` (3-point Bezier, t ~ U(0, 1)): φ(t) = Σ_j c_j(t)·θ_j built over flat
  control points, the network run with ``functional_call``, backward into the bend, an SGD step on it;
- **hand-written**: the same curve written per layer, as Garipov et al. (2018) do: every conv, linear
  and BatchNorm-affine layer holds its own control points θ_0, θ_1, θ_2 (endpoints as buffers, the bend
  as a parameter) and builds its weight c_0·θ_0 + c_1·θ_1 + c_2·θ_2 inside its forward; autograd gives
  the bend c_1·∂L/∂w;
- **flat**: no curve at all: the plain network with its weights held as views of one flat parameter vector
  (``functional_call``; autograd's ``split`` gathers their gradients back into it), the way the generic
  curve holds them. It separates what a curve costs from what storing the weights flat costs.

Timing: all three run interleaved in one process (the order rotates each round), with the thread count
switched within the process; page faults per step (``getrusage``'s minor faults, in MiB) are counted for
each variant, since memory the allocator returned to the system and touches again costs as much as arithmetic.
Each round gives ratios generic/plain and hand-written/plain, and the table
shows the median of those per-round ratios with a 95% bootstrap interval of that median
(``scipy.stats.bootstrap``, percentile method). On shared cloud cores single steps vary by ±10% from
one second to the next whatever runs, so a ratio near 1.03 needs tens of rounds: read the interval,
not the third digit. Memory: each variant runs in a fresh subprocess, which
reports its peak resident set size during three training steps (after one warm-up step; the peak is reset
through /proc/self/clear_refs, read as VmHWM, which ``resource.getrusage`` reports too), above the bare
process (interpreter, torch, the batch): weights or control points, optimizer state, activations and
gradients together. torch has no allocator statistics for CPU memory, so RSS is what is measured.
A frozen-backbone case (ResNet-18, only ``fc`` trainable, the same backbone at both endpoints) checks that
frozen tensors are stored and built once, not per control point.

    python benchmarks/curve_overhead.py                 # SmallCNN and ResNet-18, 1 and 2 threads, memory
    python benchmarks/curve_overhead.py --quick         # smoke run, under a minute
    python benchmarks/curve_overhead.py --nets smallcnn --rounds 40 --threads 1 --no-memory
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import json
import re
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import bootstrap
from torch import Tensor, nn

from unlearn_mc.curves import Bezier, CurveModule
from unlearn_mc.models import ResNet18, SmallCNN

NETS = {
    "smallcnn": lambda: SmallCNN(in_channels=3, num_classes=10, width=32),
    "resnet18": lambda: ResNet18(num_classes=10),
}
DEFAULT_ROUNDS = {"smallcnn": 40, "resnet18": 30}
QUICK_ROUNDS = {"smallcnn": 8, "resnet18": 2}
VARIANTS = ("plain", "generic", "hand", "flat")
CURVES = ("generic", "hand")  # the variants the memory table compares


# ---------------------------------------------------------------- the hand-written per-layer curve
class _T:
    """The coefficients (c_0, c_1, c_2) of the current t, shared by every curve layer of one network."""

    def __init__(self) -> None:
        self.family = Bezier(3)
        self.c = (1.0, 0.0, 0.0)

    def set(self, t: float) -> None:
        self.c = tuple(float(c) for c in self.family.coefficients(t))


class _CurveLayer(nn.Module):
    """Control points of a layer's weight and bias: θ_0 and θ_2 buffers, the bend θ_1 a parameter (midpoint init)."""

    def __init__(self, start: nn.Module, end: nn.Module, names: tuple[str, ...], coefficients: _T) -> None:
        super().__init__()
        self.coefficients = coefficients
        self.point_names = [name for name in names if getattr(start, name, None) is not None]
        for name in self.point_names:
            first, last = getattr(start, name).detach(), getattr(end, name).detach()
            self.register_buffer(f"{name}_0", first.clone())
            self.register_buffer(f"{name}_2", last.clone())
            setattr(self, f"{name}_1", nn.Parameter(0.5 * (first + last)))

    def point(self, name: str) -> Tensor | None:
        """c_0·θ_0 + c_1·θ_1 + c_2·θ_2: the endpoints' part without autograd, then the bend's with it."""
        if name not in self.point_names:
            return None
        c0, c1, c2 = self.coefficients.c
        with torch.no_grad():
            fixed = torch.mul(getattr(self, f"{name}_0"), c0).add_(getattr(self, f"{name}_2"), alpha=c2)
        return torch.add(fixed, getattr(self, f"{name}_1"), alpha=c1)


class CurveConv2d(_CurveLayer):
    def __init__(self, start: nn.Conv2d, end: nn.Conv2d, coefficients: _T) -> None:
        super().__init__(start, end, ("weight", "bias"), coefficients)
        self.stride, self.padding, self.dilation, self.groups = start.stride, start.padding, start.dilation, start.groups

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.point("weight"), self.point("bias"), self.stride, self.padding, self.dilation, self.groups)


class CurveLinear(_CurveLayer):
    def __init__(self, start: nn.Linear, end: nn.Linear, coefficients: _T) -> None:
        super().__init__(start, end, ("weight", "bias"), coefficients)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.point("weight"), self.point("bias"))


class CurveBatchNorm2d(_CurveLayer):
    """Affine parameters on the curve; running statistics the layer's own (the start model's), updated in training."""

    def __init__(self, start: nn.BatchNorm2d, end: nn.BatchNorm2d, coefficients: _T) -> None:
        super().__init__(start, end, ("weight", "bias"), coefficients)
        self.eps, self.momentum = start.eps, start.momentum
        self.register_buffer("running_mean", start.running_mean.clone())
        self.register_buffer("running_var", start.running_var.clone())
        self.register_buffer("num_batches_tracked", start.num_batches_tracked.clone())

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(x, self.running_mean, self.running_var, self.point("weight"), self.point("bias"),
                            self.training, self.momentum, self.eps)


LAYERS = {nn.Conv2d: CurveConv2d, nn.Linear: CurveLinear, nn.BatchNorm2d: CurveBatchNorm2d}


def hand_written_curve(start: nn.Module, end: nn.Module) -> tuple[nn.Module, _T]:
    """A copy of ``start`` whose conv, linear and BatchNorm layers are curve layers between ``start`` and ``end``."""
    coefficients = _T()
    net = copy.deepcopy(start)

    def swap(module: nn.Module, other: nn.Module) -> None:
        for name, child in list(module.named_children()):
            twin = getattr(other, name)
            if type(child) in LAYERS:
                setattr(module, name, LAYERS[type(child)](child, twin, coefficients))
            else:
                swap(child, twin)

    swap(net, end)
    return net, coefficients


# ---------------------------------------------------------------- the three steps
def _endpoints(name: str, frozen: bool) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    start, end = NETS[name](), NETS[name]()
    if frozen:  # one backbone shared by both endpoints, only the classifier differs and trains
        end.load_state_dict({k: v for k, v in start.state_dict().items() if not k.startswith("fc.")}, strict=False)
        for model in (start, end):
            for key, parameter in model.named_parameters():
                parameter.requires_grad_(key.startswith("fc."))
    return start, end


def build_steps(name: str, variants: tuple[str, ...], batch_size: int, frozen: bool = False) -> dict[str, Callable[[], Tensor]]:
    """One training-step function per variant, on one shared batch (each returns its loss)."""
    start, end = _endpoints(name, frozen)
    inputs, targets = torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))
    steps: dict[str, Callable[[], Tensor]] = {}

    def stepper(module: nn.Module, forward: Callable[[], Tensor]) -> Callable[[], Tensor]:
        optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.01, momentum=0.9)

        def step() -> Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(forward(), targets)
            loss.backward()
            optimizer.step()
            return loss.detach()

        return step

    if "plain" in variants:
        net = copy.deepcopy(start).train()
        steps["plain"] = stepper(net, lambda: net(inputs))
    if "generic" in variants:
        curve = CurveModule(copy.deepcopy(start), start, end, curve="bezier", num_bends=3).train()
        steps["generic"] = stepper(curve, lambda: curve(inputs))  # t drawn from U(0, 1)
    if "hand" in variants:
        hand, coefficients = hand_written_curve(start, end)
        hand.train()

        def hand_forward() -> Tensor:
            coefficients.set(float(torch.rand(())))
            return hand(inputs)

        steps["hand"] = stepper(hand, hand_forward)
    if "flat" in variants:
        steps["flat"] = flat_stepper(copy.deepcopy(start).train(), inputs, targets)
    return steps


def flat_stepper(net: nn.Module, inputs: Tensor, targets: Tensor) -> Callable[[], Tensor]:
    """A plain training step of ``net`` with its trainable weights as views of one flat parameter (no curve)."""
    named = [(name, p) for name, p in net.named_parameters() if p.requires_grad]
    shapes, sizes = [p.shape for _, p in named], [p.numel() for _, p in named]
    flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for _, p in named]))
    optimizer = torch.optim.SGD([flat], lr=0.01, momentum=0.9)

    def step() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        weights = {name: chunk.view(shape) for (name, _), chunk, shape in zip(named, flat.split(sizes), shapes)}
        loss = F.cross_entropy(torch.func.functional_call(net, weights, (inputs,)), targets)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def check_same_curve(name: str) -> None:
    """The hand-written curve and the generic one give the same outputs at the same t (eval mode, start's statistics)."""
    start, end = _endpoints(name, frozen=False)
    curve = CurveModule(copy.deepcopy(start), start, end, curve="bezier", num_bends=3).eval()
    hand, coefficients = hand_written_curve(start, end)
    hand.eval()
    inputs = torch.randn(4, 3, 32, 32)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the curve's stale-statistics warning: both use the start model's here
        coefficients.set(0.3)
        torch.testing.assert_close(hand(inputs), curve(inputs, t=0.3), rtol=1e-4, atol=1e-4)
    if name == "resnet18":
        assert sum(p.numel() for p in hand.parameters()) == curve.curve.bends.numel()


def _timed(step: Callable[[], Tensor], repeats: int) -> tuple[float, float]:
    """Seconds per step and minor page faults per step (memory the allocator got back from the system and touched anew)."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    seconds = (time.perf_counter() - start) / repeats
    return seconds, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / repeats


def median_interval(ratios: list[float]) -> tuple[float, float, float]:
    """The median of per-round ratios and its 95% bootstrap interval (percentile method, fixed seed)."""
    values = np.asarray(ratios, dtype=np.float64)
    if len(values) < 3:
        return float(np.median(values)), float("nan"), float("nan")
    interval = bootstrap((values,), np.median, confidence_level=0.95, method="percentile", random_state=0).confidence_interval
    return float(np.median(values)), float(interval.low), float(interval.high)


def measure(name: str, batch_size: int, rounds: int, steps_per_round: int, threads: int) -> dict[str, float]:
    """Per variant: median seconds per step; per curve variant: median over rounds of its ratio to that round's plain step,
    with its 95% bootstrap interval."""
    torch.set_num_threads(threads)
    steps = build_steps(name, VARIANTS, batch_size)
    for _ in range(2):
        for step in steps.values():
            step()
    seconds: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    faults: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for index in range(rounds):
        order = VARIANTS[index % len(VARIANTS):] + VARIANTS[: index % len(VARIANTS)]
        order = order if index % 2 == 0 else order[::-1]
        for variant in order:
            elapsed, faulted = _timed(steps[variant], steps_per_round)
            seconds[variant].append(elapsed)
            faults[variant].append(faulted)
    result = {f"{variant}_ms": 1000 * statistics.median(values) for variant, values in seconds.items()}
    page = resource.getpagesize()
    result.update({f"{variant}_fault_mib": statistics.mean(values) * page / 2**20 for variant, values in faults.items()})
    for variant in ("generic", "hand", "flat"):
        ratios = [c / p for c, p in zip(seconds[variant], seconds["plain"])]
        result[f"{variant}_ratio"], result[f"{variant}_low"], result[f"{variant}_high"] = median_interval(ratios)
    result["generic_over_hand"] = statistics.median(g / h for g, h in zip(seconds["generic"], seconds["hand"]))
    return result


# ---------------------------------------------------------------- memory, in fresh subprocesses
def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", open("/proc/self/status").read()).group(1))


def memory_child(name: str, variant: str, batch_size: int, frozen: bool) -> dict[str, float]:
    """Peak RSS (MiB) during 3 training steps of one variant above the bare process (after a warm-up step)."""
    torch.set_num_threads(1)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    bare = _status_kib("VmRSS")
    steps = build_steps(name, (variant,), batch_size, frozen)
    step = steps[variant]
    step()
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # construction's garbage back to the system
    resting = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset the peak (VmHWM, getrusage's ru_maxrss) to the current RSS
    for _ in range(3):
        step()
    peak = _status_kib("VmHWM")
    return {"resting_mib": (resting - bare) / 1024, "peak_mib": (peak - bare) / 1024}


def memory(name: str, variant: str, batch_size: int, frozen: bool = False) -> dict[str, float]:
    command = [sys.executable, __file__, "--memory-child", name, variant, "--batch-size", str(batch_size)] + (["--frozen"] if frozen else [])
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


# ---------------------------------------------------------------- table
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", choices=sorted(NETS), default=["smallcnn", "resnet18"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 30 for SmallCNN, 8 for ResNet-18)")
    parser.add_argument("--steps-per-round", type=int, default=None, help="steps timed together (default 5 for SmallCNN, 1 for ResNet-18)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op thread counts, each measured (default: 1 2)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--quick", action="store_true", help="smoke run (under a minute): few rounds, 1 thread, SmallCNN memory only")
    parser.add_argument("--memory-child", nargs=2, metavar=("NET", "VARIANT"), help=argparse.SUPPRESS)
    parser.add_argument("--frozen", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(*args.memory_child, args.batch_size, args.frozen)))
        return
    threads = [1] if args.quick else args.threads
    print(f"torch {torch.__version__}, batch {args.batch_size} of 3x32x32, 3-point Bezier, SGD with momentum")
    print("time: median over interleaved rounds of (curve step / plain step) in that round [95% bootstrap interval]")
    print(f"{'network':<10} {'threads':>7} {'rounds':>6} {'parameters':>11} {'plain':>9} {'generic':>9} {'hand':>9} "
          f"{'generic/plain':>22} {'hand/plain':>22} {'generic/hand':>13} {'flat/plain':>22} {'faults MiB/step p/g/h/f':>24}")
    for name in args.nets:
        check_same_curve(name)
        rounds = args.rounds or (QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS)[name]
        steps = args.steps_per_round or ((2 if args.quick else 5) if name == "smallcnn" else 1)
        parameters = sum(p.numel() for p in NETS[name]().parameters())
        for count in threads:
            r = measure(name, args.batch_size, rounds, steps, count)
            cells = {v: f"{r[v + '_ratio']:.3f} [{r[v + '_low']:.3f}, {r[v + '_high']:.3f}]" for v in ("generic", "hand", "flat")}
            faults = "/".join(f"{r[v + '_fault_mib']:.0f}" for v in VARIANTS)
            print(f"{name:<10} {count:>7} {rounds:>6} {parameters:>11,} {r['plain_ms']:>7.1f}ms {r['generic_ms']:>7.1f}ms {r['hand_ms']:>7.1f}ms "
                  f"{cells['generic']:>22} {cells['hand']:>22} {r['generic_over_hand']:>13.3f} {cells['flat']:>22} "
                  f"{faults:>24}", flush=True)
    if args.no_memory:
        return
    cases = [(name, False) for name in (["smallcnn"] if args.quick else args.nets)]
    if not args.quick and "resnet18" in args.nets:
        cases.append(("resnet18", True))
    print("memory: MiB above the bare process, fresh subprocess per cell; resting = after a step, peak = max RSS during 3 steps")
    print(f"{'network':<18} {'plain rest/peak':>16} {'generic rest/peak':>18} {'hand rest/peak':>16} {'generic/plain peak':>19}")
    for name, frozen in cases:
        cells = {variant: memory(name, variant, args.batch_size, frozen) for variant in (("plain", "generic") if frozen else ("plain", *CURVES))}
        text = {v: f"{c['resting_mib']:.0f}/{c['peak_mib']:.0f}" for v, c in cells.items()}
        label = f"{name}{' frozen' if frozen else ''}"
        print(f"{label:<18} {text['plain']:>16} {text['generic']:>18} {text.get('hand', '—'):>16} "
              f"{cells['generic']['peak_mib'] / cells['plain']['peak_mib']:>19.2f}", flush=True)


if __name__ == "__main__":
    main()
