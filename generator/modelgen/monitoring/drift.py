"""Drift: a reference profile of the training data, and what live inputs do differently.

``profile`` summarises reference rows per input column (numeric: quantile bin edges, bin
frequencies, mean, missing rate, and a sample for the KS test; categorical: frequencies and
missing rate) and, when given, the model's predictions on them. ``compare`` checks a window of
live rows against it: PSI per feature, KS (numeric) or chi-square (categorical) from scipy,
the change of the missing rate, unseen categories, and a CUSUM of the predictions. A feature is
flagged only when the change is both large (PSI) and unlikely to be chance (the test's p-value),
or when missing values or unseen categories cross their thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from modelgen.render.contract import bin_labels

# `modelgen monitor --fail-on-drift` exits with this when something drifted; the drift CronJob's
# podFailurePolicy and `modelgen status` read a failed drift Job by it.
EXIT_DRIFT = 4

PROFILE_VERSION = 1
BINS = 10
SAMPLE = 1000  # reference values kept per numeric column for the KS test...
# ...and at most this many over all columns: the profile travels in a ConfigMap, and Argo CD's
# client-side apply keeps a copy in an annotation limited to 256 KiB.
SAMPLE_TOTAL = 8_000
DEFAULT_THRESHOLDS = {
    "psi": 0.2,  # a "significant shift" in the usual reading of PSI
    "p_value": 0.01,
    "missing_change": 0.1,  # absolute change of the share of missing values
    "unseen_share": 0.01,  # share of non-missing live values never seen in the reference
    "cusum_h": 5.0,  # CUSUM decision interval, in reference standard deviations
    "cusum_k": 0.5,  # CUSUM allowance (half the shift to detect, in standard deviations)
    "cusum_batch": 50,  # predictions averaged per CUSUM step: a false alarm every ~20,000 predictions
}
_EPS = 1e-4


def profile(
    frame: Any, columns: Sequence[Mapping[str, Any]], predictions: Sequence[float] | None = None
) -> dict[str, Any]:
    """The reference profile of ``frame`` (a DataFrame of raw input rows) for the declared ``columns``."""
    import numpy as np

    features: dict[str, Any] = {}
    numeric = sum(c["type"] in ("number", "integer") for c in columns)
    per_column = max(100, min(SAMPLE, SAMPLE_TOTAL // max(1, numeric)))
    for column in columns:
        if column["type"] == "datetime":  # time only moves on: a live date is always "new", never drift
            continue
        values = frame[column["name"]]
        missing = float(values.isna().mean())
        present = values.dropna()
        if column["type"] in ("number", "integer"):
            numbers = present.astype(float).to_numpy()
            edges = sorted(set(np.quantile(numbers, np.linspace(0, 1, BINS + 1)[1:-1]).round(12).tolist()))
            rng = np.random.default_rng(0)
            sample = numbers if len(numbers) <= per_column else rng.choice(numbers, per_column, replace=False)
            features[column["name"]] = {
                "kind": "numeric",
                "edges": edges,
                "frequencies": _shares(np.searchsorted(edges, numbers, side="left"), len(edges) + 1),
                "mean": float(numbers.mean()) if len(numbers) else None,
                "missing": missing,
                "sample": sorted(float(f"{v:.8g}") for v in sample),  # 8 digits: plenty for a KS test
            }
        else:
            counts = present.map(_category).value_counts()
            total = int(counts.sum())
            features[column["name"]] = {
                "kind": "categorical",
                "frequencies": {str(k): int(v) / total for k, v in sorted(counts.items())} if total else {},
                "declared": [str(c) for c in column.get("categories") or []],
                "missing": missing,
            }
    result: dict[str, Any] = {"version": PROFILE_VERSION, "rows": int(len(frame)), "features": features}
    if predictions is not None:
        result["predictions"] = prediction_profile(predictions)
    return result


def prediction_profile(predictions: Sequence[Any]) -> dict[str, Any]:
    """The distribution of the model's predictions on the reference, and what the CUSUM follows.

    Numbers (regression values, anomaly scores): quantile bins, mean and standard deviation.
    Labels (classes, clusters): their shares; the CUSUM then follows the share of the most
    frequent label (a 0/1 value per prediction, so its mean and standard deviation are known).
    """
    import numpy as np

    values = list(predictions)
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        numbers = np.asarray(values, dtype=float)
        edges = sorted(set(np.quantile(numbers, np.linspace(0, 1, BINS + 1)[1:-1]).round(12).tolist()))
        return {
            "kind": "numeric",
            "edges": edges,
            "frequencies": _shares(np.searchsorted(edges, numbers, side="left"), len(edges) + 1),
            "mean": float(numbers.mean()),
            "std": float(numbers.std()) or 1e-12,
            "rows": len(values),
        }
    labels = [_category(v) for v in values]
    shares = {label: labels.count(label) / len(labels) for label in sorted(set(labels))}
    tracked = max(shares, key=lambda label: (shares[label], label)) if shares else None
    share = shares.get(tracked, 0.0)
    return {
        "kind": "categorical",
        "frequencies": shares,
        "tracked": tracked,
        "mean": share,
        "std": math.sqrt(share * (1 - share)) or 1e-12,
        "rows": len(values),
    }


def monitored_values(predictions: Sequence[Any], reference: Mapping[str, Any]) -> list[float]:
    """The numbers the CUSUM follows: the predictions themselves, or 1/0 for "is the tracked label"."""
    if reference.get("kind") == "categorical":
        return [1.0 if _category(v) == reference["tracked"] else 0.0 for v in predictions]
    return [float(v) for v in predictions]


@dataclass
class FeatureReport:
    name: str
    kind: str
    psi: float
    p_value: float | None
    missing_reference: float
    missing_live: float
    unseen: dict[str, int] = field(default_factory=dict)
    unseen_share: float = 0.0
    reference: dict[str, float] = field(default_factory=dict)  # bin or category -> share
    live: dict[str, float] = field(default_factory=dict)
    mean_reference: float | None = None
    mean_live: float | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return bool(self.reasons)


@dataclass
class Report:
    rows: int
    features: list[FeatureReport]
    thresholds: dict[str, float]
    predictions: dict[str, Any] | None = None

    @property
    def drifted(self) -> list[str]:
        names = [f.name for f in self.features if f.drifted]
        if self.predictions and self.predictions.get("alarm"):
            names.append("predictions")
        return names

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "drifted": self.drifted,
            "thresholds": self.thresholds,
            "features": [asdict(f) | {"drifted": f.drifted} for f in self.features],
            "predictions": self.predictions,
        }


# What ``compare`` reads of a profile, per kind: key -> the JSON types it may hold.
_NUMBER, _LIST, _OBJECT = (int, float), (list,), (dict,)
_PROFILE_KEYS = {
    "numeric": {"edges": _LIST, "frequencies": _LIST, "mean": (*_NUMBER, type(None)), "missing": _NUMBER,
                "sample": _LIST},
    "categorical": {"frequencies": _OBJECT, "missing": _NUMBER},
}  # fmt: skip
_PREDICTION_KEYS = {
    "numeric": {"mean": _NUMBER, "std": _NUMBER},
    "categorical": {"frequencies": _OBJECT, "tracked": (str, type(None)), "mean": _NUMBER, "std": _NUMBER},
}


def profile_problem(doc: Any) -> str | None:
    """What makes ``doc`` unusable as a reference profile (the first thing found), or None.

    >>> profile_problem([])
    'a JSON object with "features" expected, not a list'
    >>> profile_problem({"features": {"x": {"kind": "numeric", "edges": [1.0]}}})
    'features.x.frequencies: missing'
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("features"), dict):
        return f'a JSON object with "features" expected, not {_json_type(doc)}'
    for name, feature in doc["features"].items():
        problem = _shape_problem(feature, _PROFILE_KEYS)
        if problem:
            return f"features.{name}{problem}"
        if feature["kind"] == "numeric" and len(feature["frequencies"]) != len(feature["edges"]) + 1:
            return f"features.{name}.frequencies: {len(feature['edges']) + 1} bins expected (one more than edges)"
    if doc.get("predictions") is not None:
        problem = _shape_problem(doc["predictions"], _PREDICTION_KEYS, default_kind="numeric")
        if problem:
            return f"predictions{problem}"
    return None


def _shape_problem(
    section: Any, keys_by_kind: Mapping[str, Mapping[str, tuple[type, ...]]], default_kind: str | None = None
) -> str | None:
    if not isinstance(section, dict):
        return f": an object expected, not {_json_type(section)}"
    kind = section.get("kind", default_kind)
    if kind not in keys_by_kind:
        return f".kind: {kind!r} (allowed: {', '.join(keys_by_kind)})"
    for key, types in keys_by_kind[kind].items():
        if key not in section:
            return f".{key}: missing"
        value = section[key]
        if not isinstance(value, types) or isinstance(value, bool):
            return f".{key}: {_json_type(value)} is not allowed here"
    return None


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def compare(
    reference: Mapping[str, Any],
    live: Any,
    live_predictions: Sequence[float] | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> Report:
    """How the live rows (a DataFrame) differ from the ``reference`` profile, feature by feature."""
    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    reports = []
    for name, ref in reference["features"].items():
        if name not in live:
            continue  # a column the logs do not hold: nothing to compare
        values = live[name]
        missing_live = float(values.isna().mean()) if len(values) else 0.0
        kind = _numeric_report if ref["kind"] == "numeric" else _categorical_report
        report = kind(name, ref, values.dropna(), missing_live)
        report.reasons = _reasons(report, limits)
        reports.append(report)
    predictions = None
    if live_predictions is not None and reference.get("predictions"):
        predictions = _predictions_report(reference["predictions"], live_predictions, limits)
    return Report(int(len(live)), reports, limits, predictions)


def _numeric_report(name: str, ref: Mapping[str, Any], present: Any, missing_live: float) -> FeatureReport:
    import numpy as np
    from scipy import stats

    numbers = present.astype(float).to_numpy()
    edges = ref["edges"]
    shares = _shares(np.searchsorted(edges, numbers, side="left"), len(edges) + 1)
    psi = _psi(ref["frequencies"], shares)
    p_value = float(stats.ks_2samp(ref["sample"], numbers).pvalue) if len(numbers) and ref["sample"] else None
    labels = bin_labels(edges)
    return FeatureReport(
        name, "numeric", psi, p_value, ref["missing"], missing_live,
        reference=dict(zip(labels, ref["frequencies"], strict=True)),
        live=dict(zip(labels, shares, strict=True)),
        mean_reference=ref["mean"], mean_live=float(numbers.mean()) if len(numbers) else None,
    )  # fmt: skip


def _categorical_report(name: str, ref: Mapping[str, Any], present: Any, missing_live: float) -> FeatureReport:
    import numpy as np
    from scipy import stats

    counts = present.map(_category).value_counts()
    total = int(counts.sum())
    known = set(ref["frequencies"]) | set(ref.get("declared", []))
    unseen = {str(k): int(v) for k, v in counts.items() if str(k) not in known}
    categories = sorted(set(ref["frequencies"]) | set(unseen))
    live_shares = {c: (int(counts.get(c, 0)) / total if total else 0.0) for c in categories}
    ref_shares = {c: ref["frequencies"].get(c, 0.0) for c in categories}
    psi = _psi(list(ref_shares.values()), list(live_shares.values()))
    p_value = None
    if total:
        expected = np.array([max(ref_shares[c], _EPS) for c in categories])
        observed = np.array([counts.get(c, 0) for c in categories], dtype=float)
        p_value = float(stats.chisquare(observed, expected / expected.sum() * observed.sum()).pvalue)
    return FeatureReport(
        name, "categorical", psi, p_value, ref["missing"], missing_live,
        unseen=unseen, unseen_share=sum(unseen.values()) / total if total else 0.0,
        reference=ref_shares, live=live_shares,
    )  # fmt: skip


def _predictions_report(
    expected: Mapping[str, Any], live_predictions: Sequence[Any], limits: Mapping[str, float]
) -> dict[str, Any]:
    predictions = cusum(monitored_values(live_predictions, expected), expected, limits)
    predictions["kind"] = expected.get("kind", "numeric")
    if expected.get("kind") == "categorical":
        labels = [_category(v) for v in live_predictions]
        predictions["tracked"] = expected["tracked"]
        predictions["reference"] = expected["frequencies"]
        predictions["live"] = {k: labels.count(k) / len(labels) for k in sorted(set(labels))} if labels else {}
    return predictions


def cusum(values: Sequence[float], reference: Mapping[str, float], limits: Mapping[str, float]) -> dict[str, Any]:
    """Two-sided tabular CUSUM of the mean prediction against the reference mean.

    Each step is the mean of ``cusum_batch`` consecutive predictions, standardised by the
    reference's standard error of such a mean; ``alarm_at`` is the row where the alarm rose.
    """
    mean, std = reference["mean"], reference["std"] or 1e-12
    k, h, batch = limits["cusum_k"], limits["cusum_h"], max(1, int(limits["cusum_batch"]))
    high = low = 0.0
    alarm_at = None
    for end in range(batch, len(values) + 1, batch):
        chunk = [float(v) for v in values[end - batch : end]]
        z = (sum(chunk) / batch - mean) / (std / math.sqrt(batch))
        high, low = max(0.0, high + z - k), max(0.0, low - z - k)
        if alarm_at is None and (high > h or low > h):
            alarm_at = end - 1
    live_mean = float(sum(float(v) for v in values) / len(values)) if len(values) else None
    return {
        "mean_reference": mean,
        "mean_live": live_mean,
        "cusum_high": high,
        "cusum_low": low,
        "alarm": alarm_at is not None,
        "alarm_at": alarm_at,
    }


def _reasons(report: FeatureReport, limits: Mapping[str, float]) -> list[str]:
    reasons = []
    if report.psi > limits["psi"] and report.p_value is not None and report.p_value < limits["p_value"]:
        test = "KS" if report.kind == "numeric" else "chi-square"
        reasons.append(f"distribution shifted: PSI {report.psi:.3f} > {limits['psi']}, {test} p = {report.p_value:.2g}")
    change = report.missing_live - report.missing_reference
    if abs(change) > limits["missing_change"]:
        reasons.append(
            f"missing values {report.missing_reference:.1%} → {report.missing_live:.1%} "
            f"(change over {limits['missing_change']:.0%})"
        )
    if report.unseen_share > limits["unseen_share"]:
        shown = ", ".join(f"{k!r} ({v})" for k, v in sorted(report.unseen.items(), key=lambda kv: -kv[1])[:5])
        reasons.append(f"unseen categories in {report.unseen_share:.1%} of rows: {shown}")
    return reasons


def _psi(reference: Sequence[float], live: Sequence[float]) -> float:
    total = 0.0
    for r, a in zip(reference, live, strict=True):
        r, a = max(r, _EPS), max(a, _EPS)
        total += (a - r) * math.log(a / r)
    return total


def _shares(bins: Any, count: int) -> list[float]:
    import numpy as np

    counts = np.bincount(np.asarray(bins, dtype=int), minlength=count)[:count]
    total = counts.sum()
    return [float(c) / total if total else 0.0 for c in counts]


def _category(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
