"""Fleet reports: the compare and acceptance reports of many hosts and cards merged into one
document (``report merge``), with failing cards first and slow cards named.

Every file is read with a size cap and validated against docs/report-schema.md before anything
is merged: a truncated, non-JSON, foreign or future-version file is refused with one line naming
it and the reason. Reports made with different weights, verdict profiles, suite versions or
schema versions are never pooled: each such set is a group of its own, with a line that says
what differs, and the fleet's verdict is the worst of every group's. Reports (or cards) of a run
that was interrupted or compared nothing stay in the document as such and never count as a pass.

Latency outliers are named, never failed: the rule and why it is this one are in
:mod:`.outliers`.

The package, one concept a module: :mod:`.model` (the document's pieces, as data), :mod:`.read`
(finding, reading and validating the hosts' reports), :mod:`.outliers` (the latency-outlier
rule), :mod:`.merging` (grouping, scoring, verdicts, notes) and :mod:`.text` (what the CLI
prints). Every name is re-exported here: ``from resnet34_npu.reports.fleet import merge`` and
``fleet.merge(...)`` are the public way in.
"""

from resnet34_npu.reports.fleet.merging import merge, merge_reports, verdict_of, worst_verdict
from resnet34_npu.reports.fleet.model import (
    CardRow,
    Fleet,
    Group,
    GroupKey,
    HostReport,
    Population,
    Refusal,
    Target,
    WorstMetric,
)
from resnet34_npu.reports.fleet.outliers import (
    MEAN_AD_SCALE,
    OUTLIER_MIN_CARDS,
    OUTLIER_MIN_EXCESS,
    OUTLIER_Z,
    Z_SCALE,
    is_outlier,
    robust_z,
)
from resnet34_npu.reports.fleet.read import (
    MAX_REPORT_BYTES,
    SOFTWARE,
    Invalid,
    RefusedReports,
    check_file,
    check_schema,
    check_version,
    find_reports,
    parse_json,
    read_report,
    read_text,
    validate,
)
from resnet34_npu.reports.fleet.text import TABLE_HEADER, outlier_lines, summary_lines, table_rows, verdict_line

__all__ = [
    "MAX_REPORT_BYTES",
    "MEAN_AD_SCALE",
    "OUTLIER_MIN_CARDS",
    "OUTLIER_MIN_EXCESS",
    "OUTLIER_Z",
    "SOFTWARE",
    "TABLE_HEADER",
    "Z_SCALE",
    "CardRow",
    "Fleet",
    "Group",
    "GroupKey",
    "HostReport",
    "Invalid",
    "Population",
    "Refusal",
    "RefusedReports",
    "Target",
    "WorstMetric",
    "check_file",
    "check_schema",
    "check_version",
    "find_reports",
    "is_outlier",
    "merge",
    "merge_reports",
    "outlier_lines",
    "parse_json",
    "read_report",
    "read_text",
    "robust_z",
    "summary_lines",
    "table_rows",
    "validate",
    "verdict_line",
    "verdict_of",
    "worst_verdict",
]
