"""Memory the curve reuses from step to step (φ and the bends' gradient, ``combination.ReusableBuffer``):
reused only while nothing else references it, so every result is bit for bit that of fresh memory."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from unlearn_mc.curves import Curve
from unlearn_mc.curves.combination import ReusableBuffer
from unlearn_mc.models import SmallCNN

pytestmark = pytest.mark.numerics


def _net(seed: int, dtype=torch.float32) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(in_channels=1, num_classes=3, width=4).to(dtype)


def _pair(dtype=torch.float32, num_bends: int = 3) -> tuple[Curve, Curve]:
    """Two identical curves (plain ``Curve`` objects, as a ``CurveModule`` trains them); the second never reuses memory."""
    curves = [Curve(_net(0, dtype), _net(1, dtype), _net(2, dtype), "bezier", num_bends).to(dtype).train() for _ in range(2)]
    curves[1]._phi_buffer = curves[1]._grad_buffer = None
    return curves[0], curves[1]


def _batch(seed: int, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(6, 1, 8, 8, generator=generator, dtype=dtype), torch.randint(0, 3, (6,), generator=generator)


def _first_data_ptr(curve: Curve, t: float) -> int:
    return curve.point_chunks(curve.coefficients(t))[0].data_ptr()


def test_successive_sgd_steps_reuse_memory_and_match_fresh_memory_bit_for_bit():
    reusing, fresh = _pair()
    optimizers = [torch.optim.SGD(curve.parameters(), lr=0.1, momentum=0.9) for curve in (reusing, fresh)]
    pointers = []
    for step, t in enumerate((0.3, 0.7, 0.45)):
        inputs, targets = _batch(step)
        for curve, optimizer in zip((reusing, fresh), optimizers):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(curve(inputs, t=t), targets).backward()
            if curve is reusing:
                pointers.append((curve._phi_buffer._tensor.data_ptr(), curve.bends.grad.data_ptr()))
        assert torch.equal(reusing.bends.grad, fresh.bends.grad)
        for optimizer in optimizers:
            optimizer.step()
        assert torch.equal(reusing.bends, fresh.bends)
    assert len(set(pointers)) == 1  # the same memory for φ and for the gradient at every step
    assert pointers[0][0] != pointers[0][1]


def test_two_forwards_before_one_backward_keep_the_first_point():
    reusing, fresh = _pair()
    inputs, targets = _batch(0)
    for curve in (reusing, fresh):
        loss = F.cross_entropy(curve(inputs, t=0.2), targets) + F.cross_entropy(curve(inputs, t=0.9), targets)
        loss.backward()
    assert torch.equal(reusing.bends.grad, fresh.bends.grad)


def test_points_held_by_the_caller_are_never_overwritten():
    curve, _ = _pair()
    with torch.no_grad():
        first = curve.parameters_at(0.25)
        kept = {name: value.clone() for name, value in first.items()}
        second = curve.parameters_at(0.75)
    assert all(torch.equal(first[name], kept[name]) for name in kept)
    assert not all(torch.equal(first[name], second[name]) for name in kept)
    del first, second
    address = _first_data_ptr(curve, 0.5)
    assert _first_data_ptr(curve, 0.6) == address  # nothing holds it any more: reused


def test_gradients_kept_by_the_caller_or_accumulated_stay_exact():
    reusing, fresh = _pair()
    kept = []
    for curve in (reusing, fresh):
        grads = []
        for step, t in enumerate((0.3, 0.6)):
            inputs, targets = _batch(step)
            grads.append(torch.autograd.grad(F.cross_entropy(curve(inputs, t=t), targets), curve.bends)[0])
        kept.append(grads)
    assert all(torch.equal(a, b) for a, b in zip(*kept))
    assert kept[0][0].data_ptr() != kept[0][1].data_ptr()
    for curve in (reusing, fresh):  # accumulation into a kept .grad over several backwards
        curve.zero_grad(set_to_none=False)
        for step, t in enumerate((0.1, 0.5, 0.8)):
            inputs, targets = _batch(step)
            F.cross_entropy(curve(inputs, t=t), targets).backward()
    assert torch.equal(reusing.bends.grad, fresh.bends.grad)


def test_repeated_hessian_vector_products_match_fresh_memory():
    reusing, fresh = _pair(torch.float64, num_bends=4)
    vector = torch.randn(reusing.bends.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    results = []
    for curve in (reusing, fresh):
        products = []
        for step, t in enumerate((0.3, 0.3, 0.6)):
            inputs, targets = _batch(step, torch.float64)
            gradient = torch.autograd.grad(F.cross_entropy(curve(inputs, t=t), targets), curve.bends, create_graph=True)[0]
            products.append((gradient.detach(), torch.autograd.grad((gradient * vector).sum(), curve.bends)[0]))
        results.append(products)
    for (g1, h1), (g2, h2) in zip(*results):
        assert torch.equal(g1, g2) and torch.equal(h1, h2)
    assert results[0][0][1].abs().sum() > 0


def test_copies_and_dtype_changes_get_their_own_memory():
    curve, _ = _pair()
    inputs, targets = _batch(0)
    F.cross_entropy(curve(inputs, t=0.4), targets).backward()
    twin = copy.deepcopy(curve)
    assert twin._phi_buffer._tensor is None and twin._grad_buffer._tensor is None
    curve.double()
    F.cross_entropy(curve(inputs.double(), t=0.4), targets).backward()
    assert curve._phi_buffer._tensor.dtype == torch.float64


def test_reusable_buffer_hands_out_memory_only_while_unreferenced():
    buffer, cpu = ReusableBuffer(), torch.device("cpu")
    first = buffer.take((5,), torch.float32, cpu)
    view = first[:2]
    del first
    second = buffer.take((5,), torch.float32, cpu)
    assert second.data_ptr() != view.data_ptr()  # a view of the first is still held
    third = buffer.take((5,), torch.float32, cpu)
    assert third.data_ptr() != second.data_ptr()  # the second is still held
    address = third.data_ptr()
    del second, third
    assert buffer.take((5,), torch.float32, cpu).data_ptr() == address  # nothing holds it: reused
    assert buffer.take((6,), torch.float32, cpu).shape == (6,)
    assert buffer.take((6,), torch.float64, cpu).dtype == torch.float64


def test_a_point_evaluated_in_inference_mode_does_not_block_training_afterwards():
    """``trainer.validate`` runs the curve under ``torch.inference_mode``; memory kept from then is an inference tensor,
    which autograd cannot write into outside it, so training (or any differentiable call) afterwards gets fresh memory."""
    reusing, fresh = _pair()
    inputs, targets = _batch(0)
    with torch.inference_mode():
        assert torch.equal(reusing(inputs, t=0.3), fresh(inputs, t=0.3))
    assert reusing._phi_buffer._tensor.is_inference()
    for curve in (reusing, fresh):
        F.cross_entropy(curve(inputs, t=0.3), targets).backward()
    assert torch.equal(reusing.bends.grad, fresh.bends.grad)
    assert not reusing._phi_buffer._tensor.is_inference()


def test_a_loss_reaching_only_some_tensors_gives_c_j_times_its_gradient_and_zeros_elsewhere():
    """Each tensor's gradient is routed into the bends' gradient by its own node; tensors no gradient reaches
    (their node never runs) get zero columns. Exact: ∂/∂θ_j of Σ w·φ_i is c_j(t)·w, one fp32 product."""
    reusing, fresh = _pair(num_bends=4)
    for curve in (reusing, fresh):
        coefficients = curve.coefficients(0.35)
        chunks = curve.point_chunks(coefficients)
        weights = [torch.randn(chunk.shape, generator=torch.Generator().manual_seed(index)) for index, chunk in enumerate(chunks)]
        used = (0, 2)
        loss = sum((chunks[index] * weights[index]).sum() for index in used)
        (grad,) = torch.autograd.grad(loss, curve.bends)
        offsets = [0]
        for size in curve.layout.train_sizes:
            offsets.append(offsets[-1] + size)
        for row, coefficient in enumerate(coefficients[1:-1]):
            for index in range(len(curve.layout.train_sizes)):
                columns = grad[row, offsets[index] : offsets[index + 1]]
                expected = weights[index] * coefficient if index in used else torch.zeros_like(columns)
                assert torch.equal(columns, expected.reshape(-1)), (row, index)


def test_backward_twice_through_one_retained_graph_accumulates_exactly():
    reusing, fresh = _pair()
    grads = []
    for curve in (reusing, fresh):
        inputs, targets = _batch(0)
        loss = F.cross_entropy(curve(inputs, t=0.4), targets)
        (once,) = torch.autograd.grad(loss, curve.bends, retain_graph=True)
        loss.backward(retain_graph=True)
        loss.backward()
        assert torch.equal(curve.bends.grad, once + once)
        grads.append(curve.bends.grad)
    assert torch.equal(*grads)
