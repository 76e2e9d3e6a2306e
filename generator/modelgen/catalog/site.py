"""The catalog's pages: facts in, ``{path: bytes}`` out (``render.output.write_project`` writes them).

Every page is rendered from ``templates/`` with autoescaping: names, descriptions, columns and
categories come from manifests anyone with a merge request can write, so none may become markup.
This module computes what the templates cannot (the plots' geometry, the sort keys); the
templates hold all the markup. Nothing is taken from outside the site: the stylesheet and the
script are ``static/``, the plots inline SVG. Same facts, same bytes: no clock, no random ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jinja2

from modelgen import __version__
from modelgen.catalog.facts import REPORT, Catalog, ModelFacts

Files = dict[str, bytes]
ASSETS = ("catalog.css", "catalog.js")
# A plot's frame, in SVG user units: values on the left, versions under the line.
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 320, 130, 56, 16, 12, 30
MAX_LABELS = 8  # version labels under a plot; more versions show every n-th (each point's tooltip has its own)


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    version: str
    value: float
    label: bool  # whether its version is written under the axis


@dataclass(frozen=True)
class Plot:
    """One metric over the versions that have it, oldest first."""

    metric: str
    width: int
    height: int
    points: tuple[Point, ...]
    low: float
    high: float

    @property
    def axis_y(self) -> int:
        """Where the axis runs: just under the lowest point."""
        return self.height - BOTTOM + 6

    @property
    def label_y(self) -> int:
        """The baseline of the version labels, under the axis."""
        return self.height - 8

    @property
    def path(self) -> str:
        return " ".join(f"{'M' if i == 0 else 'L'}{p.x:.1f},{p.y:.1f}" for i, p in enumerate(self.points))


def plot(metric: str, model: ModelFacts) -> Plot:
    """``metric`` of each version of ``model`` as points, the lowest value at the bottom of the frame."""
    values = [(v.version, v.metrics[metric]) for v in model.versions if metric in v.metrics]
    low, high = min(x for _, x in values), max(x for _, x in values)
    span_x, span_y = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = max(1, -(-len(values) // MAX_LABELS))
    points = []
    for i, (version, value) in enumerate(values):
        x = LEFT + (span_x * i / (len(values) - 1) if len(values) > 1 else span_x / 2)
        # All versions equal: a flat line through the middle, not a division by zero.
        y = TOP + (span_y * (high - value) / (high - low) if high > low else span_y / 2)
        labelled = i % step == 0 or i == len(values) - 1
        points.append(Point(x, y, version, value, labelled))
    return Plot(metric, WIDTH, HEIGHT, tuple(points), low, high)


def site(catalog: Catalog) -> Files:
    """Every file of the site: ``index.html``, ``models/<name>/index.html`` (with each environment's
    drift report beside it, ``drift-<env>.html``) and ``assets/``.

    >>> from modelgen.catalog.facts import Catalog
    >>> sorted(site(Catalog("https://gitlab.example.com/ml/gitops.git", "main", "0" * 40, (), ())))
    ['assets/catalog.css', 'assets/catalog.js', 'index.html']
    """
    env = _environment()
    common = {"catalog": catalog, "version": __version__}
    files: Files = {f"assets/{name}": _asset(name) for name in ASSETS}
    files["index.html"] = _page(env, "index.html.j2", root="", rows=[_row(m) for m in catalog.models], **common)
    for model in catalog.models:
        folder = f"models/{model.name}"
        # A metric only the current manifest names has no point to plot when its history is cut short.
        plots = [plot(n, model) for n in model.metric_names if any(n in v.metrics for v in model.versions)]
        files[f"{folder}/index.html"] = _page(env, "model.html.j2", root="../../", model=model, plots=plots, **common)
        for drift in model.drift:
            if drift.html is not None:
                files[f"{folder}/{_report_file(drift.environment)}"] = drift.html
    return dict(sorted(files.items()))


def _row(model: ModelFacts) -> dict[str, Any]:
    """What the index's table and its filters need of a model beyond the facts: sort keys and search text."""
    m = model.manifest
    text = " ".join([m.name, m.owner, m.task, m.runtime, m.framework, m.description]).lower()
    headline = model.headline
    return {
        "model": model,
        "text": text,
        "metric_sort": "" if headline is None else repr(headline.value),
        "last": model.changes[0] if model.changes else None,
    }


def _page(env: jinja2.Environment, template: str, **context: Any) -> bytes:
    return env.get_template(template).render(**context).encode("utf-8")


def _report_file(environment: str) -> str:
    return f"drift-{environment}.html"


@cache
def _asset(name: str) -> bytes:
    return resources.files("modelgen.catalog").joinpath("static", name).read_bytes()


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("modelgen.catalog", "templates"),
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(number=_number, signed=_signed, value=_value, report_file=_report_file)
    env.globals.update(report=REPORT)
    return env


def _number(value: float) -> str:
    return f"{value:.4g}"


def _signed(value: float) -> str:
    # A real minus sign: the change is read next to numbers, where a hyphen is easy to miss.
    return f"+{value:.4g}" if value >= 0 else f"\u2212{-value:.4g}"


def _value(value: Any) -> str:
    """A hyperparameter as text: strings as they are, anything else as JSON (keys sorted, so stable)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
