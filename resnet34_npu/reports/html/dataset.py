"""The page's dataset section (``compare --dataset``): per dataset-scale target its verdict and
failure lines, the distribution of the per-image errors, accuracy and MLPerf's rule, a row per
card, the worst images with the command that localises each, and the unreadable images."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resnet34_npu.reports.html.nodes import Block, _badge, _code, _h, _lines, _num, _status_cell, _summary, _t, _table


def _dataset_line(dataset: Any) -> str:
    if not isinstance(dataset, dict):
        return ""
    return (
        f"{dataset.get('root', '?')}: {dataset.get('images', '?')} images ({dataset.get('layout', '?')}"
        + (", labelled" if dataset.get("labelled") else "")
        + ")"
    )


def _datasets(doc: Mapping[str, Any], targets: list[dict[str, Any]]) -> list[Block]:
    """Per dataset-scale target (``compare --dataset``): its verdict and failure lines, the
    distribution of the per-image errors, accuracy and MLPerf's rule, a row per card and the
    worst images with the command that localises each."""
    parts = []
    for target in targets:
        s = target["dataset"]
        rel, cos = s.get("rel_l2") or {}, s.get("cosine") or {}
        statuses = ", ".join(f"{k} {v}" for k, v in (s.get("statuses") or {}).items())
        pairs = [
            ("compared", _t(f"{s.get('compared', '?')} of {s.get('images', '?')} images; {statuses}")),
            ("missing", _t(s.get("missing")) if s.get("missing") else ""),
            ("NaN or Inf", _t(s.get("nonfinite")) if s.get("nonfinite") else ""),
            (
                "rel L2",
                f"median {_num(rel.get('median'), '.3e')}, p99 {_num(rel.get('p99'), '.3e')}, "
                f"max {_num(rel.get('max'), '.3e')}",
            ),
            (
                "cosine",
                f"median {_num(cos.get('median'), '.8f')}, p1 {_num(cos.get('p1'), '.8f')}, "
                f"min {_num(cos.get('min'), '.8f')}",
            ),
            ("top-1 agreement", _num(s.get("top1_agreement"), ".5g")),
        ]
        acc = s.get("accuracy")
        if isinstance(acc, dict):
            rule = {True: "PASS", False: "FAIL", None: "not applicable"}.get(acc.get("mlperf_pass"), "?")
            pairs.append(
                (
                    "accuracy",
                    _t(
                        f"{acc.get('images')} labelled images: reference top-1 {_num(acc.get('reference_top1'), '.5g')}"
                        f", top-5 {_num(acc.get('reference_top5'), '.5g')}; target top-1 "
                        f"{_num(acc.get('target_top1'), '.5g')}, top-5 {_num(acc.get('target_top5'), '.5g')}; "
                        f"MLPerf rule (>= {acc.get('mlperf_fraction')} x the reference's top-1): {rule}"
                    ),
                )
            )
        cards = [
            [
                _t(c.get("rank")),
                _t(c.get("card")),
                _status_cell(c.get("verdict")),
                _t(c.get("images")),
                _t(c.get("worst_image") or "-"),
                _num(c.get("worst_rel_l2"), ".3e"),
                _num(c.get("images_per_s"), ".1f"),
                _t(c.get("error") or ""),
            ]
            for c in s.get("cards") or []
            if isinstance(c, dict)
        ]
        worst = [
            [
                _t(w.get("path")),
                _t(w.get("card")),
                _badge(w.get("status")),
                _num(w.get("rel_l2"), ".3e"),
                _code(w.get("localize")),
            ]
            for w in s.get("worst") or []
            if isinstance(w, dict)
        ]
        unreadable = [
            [_t(u.get("path")), _t(u.get("reason"))] for u in s.get("unreadable") or [] if isinstance(u, dict)
        ]
        parts += [_h(3, f"{_t(target.get('name', '?'))} ", _badge(s.get("verdict"))), _lines(s.get("failures") or [])]
        parts.append(_summary(pairs))
        if cards:
            parts.append(
                _table(["rank", "card", "verdict", "images", "worst image", "rel L2", "images/s", "error"], cards)
            )
        if worst:
            parts += [_h(4, "Worst images"), _table(["image", "card", "verdict", "rel L2", "localise it with"], worst)]
        if unreadable:
            parts += [_h(4, "Unreadable images"), _table(["image", "reason"], unreadable)]
    return parts
