"""The one exception type for bad user input.

The CLI turns it into a single sentence on stderr and exit status 2, so every message
raised with it should name the offending value and say what would be valid.
"""

from __future__ import annotations


class UnlearnMCError(ValueError):
    """A configuration, file or argument the user supplied cannot be used."""

    latest: UnlearnMCError | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        # jsonargparse re-raises errors from class constructors as a new ValueError whose text
        # embeds ours; remembering the latest lets the CLI report our sentence alone.
        UnlearnMCError.latest = self


def find_user_error(error: BaseException) -> UnlearnMCError | None:
    """The ``UnlearnMCError`` behind ``error``: itself, one in its cause/context chain, or the
    latest one raised whose message ``error``'s text embeds (as jsonargparse wraps them)."""
    seen = error
    while seen is not None:
        if isinstance(seen, UnlearnMCError):
            return seen
        seen = seen.__cause__ or seen.__context__
    latest = UnlearnMCError.latest
    if latest is not None and str(latest) in str(error):
        return latest
    return None
