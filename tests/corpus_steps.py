"""A data scientist's own pipeline step, in a module of its own: shipped with the model (``code=``)."""

from __future__ import annotations

import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin


class DateParts(BaseEstimator, TransformerMixin):
    """Replaces each datetime column by its day of the year and hour (float, NaN where missing)."""

    def __init__(self, columns: tuple[str, ...] = ()):
        self.columns = columns

    def fit(self, X: pd.DataFrame, y=None) -> DateParts:
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X.drop(columns=list(self.columns))
        for name in self.columns:
            when = X[name]
            out[f"{name} day"] = when.dt.day_of_year.astype("float64")
            out[f"{name} hour"] = when.dt.hour.astype("float64")
        return out
