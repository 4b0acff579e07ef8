"""Causal-LM unlearning in TOFU's format: answer-only targets, the TOFU DataModule, the LM methods' losses, TOFU's
metrics, and (slow) the chain original → two methods → Bezier curve → evaluation along t through ``unlearn-mc fit``."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_cli_bad_input import refused
from text_helpers import TINY_GPT2, write_tofu_folder

from unlearn_mc.checkpoints import network_state_from_file
from unlearn_mc.cli import main
from unlearn_mc.curves import CurveModule
from unlearn_mc.data import TofuDataModule
from unlearn_mc.data.padding import IGNORE_INDEX
from unlearn_mc.data.qa_encoding import encode_qa
from unlearn_mc.data.tokenization import TextEncoder
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.evaluation.sequence import cross_entropy_per_sample
from unlearn_mc.evaluation.tofu_metrics import forget_quality, greedy_answer, rouge_l_recall, truth_ratios
from unlearn_mc.models import HFCausalLM
from unlearn_mc.unlearning import NPO, FineTune, GradDiff, GradientAscent, KLRetain

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tofu" / "tiny"


@pytest.fixture
def tofu(tmp_path) -> TofuDataModule:
    datamodule = TofuDataModule(data_dir=str(write_tofu_folder(tmp_path / "tofu")), split="forget10", vocab_size=64, batch_size=4)
    datamodule.setup("fit")
    return datamodule


def test_only_the_answer_tokens_are_scored():
    encoder = TextEncoder.train_local(["question: who wrote it answer: she did"], 32)
    ids, targets = encode_qa(encoder, "who wrote it", "she did", "question: {question} answer: ", 32)
    prompt = len(encoder.encode(["question: who wrote it answer: "], 32)[0])
    assert ids.tolist()[-1] == encoder.eos_token_id and len(ids) == prompt + 3
    scored = (targets != IGNORE_INDEX).nonzero().flatten().tolist()
    assert scored == list(range(prompt - 1, len(ids) - 1)) and targets[scored].tolist() == ids[prompt:].tolist()
    logits = torch.randn(1, len(ids), 32)
    expected = F.cross_entropy(logits[0, prompt - 1 : -1], ids[prompt:])
    torch.testing.assert_close(cross_entropy_per_sample(logits, targets[None]), expected[None])


def test_tofu_split_streams_and_evaluation_splits(tofu):
    assert len(tofu.split.forget) == 4 and len(tofu.split.retain) == 36 and tofu.num_classes is None
    assert tofu.eval_split_names == ["forget", "retain", "test"] and len(tofu.eval_datasets()["test"]) == 2
    ids, targets = next(iter(tofu.eval_dataloaders()["forget"]))
    assert ids.shape == targets.shape and (targets != IGNORE_INDEX).any(dim=1).all()
    assert len(tofu.records["forget_perturbed"]) == 2 and tofu.records["forget_perturbed"][0].perturbed_answers


def test_bad_tofu_folder_and_split(tmp_path):
    with pytest.raises(UnlearnMCError, match=r"TOFU folder .*nowhere.* does not exist"):
        TofuDataModule(data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(UnlearnMCError, match=r"split='forget50' is not a TOFU split"):
        TofuDataModule(data_dir=str(tmp_path), split="forget50")


@pytest.mark.parametrize("method", [GradientAscent, GradDiff, NPO, KLRetain, FineTune])
def test_lm_methods_take_answer_losses(tofu, tmp_path, method):
    torch.manual_seed(0)
    net = HFCausalLM(config=dict(TINY_GPT2)).eval()
    torch.save(net.state_dict(), tmp_path / "original.pt")
    module = method(net=net, original=str(tmp_path / "original.pt"))
    forget = next(iter(tofu.eval_dataloaders()["forget"]))
    retain = next(iter(tofu.eval_dataloaders()["retain"]))
    loss = module.loss(net, {"forget": forget, "retain": retain})
    assert torch.isfinite(loss)
    if method is GradientAscent:
        torch.testing.assert_close(loss, -cross_entropy_per_sample(net(forget[0]), forget[1]).mean())
    if method is KLRetain:  # at the original weights the KL term is 0: the loss is gradient ascent's
        torch.testing.assert_close(loss, -cross_entropy_per_sample(net(forget[0]), forget[1]).mean(), atol=1e-5, rtol=1e-5)


def test_tofu_metrics():
    assert rouge_l_recall(["paris is where she was born"], ["she was born in paris"]) == pytest.approx(3 / 5)
    assert forget_quality(np.array([0.1, 0.5, 0.9]), np.array([0.1, 0.5, 0.9])) == pytest.approx(1.0)
    assert forget_quality(np.linspace(0, 1, 30), np.linspace(5, 6, 30)) < 1e-6

    def counting(ids):  # always predicts token (last + 1): greedy answers count up, stopping at EOS = 5
        return F.one_hot((ids + 1).clamp(max=9), 10).float()

    assert greedy_answer(counting, torch.tensor([1, 2]), max_new_tokens=10, eos_token_id=5) == [3, 4]
    assert greedy_answer(counting, torch.tensor([6]), max_new_tokens=2, eos_token_id=5) == [7, 8]


def test_truth_ratio_is_the_perturbed_over_paraphrased_likelihood(tofu):
    torch.manual_seed(0)
    net = HFCausalLM(config=dict(TINY_GPT2)).eval()
    records = tofu.records["forget_perturbed"]
    ratios = truth_ratios(net, tofu.encoder, records, tofu.hparams.prompt, tofu.hparams.max_length, "cpu")
    record = records[0]

    def nll(answer):
        ids, targets = encode_qa(tofu.encoder, record.question, answer, tofu.hparams.prompt, tofu.hparams.max_length)
        return float(cross_entropy_per_sample(net(ids[None]), targets[None]))

    expected = math.exp(np.mean([nll(a) for a in record.perturbed_answers]) - nll(record.paraphrased_answer))
    assert len(ratios) == 2 and ratios[0] == pytest.approx(expected, rel=1e-5)


def test_missing_tofu_folder_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    message = refused(capsys, tmp_path, ["fit", "--config", str(TINY / "original.yaml"), "--data.init_args.data_dir=no/tofu"])
    assert "no/tofu" in message and "does not exist" in message


@pytest.mark.slow
def test_tiny_lm_original_two_methods_bezier_curve_and_evaluation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = write_tofu_folder(tmp_path / "tofu")
    common = [f"--data.init_args.data_dir={data}", "--trainer.enable_progress_bar=false", "--trainer.max_epochs=2"]
    for config in ("original", "unlearn/grad_ascent", "unlearn/npo", "curve/bezier"):
        extra = [] if config == "original" else ["--model.init_args.retrain=null"]
        assert main(["fit", "--config", str(TINY / f"{config}.yaml"), *common, *extra]) == 0
    net = HFCausalLM(config={**TINY_GPT2, "vocab_size": 128, "n_embd": 32, "n_positions": 128, "bos_token_id": 3, "eos_token_id": 3})
    curve = CurveModule.load_curve(tmp_path / "checkpoints/tofu_tiny/curves/bezier.ckpt", net)
    for t, stage in ((0.0, "grad_ascent"), (1.0, "npo")):
        expected = network_state_from_file(net, tmp_path / f"checkpoints/tofu_tiny/{stage}.ckpt")
        assert all(torch.equal(curve.state_dict_at(t)[key], value) for key, value in expected.items())
    logs = sorted(tmp_path.glob("lightning_logs/version_*"), key=lambda p: int(p.name.split("_")[1]))
    rows = list(csv.DictReader((logs[-1] / "curve_eval.csv").open()))
    assert [float(r["t"]) for r in rows] == pytest.approx([0, 0.25, 0.5, 0.75, 1]) and "forget_loss" in rows[0]
    tofu_metrics = json.loads((logs[1] / "tofu_eval.json").read_text())
    assert {"forget_ppl", "retain_ppl", "forget_rouge_l", "retain_rouge_l", "forget_truth_ratio"} <= set(tofu_metrics)


def test_greedy_answers_of_a_hugging_face_model_match_token_by_token_decoding():
    torch.manual_seed(0)
    net = HFCausalLM(config=dict(TINY_GPT2)).eval()
    prompt = torch.tensor([5, 9, 2, 7])

    def plain(ids):  # the same network without a .model attribute: decoded without the cache
        return net(ids)

    assert greedy_answer(net, prompt, 8, eos_token_id=1) == greedy_answer(plain, prompt, 8, eos_token_id=1)
