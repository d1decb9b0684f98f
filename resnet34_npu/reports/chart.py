"""A PNG chart of a localization (optional: needs matplotlib): written to a file by
``localize --png``, embedded in the HTML report (``report html``)."""

from __future__ import annotations

import io
import math
from pathlib import Path

from resnet34_npu.core.errors import InputError, show
from resnet34_npu.core.files import write_atomic
from resnet34_npu.judge.localize import Localization

MATPLOTLIB_MISSING = "matplotlib is not installed (pip install matplotlib)"


def have_matplotlib() -> bool:
    """Whether charts can be drawn here."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def stage_chart_png(localization: Localization, title: str) -> bytes | None:
    """Relative L2 error per stage, log scale, the failing stages in red, as PNG bytes; None
    when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = [s.name for s in localization.stages]
    values = [
        s.rel_l2_error if math.isfinite(s.rel_l2_error) and s.rel_l2_error > 0 else 1e-12 for s in localization.stages
    ]
    colours = ["#c0392b" if s.status == "fail" else "#2e86c1" for s in localization.stages]
    fig, ax = plt.subplots(figsize=(max(8, len(names) * 0.22), 4.5))
    try:
        ax.bar(range(len(names)), values, color=colours)
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=90, fontsize=6)
        ax.set_ylabel("relative L2 error vs reference\n(exact agreement drawn at 1e-12)")
        first = localization.first_failing
        ax.set_title(f"{title}: first diverging stage {first}" if first else f"{title}: no stage breaks the profile")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def write_stage_chart(localization: Localization, path: str | Path, title: str) -> Path:
    """:func:`stage_chart_png` written to ``path`` atomically."""
    path = Path(path)
    png = stage_chart_png(localization, title)
    if png is None:
        raise InputError(f"chart {show(path)}: {MATPLOTLIB_MISSING}")
    write_atomic(path, lambda handle: handle.write(png), what="chart", prefix=f".{path.name}.")
    return path
