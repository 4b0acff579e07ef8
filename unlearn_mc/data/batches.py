"""Normalising a training batch into ``{stream: (inputs, targets)}``, and a batch of any shape into inputs and labels.

A batch is a tuple ``(x, y, …)`` (the inputs are ``x``, the labels ``y``, as always), a tuple
whose labels sit at position ``label_key`` (every other element is a positional input, e.g.
``(x_1, x_2, y)`` with ``label_key=-1`` calls ``net(x_1, x_2)``) or a mapping such as
``{"input_ids": …, "attention_mask": …, "labels": …}`` (the network is called with the other
entries as keyword arguments). Inputs other than a single tensor travel as ``ModelInputs``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from unlearn_mc.data.padding import cat_padded
from unlearn_mc.errors import UnlearnMCError

DEFAULT_LABEL_KEYS = ("labels", "label")
Forward = Callable[[Tensor], Tensor]  # a model as a function: inputs -> logits (a network, a curve's φ(t), a frozen copy)
Batches = Mapping[str, tuple[Tensor, Tensor]]  # one batch per stream, {stream: (inputs, targets)}, as stream_batches gives


@dataclass
class ModelInputs:
    """Positional and keyword inputs of one network call: ``net(*args, **kwargs)``."""

    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def _map(self, function: Callable[[Any], Any]) -> ModelInputs:
        apply = lambda value: function(value) if isinstance(value, Tensor) else value  # noqa: E731
        return ModelInputs(tuple(apply(a) for a in self.args), {k: apply(v) for k, v in self.kwargs.items()})

    def to(self, *args, **kwargs) -> ModelInputs:
        """Every tensor moved as ``Tensor.to(*args, **kwargs)`` does."""
        return self._map(lambda tensor: tensor.to(*args, **kwargs))

    def tensors(self) -> list[Tensor]:
        return [value for value in (*self.args, *self.kwargs.values()) if isinstance(value, Tensor)]

    def __len__(self) -> int:
        """The batch size: the length of the first tensor's first dimension."""
        tensors = self.tensors()
        if not tensors:
            raise UnlearnMCError("these inputs hold no tensor, so they have no batch size.")
        return len(tensors[0])


def call_with(function: Callable[..., Any], inputs: Tensor | ModelInputs) -> Any:
    """``function(x)`` for a tensor, ``function(*args, **kwargs)`` for ``ModelInputs``."""
    if isinstance(inputs, ModelInputs):
        return function(*inputs.args, **inputs.kwargs)
    return function(inputs)


def cat_inputs(inputs: Sequence[Tensor | ModelInputs]) -> Tensor | ModelInputs:
    """Several batches of inputs concatenated along dimension 0 (tensor by tensor for ``ModelInputs``)."""
    if all(isinstance(item, Tensor) for item in inputs):
        return cat_padded(inputs)
    if not all(isinstance(item, ModelInputs) for item in inputs):
        raise UnlearnMCError("cannot concatenate a tensor batch with a batch of several inputs; serve every stream in the same form.")
    first = inputs[0]

    def joined(values: list[Any]) -> Any:
        return cat_padded(values) if isinstance(values[0], Tensor) else values[0]

    args = tuple(joined([item.args[k] for item in inputs]) for k in range(len(first.args)))
    kwargs = {key: joined([item.kwargs[key] for item in inputs]) for key in first.kwargs}
    return ModelInputs(args, kwargs)


def split_batch(batch, label_key: str | int | None = None) -> tuple[Tensor | ModelInputs, Tensor]:
    """(inputs, labels) of one batch.

    - mapping: the labels are ``batch[label_key]`` (a string; default: the first of ``labels``,
      ``label`` present), the inputs the other entries as keyword arguments;
    - tuple or list: without an integer ``label_key`` the inputs are element 0 and the labels element 1
      (further elements are ignored); with an integer ``label_key`` the labels are that element
      and the inputs all the others, positionally. A single input is returned as the tensor itself.
    """
    if isinstance(batch, Mapping):
        if not isinstance(label_key, str):
            label_key = next((key for key in DEFAULT_LABEL_KEYS if key in batch), None)
        if label_key is None or label_key not in batch:
            wanted = repr(label_key) if label_key is not None else " or ".join(map(repr, DEFAULT_LABEL_KEYS))
            raise UnlearnMCError(f"the batch has no labels under {wanted}; it has keys {list(batch)}; set the curve's label_key.")
        return ModelInputs((), {key: value for key, value in batch.items() if key != label_key}), batch[label_key]
    if isinstance(batch, (tuple, list)):
        if len(batch) < 2:
            raise UnlearnMCError(f"a batch of {len(batch)} element(s) has no labels; serve (inputs, labels) or a dict with a label key.")
        if not isinstance(label_key, int) or isinstance(label_key, bool):
            return batch[0], batch[1]
        index = label_key
        if not -len(batch) <= index < len(batch):
            raise UnlearnMCError(f"label_key={label_key!r} is not a position in a batch of {len(batch)} elements; use an integer index.")
        index %= len(batch)
        inputs = tuple(value for position, value in enumerate(batch) if position != index)
        return (inputs[0] if len(inputs) == 1 else ModelInputs(inputs, {})), batch[index]
    raise UnlearnMCError(f"a batch of type {type(batch).__name__} cannot be split into inputs and labels; serve a tuple or a dict.")


def stream_batches(batch, streams: Sequence[str], label_key: str | int | None = None) -> dict[str, tuple[Tensor | ModelInputs, Tensor]]:
    """A ``CombinedLoader`` dict batch (keyed by stream) gives each stream's batch split by ``split_batch``;
    any other batch is filed under the module's single declared stream, so a user's own DataModule
    may serve either. A plain ``(x, y)`` batch gives ``(x, y)``."""
    if isinstance(batch, Mapping) and (any(name in batch for name in streams) or len(streams) != 1):
        missing = [name for name in streams if name not in batch]
        if missing:
            raise UnlearnMCError(f"the training batch lacks stream(s) {missing}; the DataModule must serve {list(streams)}.")
        return {name: split_batch(batch[name], label_key) for name in batch}
    if len(streams) != 1:
        raise UnlearnMCError(f"this module needs the streams {list(streams)} as a dict batch, but the DataModule served a single (x, y) batch.")
    return {streams[0]: split_batch(batch, label_key)}
