"""A data scientist's own step with no ONNX converter: shipped with the model (``code=``)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class Winsorize(BaseEstimator, TransformerMixin):
    """Clips each column to its 5th and 95th training percentiles."""

    def fit(self, X, y=None) -> Winsorize:
        self.low_, self.high_ = np.nanpercentile(X, 5, axis=0), np.nanpercentile(X, 95, axis=0)
        return self

    def transform(self, X):
        return np.clip(np.asarray(X, dtype=np.float64), self.low_, self.high_)
