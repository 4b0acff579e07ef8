"""Every shipped config parses through the CLI (class paths, init args and types all resolve)."""

from __future__ import annotations

from pathlib import Path

import pytest

from unlearn_mc.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if not p.name.startswith("study"))


@pytest.mark.parametrize("config", CONFIGS, ids=[str(p.relative_to(ROOT / "configs")) for p in CONFIGS])
def test_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_.value.code in (0, None)
    assert "class_path" in capsys.readouterr().out


def test_there_are_configs_for_both_datasets():
    names = {str(p.relative_to(ROOT / "configs")) for p in CONFIGS}
    assert {"digits/original.yaml", "digits/retrain.yaml", "cifar10/original.yaml", "cifar10/retrain.yaml"} <= names
