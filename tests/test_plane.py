"""The plane through three models: its Gram–Schmidt geometry (float64), the values at the three models against their
own evaluations, the output folder, and ``unlearn-mc plane`` (bad input refused before anything is written, reuse,
refusal of other settings)."""

from __future__ import annotations

import copy
import csv
import json
import os
import re

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from unlearn_mc.cli import main
from unlearn_mc.curves import CurveModule
from unlearn_mc.data import UnlearningDataModule
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.evaluation import evaluate_model
from unlearn_mc.evaluation.batchnorm import recalibrate_batchnorm
from unlearn_mc.models import MLP, SmallCNN
from unlearn_mc.plane import PlaneBasis, curve_plane, evaluate_plane, grid_axes
from unlearn_mc.plane.outputs import FILES, check_plane_folder, load_plane, write_plane_files
from unlearn_mc.study import load_study
from unlearn_mc.study.datamodule import study_datamodule

FP32 = torch.finfo(torch.float32).eps
LOSS_RTOL = 256 * FP32  # the same sums in another order (vmapped convolutions, batched BatchNorm statistics): ~n·ε for n ≲ 256 terms
METRICS = ("forget_acc", "retain_acc", "test_acc", "forget_loss", "retain_loss", "test_loss", "mia_efficacy")
NET = {"class_path": "unlearn_mc.models.SmallCNN", "init_args": {"in_channels": 1, "num_classes": 10, "width": 4}}


def _nets(count: int = 3, seed: int = 0, make=lambda: SmallCNN(1, 10, 4)) -> list[torch.nn.Module]:
    torch.manual_seed(seed)
    return [make() for _ in range(count)]


@pytest.fixture(scope="module")
def loaders(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plane_data")
    datamodule = UnlearningDataModule(dataset="digits", forget_rule="class", forget_classes=[3], split_file=str(folder / "split.json"))
    datamodule.setup()
    return datamodule.eval_dataloaders()


# ---------------------------------------------------------------- geometry, exact in float64
@pytest.mark.numerics
def test_gram_schmidt_basis_is_orthonormal_and_the_models_project_to_their_coordinates():
    generator = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(1000, dtype=torch.float64, generator=generator) for _ in range(3))
    basis = PlaneBasis.through(a, b, c)
    u, v = b - a, c - a
    assert float(basis.u_hat @ basis.u_hat) == pytest.approx(1.0, abs=1e-14)
    assert float(basis.v_hat @ basis.v_hat) == pytest.approx(1.0, abs=1e-14)
    assert abs(float(basis.u_hat @ basis.v_hat)) < 1e-14
    along = float(v @ u) / float(u.norm())
    expected = [(0.0, 0.0), (float(u.norm()), 0.0), (along, float((v - along * u / u.norm()).norm()))]
    for theta, (x, y) in zip((a, b, c), expected):
        px, py, off = basis.project(theta)
        assert (px, py) == pytest.approx((x, y), abs=1e-12) and off < 1e-12
    assert np.allclose(basis.model_coordinates, expected, rtol=0, atol=1e-12)
    # θ(x, y) = θ_A + x·û + y·v̂ = Σ_j c_j·θ_j, and it projects back to (x, y)
    xs, ys = np.array([-1.5, 0.3, 4.0]), np.array([2.0, -0.7, 0.1])
    for (x, y), weights in zip(zip(xs, ys), basis.coefficients(xs, ys)):
        combined = weights[0] * a + weights[1] * b + weights[2] * c
        assert torch.allclose(combined, basis.point(x, y), rtol=0, atol=1e-12)
        assert basis.project(combined)[:2] == pytest.approx((x, y), abs=1e-12)
    assert np.allclose(basis.coefficients(*np.array(expected).T), np.eye(3), atol=1e-14)


def test_grid_spans_the_models_with_margins_and_degenerate_planes_are_refused():
    xs, ys = grid_axes([(0.0, 0.0), (4.0, 0.0), (1.0, 2.0)], grid=5, margin=0.25)
    # spreads 4 (x) and 2 (y): one margin of 0.25 · 4 = 1 on both axes
    assert xs.tolist() == pytest.approx([-1.0, 0.5, 2.0, 3.5, 5.0]) and ys.tolist() == pytest.approx([-1.0, 0.0, 1.0, 2.0, 3.0])
    a, b = torch.zeros(10), torch.ones(10)
    with pytest.raises(UnlearnMCError, match="'A' and 'B' have the same weights"):
        PlaneBasis.through(a, a, b)
    with pytest.raises(UnlearnMCError, match="lie on one line"):
        PlaneBasis.through(a, b, 3 * b)
    with pytest.raises(UnlearnMCError, match="grid=1 is not a grid size"):
        grid_axes([(0, 0), (1, 0), (0, 1)], grid=1, margin=0.2)


# ---------------------------------------------------------------- values at the models
def _own(net: torch.nn.Module, loaders, bn_batches: int | None) -> dict[str, float]:
    """The model's own evaluation, its BatchNorm recalibrated on the retain set as every point of the plane."""
    net = copy.deepcopy(net).eval()
    recalibrate_batchnorm(net, loaders["retain"], num_batches=bn_batches)
    return evaluate_model(net, loaders)


@pytest.mark.numerics
@pytest.mark.parametrize(("points_per_batch", "mia_loss_acc"), [(16, False), (1, True)], ids=["vmap", "one-per-forward"])
def test_at_the_three_models_the_plane_equals_their_own_evaluations_with_recalibrated_batchnorm(loaders, points_per_batch, mia_loss_acc):
    nets = _nets()
    result = evaluate_plane(SmallCNN(1, 10, 4), nets, loaders, grid=2, bn_loader=loaders["retain"], bn_batches=2,
                            names=["a", "b", "c"], points_per_batch=points_per_batch, mia_loss_acc=mia_loss_acc)
    assert result.settings["mode"] == ("vmap" if points_per_batch > 1 else "one point per forward")
    assert [model["name"] for model in result.models] == ["a", "b", "c"]
    for net, at_model in zip(nets, result.models):
        own = _own(net, loaders, 2)
        assert set(own) - set(result.metric_names) == (set() if mia_loss_acc else {"mia_loss_acc"})
        own = {name: value for name, value in own.items() if name in result.metric_names}
        for name, value in own.items():
            if name.endswith("_loss"):
                assert at_model[name] == pytest.approx(value, rel=LOSS_RTOL), name
            else:  # counts of samples: exactly the same
                assert at_model[name] == value, name
    assert result.grid["retain_acc"].shape == (2, 2) and result.timing["points"] == 7


def _mlp() -> torch.nn.Module:
    return MLP(64, 10, [16])


@pytest.fixture(scope="module")
def mlp_plane(loaders):
    """Three MLPs (no BatchNorm) and their plane on a 3×3 grid."""
    nets = _nets(make=_mlp)
    return nets, evaluate_plane(_mlp(), nets, loaders, grid=3, names=["p", "q", "r"])


@pytest.mark.numerics
def test_a_network_without_batchnorm_needs_no_recalibration_and_bad_models_are_refused(loaders, mlp_plane):
    nets, result = mlp_plane
    for net, at_model in zip(nets, result.models):
        own = evaluate_model(net.eval(), loaders)
        assert at_model["test_loss"] == pytest.approx(own["test_loss"], rel=LOSS_RTOL) and at_model["test_acc"] == own["test_acc"]
    with pytest.raises(UnlearnMCError, match="BatchNorm layers"):
        evaluate_plane(SmallCNN(1, 10, 4), _nets(), loaders, grid=2)
    with pytest.raises(UnlearnMCError, match=r"model 'C' .*features.0.0.weight.*\(8, 1, 3, 3\)"):
        evaluate_plane(SmallCNN(1, 10, 4), [*_nets(2), SmallCNN(1, 10, 8)], loaders, grid=2, bn_loader=loaders["retain"])
    with pytest.raises(UnlearnMCError, match="exactly three models, got 2"):
        evaluate_plane(_mlp(), nets[:2], loaders)


@pytest.mark.numerics
def test_a_three_point_curve_lies_on_the_plane_of_its_control_points(loaders):
    start, end, bend = _nets()
    curve = CurveModule(SmallCNN(1, 10, 4), start, end, curve="bezier", num_bends=3, init={"checkpoint": bend})
    result = curve_plane(curve, loaders, grid=2, bn_loader=loaders["retain"], bn_batches=1)
    path = result.path
    assert max(path["off_plane"]) < 1e-5 * result.settings["distances"]["u_norm"]
    assert (path["x"][0], path["y"][0]) == pytest.approx((0.0, 0.0), abs=1e-9)
    assert (path["x"][-1], path["y"][-1]) == pytest.approx((result.models[2]["x"], result.models[2]["y"]), abs=1e-9)
    own_end = _own(end, loaders, 1)
    assert result.models[2]["retain_loss"] == pytest.approx(own_end["retain_loss"], rel=LOSS_RTOL)


# ---------------------------------------------------------------- the folder
def test_the_folder_holds_csv_npz_figure_and_is_reused_or_refused_never_overwritten(mlp_plane, tmp_path):
    result = mlp_plane[1]
    folder = write_plane_files(result, tmp_path / "p--q--r", {"grid": 3})
    assert sorted(os.listdir(folder)) == sorted(FILES)
    with open(folder / "plane.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:2] == ["x", "y"] and set(METRICS) <= set(rows[0]) and len(rows) == 9
    assert float(rows[1]["x"]) == pytest.approx(result.xs[1]) and float(rows[3]["y"]) == pytest.approx(result.ys[1])
    assert float(rows[5]["retain_loss"]) == pytest.approx(result.grid["retain_loss"][1, 2])
    with np.load(folder / "plane.npz") as arrays:
        assert {"x", "y", *METRICS, "model_names", "model_x", "model_y", "model_forget_acc"} <= set(arrays.files)
        assert arrays["forget_loss"].shape == (3, 3)
    again = load_plane(folder)
    assert again.names == ["p", "q", "r"] and np.array_equal(again.grid["test_acc"], result.grid["test_acc"])
    assert check_plane_folder(folder, {"grid": 3}) is True
    with pytest.raises(UnlearnMCError, match="other settings .grid was 3, now 4"):
        check_plane_folder(folder, {"grid": 4})
    with pytest.raises(UnlearnMCError, match="already exists"):
        write_plane_files(result, folder)
    assert json.loads((folder / "plane.json").read_text())["config"] == {"grid": 3}


# ---------------------------------------------------------------- the command
@pytest.fixture
def fake_study(tmp_path, monkeypatch):
    """A study folder whose endpoints are finished (random width-4 nets), with its split drawn; cwd = tmp_path."""
    monkeypatch.chdir(tmp_path)
    study = {"output_dir": "out", "net": NET, "data": {"dataset": "digits", "forget_rule": "class", "forget_classes": [3]},
             "base": {"epochs": 1}, "methods": {"ft": {"method": "FineTune", "epochs": 1}},
             "curves": {"families": {"linear": {"curve": "linear"}}}, "evaluation": {"bn_batches": 1}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    for stage, net in zip(("original", "retrain", "method-ft"), _nets()):
        folder = tmp_path / "out" / "stages" / stage
        folder.mkdir(parents=True)
        torch.save(net.state_dict(), folder / "model.ckpt")
        (folder / "result.json").write_text("{}")
    study_datamodule(load_study(path))  # draws out/split.json, as the base stages would
    return path


def _refused(capsys, root, args: list[str]) -> str:
    before = set(root.rglob("*"))
    status = main(["plane", *args])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err, err
    message = err.strip().splitlines()[-1]
    assert message.startswith("unlearn-mc: error: ") and message.endswith(".") and not re.search(r"[.!?] [A-Z]", message), message
    assert set(root.rglob("*")) == before, "written despite the error"
    return message


@pytest.mark.parametrize(("args", "fragment"), [
    (["--models", "original", "retrain"], "exactly three models, got 2 (original retrain)"),
    (["--models", "original", "retrain", "salun"], "model 'salun', which the study does not train; use three of original, retrain, ft"),
    (["--models", "original", "retrain", "ft", "--grid", "1"], "--grid=1 is not a grid size"),
    (["--models", "original", "retrain", "ft", "--grid", "x"], "argument --grid: invalid int value: 'x'"),
    (["--checkpoints", "out/stages/original/model.ckpt", "nowhere.ckpt", "out/stages/retrain/model.ckpt"], "'nowhere.ckpt' does not exist"),
    (["--checkpoints", "out/stages/original/model.ckpt", "out/stages/retrain/model.ckpt"], "exactly three files, got 2"),
    (["--checkpoints", "out/stages/original/model.ckpt", "out/stages/retrain/model.ckpt", "wide.pt"], "features.0.0.weight"),
    (["--grid", "3"], "exactly one of --models"),
    (["--models", "original", "retrain", "ft", "--bn_batches", "0"], "--bn_batches=0 must be at least 1"),
])
def test_bad_input_is_one_sentence_and_nothing_is_written(fake_study, capsys, args, fragment):
    torch.save(SmallCNN(1, 10, 8).state_dict(), fake_study.parent / "wide.pt")
    assert fragment in _refused(capsys, fake_study.parent, ["--config", str(fake_study), *args])


def test_a_stage_that_has_not_finished_is_named(fake_study, capsys):
    (fake_study.parent / "out" / "stages" / "method-ft" / "result.json").unlink()
    message = _refused(capsys, fake_study.parent, ["--config", str(fake_study), "--models", "original", "retrain", "ft"])
    assert "model 'ft' has no finished stage" in message


def test_the_command_draws_a_study_plane_then_reuses_it_and_refuses_other_settings(fake_study, capsys):
    root = fake_study.parent
    assert main(["plane", "--config", str(fake_study), "--models", "original", "retrain", "ft", "--grid", "2"]) == 0
    folder = root / "out" / "plane" / "original--retrain--ft"
    assert sorted(os.listdir(folder)) == sorted(FILES)
    note = capsys.readouterr().out
    assert f"plane: {folder.relative_to(root)}/plane.png — 2×2 grid + 3 models = 7 points" in note and "× one evaluation pass" in note
    events = EventAccumulator(str(root / "out" / "tensorboard" / "plane"))
    events.Reload()
    assert events.Tags()["images"] == ["plane/original--retrain--ft"]
    assert main(["plane", "--config", str(fake_study), "--models", "original", "retrain", "ft", "--grid", "2"]) == 0
    assert "finished earlier, reused" in capsys.readouterr().out
    message = _refused(capsys, root, ["--config", str(fake_study), "--models", "original", "retrain", "ft", "--grid", "3"])
    assert "other settings (grid was 2, now 3)" in message


def test_a_study_file_with_a_bad_plane_analysis_is_refused_before_any_training(fake_study):
    study = yaml.safe_load(fake_study.read_text())
    for plane, fragment in (({"models": ["original", "retrain"]}, "exactly three models"), ({"models": ["original", "retrain", "x"]}, "model 'x'"),
                            ({"models": ["original", "retrain", "ft"], "grid": 1}, "analyses.plane.grid=1"), ({"modles": []}, "unknown key")):
        fake_study.write_text(yaml.safe_dump({**study, "analyses": {"plane": plane}}))
        with pytest.raises(UnlearnMCError, match=re.escape(fragment)):
            load_study(fake_study)
