"""Every shipped study file loads, and every stage it plans parses through the CLI like a `fit` config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from unlearn_mc.cli import main
from unlearn_mc.study import load_study
from unlearn_mc.study.plan import plan_study

pytestmark = [pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted((ROOT / "configs").glob("*/study.yaml"))


def test_both_datasets_ship_a_study():
    assert {path.parent.name for path in STUDIES} >= {"digits", "cifar10"}


@pytest.mark.parametrize("path", STUDIES, ids=[p.parent.name for p in STUDIES])
def test_every_planned_stage_parses(path, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["unlearn-mc"])
    study = load_study(path)
    stages = plan_study(study)
    kinds = {stage.kind for stage in stages}
    assert kinds == {"base", "method", "curve"}
    assert len([s for s in stages if s.kind == "method"]) == len(study.methods)
    for stage in stages:
        config = tmp_path / f"{stage.id}.yaml"
        config.write_text(yaml.safe_dump(stage.config, sort_keys=False))
        with pytest.raises(SystemExit) as exit_:
            main([stage.command, "--config", str(config), "--print_config"])
        assert exit_.value.code in (0, None), f"{path.parent.name}: stage {stage.id} does not parse"
        assert stage.config["model"]["class_path"] in capsys.readouterr().out
