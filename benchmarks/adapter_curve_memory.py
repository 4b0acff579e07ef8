"""Memory of a curve between two LoRA-unlearned causal LMs against a curve between two full-weight ones, in one process.

Builds one GPT-2-style model from a config (random weights; nothing downloaded), then two 3-point Bezier curves:

- full-weight: every weight trainable (fp32), so the endpoints and the bend each hold all P weights;
- adapter: the same model with a bf16 base frozen and LoRA adapters (fp32) on the attention and MLP matrices,
  so the base is one shared bf16 copy and only the adapters are bent.

It prints the bytes each curve holds (``unlearn_mc.curves.memory.curve_memory``), the fp32 values per control
point and the ratios.

    .venv/bin/python benchmarks/adapter_curve_memory.py [--n_embd 256 --n_layer 4 --vocab 8000 --r 8]
"""

from __future__ import annotations

import argparse
import copy

import torch

from unlearn_mc.curves import CurveModule
from unlearn_mc.curves.memory import curve_memory
from unlearn_mc.models import HFCausalLM


def endpoints(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A copy of ``net`` whose trainable weights are moved by N(0, 0.01²) noise (an 'unlearned' run)."""
    moved = copy.deepcopy(net)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in moved.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator).to(parameter.dtype) * 0.01)
    return moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_embd", type=int, default=256)
    parser.add_argument("--n_layer", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--r", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = dict(model_type="gpt2", vocab_size=args.vocab, n_embd=args.n_embd, n_layer=args.n_layer, n_head=4, n_positions=128,
                  bos_token_id=0, eos_token_id=0)
    lora = dict(r=args.r, lora_alpha=2 * args.r, target_modules=["c_attn", "c_proj", "c_fc"])
    rows = {}
    for name, settings in (("full-weight", dict(dtype="float32")), ("adapter", dict(dtype="bfloat16", lora=lora))):
        torch.manual_seed(0)
        net = HFCausalLM(config=dict(config), **settings)
        curve = CurveModule(copy.deepcopy(net), start=endpoints(net, 1), end=endpoints(net, 2), curve="bezier", num_bends=3)
        rows[name] = {**curve_memory(curve), "parameters": sum(p.numel() for p in net.parameters())}
        del net, curve
    print(f"GPT-2 config n_embd={args.n_embd} n_layer={args.n_layer} vocab={args.vocab}; LoRA r={args.r} on c_attn, c_proj, c_fc")
    for name, row in rows.items():
        print(f"{name:>12}: held {row['total'] / 2**20:8.2f} MiB, trainable bend {row['bends'] / 2**20:8.3f} MiB, "
              f"{row['bent_values']:>10,} bent values per control point, {row['parameters']:,} parameters")
    full, adapter = rows["full-weight"], rows["adapter"]
    print(f"adapter / full-weight: held memory {adapter['total'] / full['total']:.3f}, trainable bend {adapter['bends'] / full['bends']:.4f}, "
          f"bent values {adapter['bent_values'] / full['bent_values']:.4f}")


if __name__ == "__main__":
    main()
