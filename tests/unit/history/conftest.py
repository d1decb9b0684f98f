"""Every history record the tests of this folder write matches its JSON Schema (see written.py)."""

from __future__ import annotations

from tests.unit.history.written import every_written_record_matches_the_schema  # noqa: F401 (autouse)
