"""Every shipped config parses: each fit config through the CLI (class paths, init args and types all resolve, with
what it takes from the config it extends), each study file through the study loader (``extends`` included). The
shared defaults under ``configs/<dataset>/defaults/`` are each extended by some config, and a config that extends
another (``config: <file>``) states its changes as dotted keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from unlearn_mc.cli import main
from unlearn_mc.study import load_study

ROOT = Path(__file__).resolve().parents[1]
ALL = sorted((ROOT / "configs").rglob("*.yaml"))
DEFAULTS = [p for p in ALL if "defaults" in p.relative_to(ROOT / "configs").parts]
STUDIES = [p for p in ALL if p.name.startswith("study")]
CONFIGS = [p for p in ALL if p not in DEFAULTS and p not in STUDIES]


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT / "configs")) for p in paths]


@pytest.mark.parametrize("config", CONFIGS, ids=_ids(CONFIGS))
def test_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_.value.code in (0, None)
    assert "class_path" in capsys.readouterr().out


@pytest.mark.parametrize("study", STUDIES, ids=_ids(STUDIES))
def test_study_file_loads(study):
    assert load_study(study).methods


def test_there_are_configs_for_both_datasets():
    names = set(_ids(CONFIGS))
    assert {"digits/original.yaml", "digits/retrain.yaml", "cifar10/original.yaml", "cifar10/retrain.yaml"} <= names


def _parent(path: Path) -> Path | None:
    parent = yaml.safe_load(path.read_text()).get("config")
    return (path.parent / parent).resolve() if parent else None


def test_every_shared_default_is_extended():
    extended = {_parent(path) for path in ALL} - {None}
    assert [str(p) for p in DEFAULTS if p.resolve() not in extended] == []
    assert all(parent.is_file() for parent in extended)


def test_a_config_that_extends_another_changes_it_by_dotted_keys():
    """``config:`` comes first (keys above it would be overwritten by the parent), and no other top-level key holds a
    mapping: after ``config:``, ``trainer: {max_epochs: 5}`` would replace the parent's whole trainer block, where
    ``trainer.max_epochs: 5`` changes that one setting."""
    wrong = {}
    for config in (path for path in ALL if _parent(path)):
        raw = yaml.safe_load(config.read_text())
        nested = [key for key, value in raw.items() if "." not in key and isinstance(value, dict)]
        if next(iter(raw)) != "config" or nested:
            wrong[str(config.relative_to(ROOT))] = {"first key": next(iter(raw)), "nested blocks": nested}
    assert wrong == {}


def test_a_config_opens_with_what_it_is_and_names_its_command():
    wrong = []
    for config in CONFIGS + STUDIES:
        lines = config.read_text().splitlines()
        command = f"unlearn-mc {'study' if config in STUDIES else ''}"
        named = any(line.startswith("#") and command in line and f"--config {config.relative_to(ROOT)}" in line for line in lines)
        if not (lines[0].startswith("# ") and named):
            wrong.append(str(config.relative_to(ROOT)))
    assert wrong == []
