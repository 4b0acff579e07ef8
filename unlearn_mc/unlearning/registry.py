"""The registry of the built-in unlearning methods: name → class, the one table that study specs and curve objectives read."""

from __future__ import annotations

from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.unlearning.bad_teacher import BadTeacher
from unlearn_mc.unlearning.base import UnlearningModule
from unlearn_mc.unlearning.finetune import FineTune
from unlearn_mc.unlearning.grad_ascent import GradientAscent
from unlearn_mc.unlearning.grad_diff import GradDiff
from unlearn_mc.unlearning.kl_retain import KLRetain
from unlearn_mc.unlearning.l1_sparse import L1Sparse
from unlearn_mc.unlearning.npo import NPO
from unlearn_mc.unlearning.random_label import RandomLabel
from unlearn_mc.unlearning.salun import SalUn
from unlearn_mc.unlearning.scrub import SCRUB

# a method is named by its class name, which is also its name in unlearn_mc.unlearning (class_path unlearn_mc.unlearning.<name>)
METHODS: dict[str, type[UnlearningModule]] = {
    cls.__name__: cls for cls in (BadTeacher, FineTune, GradientAscent, GradDiff, KLRetain, L1Sparse, NPO, RandomLabel, SalUn, SCRUB)
}
METHOD_NAMES: tuple[str, ...] = tuple(sorted(METHODS))


def method_class(name: str, where: str | None = None) -> type[UnlearningModule]:
    """The built-in method called ``name`` (e.g. ``"GradDiff"``); an unknown name is refused in one sentence
    naming it (and ``where`` it was given, e.g. ``"methods.gd"``) and the valid names."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        place = f" in {where}" if where else ""
        raise UnlearnMCError(f"unknown method {name!r}{place}; choose one of {', '.join(METHOD_NAMES)} or give a dotted class path.") from None
