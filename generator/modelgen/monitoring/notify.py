"""Telling the owner about drift: a chat webhook (a JSON body with ``text``, which Slack and Teams
incoming webhooks both accept) and e-mail (SMTP)."""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from email.message import EmailMessage

from modelgen.errors import NotifyError
from modelgen.monitoring.drift import Report
from modelgen.monitoring.report import summary


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
        if port and not port.isdigit():
            raise NotifyError(f"mail through {smtp}: the port {port!r} is not a number (allowed: host or host:port)")
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
