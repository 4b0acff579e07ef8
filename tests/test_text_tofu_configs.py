"""The GPU configs of ``configs/tofu/`` on CPU: a tiny phi model and tokenizer saved as local folders stand in for
phi-1.5, so the model-folder, tokenizer-folder, LoRA (phi's module names), bf16 base, ``bf16-mixed`` and
``original: null`` paths run as a GPU run would take them, only smaller."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from text_helpers import write_tofu_folder

from unlearn_mc.cli import main
from unlearn_mc.data.tokenization import TextEncoder
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.lightning_cli import resolved_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "tofu"


def save_tiny_phi(folder: Path, texts: list[str]) -> Path:
    """A word-level tokenizer and a 2-layer phi model (hidden 32), both written with ``save_pretrained``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(vocab_size=200, special_tokens=["[PAD]", "[UNK]", "<eos>"], show_progress=False))
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", eos_token="<eos>").save_pretrained(folder)
    config = AutoConfig.for_model("phi", vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                  max_position_embeddings=128, pad_token_id=0, bos_token_id=2, eos_token_id=2)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


def test_a_tokenizer_folder_is_read_locally(tmp_path):
    folder = save_tiny_phi(tmp_path / "phi", ["where was author1 born", "author1 was born in paris"])
    encoder = TextEncoder.from_folder(folder)
    ids = encoder.encode(["author1 was born in paris"], max_length=16)[0]
    assert encoder.decode(ids.tolist()) == "author1 was born in paris" and encoder.pad_token_id == 0 and encoder.eos_token_id == 2
    with pytest.raises(UnlearnMCError, match=r"tokenizer folder .*nowhere.* does not exist"):
        TextEncoder.from_folder(tmp_path / "nowhere")


def _small(config_name: str, workdir: Path) -> Path:
    config = resolved_config(CONFIGS / config_name)  # as `fit` reads it, with what it takes from configs/tofu/defaults/
    for callback in config["trainer"]["callbacks"]:
        if callback["class_path"].endswith("TofuEvaluation"):
            callback["init_args"] = {"num_generate": 2, "max_new_tokens": 6}
        if callback["class_path"].endswith("CurveEvaluation"):
            callback["init_args"]["t_grid"] = 3
    path = workdir / "configs" / config_name.replace("/", "_")
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_gpu_configs_unlearn_with_lora_from_a_model_folder_and_connect_the_adapters(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = write_tofu_folder(tmp_path / "tofu")
    texts = [line for file in data.glob("*.json") for line in file.read_text().splitlines()]
    phi = save_tiny_phi(tmp_path / "phi", texts)
    common = ["--trainer.accelerator=cpu", "--trainer.max_epochs=1", "--trainer.accumulate_grad_batches=1", "--trainer.enable_progress_bar=false",
              f"--model.init_args.net.init_args.model_dir={phi}", f"--data.init_args.tokenizer={phi}", f"--data.init_args.data_dir={data}",
              "--data.init_args.max_length=64", "--model.init_args.retrain=null"]
    for method in ("npo", "kl"):  # from the model folder itself: original: null
        assert main(["fit", "--config", str(_small(f"unlearn/{method}.yaml", tmp_path)), *common, "--model.init_args.original=null"]) == 0
    assert main(["fit", "--config", str(_small("curve/bezier.yaml", tmp_path)), *common,
                 "--model.init_args.start=checkpoints/tofu/npo.ckpt", "--model.init_args.end=checkpoints/tofu/kl.ckpt"]) == 0
    logs = sorted(tmp_path.glob("lightning_logs/version_*"), key=lambda p: int(p.name.split("_")[1]))
    assert "forget_truth_ratio" in json.loads((logs[0] / "tofu_eval.json").read_text())
    summary = json.loads((logs[-1] / "curve_summary.json").read_text())
    assert summary["t"] == [0.0, 0.5, 1.0]
    curve = torch.load(tmp_path / "checkpoints/tofu/curves/bezier.ckpt", weights_only=True)["state_dict"]
    adapters = sum(value.numel() for key, value in curve.items() if key == "curve.endpoints") // 2
    base = sum(value.numel() for key, value in curve.items() if "fixed_shared" in key and value.dtype == torch.bfloat16)
    assert 0 < adapters < base  # the curve bends the fp32 adapters only; the bf16 base is one shared copy
