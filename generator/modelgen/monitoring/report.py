"""The drift report: a one-paragraph summary (for notifications), the JSON and the HTML report.

The HTML report is one self-contained file rendered from ``templates/report.html.j2``: a summary
table and, per feature, reference and live distributions side by side as inline SVG. This module
computes the numbers (bar geometry included); the template holds all the markup and escapes
every value, since category names and feature names come from the data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2

from modelgen.errors import ModelgenError, os_problem
from modelgen.monitoring.drift import FeatureReport, Report

TEMPLATE = "report.html.j2"
# The chart's frame, in SVG user units: bars stand on a baseline 20 units above the bottom,
# leaving room for the labels, and the tallest reaches 20 units below the top.
WIDTH, HEIGHT, PLOT_WIDTH, LEFT, MARGIN = 640, 180, 560, 40, 20
LABEL_CHARS = 12  # longer bin or category labels are cut (the bar's tooltip has them whole)


@dataclass(frozen=True)
class Bar:
    x: int
    y: float
    width: int
    height: float
    series: str  # "reference" or "live": the template picks the colour
    label: str
    share: float


@dataclass(frozen=True)
class Group:
    """One bin or category: its bars and, under them, its label."""

    bars: tuple[Bar, Bar]
    x: int
    y: int
    text: str


@dataclass(frozen=True)
class Chart:
    """One feature's distributions as bars: per bin or category, reference then live."""

    width: int
    height: int
    groups: list[Group]


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


def chart(feature: FeatureReport) -> Chart:
    """The bars of ``feature``'s chart, scaled so the largest share fills the plot's height."""
    labels = list(feature.reference)
    bar = max(4, PLOT_WIDTH // max(1, 2 * len(labels)))
    peak = max([*feature.reference.values(), *feature.live.values(), 1e-9])
    groups = []
    for i, label in enumerate(labels):
        x = LEFT + i * 2 * bar
        pair = []
        for j, (series, share) in enumerate((("reference", feature.reference[label]), ("live", feature.live[label]))):
            h = share / peak * (HEIGHT - 2 * MARGIN)
            pair.append(Bar(x + j * bar, HEIGHT - MARGIN - h, bar - 1, h, series, label, share))
        groups.append(Group((pair[0], pair[1]), x, HEIGHT - 5, label[:LABEL_CHARS]))
    return Chart(WIDTH, HEIGHT, groups)


def html_report(report: Report, model: str) -> str:
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            model=model,
            report=report,
            headline=summary(report, model).splitlines()[0],
            charts={feature.name: chart(feature) for feature in report.features},
        )
    )


def write_reports(report: Report, model: str, folder: Path) -> tuple[Path, Path]:
    as_json = folder / "drift-report.json"
    as_html = folder / "drift-report.html"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        as_json.write_text(json.dumps({"model": model, **report.to_dict()}, indent=1) + "\n", "utf-8")
        as_html.write_text(html_report(report, model), "utf-8")
    except OSError as err:
        raise ModelgenError(f"cannot write the drift report: {os_problem(err)}") from err
    return as_json, as_html


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("modelgen.monitoring", "templates"),
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(percent=_percent, number=_number, p_value=_p_value)
    return env


def _percent(share: float) -> str:
    return f"{share:.1%}"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _p_value(value: float | None) -> str:
    return "" if value is None else f"{value:.2g}"
