"""The one error type for bad input: paths, images, weights, devices and options."""

from __future__ import annotations


class InputError(ValueError):
    """A user error, reported as one line: the CLI exits 2, the pytest plugin raises
    ``pytest.UsageError``. The message names the offending input and the reason."""
