"""``HFCausalLM``: a Hugging Face causal language model (GPT-2, phi-1.5, Llama …) mapping token ids to next-token logits."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from unlearn_mc.models.hf_build import build_hf_model, unpad
from unlearn_mc.models.lora import with_lora


class HFCausalLM(nn.Module):
    """``AutoModelForCausalLM`` on a token batch; returns logits (B, L, V), where position i scores token i + 1.

    Positions padded with ``PAD_ID`` are masked (``mask = ids ≠ PAD_ID`` unless one is given). With ``lora``
    the base is frozen and only the adapters train, so a curve between two LoRA runs bends the adapters only.

    Args:
        model_dir: a local folder written by ``save_pretrained`` (e.g. TOFU's fine-tuned phi-1.5).
        config: instead, a ``transformers`` config dict with ``model_type`` (random weights), e.g.
            ``{model_type: gpt2, vocab_size: 256, n_embd: 32, n_layer: 2, n_head: 2}``.
        pad_token_id: the id padded positions are given (default: the config's pad, else its eos, else 0).
        dtype: ``float32``, ``bfloat16`` or ``float16`` base weights (LoRA adapters stay fp32).
        lora: LoRA settings (see ``unlearn_mc.models.lora``), or null to train every weight.
        gradient_checkpointing: recompute activations in the backward pass (large models).
    """

    def __init__(
        self,
        model_dir: str | None = None,
        config: dict[str, Any] | None = None,
        pad_token_id: int | None = None,
        dtype: str = "float32",
        lora: dict[str, Any] | None = None,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.model = build_hf_model("AutoModelForCausalLM", model_dir, config, dtype)
        hf_config = self.model.config
        default = hf_config.pad_token_id if hf_config.pad_token_id is not None else getattr(hf_config, "eos_token_id", None)
        self.pad_token_id = pad_token_id if pad_token_id is not None else (default if isinstance(default, int) else 0)
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        if lora is not None:
            self.model = with_lora(self.model, lora, "CAUSAL_LM")

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        ids, mask = unpad(input_ids, attention_mask, self.pad_token_id)
        return self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
