"""LoRA adapters (PEFT) on a Hugging Face model: the base frozen, only the adapters (and any head named to be saved) trainable.

With ``W' = W + (α/r)·B·A`` (A: r×d_in, B: d_out×r, B initialised to 0), a model of N base weights trains
only r·(d_in + d_out) per adapted matrix. Because the base has ``requires_grad=False``, a curve between two
LoRA runs over the same base bends only the adapters: the base is one shared copy in its own dtype (e.g.
bf16) and φ(t) = Σ_j c_j(t)·θ_j is combined in fp32 over the adapters alone (``unlearn_mc.curves.layout``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from unlearn_mc.errors import UnlearnMCError

LORA_DEFAULTS = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": None}


def with_lora(model: nn.Module, lora: dict[str, Any], task_type: str) -> nn.Module:
    """``peft.get_peft_model(model, LoraConfig(task_type, **lora))`` with the adapters kept in fp32 over a base of any dtype.

    ``lora`` holds LoraConfig fields: ``r``, ``lora_alpha``, ``lora_dropout``, ``target_modules`` (None: PEFT's
    default for the architecture), ``modules_to_save`` …; ``task_type`` is ``SEQ_CLS`` (the classifier head is then
    trained whole) or ``CAUSAL_LM``."""
    from peft import LoraConfig, get_peft_model

    settings = {**LORA_DEFAULTS, **lora}
    try:
        config = LoraConfig(task_type=task_type, **settings)
        return get_peft_model(model, config, autocast_adapter_dtype=True)
    except (TypeError, ValueError) as error:
        raise UnlearnMCError(f"lora={lora!r} is not a valid LoRA setting ({str(error).splitlines()[0]}); give LoraConfig fields such as r, lora_alpha, target_modules.") from None


def trainable_fraction(model: nn.Module) -> float:
    """The fraction of parameters with ``requires_grad=True``: Σ_trainable numel / Σ numel."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / max(total, 1)
