"""``CurveEvaluation``: evaluate a ``CurveModule``'s curve along t at the end of fitting, every N epochs, and on ``validate``/``test``.

The callback owns the data of those evaluations: the DataModule's evaluation loaders, the BatchNorm split and the
metrics of the module's retrain reference; it reads the module only through its public attributes (``curve``,
``label_key``, ``bn_split``, ``bn_batches``, ``retrain_source``, ``objective``, ``hparams``).
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info

from unlearn_mc.checkpoints import network_state_from_source, save_state_dict_atomically
from unlearn_mc.curves.evaluate_curve import DEFAULT_POINTS, CurveResult, evaluate_curve, labelled, make_t_grid
from unlearn_mc.curves.loaders import bn_loader, evaluation_loaders
from unlearn_mc.curves.outputs import log_curve, write_curve_files
from unlearn_mc.curves.point import PointForward
from unlearn_mc.curves.summary import BEST_BY
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.evaluation.evaluate import evaluate_model


class CurveEvaluation(Callback):
    """Runs ``evaluate_curve`` over the DataModule's evaluation splits and writes the results.

    When: at the end of ``fit``, after ``validate`` and ``test`` of a curve (so
    ``unlearn-mc validate`` of a straight line evaluates it without training), and, with
    ``every_n_epochs``, after every N-th training epoch.

    Outputs of a final evaluation: TensorBoard scalars ``curve/<metric>`` and ``curve/t`` at step
    round(1000·t), their custom-scalars layout (accuracies of the curve on one chart, losses on another),
    ``curve_summary/*`` scalars and the figure ``curve/metrics``; in the run's
    log dir ``curve_eval.csv``, ``curve_summary.json`` and ``curve_metrics.png``. A periodic
    evaluation logs only ``curve_summary/*`` at the global step and rewrites the files.

    Args:
        t_grid: number of evenly spaced points on [0, 1] (≥ 2), or a list of t in [0, 1].
        every_n_epochs: also evaluate after every N-th training epoch (``None``: only at the end).
        tolerance: the MCU condition holds when both barriers are ≤ this.
        best_by: ``auto``, ``avg_gap`` (needs the curve's ``retrain``) or ``forget_acc``.
        retain_floor: the retain accuracy the ``forget_acc`` criterion requires.
        export_path: write φ(t*) with recalibrated BatchNorm there as a plain state_dict of the network.
        export_t: t* for the export: a value in [0, 1] or ``best``.
        figure: draw the metrics-vs-t figure.
        custom_scalars: write the custom-scalars layout of this curve into its TensorBoard run (a study turns it
            off for its stage runs and writes one layout for all its curves, ``tensorboard/curves``).
    """

    def __init__(
        self,
        t_grid: int | list[float] = DEFAULT_POINTS,
        every_n_epochs: int | None = None,
        tolerance: float = 0.01,
        best_by: str = "auto",
        retain_floor: float = 0.9,
        export_path: str | None = None,
        export_t: float | str = "best",
        figure: bool = True,
        custom_scalars: bool = True,
    ) -> None:
        self.t_grid = make_t_grid(t_grid)
        if every_n_epochs is not None and every_n_epochs < 1:
            raise UnlearnMCError(f"every_n_epochs={every_n_epochs!r} must be at least 1 (or null for the end of fitting only).")
        if best_by not in BEST_BY:
            raise UnlearnMCError(f"best_by={best_by!r} is not a criterion; use one of {', '.join(BEST_BY)}.")
        if isinstance(export_t, str):
            if export_t != "best":
                raise UnlearnMCError(f"export_t={export_t!r} is not valid; use a t in [0, 1] or 'best'.")
        elif not 0.0 <= float(export_t) <= 1.0:
            raise UnlearnMCError(f"export_t={export_t!r} is not valid; use a t in [0, 1] or 'best'.")
        self.every_n_epochs = every_n_epochs
        self.tolerance = float(tolerance)
        self.best_by = best_by
        self.retain_floor = float(retain_floor)
        self.export_path = export_path
        self.export_t = export_t
        self.figure = figure
        self.custom_scalars = custom_scalars
        self.last_result: CurveResult | None = None
        self._reference: tuple[L.LightningModule, dict[str, float]] | None = None

    # ------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # before the module's own on_fit_start, which refuses an objective still without its reference
        objective = pl_module.objective
        if objective.needs_reference and (reference := self.reference(trainer, pl_module)) is not None:
            objective.set_reference(reference["forget_acc"], reference["retain_acc"])

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.evaluate(trainer, pl_module, final=True)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if self.every_n_epochs and epoch % self.every_n_epochs == 0 and epoch != trainer.max_epochs:
            self.evaluate(trainer, pl_module, final=False)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self.evaluate(trainer, pl_module, final=True)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.evaluate(trainer, pl_module, final=True)

    # ------------------------------------------------------------ the work
    def reference(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float] | None:
        """``evaluate_model`` metrics of the module's retrain reference on the whole evaluation splits (every process
        evaluates all of them), computed once per module; ``None`` without a reference."""
        if pl_module.retrain_source is None:
            return None
        if self._reference is None or self._reference[0] is not pl_module:
            curve, loaders = pl_module.curve, evaluation_loaders(trainer, shard=False)
            reference = curve.network_at(0.0)
            reference.load_state_dict(network_state_from_source(reference, pl_module.retrain_source, "retrain"))
            reference = reference.to(curve.device).eval()
            metrics = evaluate_model(PointForward(reference, {}, {}, {}), labelled(loaders, pl_module.label_key), curve.device)
            self._reference = (pl_module, metrics)
        return self._reference[1]

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, final: bool = True) -> CurveResult:
        """Evaluate the module's curve on the Trainer's DataModule, then log, write and (final, with ``export_path``) export."""
        loaders = evaluation_loaders(trainer)
        result = evaluate_curve(
            pl_module.curve,
            loaders,
            self.t_grid,
            bn_loader=bn_loader(loaders, pl_module.bn_split),
            bn_batches=pl_module.bn_batches,
            reference=self.reference(trainer, pl_module),
            tolerance=self.tolerance,
            best_by=self.best_by,
            retain_floor=self.retain_floor,
            sync=trainer.world_size > 1,
            context=trainer.precision_plugin.forward_context,
            label_key=pl_module.label_key,
        )
        result.summary["endpoints"] = {"start": pl_module.hparams.get("start"), "end": pl_module.hparams.get("end")}
        if final and self.export_path is not None:
            result.summary["export"] = self.export(trainer, pl_module, result)
        log_dir = trainer.log_dir
        if trainer.is_global_zero:
            log_curve(result, trainer.loggers, step=trainer.global_step, per_t=final, figure=final and self.figure,
                      layout=self.custom_scalars)
            if log_dir is not None:
                written = write_curve_files(result, log_dir, figure=self.figure)
                rank_zero_info(f"unlearn-mc: curve evaluation written to {written['summary'].parent}")
        self.last_result = result
        return result

    def export(self, trainer: L.Trainer, pl_module: L.LightningModule, result: CurveResult) -> dict:
        """Recalibrate BatchNorm at t* and save φ(t*) as a plain state_dict of the network."""
        t = float(result.summary["best"]["t"]) if self.export_t == "best" else float(self.export_t)
        loaders = evaluation_loaders(trainer)
        pl_module.curve.recalibrate_bn(t, bn_loader(loaders, pl_module.bn_split), pl_module.bn_batches, pl_module.label_key)
        state = pl_module.curve.state_dict_at(t)
        path = Path(os.fspath(self.export_path))
        if trainer.is_global_zero:
            save_state_dict_atomically(state, path)
        return {"path": str(path), "t": t}
