"""One prediction hook per output type; the service never tests for a task itself.

Each hook calls the model once per request (``predict_proba`` gives the label too), and
returns JSON-ready predictions plus the same values as CSV columns; ``columns`` gives them as
typed columns named like the CSV header, which the batch job and the Spark job write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd


class ModelMismatch(Exception):
    """The artifact does not have what the manifest declares: the service must not start."""


_thread = threading.local()


def _fast_sklearn() -> None:
    """Skip scikit-learn's hyperparameter validation, per thread (its config is thread-local).

    The parameters were validated when the model was fitted; re-checking them on every call
    costs about 8% of a one-row predict_proba. Input checks (NaN, dtypes) stay on.
    """
    if getattr(_thread, "configured", False):
        return
    try:
        import sklearn
    except ImportError:
        pass
    else:
        sklearn.set_config(skip_parameter_validation=True)
    _thread.configured = True


class Predictor:
    """Turns a checked DataFrame into predictions of one output type."""

    header: list[str]

    def __init__(self, model: Any, output: dict[str, Any]):
        self.model = model
        # The ONNX engine needs no scikit-learn: importing it on a worker's first request cost 1.3 s.
        self._sklearn = not getattr(model, "takes_columns", False)

    def __call__(self, frame: pd.DataFrame) -> list[Any]:
        if self._sklearn:
            _fast_sklearn()
        return self.predict(frame)

    def predict(self, frame: pd.DataFrame) -> list[Any]:
        raise NotImplementedError

    def columns(self, frame: pd.DataFrame) -> dict[str, Any]:
        """The predictions as columns (lists or arrays) named like ``header``, without a dict per row."""
        if self._sklearn:
            _fast_sklearn()
        return self.table(frame)

    def table(self, frame: pd.DataFrame) -> dict[str, Any]:
        return {self.header[0]: self.predict(frame)}

    def csv_rows(self, predictions: list[Any]) -> list[list[Any]]:
        return [[p] for p in predictions]


HOOKS: dict[str, type[Predictor]] = {}


def hook(output_type: str) -> Callable[[type[Predictor]], type[Predictor]]:
    def register(cls: type[Predictor]) -> type[Predictor]:
        HOOKS[output_type] = cls
        return cls

    return register


def _require(model: Any, method: str) -> None:
    if not callable(getattr(model, method, None)):
        raise ModelMismatch(f"the model ({type(model).__name__}) has no {method}()")


@hook("probabilities")
class Probabilities(Predictor):
    """``{"label": ..., "probabilities": {class: p}}``; the label is the most probable class."""

    def __init__(self, model: Any, output: dict[str, Any]):
        super().__init__(model, output)
        _require(model, "predict_proba")
        self.classes = _checked_classes(model, output["classes"])
        self.header = ["label"] + [f"probability_{c}" for c in self.classes]

    def predict(self, frame: pd.DataFrame) -> list[Any]:
        proba = self.model.predict_proba(frame)
        labels = [self.classes[i] for i in np.argmax(proba, axis=1).tolist()]
        classes = self.classes
        return [
            {"label": label, "probabilities": dict(zip(classes, row, strict=True))}
            for label, row in zip(labels, proba.tolist(), strict=True)
        ]

    def csv_rows(self, predictions: list[Any]) -> list[list[Any]]:
        return [[p["label"], *p["probabilities"].values()] for p in predictions]

    def table(self, frame: pd.DataFrame) -> dict[str, Any]:
        proba = np.asarray(self.model.predict_proba(frame), dtype=np.float64)
        labels = np.asarray(self.classes, dtype=object)[np.argmax(proba, axis=1)]
        return {"label": labels, **{name: proba[:, j] for j, name in enumerate(self.header[1:])}}


@hook("label")
class Label(Predictor):
    header = ["label"]

    def __init__(self, model: Any, output: dict[str, Any]):
        super().__init__(model, output)
        _require(model, "predict")
        _checked_classes(model, output["classes"])

    def predict(self, frame: pd.DataFrame) -> list[Any]:
        return self.model.predict(frame).tolist()


@hook("value")
class Value(Predictor):
    header = ["value"]

    def __init__(self, model: Any, output: dict[str, Any]):
        super().__init__(model, output)
        _require(model, "predict")

    def predict(self, frame: pd.DataFrame) -> list[Any]:
        return np.asarray(self.model.predict(frame), dtype=np.float64).ravel().tolist()


@hook("cluster")
class Cluster(Predictor):
    header = ["cluster"]

    def __init__(self, model: Any, output: dict[str, Any]):
        super().__init__(model, output)
        _require(model, "predict")

    def predict(self, frame: pd.DataFrame) -> list[Any]:
        return self.model.predict(frame).tolist()


@hook("score")
class Score(Predictor):
    """``{"outlier": bool, "score": float}``; scikit-learn's convention: a negative score is an outlier."""

    header = ["outlier", "score"]

    def __init__(self, model: Any, output: dict[str, Any]):
        super().__init__(model, output)
        _require(model, "decision_function")

    def predict(self, frame: pd.DataFrame) -> list[Any]:
        # predict() of every scikit-learn detector is decision_function() < 0: one call gives both.
        scores = np.asarray(self.model.decision_function(frame), dtype=np.float64).tolist()
        return [{"outlier": s < 0, "score": s} for s in scores]

    def csv_rows(self, predictions: list[Any]) -> list[list[Any]]:
        return [[str(p["outlier"]).lower(), p["score"]] for p in predictions]

    def table(self, frame: pd.DataFrame) -> dict[str, Any]:
        scores = np.asarray(self.model.decision_function(frame), dtype=np.float64).ravel()
        return {"outlier": scores < 0, "score": scores}


def _checked_classes(model: Any, declared: list[Any]) -> list[Any]:
    actual = getattr(model, "classes_", None)
    if actual is None:
        raise ModelMismatch("the model has no classes_; is it a fitted classifier?")
    actual_list = np.asarray(actual).tolist()
    if [str(c) for c in actual_list] != [str(c) for c in declared]:
        raise ModelMismatch(f"the model's classes_ are {actual_list}, the manifest declares {declared}")
    return actual_list


def predictor_for(model: Any, output: dict[str, Any]) -> Predictor:
    return HOOKS[output["type"]](model, output)
