"""``ResumesRandomness``: a checkpoint carries the random generators' state, so a resumed run draws what an uninterrupted one would.

Lightning restores weights, optimiser and loop counters from ``--ckpt_path``, but not the generators
behind the data order (``shuffle=True`` seeds each epoch's permutation from torch's global
generator), the t of a curve step, random labels or dropout. Saved at the end of epoch k and restored
on resume, they make epoch k + 1 identical to the uninterrupted run's. The states are stored as
tensors and plain numbers, so the checkpoint still loads with ``weights_only=True``.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch

RNG_KEY = "unlearn_mc_rng_states"


def rng_states() -> dict[str, Any]:
    """torch (CPU and every CUDA device), NumPy and Python ``random`` states, as tensors and plain numbers."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": {"version": int(version), "state": list(python_state), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Set every generator ``rng_states`` recorded."""
    torch.set_rng_state(states["torch"])
    numpy = states["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"], numpy["cached_gaussian"]))
    python = states["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumesRandomness(L.LightningModule):
    """LightningModule mixin: ``on_save_checkpoint`` stores ``rng_states()``; ``on_load_checkpoint`` restores them.

    Under DDP each process restores rank 0's states; per-process differences (each process's data
    shard comes from ``DistributedSampler``'s own seeded order) do not depend on them.
    """

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[RNG_KEY] = rng_states()
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if RNG_KEY in checkpoint:
            restore_rng_states(checkpoint[RNG_KEY])
        super().on_load_checkpoint(checkpoint)
