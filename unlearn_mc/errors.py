"""The one exception type for bad user input.

The CLI turns it into a single sentence on stderr and exit status 2, so every message
raised with it should name the offending value and say what would be valid.
"""


class UnlearnMCError(ValueError):
    """A configuration, file or argument the user supplied cannot be used."""
