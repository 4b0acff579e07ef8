"""``HFSequenceClassifier``: a Hugging Face sequence classifier as a plain network mapping token ids to logits."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from unlearn_mc.models.hf_build import build_hf_model, unpad
from unlearn_mc.models.lora import with_lora


class HFSequenceClassifier(nn.Module):
    """``AutoModelForSequenceClassification`` (BERT, RoBERTa, BioBERT, …) called on a token batch; returns the logits (B, C).

    ``forward(input_ids, attention_mask=None, token_type_ids=None)``: ``input_ids`` is (B, L), positions
    padded with ``PAD_ID`` are masked out (the mask is ``ids ≠ PAD_ID`` unless one is given), so the
    batches of ``TextDataModule`` (a single tensor) and dict batches with keyword inputs both work.

    Args:
        model_dir: a local folder written by ``save_pretrained`` (a fine-tuned or pretrained checkpoint).
        config: instead, a ``transformers`` config as a dict with ``model_type`` (random weights), e.g.
            ``{model_type: bert, vocab_size: 500, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2,
            intermediate_size: 64}``.
        num_classes: number of output logits (the config's ``num_labels``).
        pad_token_id: the id padded positions are given (default: the config's, else 0).
        dtype: ``float32``, ``bfloat16`` or ``float16`` weights.
        lora: LoRA settings (``r``, ``lora_alpha``, ``target_modules`` …, see ``unlearn_mc.models.lora``): the base is
            frozen, the adapters and the classifier head train; null trains every weight.
    """

    def __init__(
        self,
        model_dir: str | None = None,
        config: dict[str, Any] | None = None,
        num_classes: int = 2,
        pad_token_id: int | None = None,
        dtype: str = "float32",
        lora: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = build_hf_model("AutoModelForSequenceClassification", model_dir, config, dtype, num_labels=num_classes)
        configured = getattr(self.model.config, "pad_token_id", None)
        self.pad_token_id = pad_token_id if pad_token_id is not None else (configured if configured is not None else 0)
        if self.model.config.pad_token_id is None:  # GPT-2-style classifiers find each sequence's last token by it
            self.model.config.pad_token_id = self.pad_token_id
        if lora is not None:
            self.model = with_lora(self.model, lora, "SEQ_CLS")

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None) -> Tensor:
        ids, mask = unpad(input_ids, attention_mask, self.pad_token_id)
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=ids, attention_mask=mask, **extra).logits
