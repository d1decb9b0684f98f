"""A PNG chart of a localization (optional: needs matplotlib)."""

from __future__ import annotations

import math
from pathlib import Path

from .errors import InputError, show
from .localize import Localization


def write_stage_chart(localization: Localization, path: str | Path, title: str) -> Path:
    """Relative L2 error per stage, log scale, the failing stages in red."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError(f"chart {show(path)}: matplotlib is not installed (pip install matplotlib)") from None
    path = Path(path)
    names = [s.name for s in localization.stages]
    values = [
        s.rel_l2_error if math.isfinite(s.rel_l2_error) and s.rel_l2_error > 0 else 1e-12 for s in localization.stages
    ]
    colours = ["#c0392b" if s.status == "fail" else "#2e86c1" for s in localization.stages]
    fig, ax = plt.subplots(figsize=(max(8, len(names) * 0.22), 4.5))
    ax.bar(range(len(names)), values, color=colours)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=6)
    ax.set_ylabel("relative L2 error vs reference\n(exact agreement drawn at 1e-12)")
    first = localization.first_failing
    ax.set_title(f"{title}: first diverging stage {first}" if first else f"{title}: no stage breaks the profile")
    fig.tight_layout()
    try:
        fig.savefig(path, format="png", dpi=120)
    except OSError as exc:
        raise InputError(f"chart {show(path)}: cannot write it ({exc.strerror})") from None
    finally:
        plt.close(fig)
    return path
