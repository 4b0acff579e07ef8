"""Adapter curves: between two LoRA runs over one frozen base, a curve bends only the adapters (fp32), keeps the
base once in its own dtype (bf16), reproduces both endpoints exactly and holds far less than a full-weight curve."""

from __future__ import annotations

import copy
import math

import torch
from text_helpers import TINY_GPT2

from unlearn_mc.curves import CurveModule
from unlearn_mc.curves.memory import curve_memory, held_bytes
from unlearn_mc.models import HFCausalLM
from unlearn_mc.models.lora import trainable_fraction

LORA = {"r": 2, "lora_alpha": 4, "target_modules": ["c_attn", "c_proj"]}


def moved(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    out = copy.deepcopy(net).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in out.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator).to(parameter.dtype) * 0.05)
    return out


def test_lora_curve_bends_only_the_adapters_over_one_bf16_base_and_hits_its_endpoints():
    torch.manual_seed(0)
    net = HFCausalLM(config=dict(TINY_GPT2), dtype="bfloat16", lora=LORA)
    adapters = {name: p for name, p in net.named_parameters() if p.requires_grad}
    assert adapters and all("lora_" in name and p.dtype == torch.float32 for name, p in adapters.items())
    assert trainable_fraction(net) < 0.1
    start, end = moved(net, 1), moved(net, 2)
    curve = CurveModule(copy.deepcopy(net), start=start, end=end, curve="bezier", num_bends=3).eval()
    assert curve.curve.endpoints.shape[1] == sum(p.numel() for p in adapters.values()) and curve.curve.endpoints.dtype == torch.float32
    base = [name for name, p in net.named_parameters() if name.endswith("base_layer.weight")]
    assert base and all(name in curve.curve.fixed_shared and curve.curve.fixed_shared[name].dtype == torch.bfloat16 for name in base)
    ids = torch.randint(0, 64, (2, 6))
    assert torch.equal(curve(ids, t=0.0), start(ids)) and torch.equal(curve(ids, t=1.0), end(ids))
    middle = curve(ids, t=0.5)
    assert middle.shape == (2, 6, 64) and torch.isfinite(middle).all()
    curve.train()
    curve(ids, t=0.3).float().logsumexp(-1).mean().backward()
    bends = [p for p in curve.parameters() if p.requires_grad]
    assert bends and all(p.grad is not None for p in bends)


def test_adapter_curve_holds_less_than_a_full_weight_curve():
    torch.manual_seed(0)
    full_net = HFCausalLM(config=dict(TINY_GPT2))
    full = CurveModule(copy.deepcopy(full_net), start=moved(full_net, 1), end=moved(full_net, 2), curve="bezier", num_bends=3)
    torch.manual_seed(0)
    lora_net = HFCausalLM(config=dict(TINY_GPT2), dtype="bfloat16", lora=LORA)
    adapter = CurveModule(copy.deepcopy(lora_net), start=moved(lora_net, 1), end=moved(lora_net, 2), curve="bezier", num_bends=3)
    full_bytes, adapter_bytes = curve_memory(full), curve_memory(adapter)
    base_bf16 = sum(p.numel() * 2 for p in lora_net.parameters() if not p.requires_grad)
    # full: 3 control points of every fp32 weight; adapter: one bf16 base plus 3 control points of the adapters
    assert full_bytes["total"] >= 3 * 4 * sum(p.numel() for p in full_net.parameters())
    assert adapter_bytes["total"] < base_bf16 + 3 * 4 * adapter_bytes["bent_values"] + held_bytes(lora_net) * 0.1
    assert adapter_bytes["total"] < 0.5 * full_bytes["total"]


def test_lora_classifier_unlearns_from_its_own_weights_and_its_curve_bends_adapters_and_head(tmp_path):
    from text_helpers import TINY_BERT

    from unlearn_mc.models import HFSequenceClassifier
    from unlearn_mc.unlearning import KLRetain

    torch.manual_seed(0)
    net = HFSequenceClassifier(config=dict(TINY_BERT), num_classes=2, lora={"r": 2, "target_modules": ["query", "value"]})
    trainable = [name for name, p in net.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name or "classifier.modules_to_save" in name for name in trainable)
    module = KLRetain(net=net, original=None, forget="npo")  # original: null -> the net as built is the original
    ids, labels = torch.randint(0, 64, (4, 7)), torch.tensor([0, 1, 0, 1])
    loss = module.loss(net.eval(), {"forget": (ids, labels), "retain": (ids, labels)})
    # at θ = θ_ref NPO's term is (2/β)·softplus(0) = (2/β)·log 2 and the KL to the original is 0
    torch.testing.assert_close(loss, torch.tensor(2 / 0.1 * math.log(2.0)), atol=1e-4, rtol=0)
    start, end = moved(net, 1), moved(net, 2)
    curve = CurveModule(copy.deepcopy(net), start=start, end=end, curve="bezier", num_bends=3).eval()
    assert curve.curve.endpoints.shape[1] == sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert torch.equal(curve(ids, t=0.0), start(ids)) and torch.equal(curve(ids, t=1.0), end(ids))
