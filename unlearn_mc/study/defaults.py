"""Every default of a study file, in one place: what a key left out of the study YAML means.

``unlearn_mc.study.spec`` fills these in while validating, so the planner, the analyses and the report read
settings that are always present and never repeat a default.
"""

from __future__ import annotations

from typing import Any

SEED = 42
DATA: dict[str, Any] = {"dataset": "digits"}
SGD = "torch.optim.SGD"
BASE_EPOCHS = 20
BASE_OPTIMIZER: dict[str, Any] = {"class_path": SGD, "init_args": {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}}
METHOD_EPOCHS = 5
METHOD_OPTIMIZER: dict[str, Any] = {"class_path": SGD, "init_args": {"lr": 0.01, "momentum": 0.9}}
FAMILY_EPOCHS = 10
FAMILY_OPTIMIZER: dict[str, Any] = {"class_path": SGD, "init_args": {"lr": 0.01, "momentum": 0.9}}
FAMILY: dict[str, Any] = {"objective": "retain_ce", "objective_args": None, "init": "midpoint", "t_sampler": "uniform", "l2": 0.0}
EVALUATION: dict[str, Any] = {"t_grid": 11, "tolerance": 0.01, "best_by": "auto", "retain_floor": 0.9, "on_collapse": "report"}
ENSEMBLE: dict[str, Any] = {"points": [0.25, 0.5, 0.75]}
RELEARN: dict[str, Any] = {"steps": [5, 10, 15, 20, 25], "forget_fraction": 0.1, "lr": 0.01, "batch_size": 16,
                           "attacks": ["forget", "retain_only"], "test_drop_margin": 0.05, "curve_points": True}
