"""``modelgen monitor``'s pieces under their former address: the input rows (``inputs``), the
report (``report``) and the notifications (``notify``) each live in their own module now."""

from modelgen.errors import NotifyError
from modelgen.monitoring.inputs import LOG_PATTERN, PREDICTION, TIMESTAMP, read_input_log, read_rows, window_seconds
from modelgen.monitoring.notify import notify
from modelgen.monitoring.report import html_report, summary, write_reports

__all__ = [
    "LOG_PATTERN",
    "PREDICTION",
    "TIMESTAMP",
    "NotifyError",
    "html_report",
    "notify",
    "read_input_log",
    "read_rows",
    "summary",
    "window_seconds",
    "write_reports",
]
