"""Calibration: search a study method's learning rate, epochs and main weight for the setting closest to retrain.

``unlearn-mc tune --config <study.yaml> --method <name>`` runs ``tune_method``; a study's method entry with
``tune: {trials: N, …}`` is calibrated by ``apply_tuning`` before the study runs. See docs/tuning.md.

Modules: ``space`` (ranges, defaults, validation of flags and ``tune:`` entries; imported by the study's spec),
``objective`` (a trial as a study stage, the validation gap), ``search`` (seeded TPE, the choice), ``outputs``
(trials.csv, the figure, chosen.yaml) and ``calibrate`` (``tune_method``, ``apply_tuning``). This package imports
none of them itself, so that reading a study file (``spec``) does not import the search that reads studies.
"""
