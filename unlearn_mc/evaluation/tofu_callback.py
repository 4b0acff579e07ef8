"""``TofuEvaluation``: TOFU's LM metrics of the model being trained, logged next to ``val/*`` after each validation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from unlearn_mc.checkpoints import load_network_weights
from unlearn_mc.evaluation.tofu_metrics import forget_quality, generated_rouge_l, truth_ratios
from unlearn_mc.models.modes import module_mode


class TofuEvaluation(Callback):
    """After every validation of a module whose ``net`` is a causal LM on a ``TofuDataModule``, logs

    - ``val/forget_ppl``, ``val/retain_ppl``: exp(``val/<split>_loss``), the answer perplexity;
    - ``val/forget_rouge_l``, ``val/retain_rouge_l``: ROUGE-L recall of greedy answers to the first ``num_generate``
      questions of each split (at most ``max_new_tokens`` tokens);
    - ``val/forget_truth_ratio``: mean min(R, 1/R) over the forget questions with perturbed answers (when the folder
      has ``<split>_perturbed.json``), and ``val/forget_quality``, the KS p-value against the retain model's truth
      ratios (``retrain``: a checkpoint; default the module's own ``retrain``);

    and writes the last values to ``tofu_eval.json`` in the run's log dir (formulas: ``unlearn_mc.evaluation.tofu_metrics``).
    """

    def __init__(self, num_generate: int = 20, max_new_tokens: int = 64, retrain: str | None = None) -> None:
        self.num_generate = num_generate
        self.max_new_tokens = max_new_tokens
        self.retrain = retrain
        self._retain_ratios = None
        self.last: dict[str, float] = {}

    def _reference_ratios(self, pl_module: L.LightningModule, datamodule, records) -> list[float] | None:
        path = self.retrain or getattr(pl_module, "retrain_path", None)
        if path is None:
            return None
        if self._retain_ratios is None:
            import copy

            reference = load_network_weights(copy.deepcopy(pl_module.net), path).to(pl_module.device).eval()
            self._retain_ratios = truth_ratios(reference, datamodule.encoder, records, datamodule.hparams.prompt,
                                               datamodule.hparams.max_length, pl_module.device)
        return self._retain_ratios

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule, net = trainer.datamodule, getattr(pl_module, "net", None)
        if trainer.sanity_checking or net is None or not hasattr(datamodule, "records") or datamodule.encoder is None:
            return
        hp, encoder, metrics = datamodule.hparams, datamodule.encoder, dict(getattr(pl_module, "last_eval_metrics", {}))
        values = {f"{split}_ppl": math.exp(metrics[f"{split}_loss"]) for split in ("forget", "retain") if f"{split}_loss" in metrics}
        with module_mode(net, training=False):
            for split in ("forget", "retain"):
                records = datamodule.records[split][: self.num_generate]
                values[f"{split}_rouge_l"] = generated_rouge_l(net, encoder, encoder.decode, records, hp.prompt, hp.max_length,
                                                               self.max_new_tokens, pl_module.device)
            perturbed = datamodule.records.get("forget_perturbed")
            if perturbed:
                ratios = truth_ratios(net, encoder, perturbed, hp.prompt, hp.max_length, pl_module.device)
                values["forget_truth_ratio"] = float(sum(min(r, 1 / r) for r in ratios) / len(ratios)) if len(ratios) else math.nan
                reference = self._reference_ratios(pl_module, datamodule, perturbed)
                if reference is not None:
                    values["forget_quality"] = forget_quality(ratios, reference)
        pl_module.log_dict({f"val/{name}": value for name, value in values.items()})
        self.last = values
        if trainer.is_global_zero and trainer.log_dir:
            Path(trainer.log_dir).mkdir(parents=True, exist_ok=True)
            (Path(trainer.log_dir) / "tofu_eval.json").write_text(json.dumps(values, indent=2))
