"""Building Hugging Face ``transformers`` models from a local folder or from a config, never downloading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unlearn_mc.data.padding import PAD_ID
from unlearn_mc.errors import UnlearnMCError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_hf_model(auto_class: str, model_dir: str | None, config: dict[str, Any] | None, dtype: str = "float32", **overrides: Any) -> nn.Module:
    """``transformers.<auto_class>.from_pretrained(model_dir, local_files_only=True)``, or ``from_config`` of
    ``AutoConfig.for_model(**config)`` (``config`` holds ``model_type``, e.g. ``bert``, and the sizes) with random weights.

    ``overrides`` (e.g. ``num_labels``) are set on the config either way."""
    import transformers

    if dtype not in DTYPES:
        raise UnlearnMCError(f"dtype={dtype!r} is not a dtype; use one of {', '.join(DTYPES)}.")
    builder = getattr(transformers, auto_class)
    if (model_dir is None) == (config is None):
        raise UnlearnMCError("give exactly one of model_dir (a local model folder) and config (a dict with model_type and sizes).")
    if model_dir is not None:
        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise UnlearnMCError(f"model folder {str(path)!r} does not exist or has no config.json; give a folder written by save_pretrained (nothing is downloaded).")
        try:
            return builder.from_pretrained(str(path), local_files_only=True, dtype=DTYPES[dtype], **overrides)
        except (OSError, ValueError) as error:
            raise UnlearnMCError(f"the model in {str(path)!r} could not be read ({str(error).splitlines()[0]}).") from None
    settings = dict(config)
    model_type = settings.pop("model_type", None)
    if model_type is None:
        raise UnlearnMCError(f"config={config!r} lacks model_type; give e.g. {{model_type: bert, hidden_size: 32, …}}.")
    try:
        hf_config = transformers.AutoConfig.for_model(model_type, **settings, **overrides)
    except ValueError as error:
        raise UnlearnMCError(f"config model_type={model_type!r} is not a transformers model type ({str(error).splitlines()[0]}).") from None
    return builder.from_config(hf_config, dtype=DTYPES[dtype])


def unpad(input_ids: Tensor, attention_mask: Tensor | None, pad_token_id: int) -> tuple[Tensor, Tensor]:
    """The ids the model reads (``PAD_ID`` positions replaced by ``pad_token_id``) and the attention mask
    (``ids ≠ PAD_ID`` unless one is given)."""
    padded = input_ids == PAD_ID
    mask = (~padded).long() if attention_mask is None else attention_mask
    return input_ids.masked_fill(padded, pad_token_id), mask
