"""Base training of the original model and the retrain reference."""

from unlearn_mc.training.base_training import BaseTraining

__all__ = ["BaseTraining"]
