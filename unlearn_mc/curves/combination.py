"""φ(t) = Σ_j c_j(t)·θ_j over flat control points, in few memory passes, with an exact hand-written gradient.

The control points are rows of flat fp32 matrices: ``endpoints`` (2, P), ``bends`` (B, P_train),
the trainable columns of the bends, and ``frozen_bends`` (B, P_frozen), the rest. One
``vecmat`` combines the endpoints, then two in-place ``addmv`` add the bends: three BLAS calls
whatever the number of tensors. The gradient reaching the bends is ∂L/∂θ_j = c_j(t)·∂L/∂φ; it is
written straight into one (B, P_train) tensor from the per-tensor gradients, instead of
concatenating them first (what autograd's ``split`` would do), which saves two passes over P.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def combine_flat(coefficients: Tensor, endpoints: Tensor, bends: Tensor, frozen_bends: Tensor) -> Tensor:
    """The flat vector φ = c_0·θ_0 + c_{n−1}·θ_{n−1} + Σ_{j=1}^{n−2} c_j·θ_j (length P_train + P_frozen), no autograd."""
    train_size = bends.shape[1]
    inner = coefficients[1:-1]
    out = torch.stack([coefficients[0], coefficients[-1]]) @ endpoints
    if frozen_bends.numel():
        out[train_size:].addmv_(frozen_bends.t(), inner)
    if bends.numel():
        out[:train_size].addmv_(bends.t(), inner)
    return out


class _CurvePoint(torch.autograd.Function):
    """Outputs the flat chunks of φ, one per tensor (trainable tensors first); only those get gradients."""

    @staticmethod
    def forward(ctx, coefficients, endpoints, bends, frozen_bends, train_sizes, frozen_sizes):
        with torch.no_grad():
            out = combine_flat(coefficients, endpoints, bends, frozen_bends)
        chunks = out.split(list(train_sizes) + list(frozen_sizes))
        ctx.mark_non_differentiable(*chunks[len(train_sizes):])
        ctx.save_for_backward(coefficients[1:-1])
        ctx.train_sizes = tuple(train_sizes)
        return chunks

    @staticmethod
    def backward(ctx, *grads):
        if not ctx.needs_input_grad[2]:
            return None, None, None, None, None, None
        (inner,) = ctx.saved_tensors
        sizes = ctx.train_sizes
        if torch.is_grad_enabled():  # backward(create_graph=True), e.g. for Hessian-vector products: stay differentiable
            flat = torch.cat([inner.new_zeros(size) if grad is None else grad.reshape(-1) for grad, size in zip(grads[: len(sizes)], sizes)])
            return None, None, inner[:, None] * flat[None, :], None, None, None
        grad_bends = inner.new_empty(len(inner), sum(sizes))
        for row, coefficient in enumerate(inner):
            offset = 0
            for grad, size in zip(grads[: len(sizes)], sizes):
                target = grad_bends[row, offset : offset + size]
                if grad is None:
                    target.zero_()
                else:
                    torch.mul(grad.reshape(-1), coefficient, out=target)
                offset += size
        return None, None, grad_bends, None, None, None


def curve_point(
    coefficients: Tensor, endpoints: Tensor, bends: Tensor, frozen_bends: Tensor, train_sizes: Sequence[int], frozen_sizes: Sequence[int]
) -> tuple[Tensor, ...]:
    """φ as flat chunks (sizes ``train_sizes`` then ``frozen_sizes``), differentiable w.r.t. ``bends`` only."""
    return _CurvePoint.apply(coefficients, endpoints, bends, frozen_bends, tuple(train_sizes), tuple(frozen_sizes))
