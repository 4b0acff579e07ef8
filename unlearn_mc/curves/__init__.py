"""Mode-connectivity curves: families, the curve object ``Curve`` and the LightningModule ``CurveModule`` that trains it,
its objectives and the evaluation along t."""

from unlearn_mc.curves.callback import CurveEvaluation
from unlearn_mc.curves.curve import Curve
from unlearn_mc.curves.evaluate_curve import CurveResult, evaluate_curve, make_t_grid
from unlearn_mc.curves.families import Bezier, CurveFamily, Linear, PolyChain, build_family
from unlearn_mc.curves.layout import FlatLayout
from unlearn_mc.curves.module import CurveModule
from unlearn_mc.curves.objectives import CurveObjective, MethodObjective, RetainCE, RetainMinusForget, build_objective
from unlearn_mc.curves.outputs import log_curve, write_curve_files
from unlearn_mc.curves.summary import barriers, best_point, summarize
from unlearn_mc.curves.t_sampler import TSampler

__all__ = [
    "CurveEvaluation", "CurveResult", "evaluate_curve", "make_t_grid",
    "Bezier", "CurveFamily", "Linear", "PolyChain", "build_family",
    "FlatLayout", "Curve", "CurveModule",
    "CurveObjective", "MethodObjective", "RetainCE", "RetainMinusForget", "build_objective",
    "log_curve", "write_curve_files", "barriers", "best_point", "summarize", "TSampler",
]
