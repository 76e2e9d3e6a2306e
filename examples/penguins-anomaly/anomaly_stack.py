"""A custom pipeline step: three outlier detectors' scores as features for a final detector.

The pickled pipeline refers to this class as ``anomaly_stack.StackedOutlierScores``, so whatever
loads the artifact (the generated service ships this file as ``model_code/anomaly_stack.py``)
must be able to ``import anomaly_stack``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.svm import OneClassSVM
from sklearn.utils.validation import check_is_fitted


class StackedOutlierScores(TransformerMixin, BaseEstimator):
    """Fits OneClassSVM, IsolationForest and LocalOutlierFactor; transforms to their (n, 3) scores.

    Each score is the detector's ``decision_function``: positive for inliers, negative for
    outliers. Scores above the training median are clipped to it, so a detector stacked on top
    only sees how far a row leans towards "outlier": unclipped, a two-sided detector also flags
    rows for being unusually typical.
    """

    def __init__(self, nu: float = 0.05, n_neighbors: int = 20, random_state: int | None = 0) -> None:
        self.nu = nu
        self.n_neighbors = n_neighbors
        self.random_state = random_state

    def fit(self, X: ArrayLike, y: object = None) -> StackedOutlierScores:
        self._fit(X)
        return self

    def fit_transform(self, X: ArrayLike, y: object = None, **fit_params: object) -> NDArray[np.float64]:
        return np.minimum(self._fit(X), self.median_)

    def transform(self, X: ArrayLike) -> NDArray[np.float64]:
        check_is_fitted(self, "median_")
        scores = np.column_stack(
            [self.ocsvm_.decision_function(X), self.iforest_.decision_function(X), self.lof_.decision_function(X)]
        )
        return np.minimum(scores, self.median_)

    def get_feature_names_out(self, input_features: object = None) -> NDArray[np.object_]:
        return np.array(["ocsvm", "iforest", "lof"], dtype=object)

    def _fit(self, X: ArrayLike) -> NDArray[np.float64]:
        """Fit the detectors; return their scores of the training rows."""
        X = np.asarray(X, dtype=np.float64)
        self.ocsvm_ = OneClassSVM(nu=self.nu).fit(X)
        self.iforest_ = IsolationForest(random_state=self.random_state).fit(X)
        self.lof_ = LocalOutlierFactor(n_neighbors=self.n_neighbors, novelty=True).fit(X)
        self.n_features_in_ = X.shape[1]
        # A novelty LOF scoring its own training rows counts each row as its own neighbour and
        # calls it more normal than it is; negative_outlier_factor_ is the leave-self-out score.
        lof_scores = self.lof_.negative_outlier_factor_ - self.lof_.offset_
        scores = np.column_stack([self.ocsvm_.decision_function(X), self.iforest_.decision_function(X), lof_scores])
        self.median_ = np.median(scores, axis=0)
        return scores
