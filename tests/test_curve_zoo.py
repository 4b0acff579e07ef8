"""The curve engine on a zoo of networks: tied weights, frozen parameters, GroupNorm, buffers that are not
BatchNorm's, torchvision ResNet-18 and MobileNetV3, keyword inputs and dict batches.

For each network: φ(0) and φ(1) are the endpoints exactly (outputs, parameters and buffers, ``torch.equal``),
only the bends reach the optimiser, the bends' gradient is c_j(t)·∂L/∂φ of plain autograd (float64), and
``state_dict_at(t)`` loaded into a fresh copy of the network gives the curve's outputs at t.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Callable

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import quiet_trainer
from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils.data import DataLoader

from unlearn_mc.curves import CurveEvaluation, CurveModule
from unlearn_mc.data.batches import ModelInputs, split_batch, stream_batches
from unlearn_mc.errors import UnlearnMCError

pytestmark = pytest.mark.numerics

FLOAT64_RTOL = 1e-12


# ---------------------------------------------------------------- the zoo
class TinyTransformer(nn.Module):
    """Token embedding whose weight the output projection shares, a positional table, LayerNorm and dropout."""

    def __init__(self, vocab: int = 11, dim: int = 8, length: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.register_buffer("positions", torch.randn(length, dim) * 0.1)
        self.layer = nn.TransformerEncoderLayer(dim, nhead=2, dim_feedforward=16, dropout=0.1, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(0.1)
        self.out_proj = nn.Linear(dim, vocab, bias=False)
        self.out_proj.weight = self.embed.weight

    def forward(self, tokens: Tensor) -> Tensor:
        hidden = self.layer(self.dropout(self.embed(tokens) + self.positions[: tokens.shape[1]]))
        return self.out_proj(self.norm(hidden))


class FrozenBackbone(nn.Module):
    """A backbone with ``requires_grad=False`` and a trainable head."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU())
        self.backbone.requires_grad_(False)
        self.head = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


def group_norm_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


class RunningCenter(nn.Module):
    """A running mean updated in place by every training forward, a step counter and a fixed table: none BatchNorm's."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)
        self.register_buffer("center", torch.zeros(4))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("table", torch.randn(4))

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.lin(x)
        if self.training:
            self.center.mul_(0.9).add_(0.1 * hidden.detach().mean(0))
            self.steps += 1
        return self.head(hidden - self.center + self.table)


@dataclass
class Output:
    logits: Tensor


class KeywordClassifier(nn.Module):
    """Called as ``net(input_ids=…, attention_mask=…)`` and returning an object with ``.logits``, as Hugging Face models do."""

    def __init__(self, vocab: int = 13, dim: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Output:
        hidden = self.embed(input_ids)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return Output(self.head((hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)))


def resnet18() -> nn.Module:
    from torchvision.models import resnet18 as build

    return build(num_classes=10)


def mobilenet_v3_small() -> nn.Module:
    from torchvision.models import mobilenet_v3_small as build

    return build(num_classes=10)


def _images(seed: int) -> Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _tokens(seed: int) -> Tensor:
    return torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(seed))


def _keyword_inputs(seed: int) -> ModelInputs:
    generator = torch.Generator().manual_seed(seed)
    return ModelInputs((), {"input_ids": torch.randint(0, 13, (2, 4), generator=generator), "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])})


@dataclass
class Case:
    build: Callable[[], nn.Module]
    inputs: Callable[[int], Tensor | ModelInputs]
    batchnorm: bool = False
    num_bends: int = 4
    prepare: Callable[[nn.Module, int], None] | None = None  # makes an endpoint's buffers its own


def _run_batchnorm(net: nn.Module, seed: int) -> None:
    """Give the endpoint BatchNorm statistics of its own (two training-mode forwards)."""
    net.train()
    with torch.no_grad():
        for k in range(2):
            net(_images(100 * seed + k))


def _run_center(net: nn.Module, seed: int) -> None:
    net.train()
    with torch.no_grad():
        for k in range(3):
            net(torch.randn(5, 4, generator=torch.Generator().manual_seed(100 * seed + k)))


CASES = {
    "tied_transformer": Case(TinyTransformer, _tokens),
    "frozen_backbone": Case(FrozenBackbone, lambda seed: torch.randn(2, 6, generator=torch.Generator().manual_seed(seed))),
    "group_norm_cnn": Case(group_norm_cnn, lambda seed: torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))),
    "running_buffer": Case(RunningCenter, lambda seed: torch.randn(2, 4, generator=torch.Generator().manual_seed(seed)), prepare=_run_center),
    "keyword_inputs": Case(KeywordClassifier, _keyword_inputs),
    "resnet18": Case(resnet18, _images, batchnorm=True, num_bends=3, prepare=_run_batchnorm),
    "mobilenet_v3_small": Case(mobilenet_v3_small, _images, batchnorm=True, num_bends=3, prepare=_run_batchnorm),
}


def _endpoint(case: Case, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = case.build()
    if case.prepare is not None:
        case.prepare(net, seed)
    return net.eval()


def _call(function, inputs: Tensor | ModelInputs):
    if isinstance(inputs, ModelInputs):
        return function(*inputs.args, **inputs.kwargs)
    return function(inputs)


def _logits(output) -> Tensor:
    return output if isinstance(output, Tensor) else output.logits


def _double(inputs: Tensor | ModelInputs) -> Tensor | ModelInputs:
    if isinstance(inputs, ModelInputs):
        return inputs._map(lambda tensor: tensor.double() if tensor.is_floating_point() else tensor)
    return inputs.double() if inputs.is_floating_point() else inputs


def _same_state(ours: dict[str, Tensor], theirs: dict[str, Tensor]) -> None:
    assert list(ours) == list(theirs)
    for key in theirs:
        assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]), key


@pytest.fixture(scope="module", params=list(CASES))
def zoo(request):
    case = CASES[request.param]
    start, end = _endpoint(case, 1), _endpoint(case, 2)
    if request.param == "frozen_backbone":
        end.backbone.load_state_dict(start.backbone.state_dict())  # a shared frozen backbone, two heads
    curve = CurveModule(case.build(), start, end.state_dict(), curve="bezier", num_bends=case.num_bends, retrain=end,
                        optimizer=lambda params: torch.optim.SGD(params, lr=0.1)).eval()
    return request.param, case, start, end, curve


# ---------------------------------------------------------------- the checks
def test_endpoints_are_reproduced_exactly(zoo):
    name, case, start, end, curve = zoo
    inputs = case.inputs(0)
    for t, model in ((0.0, start), (1.0, end)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no stale-statistics warning at an endpoint
            assert torch.equal(_logits(_call(lambda *a, **k: curve(*a, t=t, **k), inputs)), _logits(_call(model, inputs)))
            _same_state(curve.state_dict_at(t), model.state_dict())
        standalone = curve.network_at(t).eval()
        assert torch.equal(_logits(_call(standalone, inputs)), _logits(_call(model, inputs)))
        ours = dict(standalone.named_parameters(remove_duplicate=False))
        for key, parameter in model.named_parameters(remove_duplicate=False):
            assert torch.equal(ours[key], parameter) and ours[key].requires_grad == parameter.requires_grad
    if name == "tied_transformer":
        standalone = curve.network_at(0.5)
        assert standalone.out_proj.weight is standalone.embed.weight


def test_only_the_bends_reach_the_optimiser(zoo):
    name, case, _, _, curve = zoo
    assert [key for key, _ in curve.named_parameters()] == ["curve.bends"]
    assert not any("retrain" in key for key, _ in curve.named_modules())  # a module given as retrain is a snapshot
    assert not any("retrain" in key for key in curve.state_dict())
    optimiser = curve.configure_optimizers()
    assert [p for group in optimiser.param_groups for p in group["params"]] == [curve.curve.bends]
    trainable = {id(p): p for p in case.build().parameters() if p.requires_grad}
    assert curve.curve.bends.shape == (case.num_bends - 2, sum(p.numel() for p in trainable.values()))
    if name == "frozen_backbone":
        backbone = sum(p.numel() for p in FrozenBackbone().backbone.parameters())
        assert curve.curve.endpoints.shape[1] == curve.curve.bends.shape[1] == sum(p.numel() for p in FrozenBackbone().head.parameters())
        assert sum(b.numel() for b in curve.curve.fixed_shared.buffers()) == backbone  # one copy, not one per control point
        assert len(curve.curve.fixed_start) == len(curve.curve.fixed_end) == 0


def test_bend_gradients_are_c_j_times_the_gradient_at_phi(zoo):
    _, case, _, _, curve = zoo
    curve = copy.deepcopy(curve).double()
    inputs, t = _double(case.inputs(3)), 0.3
    if case.batchnorm:
        curve.recalibrate_bn(t, [_double(_images(7)), _double(_images(8))])
    curve.curve.bends.grad = None
    _logits(_call(lambda *a, **k: curve(*a, t=t, **k), inputs)).pow(2).mean().backward()

    bent = {key: value.detach().requires_grad_() for key, value in curve.parameters_at(t).items()}
    tensors = {key: value.detach() for key, value in curve.curve.network_fn(t).tensors().items()}
    tensors.update(curve.curve.layout.with_aliases(bent))
    output = _call(lambda *a, **k: functional_call(curve.curve.net, tensors, a, k), inputs)
    grads = torch.autograd.grad(_logits(output).pow(2).mean(), [bent[slot.name] for slot in curve.curve.layout.train_slots])
    flat = torch.cat([grad.reshape(-1) for grad in grads])
    expected = curve.curve.coefficients(t)[1:-1, None] * flat[None, :]
    assert curve.curve.bends.grad.dtype == torch.float64 and flat.abs().sum() > 0
    torch.testing.assert_close(curve.curve.bends.grad, expected, rtol=FLOAT64_RTOL, atol=FLOAT64_RTOL * float(flat.abs().max()))


def test_state_dict_at_t_in_a_fresh_copy_gives_the_curve(zoo):
    _, case, _, _, curve = zoo
    inputs, t = case.inputs(4), 0.3
    if case.batchnorm:
        curve.recalibrate_bn(t, [_images(5), _images(6)])
    fresh = case.build()
    fresh.load_state_dict(curve.state_dict_at(t))
    fresh.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(_logits(_call(fresh, inputs)), _logits(_call(lambda *a, **k: curve(*a, t=t, **k), inputs)))


def test_a_saved_curve_loads_from_its_file_alone(zoo, tmp_path):
    name, case, _, _, curve = zoo
    path = tmp_path / "curve.ckpt"
    torch.save({"state_dict": curve.state_dict(), "hyper_parameters": dict(curve.hparams)}, path)
    loaded = CurveModule.load_curve(path, case.build()).eval()
    inputs = case.inputs(9)
    for t in (0.0, 0.6, 1.0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 0.6 is not recalibrated, in either
            assert torch.equal(_logits(_call(lambda *a, **k: loaded(*a, t=t, **k), inputs)), _logits(_call(lambda *a, **k: curve(*a, t=t, **k), inputs)))
    if case.batchnorm:
        # a checkpoint of the earlier format (no endpoint statistics) still loads; its endpoints then use the saved statistics
        old = {key: value for key, value in curve.state_dict().items() if not key.startswith(("curve.bn_start.", "curve.bn_end.", "curve.bn_calibrated_t"))}
        torch.save({"state_dict": old, "hyper_parameters": dict(curve.hparams)}, path)
        assert len(CurveModule.load_curve(path, case.build()).curve.bn_start) == 0


# ---------------------------------------------------------------- buffers, frozen tensors and BatchNorm, one rule each
def test_training_forwards_leave_every_buffer_as_the_rule_says():
    case = CASES["running_buffer"]
    start, end = _endpoint(case, 1), _endpoint(case, 2)
    curve = CurveModule(RunningCenter(), start, end, curve="bezier", num_bends=3).train()
    assert "steps" in curve.curve.fixed_shared and "center" in curve.curve.fixed_start and "table" in curve.curve.fixed_end
    before = {key: value.clone() for key, value in curve.state_dict().items()}
    for t in (0.0, 0.5, 1.0):
        curve(torch.randn(3, 4), t=t).sum().backward()
    after = curve.state_dict()
    for key, value in before.items():
        if key != "curve.bends":
            assert torch.equal(after[key], value), key
    _same_state(curve.state_dict_at(1.0), end.state_dict())
    midway = curve.state_dict_at(0.5)
    assert torch.equal(midway["table"], torch.lerp(start.table, end.table, 0.5)) and torch.equal(midway["steps"], start.steps)


def test_an_integer_buffer_that_differs_between_the_endpoints_is_refused():
    start, end = RunningCenter(), RunningCenter()
    end.steps += 3
    with pytest.raises(UnlearnMCError, match="'steps'.*differs between start and end"):
        CurveModule(RunningCenter(), start, end)


def test_a_frozen_backbone_that_differs_is_interpolated_not_bent():
    start, end = _endpoint(CASES["frozen_backbone"], 1), _endpoint(CASES["frozen_backbone"], 2)
    curve = CurveModule(FrozenBackbone(), start.state_dict(), end, curve="polychain", num_bends=5)
    assert curve.curve.bends.shape == (3, sum(p.numel() for p in start.head.parameters()))
    state = curve.state_dict_at(0.25)
    for key, value in start.backbone.state_dict().items():
        assert torch.equal(state[f"backbone.{key}"], torch.lerp(value, end.backbone.state_dict()[key], 0.25))
    assert not any(p.requires_grad for p in curve.network_at(0.25).backbone.parameters())


def test_tied_weights_differing_in_a_state_dict_are_refused():
    start, end = TinyTransformer(), TinyTransformer().state_dict()
    end["out_proj.weight"] = end["out_proj.weight"] + 1.0
    with pytest.raises(UnlearnMCError, match="'embed.weight' and 'out_proj.weight'"):
        CurveModule(TinyTransformer(), start, end)


def test_stale_batchnorm_statistics_warn_once_and_network_at_recalibrates():
    case = CASES["mobilenet_v3_small"]
    curve = CurveModule(case.build(), _endpoint(case, 1), _endpoint(case, 2), curve="bezier", num_bends=3).eval()
    inputs = _images(0)
    with pytest.warns(UserWarning, match="t=0.4 with BatchNorm statistics that were not recalibrated"):
        curve(inputs, t=0.4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        curve(inputs, t=0.7)  # once per curve
        net = curve.network_at(0.4, bn_loader=[(_images(5), torch.zeros(2)), (_images(6), torch.zeros(2))]).eval()
        assert torch.equal(net(inputs), curve(inputs, t=0.4))
        reference = copy.deepcopy(net)
        from torch.optim.swa_utils import update_bn

        update_bn([_images(5), _images(6)], reference)
        for ours, theirs in zip(net.buffers(), reference.buffers()):
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- any call signature and batch
def test_batches_split_into_inputs_and_labels():
    x, x2, y = torch.zeros(2, 3), torch.ones(2, 3), torch.tensor([0, 1])
    assert split_batch((x, y))[0] is x and split_batch([x, y])[1] is y
    inputs, labels = split_batch((x, x2, y), label_key=-1)
    assert isinstance(inputs, ModelInputs) and inputs.args == (x, x2) and labels is y
    inputs, labels = split_batch({"input_ids": x, "attention_mask": x2, "label": y})
    assert inputs.kwargs == {"input_ids": x, "attention_mask": x2} and labels is y and len(inputs) == 2
    assert split_batch({"ids": x, "target": y}, label_key="target")[1] is y
    with pytest.raises(UnlearnMCError, match="no labels"):
        split_batch({"ids": x})
    streams = stream_batches({"forget": {"input_ids": x, "labels": y}, "retain": (x2, y)}, ("forget", "retain"))
    assert streams["forget"][0].kwargs == {"input_ids": x} and streams["retain"][0] is x2


class DictBatches(L.LightningDataModule):
    """Hugging Face–style dict batches: ``input_ids``, ``attention_mask`` and ``labels``."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.splits = {
            name: [{"input_ids": torch.randint(0, 13, (4,), generator=generator), "attention_mask": torch.tensor([1, 1, 1, k % 2]),
                    "labels": torch.tensor(k % 3)} for k in range(8)]
            for name in ("forget", "retain", "test")
        }

    def train_dataloader(self):
        return CombinedLoader({name: DataLoader(self.splits[name], batch_size=4) for name in ("forget", "retain")}, mode="max_size_cycle")

    def eval_dataloaders(self) -> dict[str, DataLoader]:
        return {name: DataLoader(samples, batch_size=4) for name, samples in self.splits.items()}


def test_a_keyword_model_trains_and_evaluates_on_dict_batches_with_in_memory_endpoints(tmp_path):
    start, end = _endpoint(CASES["keyword_inputs"], 1), _endpoint(CASES["keyword_inputs"], 2)
    curve = CurveModule(KeywordClassifier(), start, end.state_dict(), objective="GradDiff", objective_args={"original": start},
                        retrain=end, optimizer=lambda params: torch.optim.SGD(params, lr=0.1))
    assert curve.hparams.start == "<in memory: KeywordClassifier>" and curve.hparams.objective_args == {"original": "<in memory: KeywordClassifier>"}
    before = curve.curve.bends.detach().clone()
    evaluation = CurveEvaluation(t_grid=3, figure=False)
    quiet_trainer(max_steps=2, limit_val_batches=0, default_root_dir=tmp_path, callbacks=[evaluation]).fit(curve, datamodule=DictBatches())
    assert not torch.equal(before, curve.curve.bends.detach())
    rows = evaluation.last_result.rows
    assert len(rows) == 3 and {"forget_acc", "retain_acc", "test_acc", "avg_gap"} <= set(rows[0])
    assert rows[-1]["avg_gap"] == pytest.approx(0.0, abs=1e-12)  # t = 1 is the retrain model itself
    batch = next(iter(DictBatches().eval_dataloaders()["test"]))
    logits = F.softmax(curve.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], t=1.0).logits, -1)
    assert torch.equal(logits, F.softmax(end(batch["input_ids"], attention_mask=batch["attention_mask"]).logits, -1))
