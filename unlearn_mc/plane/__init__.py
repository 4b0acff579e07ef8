"""Planes through three models of weight space: the unlearning landscape (forget, retain, test, MIA) on a grid."""

from unlearn_mc.plane.basis import PlaneBasis, grid_axes
from unlearn_mc.plane.evaluate_plane import PlaneResult, curve_plane, evaluate_plane

__all__ = ["PlaneBasis", "grid_axes", "PlaneResult", "curve_plane", "evaluate_plane"]
