"""Curve checkpoints of earlier layouts load: ``tests/data/curve_a0e0732.pt`` was written by ``CurveModule`` at commit
a0e0732, when the curve's tensors were the module's own (keys ``bends``, ``endpoints``, ``fixed_start.…``, ``net.…``);
they now live in ``CurveModule.curve`` (keys ``curve.…``). Written by ``python tests/test_curve_checkpoints.py``
with that commit's code on the path."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from unlearn_mc.curves import CurveModule
from unlearn_mc.errors import UnlearnMCError

pytestmark = pytest.mark.numerics

FIXTURE = Path(__file__).parent / "data" / "curve_a0e0732.pt"


class Legacy(nn.Module):
    """Every kind of tensor a curve keeps: bent and frozen-by-pattern parameters, BatchNorm statistics, a float buffer
    that differs between the endpoints (interpolated) and one that agrees (shared)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.norm = nn.BatchNorm2d(2)
        self.head = nn.Linear(2, 3)
        self.register_buffer("offset", torch.zeros(2))
        self.register_buffer("scale", torch.ones(2))

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.norm(self.conv(x)).mean((2, 3))
        return self.head(hidden * self.scale + self.offset)


def _endpoint(seed: int) -> Legacy:
    torch.manual_seed(seed)
    net = Legacy()
    net.offset.normal_()
    net.train()
    with torch.no_grad():
        net(torch.randn(4, 1, 5, 5))  # BatchNorm statistics of its own
    return net.eval()


def _inputs() -> Tensor:
    return torch.randn(3, 1, 5, 5, generator=torch.Generator().manual_seed(7))


def _outputs(curve) -> dict[float, Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # t = 0.3 runs with the start's statistics, in both
        return {t: curve(_inputs(), t=t).detach() for t in (0.0, 0.3, 1.0)}


def write_fixture() -> None:
    start, end = _endpoint(1), _endpoint(2)
    curve = CurveModule(Legacy(), start, end, curve="bezier", num_bends=3, trainable=["conv.*", "norm.*"]).eval()
    with torch.no_grad():
        curve.bends.add_(0.01)
    torch.save({"state_dict": curve.state_dict(), "hyper_parameters": dict(curve.hparams), "outputs": _outputs(curve),
                "start": start.state_dict(), "end": end.state_dict()}, FIXTURE)


def test_a_checkpoint_of_the_earlier_layout_loads_into_the_curve(tmp_path):
    saved = torch.load(FIXTURE, weights_only=True)
    assert "bends" in saved["state_dict"] and not any(key.startswith("curve.") for key in saved["state_dict"])
    module = CurveModule.load_curve(FIXTURE, Legacy()).eval()
    assert sorted(module.state_dict()) == sorted(f"curve.{key}" for key in saved["state_dict"])
    for key, value in saved["state_dict"].items():
        assert torch.equal(module.state_dict()[f"curve.{key}"], value), key
    for t, endpoint in ((0.0, saved["start"]), (1.0, saved["end"])):
        state = module.state_dict_at(t)
        assert list(state) == list(endpoint) and all(torch.equal(state[key], endpoint[key]) for key in endpoint)
    outputs = _outputs(module)
    for t, expected in saved["outputs"].items():
        torch.testing.assert_close(outputs[t], expected, rtol=1e-6, atol=1e-7)
    # saved again in the current layout, it loads the same; so does its plain Curve from the curve's own state_dict
    path = tmp_path / "again.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    again = CurveModule.load_curve(path, Legacy()).eval()
    # imported here, not at the top: write_fixture runs with a0e0732's code, which had no Curve
    from unlearn_mc.curves import Curve

    curve = Curve(Legacy(), None, None, "bezier", 3, trainable=["conv.*", "norm.*"])
    curve.load_state_dict(module.curve.state_dict())
    for t in (0.0, 0.3, 1.0):
        assert torch.equal(_outputs(again)[t], outputs[t]) and torch.equal(_outputs(curve.eval())[t], outputs[t])


def test_a_checkpoint_without_a_value_of_a_fixed_tensor_is_refused(tmp_path):
    saved = torch.load(FIXTURE, weights_only=True)
    saved["state_dict"] = {key: value for key, value in saved["state_dict"].items() if not key.startswith("fixed_start.")}
    torch.save(saved, tmp_path / "broken.ckpt")
    with pytest.raises(UnlearnMCError, match="holds no value of the tensor .offset."):
        CurveModule.load_curve(tmp_path / "broken.ckpt", Legacy())


if __name__ == "__main__":
    sys.exit(write_fixture())
