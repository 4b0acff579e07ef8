"""The shadow models of ``analyses.lira`` as ordinary study stages.

Shadow k (``shadow-<k>``) is the ``original`` stage's config with the DataModule serving shadow k's half of D ∪ V
(``shadow_count``/``shadow_index``/``shadow_seed``, see ``unlearn_mc.data.shadows``) and its own training seed
(the study's seed + 1 + k): the base recipe, unchanged. For U-LiRA, ``shadow-<k>-<method>`` is the method's stage
config started from shadow k's checkpoint and unlearning shadow k's own forget set (no retrain reference). Like every
stage they are cached by config digest, reused by later runs and restarted when unfinished; every attacked model of
the study shares them.
"""

from __future__ import annotations

import copy
from typing import Any

from unlearn_mc.study.stages import Stage, endpoint_stage_id
from unlearn_mc.study.spec import StudySpec


def shadow_stage_id(index: int, method: str | None = None) -> str:
    return f"shadow-{index}" if method is None else f"shadow-{index}-{method}"


def _shadow_data(config: dict[str, Any], spec: dict[str, Any], index: int) -> None:
    config["data"]["init_args"].update(shadow_count=spec["shadows"], shadow_index=index, shadow_seed=spec["seed"])


def plan_shadows(study: StudySpec, stages: list[Stage]) -> list[Stage]:
    """The shadow stages of ``analyses.lira`` (none without it), built from the planned ``stages``."""
    spec = study.analyses.get("lira")
    if spec is None:
        return []
    by_id = {stage.id: stage for stage in stages}
    shadows = []
    for index in range(spec["shadows"]):
        base = copy.deepcopy(by_id["original"].config)
        _shadow_data(base, spec, index)
        base["seed_everything"] = study.seed + 1 + index
        shadow = Stage(shadow_stage_id(index), "shadow", "fit", base, info={"shadow": index, "method": None})
        shadows.append(shadow)
        for method in spec["methods"]:
            config = copy.deepcopy(by_id[endpoint_stage_id(method)].config)
            _shadow_data(config, spec, index)
            config["seed_everything"] = study.methods[method].seed + 1 + index
            config["model"]["init_args"].update(original=str(shadow.checkpoint(study.output_dir)), retrain=None)
            shadows.append(Stage(shadow_stage_id(index, method), "shadow", "fit", config, depends=[shadow.id],
                                 info={"shadow": index, "method": method}))
    return shadows


def shadow_cost(study: StudySpec, pool_size: int | None = None, original_s: float | None = None,
                method_s: dict[str, float] | None = None) -> str:
    """One line: how many shadow trainings and unlearning runs the study adds, and an estimate of their time from the
    finished ``original`` and method stages (a shadow trains on half the data: between half and all of the original's
    time; an unlearning run on a shadow: about the method's)."""
    spec = study.analyses["lira"]
    count, methods = spec["shadows"], spec["methods"]
    epochs = study.base["epochs"]
    line = f"lira: {count} shadow models × {epochs} epochs"
    if pool_size is not None:
        line += f" on ~{pool_size // 2} samples each (half of {pool_size})"
    if methods:
        line += f", + {count} × {len(methods)} unlearning runs ({', '.join(methods)})"
    if original_s is not None:
        unlearning = count * sum((method_s or {}).get(m, 0.0) for m in methods)
        line += (f"; the original stage took {original_s:.0f} s, so the shadows ≈ {count * original_s / 2 + unlearning:.0f}–"
                 f"{count * original_s + unlearning:.0f} s" + (" (unlearning runs included)" if unlearning else ""))
    return line
