"""``modelgen monitor``: a drift report (JSON and HTML) and the owner notified when it flags something.

Notifications go to a chat webhook (a JSON body with ``text``, which Slack and Teams incoming
webhooks both accept) and by e-mail (SMTP). The HTML report is one self-contained file: a
summary table and, per feature, reference and live distributions side by side as inline SVG.
"""

from __future__ import annotations

import html
import json
import logging
import smtplib
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from modelgen.errors import ModelgenError
from modelgen.monitoring.drift import FeatureReport, Report

log = logging.getLogger(__name__)


class NotifyError(ModelgenError):
    """A notification could not be delivered."""


def read_rows(path: Path, *, lines: bool = False) -> Any:
    """Logged or reference rows: CSV, JSON lines (one record per line), a JSON list, or Parquet."""
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if lines or suffix in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True, dtype=False)
        if suffix == ".json":
            return pd.DataFrame(json.loads(path.read_text("utf-8")))
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise ModelgenError(f"cannot read rows from {path}: {err}") from err
    raise ModelgenError(f"{path}: rows must be .csv, .jsonl, .json or .parquet")


# What the services' input logs add to each row (app/monitoring.py, app/monitoring.R).
TIMESTAMP, PREDICTION = "__ts", "__prediction"
LOG_PATTERN = "inputs-*.jsonl*"  # one file per process, rotated to .1, .2 ...


def read_input_log(folder: Path, window_seconds: float | None = None, now: float | None = None) -> Any:
    """The rows the services logged into ``folder`` (rotated files included), the last
    ``window_seconds`` of them if given, oldest first."""
    import time

    import pandas as pd

    frames = []
    for path in sorted(folder.glob(LOG_PATTERN)):
        if path.stat().st_size:
            frames.append(read_rows(path, lines=True))
    if not frames:
        raise ModelgenError(f"{folder}: no input log ({LOG_PATTERN}); is the service logging (sampleRate > 0)?")
    rows = pd.concat(frames, ignore_index=True)
    if TIMESTAMP in rows:
        if window_seconds is not None:
            since = (now if now is not None else time.time()) - window_seconds
            rows = rows[rows[TIMESTAMP] >= since]
        rows = rows.sort_values(TIMESTAMP, kind="stable").drop(columns=[TIMESTAMP]).reset_index(drop=True)
    return rows


def window_seconds(text: str) -> float:
    """``24h`` or ``7d`` in seconds."""
    unit = {"h": 3600, "d": 86400}.get(text[-1:])
    if unit is None or not text[:-1].isdigit() or int(text[:-1]) < 1:
        raise ModelgenError(f"window {text!r} (allowed: hours or days, e.g. 24h, 7d)")
    return int(text[:-1]) * unit


def summary(report: Report, model: str) -> str:
    if not report.drifted:
        return f"{model}: no drift in {report.rows} live rows"
    lines = [f"{model}: drift in {', '.join(report.drifted)} ({report.rows} live rows)"]
    for feature in report.features:
        for reason in feature.reasons:
            lines.append(f"- {feature.name}: {reason}")
    if report.predictions and report.predictions.get("alarm"):
        p = report.predictions
        lines.append(f"- predictions: mean {p['mean_reference']:.4g} → {p['mean_live']:.4g} (CUSUM alarm)")
    return "\n".join(lines)


def notify(
    report: Report,
    model: str,
    *,
    webhook: str | None = None,
    smtp: str | None = None,
    mail_to: Sequence[str] = (),
    mail_from: str = "modelgen@localhost",
    report_url: str | None = None,
) -> list[str]:
    """Tell the owner about flagged drift; returns where it was sent. Nothing is sent without drift."""
    if not report.drifted:
        return []
    text = summary(report, model) + (f"\nReport: {report_url}" if report_url else "")
    sent = []
    if webhook:
        import requests

        try:
            response = requests.post(
                webhook, json={"text": text, "model": model, "drifted": report.drifted}, timeout=30
            )
        except requests.RequestException as err:
            raise NotifyError(f"webhook {webhook}: {err}") from err
        if response.status_code >= 300:
            raise NotifyError(f"webhook {webhook} answered HTTP {response.status_code}")
        sent.append(webhook)
    if smtp and mail_to:
        host, _, port = smtp.partition(":")
        message = EmailMessage()
        message["Subject"] = f"[modelgen] drift in {model}: {', '.join(report.drifted)}"
        message["From"] = mail_from
        message["To"] = ", ".join(mail_to)
        message.set_content(text)
        try:
            with smtplib.SMTP(host, int(port or 25), timeout=30) as server:
                server.send_message(message)
        except (OSError, smtplib.SMTPException) as err:
            raise NotifyError(f"mail through {smtp}: {err}") from err
        sent.append(f"mailto:{','.join(mail_to)}")
    return sent


def html_report(report: Report, model: str) -> str:
    rows = "".join(
        f"<tr class='{'drift' if f.drifted else 'ok'}'>"
        f"<td><a href='#{html.escape(f.name)}'>{html.escape(f.name)}</a></td>"
        f"<td>{f.kind}</td><td>{f.psi:.3f}</td><td>{_p(f.p_value)}</td>"
        f"<td>{f.missing_reference:.1%} → {f.missing_live:.1%}</td><td>{f.unseen_share:.1%}</td>"
        f"<td>{html.escape('; '.join(f.reasons)) or 'no drift'}</td></tr>"
        for f in report.features
    )
    sections = "".join(_feature_section(f) for f in report.features)
    predictions = ""
    if report.predictions:
        p = report.predictions
        predictions = (
            f"<h2>Predictions</h2><p>mean {p['mean_reference']:.4g} (reference) → {_num(p['mean_live'])} (live); "
            f"CUSUM {'alarm at row ' + str(p['alarm_at']) if p['alarm'] else 'no alarm'}</p>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report: {html.escape(model)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
tr.drift td {{ background: #fde8e8; }} section {{ margin: 1.5em 0; }}
.legend span {{ display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; }}
</style></head>
<body>
<h1>Drift report: {html.escape(model)}</h1>
<p>{report.rows} live rows. {html.escape(summary(report, model).splitlines()[0])}.</p>
<table><tr><th>feature</th><th>kind</th><th>PSI</th><th>p-value</th><th>missing</th><th>unseen</th><th>finding</th></tr>
{rows}</table>
{predictions}
<h2>Per feature</h2>
<p class="legend"><span style="background:#4c78a8"></span>reference<span style="background:#f58518"></span>live</p>
{sections}
</body></html>
"""


def write_reports(report: Report, model: str, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    as_json = folder / "drift-report.json"
    as_html = folder / "drift-report.html"
    as_json.write_text(json.dumps({"model": model, **report.to_dict()}, indent=1) + "\n", "utf-8")
    as_html.write_text(html_report(report, model), "utf-8")
    return as_json, as_html


def _feature_section(feature: FeatureReport) -> str:
    labels = list(feature.reference)
    width, height, bar = 640, 180, max(4, 560 // max(1, 2 * len(labels)))
    peak = max([*feature.reference.values(), *feature.live.values(), 1e-9])
    shapes = []
    for i, label in enumerate(labels):
        x = 40 + i * 2 * bar
        for j, (share, colour) in enumerate(((feature.reference[label], "#4c78a8"), (feature.live[label], "#f58518"))):
            h = share / peak * (height - 40)
            shapes.append(
                f"<rect x='{x + j * bar}' y='{height - 20 - h:.1f}' width='{bar - 1}' height='{h:.1f}' fill='{colour}'>"
                f"<title>{html.escape(label)}: {share:.1%}</title></rect>"
            )
        shapes.append(f"<text x='{x}' y='{height - 5}' font-size='9'>{html.escape(label[:12])}</text>")
    status = "; ".join(feature.reasons) or "no drift"
    means = ""
    if feature.mean_reference is not None:
        means = f" Mean {feature.mean_reference:.4g} → {_num(feature.mean_live)}."
    return (
        f"<section id='{html.escape(feature.name)}' class='feature'><h3>{html.escape(feature.name)}</h3>"
        f"<p>{html.escape(status)}.{means}</p>"
        f"<svg width='{width}' height='{height}' role='img' aria-label='{html.escape(feature.name)}'>"
        f"{''.join(shapes)}</svg>"
        "</section>"
    )


def _p(value: float | None) -> str:
    return "" if value is None else f"{value:.2g}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
