"""Normalising a training batch into ``{stream: (inputs, targets)}``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from unlearn_mc.errors import UnlearnMCError


def stream_batches(batch, streams: Sequence[str]) -> dict[str, tuple[Tensor, Tensor]]:
    """A ``CombinedLoader`` dict batch is returned as is; a plain ``(x, y)`` batch is filed
    under the module's single declared stream, so a user's own DataModule may serve either."""
    if isinstance(batch, Mapping):
        missing = [name for name in streams if name not in batch]
        if missing:
            raise UnlearnMCError(f"the training batch lacks stream(s) {missing}; the DataModule must serve {list(streams)}.")
        return {name: tuple(batch[name]) for name in batch}
    if len(streams) != 1:
        raise UnlearnMCError(f"this module needs the streams {list(streams)} as a dict batch, but the DataModule served a single (x, y) batch.")
    inputs, targets = batch[0], batch[1]
    return {streams[0]: (inputs, targets)}
