"""The validated study as typed objects: ``StudySpec`` with its ``MethodSpec`` endpoints and ``FamilySpec`` curve families."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXED_ENDPOINTS = ("original", "retrain")
FAMILIES = ("linear", "bezier", "polychain")
DATA_MODULE = "unlearn_mc.data.UnlearningDataModule"
STUDY_KEYS = {"extends", "output_dir", "seed", "seeds", "trainer", "net", "data", "base", "methods", "curves", "evaluation", "analyses"}
METHOD_KEYS = {"method", "like", "args", "epochs", "optimizer", "lr_scheduler", "seed", "seeds", "curriculum", "trainer", "tune"}
FAMILY_KEYS = {"curve", "num_bends", "epochs", "objective", "objective_args", "optimizer", "init", "t_sampler", "l2"}


@dataclass
class MethodSpec:
    """One unlearned endpoint: a method class with its recipe."""

    name: str
    class_path: str
    args: dict[str, Any]
    epochs: int
    optimizer: dict[str, Any]
    lr_scheduler: dict[str, Any] | None
    seed: int
    curriculum: dict[str, Any] | None
    trainer: dict[str, Any]
    seeds: list[int] = field(default_factory=list)  # one per study seed, in order; [seed] for a one-seed study
    tune: dict[str, Any] | None = None  # the entry's own ``tune:`` settings (``unlearn_mc.study.tuning``), validated
    tune_from: str | None = None  # the method whose calibrated setting this entry runs with: itself, or a tuned ``like`` source


@dataclass
class FamilySpec:
    """How to build (and, unless linear, train) the curves of one family."""

    name: str
    curve: str
    num_bends: int
    epochs: int
    objective: str
    objective_args: dict[str, Any] | None
    optimizer: dict[str, Any]
    init: str
    t_sampler: str
    l2: float

    @property
    def trained(self) -> bool:
        return self.num_bends > 2


@dataclass
class StudySpec:
    """A validated study. ``seeds`` lists every training seed (``seed`` is the first); a study with several is run
    once per seed (``unlearn_mc.study.seeds``)."""

    path: Path
    output_dir: Path
    seed: int
    trainer: dict[str, Any]
    net: dict[str, Any]
    data: dict[str, Any]
    base: dict[str, Any]
    methods: dict[str, MethodSpec]
    families: dict[str, FamilySpec]
    pairs: list[tuple[str, str]]
    matrix: list[str]
    paths_from: list[str]
    evaluation: dict[str, Any]
    analyses: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    data_class: str = DATA_MODULE  # the DataModule class every stage builds (data.class_path), an UnlearningDataModule

    def __post_init__(self) -> None:
        if not self.seeds:
            self.seeds = [self.seed]

    @property
    def endpoints(self) -> list[str]:
        return [*FIXED_ENDPOINTS, *self.methods]
