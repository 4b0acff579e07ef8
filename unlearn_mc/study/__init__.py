"""The one-command MCU study: a YAML of stages, run with reuse and resume, analysed and reported."""

from unlearn_mc.study.run import run_study
from unlearn_mc.study.spec import StudySpec, load_study

__all__ = ["run_study", "load_study", "StudySpec"]
