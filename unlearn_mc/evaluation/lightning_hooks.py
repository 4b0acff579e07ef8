"""The validation/test hooks every unlearn-mc LightningModule shares."""

from __future__ import annotations

import lightning as L
from torch import Tensor

from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.evaluation.metrics import UnlearningMetrics

DEFAULT_EVAL_SPLITS = ("forget", "retain", "test")


class EvaluatesUnlearning(L.LightningModule):
    """Validation and test over the evaluation splits, logged as ``val/<metric>`` / ``test/<metric>``.

    The DataModule's ``val_dataloader`` returns one loader per split, in the order of its
    ``eval_split_names`` (a user's DataModule without that attribute returns forget, retain,
    test). Subclasses provide ``eval_logits(x)``, the logits of the model being evaluated.
    """

    def eval_logits(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def eval_split_names(self) -> list[str]:
        datamodule = getattr(self.trainer, "datamodule", None)
        return list(getattr(datamodule, "eval_split_names", DEFAULT_EVAL_SPLITS))

    def _check_output_size(self, logits: Tensor) -> None:
        expected = getattr(getattr(self.trainer, "datamodule", None), "num_classes", None)
        if expected is not None and logits.shape[-1] != expected:
            raise UnlearnMCError(
                f"the network outputs {logits.shape[-1]} logits but the dataset has {expected} classes; set the net's num_classes to {expected}."
            )

    def _start_evaluation(self) -> None:
        self._eval_metrics = UnlearningMetrics(sync=True)
        self._eval_names = self.eval_split_names()

    def _eval_step(self, batch, dataloader_idx: int) -> None:
        inputs, targets = batch
        logits = self.eval_logits(inputs)
        if dataloader_idx == 0:
            self._check_output_size(logits)
        self._eval_metrics.update(self._eval_names[dataloader_idx], logits, targets)

    def _finish_evaluation(self, prefix: str) -> dict[str, float]:
        metrics = self._eval_metrics.compute()
        self._eval_metrics.reset()
        if not self.trainer.sanity_checking:
            self.log_dict({f"{prefix}/{name}": value for name, value in metrics.items()}, sync_dist=True)
        return metrics

    def on_validation_epoch_start(self) -> None:
        self._start_evaluation()

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self.last_eval_metrics = self._finish_evaluation("val")

    def on_test_epoch_start(self) -> None:
        self._start_evaluation()

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def on_test_epoch_end(self) -> None:
        self.last_eval_metrics = self._finish_evaluation("test")
