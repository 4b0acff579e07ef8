"""The record of how a model was trained (optimiser order, curriculum), written into its checkpoint and read back."""

from unlearn_mc.dynamics.hooks import DynamicsHooks
from unlearn_mc.dynamics.record import read_dynamics, setting_between, training_dynamics

__all__ = ["DynamicsHooks", "read_dynamics", "setting_between", "training_dynamics"]
