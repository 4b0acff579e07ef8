"""Calibration: search a study method's learning rate, epochs and main weight for the setting closest to retrain.

``unlearn-mc tune --config <study.yaml> --method <name>`` runs ``tune_method``; a study's method entry with
``tune: {trials: N, …}`` is calibrated by ``apply_tuning`` before the study runs. See docs/tuning.md.
"""

from unlearn_mc.tuning.calibrate import NoFeasibleSetting, TuneResult, apply_tuning, settings_for, tune_method
from unlearn_mc.tuning.space import MAIN_WEIGHTS, TuneSettings, tune_settings

__all__ = ["NoFeasibleSetting", "TuneResult", "TuneSettings", "MAIN_WEIGHTS", "apply_tuning", "settings_for", "tune_method", "tune_settings"]
