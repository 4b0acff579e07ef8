"""φ(t) = Σ_j c_j(t)·θ_j over flat control points, in few memory passes, with an exact hand-written gradient.

The control points are rows of flat fp32 matrices: ``endpoints`` (2, P), ``bends`` (B, P_train),
the trainable columns of the bends, and ``frozen_bends`` (B, P_frozen), the rest. One
``vecmat`` combines the endpoints, then two in-place ``addmv`` add the bends: three BLAS calls
whatever the number of tensors. The gradient reaching the bends is ∂L/∂θ_j = c_j(t)·∂L/∂φ; it is
written straight into one (B, P_train) tensor from the per-tensor gradients, instead of
concatenating them first (what autograd's ``split`` would do), which saves two passes over P.

Both vectors of length P (φ itself and the bends' gradient) are written into memory kept across
steps (``ReusableBuffer``): a fresh allocation of tens of megabytes at every step comes back from
the allocator as new pages, and faulting them in costs as much as the arithmetic (ResNet-18: about
20 ms per vector and step). Memory is reused only while nothing else references it, so a graph that
still needs the previous φ (several forwards before one backward, ``create_graph``), a gradient the
caller kept, or φ held by the caller, gets fresh memory instead: never a changed value.

Each trainable tensor's gradient is written into the bends' gradient as soon as it is complete
(``_RoutedChunk``, one node per tensor) and kept until the next ``curve_point`` call, as a plain
step keeps ``.grad`` until the next ``zero_grad``. Freeing them all at the end of backward instead
returned tens of megabytes to the system at every step (glibc trims the top of its heap) and
faulted them back in during the next backward: ResNet-18, about 100 MiB of page faults per step
against 1–40 for a plain step in the same process, 1.06–1.11× a plain step's time before,
1.01–1.03× after (``benchmarks/curve_overhead.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor


def _storage_references(tensor: Tensor) -> int:
    """How many tensors (views, saved tensors of a graph, ``.grad`` aliases …) hold ``tensor``'s memory, as counted
    through one temporary storage object (so the count of a tensor nothing else references is the same at every call)."""
    return torch._C._storage_Use_Count(tensor.untyped_storage()._cdata)


class ReusableBuffer:
    """Memory for one tensor kept across calls, handed out again only while nothing else references it.

    ``take(shape, dtype, device)`` gives an alias of the kept tensor when its shape, dtype and device
    match, it is not an inference tensor handed out outside inference mode (autograd cannot record an
    in-place write into one, e.g. after ``trainer.validate``), and no other tensor shares its memory (no earlier alias or view of it, no saved tensor of a
    live autograd graph, no ``.grad``); otherwise of a new one, which is kept from then on. The
    count is of tensors sharing the memory (``torch._C._storage_Use_Count``), which every view,
    alias and tensor saved for backward adds to. The kept tensor is not state: it is not saved,
    copied or moved with its owner.
    """

    def __init__(self) -> None:
        self._tensor: Tensor | None = None
        self._free_count = 0
        self._held: list[Tensor] = []

    def take(self, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> Tensor:
        tensor = self._tensor
        if (
            tensor is None
            or tensor.shape != tuple(shape)
            or tensor.dtype != dtype
            or tensor.device != device
            or _storage_references(tensor) != self._free_count
            or (tensor.is_inference() and not torch.is_inference_mode_enabled())  # kept from a validate/test run
        ):
            tensor = torch.empty(tuple(shape), dtype=dtype, device=device)
            self._tensor, self._free_count = tensor, _storage_references(tensor)
        # an alias (its own tensor over the same memory): while the caller or anything it hands the memory to
        # holds it, the count above sees it, and the memory is not handed out again
        return tensor.detach()

    def hold(self, tensor: Tensor) -> None:
        """Keep ``tensor`` alive until ``release``."""
        self._held.append(tensor)

    def release(self) -> None:
        """Drop the tensors ``hold`` kept."""
        self._held = []

    def clear(self) -> None:
        self._tensor = None
        self.release()

    def __deepcopy__(self, memo) -> ReusableBuffer:
        return ReusableBuffer()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()


def combine_flat(coefficients: Tensor, endpoints: Tensor, bends: Tensor, frozen_bends: Tensor, out: Tensor | None = None) -> Tensor:
    """The flat vector φ = c_0·θ_0 + c_{n−1}·θ_{n−1} + Σ_{j=1}^{n−2} c_j·θ_j (length P_train + P_frozen), no autograd.

    ``out``, when given, is a vector of length P that receives φ (the same BLAS calls, the same bits)."""
    train_size = bends.shape[1]
    inner = coefficients[1:-1]
    ends = torch.stack([coefficients[0], coefficients[-1]])
    out = ends @ endpoints if out is None else torch.mv(endpoints.t(), ends, out=out)
    if frozen_bends.numel():
        out[train_size:].addmv_(frozen_bends.t(), inner)
    if bends.numel():
        out[:train_size].addmv_(bends.t(), inner)
    return out


class _GradientRouter:
    """Where the per-tensor gradient nodes of one ``curve_point`` call write c_j(t)·∂L/∂φ: one (B, P_train) tensor,
    taken from ``grad_buffer`` when the first tensor's gradient arrives and handed to autograd by ``_CurvePoint``."""

    def __init__(self, inner: Tensor, train_sizes: Sequence[int], grad_buffer: ReusableBuffer | None) -> None:
        self.inner = inner
        self.offsets = [0, *itertools.accumulate(train_sizes)][:-1]
        self.sizes = tuple(train_sizes)
        self.grad_buffer = grad_buffer
        self.grad: Tensor | None = None

    def take(self) -> Tensor:
        """The (B, P_train) gradient of this backward pass (fresh for each pass: the previous one is ``bends.grad`` now)."""
        if self.grad is None:
            shape = (len(self.inner), sum(self.sizes))
            buffer = self.grad_buffer
            self.grad = self.inner.new_empty(shape) if buffer is None else buffer.take(shape, self.inner.dtype, self.inner.device)
        return self.grad

    def write(self, index: int, grad: Tensor | None) -> None:
        """Rows j of tensor ``index``'s columns ← c_j·grad (zeros when no gradient reached it)."""
        target = self.take()
        offset, size = self.offsets[index], self.sizes[index]
        if grad is None:
            target[:, offset : offset + size].zero_()
            return
        for row, coefficient in enumerate(self.inner):
            torch.mul(grad.reshape(-1), coefficient, out=target[row, offset : offset + size])
        if self.grad_buffer is not None:
            self.grad_buffer.hold(grad)

    def hand_over(self) -> Tensor:
        grad, self.grad = self.take(), None
        return grad


class _RoutedChunk(torch.autograd.Function):
    """One trainable tensor's chunk of φ. Its backward runs as soon as that tensor's gradient is complete: it writes
    c_j·∂L/∂φ_i into the router and passes on a zero that holds no memory; the router keeps the gradient until
    the next ``curve_point`` call (as a plain step keeps ``.grad``), so it is never freed with all the others at
    the end of backward."""

    @staticmethod
    def forward(ctx, chunk, router, index):
        ctx.router, ctx.index = router, index
        return chunk.view_as(chunk)

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():  # backward(create_graph=True): _CurvePoint combines the gradients differentiably
            return grad, None, None
        ctx.router.write(ctx.index, grad)
        return grad.new_zeros(()).expand(grad.shape), None, None


class _CurvePoint(torch.autograd.Function):
    """Outputs the flat chunks of φ, one per tensor (trainable tensors first); only those get gradients.

    The trainable chunks reach the network through ``_RoutedChunk``, which has already written the bends'
    gradient into ``router`` when this backward runs; this backward hands it to autograd (and so to
    ``bends.grad``, DDP's reducer and any hook on ``bends``)."""

    @staticmethod
    def forward(ctx, coefficients, endpoints, bends, frozen_bends, train_sizes, frozen_sizes, phi_buffer, router):
        with torch.no_grad():
            out = None if phi_buffer is None else phi_buffer.take((endpoints.shape[1],), endpoints.dtype, endpoints.device)
            out = combine_flat(coefficients, endpoints, bends, frozen_bends, out=out)
        chunks = out.split(list(train_sizes) + list(frozen_sizes))
        del out  # only the chunks hold φ now: once they (and any graph saving them) are gone, phi_buffer hands it out again
        ctx.mark_non_differentiable(*chunks[len(train_sizes):])
        ctx.set_materialize_grads(False)  # a tensor no gradient reached arrives as None (its _RoutedChunk never ran)
        ctx.save_for_backward(coefficients[1:-1])
        ctx.train_sizes = tuple(train_sizes)
        ctx.router = router
        return chunks

    @staticmethod
    def backward(ctx, *grads):
        if not ctx.needs_input_grad[2]:
            return (None,) * 8
        (inner,) = ctx.saved_tensors
        sizes = ctx.train_sizes
        if torch.is_grad_enabled():  # backward(create_graph=True), e.g. for Hessian-vector products: stay differentiable
            flat = torch.cat([inner.new_zeros(size) if grad is None else grad.reshape(-1) for grad, size in zip(grads[: len(sizes)], sizes)])
            return None, None, inner[:, None] * flat[None, :], None, None, None, None, None
        router = ctx.router
        for index, grad in enumerate(grads[: len(sizes)]):
            if grad is None:  # no gradient reached this tensor, so its _RoutedChunk never ran
                router.write(index, None)
        # an alias nothing else holds, so that AccumulateGrad adopts it as ``bends.grad`` instead of copying it;
        # while ``.grad`` (or a caller of autograd.grad) holds it, grad_buffer hands out new memory
        return None, None, router.hand_over(), None, None, None, None, None


def curve_point(
    coefficients: Tensor,
    endpoints: Tensor,
    bends: Tensor,
    frozen_bends: Tensor,
    train_sizes: Sequence[int],
    frozen_sizes: Sequence[int],
    phi_buffer: ReusableBuffer | None = None,
    grad_buffer: ReusableBuffer | None = None,
) -> tuple[Tensor, ...]:
    """φ as flat chunks (sizes ``train_sizes`` then ``frozen_sizes``), differentiable w.r.t. ``bends`` only.

    With ``phi_buffer`` / ``grad_buffer`` φ and the bends' first-order gradient are written into
    memory reused across calls while nothing else references it (``ReusableBuffer``); the values are
    the same either way."""
    if grad_buffer is not None:
        grad_buffer.release()  # the per-tensor gradients of the previous backward, as a plain step's zero_grad frees .grad
    router = _GradientRouter(coefficients[1:-1].detach(), tuple(train_sizes), grad_buffer)
    chunks = _CurvePoint.apply(coefficients, endpoints, bends, frozen_bends, tuple(train_sizes), tuple(frozen_sizes), phi_buffer, router)
    if not (torch.is_grad_enabled() and bends.requires_grad):
        return chunks
    routed = tuple(_RoutedChunk.apply(chunk, router, index) for index, chunk in enumerate(chunks[: len(train_sizes)]))
    return routed + tuple(chunks[len(train_sizes):])
