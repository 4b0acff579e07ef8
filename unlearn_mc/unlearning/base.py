"""``UnlearningModule``: the shared base of every unlearning method.

It loads the original weights, evaluates before the first step (so step 0 of every
``val/*`` curve is the original model), times the unlearning updates, compares with a
retrain reference, and guards against divergence. The runtime and the retrain reference's
metrics travel in checkpoints, so a resumed run keeps counting and keeps logging ``val/avg_gap``. A method supplies one thing: its loss
``loss(forward, batches)``, where ``forward`` maps inputs to logits. Because the loss never
touches ``self.net`` directly, a curve module can evaluate any method's objective at φ(t).
"""

from __future__ import annotations

import math
import time

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from unlearn_mc.checkpoints import load_network_weights
from unlearn_mc.data.batches import Batches, Forward, stream_batches
from unlearn_mc.evaluation.evaluate import evaluate_model
from unlearn_mc.evaluation.gap import GAP_METRICS, average_gap
from unlearn_mc.evaluation.lightning_hooks import EvaluatesUnlearning
from unlearn_mc.models.frozen import frozen_copy
from unlearn_mc.models.modes import module_mode
from unlearn_mc.optim.configure import build_optimizers
from unlearn_mc.dynamics.hooks import DynamicsHooks
from unlearn_mc.dynamics.record import DYNAMICS_HPARAM
from unlearn_mc.resume import ResumesRandomness
from unlearn_mc.unlearning.forwarding import forwarded_signature


STATE_KEY = "unlearn_mc_unlearning"
__all__ = ["Batches", "Forward", "GAP_METRICS", "UnlearningModule", "average_gap", "frozen_copy"]  # all but UnlearningModule re-exported


class UnlearningModule(ResumesRandomness, DynamicsHooks, EvaluatesUnlearning):
    """Base LightningModule of the unlearning methods.

    Subclasses set ``train_streams`` (the DataModule streams the loss needs, e.g.
    ``("forget", "retain")``) and implement ``loss(forward, batches)``. A subclass with arguments of its own
    declares only those, keyword-only, and forwards the shared ones documented here:
    ``def __init__(self, *args, alpha: float = 0.99, **kwargs)`` calling ``super().__init__(*args, **kwargs)``
    (see ``unlearning.forwarding``; the CLI, ``save_hyperparameters`` and ``inspect.signature`` all see every argument).

    Args:
        net: the architecture of the original model (any ``nn.Module``).
        original: checkpoint of the original model (Lightning ``.ckpt`` or a state_dict); null: ``net`` as built is the
            original (a network read from a model folder, e.g. TOFU's fine-tuned LLM with fresh LoRA adapters).
        retrain: optional checkpoint of the retrain reference; enables ``val/avg_gap``.
        optimizer: optimiser factory.
        lr_scheduler: optional scheduler factory, stepped each epoch.
        min_retain_acc: stop when the validation retain accuracy falls below this floor.
        curriculum: optional per-sample reweighting of every loss term (e.g. ``unlearn_mc.curricula.SuperLoss``);
            it is called as ``curriculum(per_sample, key)`` and returns the reduced scalar.
        **recorded: what a checkpoint's hyper-parameters hold beside these arguments (``dynamics``, which
            ``DynamicsHooks`` adds when training starts), taken so that ``load_from_checkpoint`` can pass a
            checkpoint's hyper-parameters back, and kept in ``hparams``; any other keyword is refused.

    Runtime: ``runtime_s`` = the wall time of the training steps + every term added with
    ``record_runtime`` (work done outside the steps that the unlearning needs: SalUn's saliency mask,
    ``mask_s``; SophiaG's Hessian refreshes by ``GaussNewtonBartlett``, ``hessian_s``). It is logged as
    ``unlearn/runtime_s`` and each term also on its own as ``unlearn/<term>``.

    Divergence guard: after every step whose weights (parameters and floating-point buffers) are all
    finite, a copy of them is kept; when the loss or the weights become non-finite, training stops and
    the weights are set back to that copy, i.e. to the weights from before the non-finite step, bit
    for bit (a non-finite loss skips its update; the copy also undoes its BatchNorm statistics).
    """

    train_streams: tuple[str, ...] = ("forget", "retain")

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.__signature__ = forwarded_signature(cls)  # inspect.signature(cls): the forwarded arguments spelt out

    def __init__(
        self,
        net: nn.Module,
        original: str | None,
        retrain: str | None = None,
        optimizer: OptimizerCallable = torch.optim.SGD,
        lr_scheduler: LRSchedulerCallable | None = None,
        min_retain_acc: float | None = None,
        curriculum: nn.Module | None = None,
        **recorded,
    ) -> None:
        unknown = sorted(set(recorded) - {DYNAMICS_HPARAM})
        if unknown:
            raise TypeError(f"{type(self).__name__}.__init__() got an unexpected keyword argument {unknown[0]!r}")
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "lr_scheduler", "curriculum"])
        self.net = load_network_weights(net, original) if original is not None else net
        self.retrain_path = retrain
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.min_retain_acc = min_retain_acc
        self.curriculum = curriculum
        self.retrain_metrics: dict[str, float] | None = None
        self.runtime_s = 0.0
        self.runtime_terms: dict[str, float] = {}
        self.stop_reason: str | None = None
        self._last_finite_state: dict[str, Tensor] | None = None

    # ---------------------------------------------------------- the objective
    def loss(self, forward: Forward, batches: Batches) -> Tensor:
        """The scalar this method minimises, with ``forward`` as the model (inputs → logits)."""
        raise NotImplementedError

    def reduce(self, per_sample: Tensor, key: str) -> Tensor:
        """Reduce one term's per-sample values ℓ_i to a scalar: the mean (1/n)·Σ_i ℓ_i.

        Every method reduces each of its per-sample terms through this hook, named by ``key``
        (e.g. ``"forget"``, ``"retain"``), so a curriculum such as SuperLoss can reweight the
        samples of each term without touching the methods.
        """
        if self.curriculum is not None and self.training:
            return self.curriculum(per_sample, key)
        return per_sample.mean()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def eval_logits(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx: int) -> Tensor | None:
        batches = stream_batches(batch, self.train_streams)
        loss = self.loss(self.net, batches)
        if not torch.isfinite(loss):
            self._stop(f"the loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step}")
            return None
        samples = sum(len(targets) for _, targets in batches.values())
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True, batch_size=samples)
        return loss

    def configure_optimizers(self):
        return build_optimizers(self.optimizer, self.lr_scheduler, self.net.parameters())

    # ------------------------------------------------------------- the runtime
    def record_runtime(self, term: str, seconds: float) -> None:
        """Add ``seconds`` of unlearning work done outside the training steps to ``runtime_s`` and to its term ``runtime_terms[term]``."""
        self.runtime_terms[term] = self.runtime_terms.get(term, 0.0) + seconds
        self.runtime_s += seconds

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[STATE_KEY] = {
            "runtime_s": float(self.runtime_s),
            "runtime_terms": {name: float(value) for name, value in self.runtime_terms.items()},
            "retrain_metrics": None if self.retrain_metrics is None else {name: float(v) for name, v in self.retrain_metrics.items()},
        }
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get(STATE_KEY)
        if state is not None:
            self.runtime_s = float(state["runtime_s"])
            self.runtime_terms = {str(name): float(value) for name, value in dict(state["runtime_terms"]).items()}
            if state["retrain_metrics"] is not None:
                self.retrain_metrics = {str(name): float(value) for name, value in dict(state["retrain_metrics"]).items()}
        super().on_load_checkpoint(checkpoint)

    # ------------------------------------------------------- the divergence guard
    def _weights_are_finite(self) -> bool:
        tensors = [value for value in self.net.state_dict().values() if value.is_floating_point()]
        return bool(torch.stack([torch.isfinite(value).all() for value in tensors]).all())

    @torch.no_grad()
    def _keep_finite_state(self) -> None:
        state = self.net.state_dict()
        if self._last_finite_state is None:
            self._last_finite_state = {name: value.detach().clone() for name, value in state.items()}
        else:
            for name, value in state.items():
                self._last_finite_state[name].copy_(value)

    def _stop(self, why: str) -> None:
        restored = self._last_finite_state is not None
        if restored:
            self.net.load_state_dict(self._last_finite_state)
        self.stop_reason = f"{why}; training stopped" + (" and the weights from before that step were kept" if restored else "")
        rank_zero_warn(f"unlearn-mc: {self.stop_reason}.")
        self.trainer.should_stop = True

    def on_train_batch_start(self, batch, batch_idx: int) -> int | None:
        self._batch_started = time.perf_counter()
        return -1 if self.trainer.should_stop else None

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.runtime_s += time.perf_counter() - self._batch_started
        if self._weights_are_finite():
            self._keep_finite_state()
        else:
            self._stop(f"the weights became non-finite at epoch {self.current_epoch}, step {self.global_step}")

    # ------------------------------------------------------------- evaluation
    def _evaluate_now(self, net: nn.Module) -> dict[str, float]:
        datamodule = self.trainer.datamodule
        if not hasattr(datamodule, "eval_dataloaders"):
            return {}
        with module_mode(net, training=False):
            return evaluate_model(net, datamodule.eval_dataloaders(), self.device)

    def _retrain_reference_metrics(self) -> dict[str, float]:
        reference = load_network_weights(frozen_copy(self.net), self.retrain_path).to(self.device)
        return self._evaluate_now(reference)

    def on_train_start(self) -> None:
        """Log the original model's ``val/*`` at step 0 and, if given, the retrain reference's ``retrain/*``.

        On a resumed run (``global_step > 0``) nothing is logged again; the retrain metrics come from the
        checkpoint, or are recomputed when it has none.
        """
        self._keep_finite_state()
        if self.global_step > 0:  # resumed run: step 0 was logged before
            if self.retrain_path is not None and not self.retrain_metrics:
                self.retrain_metrics = self._retrain_reference_metrics()
            return
        before = self._evaluate_now(self.net)
        if self.retrain_path is not None:
            self.retrain_metrics = self._retrain_reference_metrics()
            if before:
                before["avg_gap"] = average_gap(before, self.retrain_metrics)
        if self.logger is not None and before:
            self.logger.log_metrics({f"val/{name}": value for name, value in before.items()}, step=0)
            if self.retrain_metrics:
                self.logger.log_metrics({f"retrain/{name}": value for name, value in self.retrain_metrics.items()}, step=0)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.trainer.sanity_checking:
            return
        metrics = self.last_eval_metrics
        if self.retrain_metrics and all(name in metrics for name in GAP_METRICS):
            metrics["avg_gap"] = average_gap(metrics, self.retrain_metrics)
            self.log("val/avg_gap", metrics["avg_gap"], sync_dist=True)
        self.log("unlearn/runtime_s", self.runtime_s, sync_dist=True)
        for term, seconds in self.runtime_terms.items():
            self.log(f"unlearn/{term}", seconds, sync_dist=True)
        retain_acc = metrics.get("retain_acc", math.nan)
        if self.min_retain_acc is not None and retain_acc < self.min_retain_acc and not self.trainer.should_stop:
            self.stop_reason = f"the retain accuracy {retain_acc:.4f} fell below the floor min_retain_acc={self.min_retain_acc}; training stopped"
            rank_zero_warn(f"unlearn-mc: {self.stop_reason}.")
            self.trainer.should_stop = True
