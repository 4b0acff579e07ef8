"""LiRA / U-LiRA on a study's models: the shadows' scores, the attack on any network, the study's ``lira.csv``.

The attacked examples are the forget set D_f (members of the original model, label 1) and the held-out
non-members V_neg (label 0; ``unlearn_mc.data.shadows.attack_non_members``). Every shadow is scored once on the whole
shadow pool D ∪ V (true-class logit confidence φ and correctness, no augmentation) and the scores are kept in
``<output_dir>/lira_shadows.npz``; every attacked model is then scored on the attacked examples only. The statistics
are those of ``unlearn_mc.evaluation.lira``.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from unlearn_mc.atomic_write import write_bytes_atomically
from unlearn_mc.checkpoints import load_network_weights
from unlearn_mc.config_objects import instantiate
from unlearn_mc.data import UnlearningDataModule
from unlearn_mc.data.shadows import shadow_membership, shadow_pool
from unlearn_mc.evaluation.lira import (ATTACKS, FPR_LEVELS, attack_metrics, logit_confidence_from_logits, memorisation, offline_lira,
                                        online_lira, ulira)
from unlearn_mc.models.modes import module_mode
from unlearn_mc.study.shadows import shadow_stage_id
from unlearn_mc.study.spec import StudySpec
from unlearn_mc.study.stages import stage_checkpoint
from unlearn_mc.study.tables import Row

CONTRACT_COLUMNS = ("model", "attack", "auc", "auc_ci", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr")


@torch.no_grad()
def model_scores(net: nn.Module, loader: DataLoader, device: torch.device | str) -> tuple[np.ndarray, np.ndarray]:
    """(φ, correct) of ``net`` in eval mode on every example of ``loader``, in order; φ = log(p_y / (1 − p_y))."""
    logits, targets = [], []
    with module_mode(net, training=False):
        for inputs, labels in loader:
            logits.append(net(inputs.to(device)).double().cpu())
            targets.append(labels)
    z, y = torch.cat(logits).numpy(), torch.cat(targets).numpy()
    return logit_confidence_from_logits(z, y), (z.argmax(1) == y).astype(np.float64)


@dataclass
class ShadowSet:
    """The shadows' scores on the pool D ∪ V and which examples are attacked.

    ``pool`` (n,) pool indices; ``members`` (K, n); ``scores``/``correct`` (K, n) of the trained shadows;
    ``unlearned`` maps a method to the (K, n) scores of the shadows it unlearned; ``attacked`` positions (into the pool)
    of the attacked examples and ``labels`` their membership in the original model (1: D_f, 0: V_neg).
    """

    pool: np.ndarray
    members: np.ndarray
    scores: np.ndarray
    correct: np.ndarray
    attacked: np.ndarray
    labels: np.ndarray
    unlearned: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.members.shape[0])

    def save(self, path: Path) -> None:
        """Write as ``.npz`` (``unlearned_<method>`` per U-LiRA method) through a temporary file; the archive has fixed
        timestamps, so the same scores give the same bytes."""
        arrays = {"pool": self.pool, "members": self.members, "scores": self.scores, "correct": self.correct,
                  "attacked": self.attacked, "labels": self.labels, **{f"unlearned_{m}": s for m, s in self.unlearned.items()}}
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for name, array in arrays.items():
                with archive.open(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), "w", force_zip64=True) as handle:
                    np.lib.format.write_array(handle, np.asanyarray(array), allow_pickle=False)
        write_bytes_atomically(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ShadowSet:
        with np.load(path) as data:
            unlearned = {key[len("unlearned_"):]: data[key] for key in data.files if key.startswith("unlearned_")}
            return cls(data["pool"], data["members"], data["scores"], data["correct"], data["attacked"], data["labels"], unlearned)

    def memorisation(self) -> np.ndarray:
        """mem_i over the pool (``unlearn_mc.evaluation.lira.memorisation``)."""
        return memorisation(self.correct, self.members)


def pool_loader(datamodule: UnlearningDataModule, indices) -> DataLoader:
    return DataLoader(datamodule.pool_dataset(indices), batch_size=datamodule.hparams.eval_batch_size)


def build_shadow_set(study: StudySpec, datamodule: UnlearningDataModule, device: torch.device) -> ShadowSet:
    """Score every finished shadow stage of ``study`` on the pool (the stages must have run)."""
    spec = study.analyses["lira"]
    split = datamodule.split
    pool = shadow_pool(split)
    members = shadow_membership(len(pool), spec["shadows"], spec["seed"])
    negatives = datamodule.attack_non_members()
    forget = np.asarray(split.forget)
    attacked = np.searchsorted(pool, np.concatenate([forget, negatives]))
    loader = pool_loader(datamodule, pool.tolist())

    def scored(stage_id: str) -> tuple[np.ndarray, np.ndarray]:
        path = stage_checkpoint(study.output_dir, stage_id)
        return model_scores(load_network_weights(instantiate(study.net), path).to(device), loader, device)

    pairs = [scored(shadow_stage_id(k)) for k in range(spec["shadows"])]
    unlearned = {m: np.stack([scored(shadow_stage_id(k, m))[0] for k in range(spec["shadows"])]) for m in spec["methods"]}
    return ShadowSet(pool, members, np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), attacked,
                     np.concatenate([np.ones(len(forget), np.int64), np.zeros(len(negatives), np.int64)]), unlearned)


def attack_scores(target: np.ndarray, shadows: ShadowSet, attack: str, method: str | None = None,
                  variance: str = "global") -> np.ndarray:
    """Λ of each attacked example for ``attack`` (``online``, ``offline``, or ``ulira`` with the shadows of ``method``)."""
    members = shadows.members[:, shadows.attacked]
    if attack == "online":
        return online_lira(target, shadows.scores[:, shadows.attacked], members, variance)
    if attack == "offline":
        return offline_lira(target, shadows.scores[:, shadows.attacked], members, variance)
    return ulira(target, shadows.unlearned[method][:, shadows.attacked], members, ~members, variance)


def attack_model(net: nn.Module, shadows: ShadowSet, datamodule: UnlearningDataModule, device: torch.device | str,
                 attacks: list[str], method: str | None = None, variance: str = "global", bootstrap: int = 500,
                 seed: int = 0) -> tuple[list[Row], dict[str, np.ndarray], np.ndarray]:
    """Attack ``net``: one row per attack (U-LiRA only when ``method`` has unlearned shadows), Λ per attack, and φ.

    Rows hold ``attack``, the metrics of ``attack_metrics`` and ``shadows`` (K); the caller adds ``model``.
    """
    target, _ = model_scores(net, pool_loader(datamodule, shadows.pool[shadows.attacked].tolist()), device)
    rows, ratios = [], {}
    for attack in attacks:
        if attack == "ulira" and method not in shadows.unlearned:
            continue
        ratios[attack] = attack_scores(target, shadows, attack, method, variance)
        metrics = attack_metrics(ratios[attack], shadows.labels, bootstrap=bootstrap, seed=seed)
        rows.append({"attack": attack, **metrics, "shadows": shadows.count})
    return rows, ratios, target


def ordered(row: Row) -> Row:
    """The contract columns first, then the rest (intervals' bounds, balanced accuracy, counts)."""
    head = {key: row.get(key, math.nan) for key in CONTRACT_COLUMNS}
    extra = [f"{m}_ci" for m in FPR_LEVELS] + ["balanced_accuracy", "balanced_accuracy_ci"]
    return {**head, **{k: row[k] for k in extra if k in row}, **{k: v for k, v in row.items() if k not in head and k not in extra}}


def score_rows(model: str, ratios: dict[str, np.ndarray], target: np.ndarray, shadows: ShadowSet, classes: np.ndarray) -> list[Row]:
    """Per attacked example: its pool index, class, membership label, φ under the model, Λ per attack and mem_i."""
    mem = shadows.memorisation()[shadows.attacked]
    rows = []
    for position, index in enumerate(shadows.pool[shadows.attacked]):
        row: Row = {"model": model, "index": int(index), "class": int(classes[index]), "member": int(shadows.labels[position]),
                    "phi": float(target[position])}
        row.update({f"lira_{attack}": float(ratios[attack][position]) if attack in ratios else math.nan for attack in ATTACKS})
        row["memorisation"] = float(mem[position])
        rows.append(row)
    return rows
