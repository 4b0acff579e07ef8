"""The signature of a method whose constructor declares only its own arguments and forwards the rest.

A method writes ``def __init__(self, *args, alpha: float = 0.99, **kwargs)`` and calls
``super().__init__(*args, **kwargs)``: the shared arguments (``net``, ``original``, …) are declared
once, on ``UnlearningModule``. LightningCLI (jsonargparse) finds the forwarded ones by reading the
``super().__init__`` call, and Lightning's ``save_hyperparameters`` collects them from every
``__init__`` on the way. ``forwarded_signature`` spells them out for Python's ``inspect.signature``
(``help(GradDiff)``, argument checks such as ``inspect.signature(cls).bind(...)``).
"""

from __future__ import annotations

import inspect

_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def forwarded_signature(cls: type) -> inspect.Signature:
    """The arguments ``cls(...)`` takes: those of its parent (the next class of its MRO), then its own.

    A class without an ``__init__`` of its own takes its parent's arguments. One whose ``__init__`` takes
    ``*args`` and/or ``**kwargs`` and its own arguments keyword-only forwards the rest to the parent: the
    parent's arguments keep their order and kind (positional ones stay positional only with ``*args``, and
    only up to the first one ``cls`` declares again, e.g. BadTeacher's ``optimizer``), then come ``cls``'s own,
    keyword-only. The parent's ``**`` catch-all (``UnlearningModule``'s ``**recorded``) is left out. Any other
    ``__init__`` (e.g. one with positional arguments of its own) is reported as Python sees it.
    """
    parent = inspect.signature(cls.__mro__[1])
    if "__init__" not in cls.__dict__:
        return parent.replace(parameters=[p for p in parent.parameters.values() if p.kind not in _VARIADIC])
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
    kinds = {p.kind for p in params}
    if inspect.Parameter.VAR_KEYWORD not in kinds or kinds & set(_POSITIONAL):
        return inspect.Signature(params)
    own = [p for p in params if p.kind not in _VARIADIC]
    names = {p.name for p in own}
    positional = inspect.Parameter.VAR_POSITIONAL in kinds
    inherited = []
    for p in parent.parameters.values():
        if p.kind in _VARIADIC:
            continue
        if p.name in names:
            positional = False  # a later positional argument of the parent would meet this one, given by keyword
            continue
        inherited.append(p if positional or p.kind not in _POSITIONAL else p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    return inspect.Signature(inherited + own)
