"""``torch_npu._C``: the option store behind ``torch.npu.set_option``."""

from __future__ import annotations

_OPTIONS: dict[str, str] = {}


def _npu_getOption(name: str) -> bytes | None:  # noqa: N802 - torch_npu's own name
    value = _OPTIONS.get(name)
    return None if value is None else value.encode()
