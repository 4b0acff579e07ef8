"""Building objects from ``class_path`` / ``init_args`` mappings outside LightningCLI."""

from __future__ import annotations

import importlib
from typing import Any

from unlearn_mc.errors import UnlearnMCError


def instantiate(spec: Any) -> Any:
    """``class_path(**init_args)``, recursively for nested specs; other values are returned unchanged."""
    if isinstance(spec, dict) and "class_path" in spec:
        module_name, _, class_name = spec["class_path"].rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError, ValueError):
            raise UnlearnMCError(f"class_path {spec['class_path']!r} cannot be imported; check the module and class name.") from None
        return cls(**{key: instantiate(value) for key, value in (spec.get("init_args") or {}).items()})
    if isinstance(spec, dict):
        return {key: instantiate(value) for key, value in spec.items()}
    if isinstance(spec, list):
        return [instantiate(value) for value in spec]
    return spec
