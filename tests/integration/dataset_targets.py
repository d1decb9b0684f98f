"""Custom targets for the dataset-run tests (``tests.integration.dataset_targets:NAME``): the
real model, plus a way to count what it computes or to fail one rank of a torchrun job.

``build_custom`` checks a target with one call on a batch of zeros; these act only on real
images (a batch that is not all zeros)."""

from __future__ import annotations

import hashlib
import os
import time

import torch

#: counting() appends one line per image it computes (the SHA-256 of its input) to this file.
COUNT_FILE = "R34_TEST_COUNT_FILE"


def _real(batch: torch.Tensor) -> bool:
    return bool(batch.abs().sum() > 0)


class _Wrapped(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, what: str) -> None:
        super().__init__()
        self.model, self.what = model, what

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.model(batch)
        if not _real(batch):
            return out
        if self.what == "count":
            with open(os.environ[COUNT_FILE], "a") as handle:
                for image in batch:
                    handle.write(hashlib.sha256(image.numpy().tobytes()).hexdigest() + "\n")
        elif self.what == "rolled":
            out = torch.roll(out, 1, dims=1)  # every class index off by one: top-1 always wrong
        elif self.what == "second":
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 2:
                raise RuntimeError("device error on the second batch (injected)")
        elif os.environ.get("RANK") == "1" and self.what == "raise":
            raise RuntimeError("device error on this card (injected, rank 1)")
        elif os.environ.get("RANK") == "1" and self.what == "hang":
            time.sleep(3600)  # a card that never answers
        elif os.environ.get("RANK") == "1" and self.what == "exit3":
            os._exit(3)  # the rank ends as the CLI's crash exit does (3), not a verdict
        return out


def counting(model: torch.nn.Module) -> torch.nn.Module:
    return _Wrapped(model, "count")


def rolled(model: torch.nn.Module) -> torch.nn.Module:
    return _Wrapped(model, "rolled")


def raising_on_rank1(model: torch.nn.Module) -> torch.nn.Module:
    return _Wrapped(model, "raise")


def hanging_on_rank1(model: torch.nn.Module) -> torch.nn.Module:
    return _Wrapped(model, "hang")


def raising_on_second_batch(model: torch.nn.Module) -> torch.nn.Module:
    return _Wrapped(model, "second")


def exiting_3_on_rank1(model: torch.nn.Module) -> torch.nn.Module:
    return _Wrapped(model, "exit3")
