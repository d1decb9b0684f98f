"""The suite's error and warning types: one error for bad input, and the warnings a passing
test can carry (documented in the README)."""

from __future__ import annotations


class InputError(ValueError):
    """A user error, reported as one line: the CLI exits 2, the pytest plugin raises
    ``pytest.UsageError``. The message names the offending input and the reason."""


class NonDeterminismWarning(UserWarning):
    """Two runs of the same target on the same input differed."""


class RankingWarning(UserWarning):
    """A ranking (top-1, top-5) differs where the profile only warns about it."""
