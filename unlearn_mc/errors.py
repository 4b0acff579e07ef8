"""The one exception type for bad user input.

The CLI turns it into a single sentence on stderr and exit status 2, so every message
raised with it should name the offending value and say what would be valid.
"""

from __future__ import annotations

import re


class UnlearnMCError(ValueError):
    """A configuration, file or argument the user supplied cannot be used."""



class NoFeasibleSetting(RuntimeError):
    """A calibration search finished, but no trial kept the retain floor (its files are written; there is no setting to use)."""


def find_user_error(error: BaseException) -> UnlearnMCError | None:
    """The ``UnlearnMCError`` behind ``error``: itself or one in its cause/context chain (jsonargparse re-raises a
    constructor's error as a new ValueError raised while handling ours, so ours is its ``__context__``)."""
    seen = error
    while seen is not None:
        if isinstance(seen, UnlearnMCError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


_SENTENCE_END = re.compile(r"([.!?]+) +([A-Z])(?=[a-z])")


def one_sentence(text: str) -> str:
    """Another library's message as one sentence: its lines joined, code quotes (backticks) dropped, and each
    further sentence joined to the first by a semicolon ("… or -1. You passed in -5." → "… or -1; you passed in -5.")."""
    flat = " ".join(line.strip() for line in str(text).splitlines() if line.strip()).replace("`", "")
    flat = _SENTENCE_END.sub(lambda match: f"{match[1] if len(match[1]) > 1 else ''}; {match[2].lower()}", flat).strip()
    return flat if flat.endswith((".", "!", "?")) else f"{flat}."


_PARSER_KEY = re.compile(r'^Parser key "([^"]+)":?\s*(.*)$')
_CLASS_PATH = re.compile(r"^Problem with given class_path '([^']+)':\s*(.*)$")
_NOISE = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value", "Expected a <class 'NoneType'>")


def describe_config_error(error: BaseException) -> str:
    """One sentence for a config the parser (jsonargparse) rejected: the dotted key and the innermost reason.

    jsonargparse nests its messages (``Parser key "model": … Problem with given class_path 'X': …
    Parser key "width": Expected a <class 'int'>``); this follows the first branch down to its reason,
    e.g. ``invalid config at model.net.width: Expected a <class 'int'>. Got value: x.``
    """
    keys: list[str] = []
    class_path: str | None = None
    reason = ""
    for raw in str(error).splitlines():
        line = raw.strip().removeprefix("- ").strip()
        if not line or line.startswith(_NOISE):
            continue
        key, problem = _PARSER_KEY.match(line), _CLASS_PATH.match(line)
        if key:
            keys.append(key[1])
            class_path, line = None, key[2]
        elif problem:
            class_path, line = problem[1], problem[2]
        if line and not (key and not key[2]) and not (problem and not problem[2]):
            reason = line
            break
    given = re.search(r"Given value: (.+)", str(error))
    if reason.startswith("Expected a") and "Got value" not in reason and given:
        reason = f"{reason}, got {given[1].strip()}"
    if class_path is not None:
        reason = f"class_path {class_path!r}: {reason}"
    where = f" at {'.'.join(keys)}" if keys else ""
    return f"invalid config{where}: {reason.rstrip('.') or str(error).strip()}."
