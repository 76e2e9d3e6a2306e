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


def onnx_converters() -> None:
    """Register StackedOutlierScores' ONNX converter with skl2onnx (``modelgen convert`` calls this).

    The step is the three detectors' own converted graphs side by side, clipped at the training
    median: what ``transform`` computes. skl2onnx is imported here, not at the top, so the service
    (which unpickles this module but never converts) does not need it.
    """
    from skl2onnx import update_registered_converter
    from skl2onnx.algebra.onnx_operator import OnnxSubEstimator
    from skl2onnx.algebra.onnx_ops import OnnxConcat, OnnxMin
    from skl2onnx.common.data_types import guess_numpy_type

    def shape(operator) -> None:
        rows = operator.inputs[0].get_first_dimension()
        operator.outputs[0].type = operator.inputs[0].type.__class__([rows, 3])

    def convert(scope, operator, container) -> None:
        step, opset = operator.raw_operator, container.target_opset
        X, out = operator.inputs[0], operator.outputs[0]
        dtype = guess_numpy_type(X.type)
        # Each detector's graph answers (label, score); the score is its decision_function.
        scores = [
            OnnxSubEstimator(detector, X, op_version=opset)[1] for detector in (step.ocsvm_, step.iforest_, step.lof_)
        ]
        stacked = OnnxConcat(*scores, axis=1, op_version=opset)
        clipped = OnnxMin(stacked, step.median_.astype(dtype).reshape(1, -1), op_version=opset, output_names=[out])
        clipped.add_to(scope, container)

    update_registered_converter(StackedOutlierScores, "ModelgenStackedOutlierScores", shape, convert)
