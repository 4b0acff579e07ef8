"""The MCU setting configs: every one parses, and one setting chains from a fresh working directory
(original and retrain → both endpoints → curve → evaluation along t), with epochs shortened."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unlearn_mc.cli import main
from unlearn_mc.dynamics import read_dynamics, setting_between
from unlearn_mc.lightning_cli import resolved_config

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = sorted((ROOT / "configs").glob("*/settings/**/*.yaml"))
SETTING_NAMES = ("seeds", "curriculum", "optimizer", "methods", "references")


def test_every_setting_has_endpoints_and_a_curve_for_both_datasets():
    for dataset in ("digits", "cifar10"):
        for setting in SETTING_NAMES:
            folder = ROOT / "configs" / dataset / "settings" / setting
            configs = {path.name: resolved_config(path) for path in folder.glob("*.yaml")}
            curves = {name: c for name, c in configs.items() if c["model"]["class_path"] == "unlearn_mc.curves.CurveModule"}
            assert curves, f"{folder} has no curve config"
            for curve in curves.values():
                for end in ("start", "end"):
                    path = curve["model"]["init_args"][end]
                    assert path.startswith(f"checkpoints/{dataset}/"), path
                    if path.startswith(f"checkpoints/{dataset}/settings/"):  # an endpoint of this setting
                        assert Path(path).stem + ".yaml" in configs, f"{folder}: nothing writes {path}"


@pytest.mark.parametrize("config", SETTINGS, ids=[str(p.relative_to(ROOT / "configs")) for p in SETTINGS])
def test_setting_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_.value.code in (0, None)
    assert "class_path" in capsys.readouterr().out


def fit(config: str, *overrides: str) -> None:
    assert main(["fit", "--config", str(ROOT / "configs" / config), "--trainer.enable_progress_bar=false", *overrides]) == 0


@pytest.mark.slow
def test_the_optimizer_setting_chains_from_a_fresh_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit("digits/original.yaml", "--trainer.max_epochs=2")
    fit("digits/retrain.yaml", "--trainer.max_epochs=2")
    fit("digits/settings/optimizer/grad_ascent_sgd.yaml", "--trainer.max_epochs=1")
    fit("digits/settings/optimizer/grad_ascent_sophia.yaml", "--trainer.max_epochs=1")
    # the curve's last callback is its CurveEvaluation: 5 points of t instead of 31
    fit("digits/settings/optimizer/curve.yaml", "--trainer.max_epochs=1", "--trainer.callbacks.init_args.t_grid=5")

    folder = tmp_path / "checkpoints" / "digits" / "settings" / "optimizer"
    first, second = read_dynamics(folder / "grad_ascent_sgd.ckpt"), read_dynamics(folder / "grad_ascent_sophia.ckpt")
    assert (first["optimizer_order"], second["optimizer_order"]) == ("first", "second")
    assert second["optimizer"] == "unlearn_mc.optim.sophia.SophiaG" and second["seed"] == 42
    assert setting_between(first, second) == "optimizer_order"
    assert (folder / "curve.ckpt").is_file() and (folder / "curve_best.pt").is_file()

    runs = sorted((tmp_path / "lightning_logs").iterdir(), key=lambda p: int(p.name.split("_")[1]))
    summary = json.loads((runs[-1] / "curve_summary.json").read_text())
    assert summary["num_points"] == 5 and summary["t"][0] == 0.0 and summary["t"][-1] == 1.0
    assert summary["retain_barrier"] >= 0.0 and summary["forget_barrier"] >= 0.0
    assert (runs[-1] / "curve_eval.csv").is_file()
