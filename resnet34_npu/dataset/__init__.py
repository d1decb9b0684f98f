"""Dataset scale: sources and loaders, stored reference files, dataset-scale agreement runs,
torchrun ranks.
"""

from __future__ import annotations

import os


def default_workers() -> int:
    """DataLoader workers when not told: the cores but one, shared by the ranks of this host
    under torchrun (``LOCAL_WORLD_SIZE``), at least 1 and at most 8 a rank."""
    ranks = os.environ.get("LOCAL_WORLD_SIZE", "1")
    ranks = int(ranks) if ranks.isdigit() and int(ranks) > 0 else 1
    return max(1, min(8, ((os.cpu_count() or 2) - 1) // ranks))
