"""SalUn: random labelling restricted to the weights most salient for the forget set."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from unlearn_mc.checkpoints import raw_state_dict, read_checkpoint
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.models.modes import module_mode
from unlearn_mc.unlearning.random_label import RandomLabel

MASK_KEY_PREFIXES = ("", "net.", "model.", "module.")


@torch.enable_grad()
def saliency_mask(net: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], mask_ratio: float = 0.5, device: torch.device | str | None = None) -> dict[str, Tensor]:
    """SalUn's hard weight-saliency mask of ``net`` (Fan et al. 2024, eq. 6).

    g = ∇_θ Σ_{(x,y) ∈ D_f} −log softmax(f_θ(x))[y], computed with ``net`` in eval mode at its
    current weights; m = 1 on the round(mask_ratio·N) weights with the largest |g| among all N
    trainable weights (one global threshold across tensors), 0 elsewhere.
    Returns ``{parameter name: bool tensor}`` (True: the weight may change).
    """
    if not 0.0 < mask_ratio <= 1.0:
        raise UnlearnMCError(f"mask_ratio={mask_ratio} must lie in (0, 1]: the fraction of weights SalUn may update.")
    named = [(name, p) for name, p in net.named_parameters() if p.requires_grad]
    if device is None:
        device = named[0][1].device
    saliency = [torch.zeros_like(p, dtype=torch.float32) for _, p in named]
    seen = 0
    with module_mode(net, training=False):
        for inputs, targets in batches:
            inputs, targets = inputs.to(device), targets.to(device)
            loss = F.cross_entropy(net(inputs).float(), targets, reduction="sum")
            grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
            for total, grad in zip(saliency, grads):
                if grad is not None:
                    total.add_(grad.float())
            seen += len(targets)
    if seen == 0:
        raise UnlearnMCError("the forget data given to SalUn's saliency mask is empty; it needs at least one sample.")
    flat = torch.cat([s.abs().flatten() for s in saliency])
    keep_count = int(round(mask_ratio * flat.numel()))
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if keep_count > 0:
        keep[torch.topk(flat, keep_count, sorted=False).indices] = True
    masks, offset = {}, 0
    for (name, p) in named:
        masks[name] = keep[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return masks


class _TensorStore(nn.Module):
    """Named tensors kept as buffers (so they move with the module and travel in checkpoints)."""

    def __init__(self, tensors: Mapping[str, Tensor]) -> None:
        super().__init__()
        self.keys_by_name = {name: name.replace(".", "__") for name in tensors}
        for name, tensor in tensors.items():
            self.register_buffer(self.keys_by_name[name], tensor)

    def __getitem__(self, name: str) -> Tensor:
        return getattr(self, self.keys_by_name[name])

    def names(self) -> list[str]:
        return list(self.keys_by_name)


class SalUn(RandomLabel):
    """SalUn (Fan et al. 2024, "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency"):
    random labelling (``RandomLabel``) on the salient weights only.

    L = λ_f·(1/|B_f|)·Σ_{(x,y) ∈ B_f} ℓ(x, ỹ) + λ_r·(1/|B_r|)·Σ_{(x,y) ∈ B_r} ℓ(x, y), minimised over
    θ = m ⊙ θ_u + (1 − m) ⊙ θ_o, where m is the hard mask of ``saliency_mask`` at the original
    weights θ_o: the ``mask_ratio`` fraction of weights with the largest |∇_θ Σ_{D_f} ℓ(x, y)|.

    The mask is hard: masked-out gradients are zeroed before each optimiser step, and after it
    the masked-out weights are written back from a copy of θ_o, bit for bit, so neither weight
    decay nor momentum can move them. BatchNorm running statistics are buffers, not weights,
    and are not masked. The mask is computed when training starts, over the DataModule's
    ``train_dataset("forget")`` (or the training ``forget`` loader of another DataModule), unless
    ``mask_path`` gives a precomputed one; mask and θ_o are buffers, so checkpoints carry them.
    The time the mask takes counts in ``unlearn/runtime_s`` and is logged on its own as ``unlearn/mask_s``.

    The other arguments are ``RandomLabel``'s (``forget_weight``, ``retain_weight``, ``passes``: SalUn's CIFAR-10 code
    is ``"forget_then_retain"``, ``label_draw``: its code is ``"all_classes"``) and ``UnlearningModule``'s, documented there.

    Args:
        mask_ratio: fraction of the weights SalUn may update (0.5 in the paper).
        mask_path: optional file holding ``{parameter name: tensor}`` (non-zero = may update), e.g.
            ``torch.save(saliency_mask(net, loader), path)`` or SalUn's own mask files.
    """

    def __init__(self, *args, mask_ratio: float = 0.5, mask_path: str | None = None, **kwargs) -> None:
        if not 0.0 < mask_ratio <= 1.0:
            raise UnlearnMCError(f"mask_ratio={mask_ratio} must lie in (0, 1]: the fraction of weights SalUn may update.")
        super().__init__(*args, **kwargs)
        self.mask_ratio = mask_ratio
        trainable = {name: p for name, p in self.net.named_parameters() if p.requires_grad}
        self.anchor = _TensorStore({name: p.detach().clone() for name, p in trainable.items()})
        self.mask = _TensorStore({name: torch.ones_like(p, dtype=torch.bool) for name, p in trainable.items()})
        self.register_buffer("mask_ready", torch.tensor(False))
        if mask_path is not None:
            self.set_mask(self._read_mask_file(mask_path, trainable))

    # ------------------------------------------------------------ the mask
    def _read_mask_file(self, path: str, trainable: Mapping[str, Tensor]) -> dict[str, Tensor]:
        stored = raw_state_dict(read_checkpoint(path))
        masks = {}
        for name, p in trainable.items():
            key = next((prefix + name for prefix in MASK_KEY_PREFIXES if prefix + name in stored), None)
            if key is None:
                raise UnlearnMCError(f"mask file {path!r} has no entry for the parameter {name!r}; it must hold one tensor per trainable parameter.")
            if tuple(stored[key].shape) != tuple(p.shape):
                raise UnlearnMCError(f"mask file {path!r}: {key!r} has shape {tuple(stored[key].shape)} but the parameter has shape {tuple(p.shape)}.")
            masks[name] = stored[key] != 0
        return masks

    @torch.no_grad()
    def set_mask(self, masks: Mapping[str, Tensor]) -> None:
        """Install a mask ``{parameter name: bool tensor}`` (True: the weight may change)."""
        for name in self.mask.names():
            self.mask[name].copy_(masks[name].to(torch.bool))
        self.mask_ready.fill_(True)

    def kept_fraction(self) -> float:
        """The fraction of weights the mask lets change."""
        kept = sum(int(self.mask[name].sum()) for name in self.mask.names())
        return kept / max(1, sum(self.mask[name].numel() for name in self.mask.names()))

    def _forget_batches(self) -> Iterable[tuple[Tensor, Tensor]]:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and callable(getattr(datamodule, "train_dataset", None)):
            batch_size = getattr(getattr(datamodule, "hparams", None), "eval_batch_size", 256)
            collate = getattr(getattr(datamodule, "source", None), "collate_fn", None)
            return DataLoader(datamodule.train_dataset("forget"), batch_size=batch_size, shuffle=False, collate_fn=collate)
        loaders = self.trainer.train_dataloader
        if isinstance(loaders, Mapping) and "forget" in loaders:
            return loaders["forget"]
        raise UnlearnMCError(
            "SalUn needs the forget set to compute its saliency mask: give mask_path, or a DataModule with "
            "train_dataset('forget') or a training loader dict with a 'forget' entry."
        )

    def on_train_start(self) -> None:
        super().on_train_start()
        if not bool(self.mask_ready):
            started = time.perf_counter()
            masks = {name: mask.cpu() for name, mask in saliency_mask(self.net, self._forget_batches(), self.mask_ratio, self.device).items()}
            # every process must use the same mask (non-deterministic GPU kernels could break ties differently)
            self.set_mask(self.trainer.strategy.broadcast(masks, src=0))
            self.record_runtime("mask_s", time.perf_counter() - started)  # part of the unlearning's cost

    # ------------------------------------------------------- the hard mask
    def on_before_optimizer_step(self, optimizer) -> None:
        super().on_before_optimizer_step(optimizer)
        for name, p in self.net.named_parameters():
            if p.grad is not None and name in self.mask.keys_by_name:
                p.grad.masked_fill_(~self.mask[name], 0)

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        self.restore_masked_weights()

    @torch.no_grad()
    def restore_masked_weights(self) -> None:
        """θ ← m ⊙ θ + (1 − m) ⊙ θ_o, exactly (a select, not arithmetic)."""
        for name, p in self.net.named_parameters():
            if name in self.mask.keys_by_name:
                p.copy_(torch.where(self.mask[name], p, self.anchor[name]))
