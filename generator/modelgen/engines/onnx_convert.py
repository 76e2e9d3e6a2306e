"""modelgen's recipe for turning a fitted scikit-learn pipeline into ONNX, and its command line.

    python -m modelgen.engines.onnx_convert MODEL SPEC OUT

runs in the model's own environment (the pinned libraries, the project's ``model_code/`` on the
path), as the reference profile's scoring does: MODEL is the pickle, SPEC a JSON file with the
input ``columns`` and the ``output`` type, OUT the ``.onnx`` file to write; ``OUT.json`` gets
what the service needs to read it (the graph output, the precision, the null token, the
converters' versions). Exit 4 with one line on stderr: the model cannot be converted, and why.

What stock skl2onnx gets wrong on real pipelines, and what this recipe does about it:

- A string column's ``SimpleImputer(missing_values=nan)`` has no converter: the copy converted
  imputes ``NULL_TOKEN`` instead, and the service feeds that token for a null string (an empty
  string would not do: scikit-learn treats "" as a category).
- onnxruntime has no double kernel for ``Imputer``: each one on doubles becomes IsNaN + Where.
- Tree ensembles compare float32 thresholds: on double inputs XGBoost, LightGBM and random
  forests answer differently without any error, so a Cast to float32 goes before each one, as the
  libraries do themselves.
- Declared and produced output types can differ (a stack declares double and produces float):
  every graph output is cast to its declared type.
- skl2onnx hands protobuf a bool where an int is due in tree nodes: coerced while converting.
- The default ``ai.onnx.ml`` opset is refused by onnxruntime: ``OPSET`` is pinned.

Inputs are one ``[N, 1]`` tensor per column, named as the column: strings for string columns,
doubles (floats when a converter cannot work in double) for numbers, integers and booleans.
A module of ``spec.code`` that defines ``onnx_converters()`` gets it called before converting:
that is where a custom class registers its converter (skl2onnx's ``update_registered_converter``),
without the service ever importing skl2onnx.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

# A null in a string column, as the ONNX graph sees it (what its imputers replace).
NULL_TOKEN = "\u2400modelgen:null\u2400"
OPSET = {"": 17, "ai.onnx.ml": 3}
# The libraries whose versions make a conversion what it is (recorded in the manifest).
CONVERTERS = ("skl2onnx", "onnxmltools", "onnx", "onnxruntime", "protobuf")
EXIT_UNCONVERTIBLE = 4


class Unconvertible(Exception):
    """The model cannot be converted; ``final`` when no other precision would change that (a step
    without a converter, a column ONNX cannot take)."""

    def __init__(self, message: str, *, final: bool = False):
        super().__init__(message)
        self.final = final


def convert(
    model: Any,
    columns: Sequence[Mapping[str, Any]],
    output_type: str,
    *,
    precision: str = "double",
    cast_trees: bool = True,
) -> tuple[bytes, str]:
    """The ONNX bytes of ``model`` for ``columns`` (the contract's), and the output the service reads.

    ``cast_trees=False`` leaves out the float32 cast before tree ensembles: a wrong conversion,
    for tests of the parity gate.
    """
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    unsupported = unsupported_steps(model)
    if unsupported:
        steps = "; ".join(f"step {path} ({name}) has no ONNX converter" for path, name in unsupported)
        raise Unconvertible(steps, final=True)
    number = DoubleTensorType if precision == "double" else FloatTensorType
    types = []
    for column in columns:
        if column["type"] == "datetime":
            raise Unconvertible(
                f"column {column['name']!r} is a datetime: ONNX inputs are numbers and strings", final=True
            )
        if column.get("dtype") == "category":
            message = f"column {column['name']!r} is a pandas category: the ONNX graph takes plain strings"
            raise Unconvertible(message, final=True)
        types.append((column["name"], StringTensorType([None, 1]) if column["type"] == "string" else number([None, 1])))
    converted = _with_token_imputers(model)
    from sklearn.base import is_classifier

    # zipmap off (probabilities as one [N, classes] tensor) for every classifier, and only them:
    # other estimators refuse an option they do not know.
    options = {
        id(e): {"zipmap": False} for _, e in _estimators(converted) if is_classifier(e) and hasattr(e, "classes_")
    }
    try:
        with _int_flags():
            graph = to_onnx(converted, initial_types=types, target_opset=OPSET, options=options)
    except Exception as err:  # skl2onnx reports a missing converter or shape calculator in its own words
        raise Unconvertible(f"skl2onnx could not convert it: {type(err).__name__}: {_first_line(err)}") from err
    graph = _rewritten(_cast_outputs(graph), cast_trees=cast_trees)
    # skl2onnx lists the opsets in a set's order, which changes with the process's hash seed: the
    # same model must convert to the same bytes (the registry refuses other bytes for a version).
    opsets = sorted((o.domain, o.version) for o in graph.opset_import)
    del graph.opset_import[:]
    for domain, version in opsets:
        graph.opset_import.add(domain=domain, version=version)
    return graph.SerializeToString(), _output_name(graph, output_type)


def unsupported_steps(model: Any) -> list[tuple[str, str]]:
    """``(path, class)`` of each step skl2onnx has no converter for (custom ones registered included)."""
    from skl2onnx._supported_operators import sklearn_operator_name_map

    return [
        (path, f"{type(e).__module__}.{type(e).__qualname__}")
        for path, e in _steps(model, "model")
        if type(e) not in sklearn_operator_name_map
    ]


def _steps(model: Any, path: str) -> Iterator[tuple[str, Any]]:
    """The steps of a pipeline as skl2onnx converts them: containers are opened, anything else is a leaf."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import FeatureUnion, Pipeline

    if isinstance(model, Pipeline):
        for name, step in model.steps:
            if step not in (None, "passthrough"):
                yield from _steps(step, f"{path}/{name}")
    elif isinstance(model, ColumnTransformer):
        for name, step, _ in model.transformers_:
            if not isinstance(step, str):
                yield from _steps(step, f"{path}/{name}")
    elif isinstance(model, FeatureUnion):
        for name, step in model.transformer_list:
            if not isinstance(step, str):
                yield from _steps(step, f"{path}/{name}")
    else:
        yield path, model


def _estimators(model: Any) -> Iterator[tuple[str, Any]]:
    """Every fitted estimator inside ``model``, wherever it keeps them (steps, transformers_, estimators_...)."""
    from sklearn.base import BaseEstimator

    seen: set[int] = set()

    def walk(obj: Any, path: str) -> Iterator[tuple[str, Any]]:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, BaseEstimator):
            yield path, obj
            for key, value in vars(obj).items():
                yield from walk(value, f"{path}.{key}")
        elif isinstance(obj, (list, tuple)):
            for i, value in enumerate(obj):
                yield from walk(value, f"{path}[{i}]")
        elif isinstance(obj, dict):
            for key, value in obj.items():
                yield from walk(value, f"{path}[{key!r}]")

    yield from walk(model, "model")


def _with_token_imputers(model: Any) -> Any:
    """A copy of ``model`` whose string imputers replace ``NULL_TOKEN`` (what the service feeds for null)."""
    from sklearn.impute import SimpleImputer

    converted = copy.deepcopy(model)
    for _, estimator in _estimators(converted):
        statistics = getattr(estimator, "statistics_", None)
        if isinstance(estimator, SimpleImputer) and statistics is not None and statistics.dtype == object:
            estimator.missing_values = NULL_TOKEN
    return converted


@contextlib.contextmanager
def _int_flags() -> Iterator[None]:
    """skl2onnx builds tree nodes' flags as numpy bools, which protobuf refuses where ints are due."""
    import numpy as np
    from skl2onnx.common import _container

    original = _container.make_node

    def make_node(op_type: str, inputs: Any, outputs: Any, name: str | None = None, **attrs: Any) -> Any:
        for key, value in attrs.items():
            if isinstance(value, (list, tuple)) and any(isinstance(v, (bool, np.bool_)) for v in value):
                attrs[key] = [int(v) if isinstance(v, (bool, np.bool_)) else v for v in value]
        return original(op_type, inputs, outputs, name=name, **attrs)

    _container.make_node = make_node
    try:
        yield
    finally:
        _container.make_node = original


def _cast_outputs(graph: Any) -> Any:
    """Each graph output cast to its declared type (a no-op where the producer already gives it)."""
    from onnx import helper

    for output in graph.graph.output:
        raw = f"{output.name}_uncast"
        for node in graph.graph.node:  # the producer and any node reading it take the uncast value
            node.output[:] = [raw if name == output.name else name for name in node.output]
            node.input[:] = [raw if name == output.name else name for name in node.input]
        elem = output.type.tensor_type.elem_type
        graph.graph.node.append(helper.make_node("Cast", [raw], [output.name], to=elem, name=f"{output.name}_cast"))
    return graph


def _rewritten(graph: Any, *, cast_trees: bool) -> Any:
    """Imputers on doubles as IsNaN/Equal + Where; a float32 cast before each tree ensemble on doubles."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inferred = onnx.shape_inference.infer_shapes(graph).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.value_info, *inferred.input, *inferred.output]}
    nodes = []
    for node in graph.graph.node:
        on_doubles = types.get(node.input[0] if node.input else "") == TensorProto.DOUBLE
        if node.op_type == "Imputer" and on_doubles:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            values = np.asarray(attrs["imputed_value_floats"], dtype=np.float64).reshape(1, -1)
            replaced = float(attrs.get("replaced_value_float", float("nan")))
            graph.graph.initializer.append(numpy_helper.from_array(values, f"{node.name}_values"))
            mask = f"{node.name}_mask"
            if replaced != replaced:
                nodes.append(helper.make_node("IsNaN", [node.input[0]], [mask], name=f"{node.name}_isnan"))
            else:
                constant = numpy_helper.from_array(np.asarray([replaced], dtype=np.float64), f"{node.name}_replaced")
                graph.graph.initializer.append(constant)
                nodes.append(helper.make_node("Equal", [node.input[0], constant.name], [mask], name=f"{node.name}_eq"))
            where = [mask, f"{node.name}_values", node.input[0]]
            nodes.append(helper.make_node("Where", where, [node.output[0]], name=f"{node.name}_where"))
            continue
        if cast_trees and node.op_type.startswith("TreeEnsemble") and on_doubles:
            as_float = f"{node.input[0]}_float32_{node.name}"
            nodes.append(
                helper.make_node("Cast", [node.input[0]], [as_float], to=TensorProto.FLOAT, name=f"{node.name}_cast")
            )
            node.input[0] = as_float
        nodes.append(node)
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    onnx.checker.check_model(graph)
    return graph


def _output_name(graph: Any, output_type: str) -> str:
    """The graph output holding what the service answers: class probabilities, a detector's score
    (its decision_function), else the first (label, value, cluster)."""
    names = [o.name for o in graph.graph.output]
    wanted = {"probabilities": "probabilities", "score": "scores"}.get(output_type)
    if wanted is None:
        return names[0]
    if wanted in names:
        return wanted
    if len(names) > 1:
        return names[1]
    raise Unconvertible(f"the ONNX graph has no {wanted} output (outputs: {', '.join(names)})")


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [""])[0][:400]


def _call_converter_hooks(code_dir: Path) -> list[str]:
    """Call ``onnx_converters()`` of each module in ``code_dir`` that defines one; their names."""
    called = []
    for path in sorted(code_dir.glob("*.py")):
        module = importlib.import_module(path.stem)
        hook = getattr(module, "onnx_converters", None)
        if callable(hook):
            hook()
            called.append(path.stem)
    return called


def _isolation_forest_on_float32() -> None:
    """IsolationForest as scikit-learn runs it: on the input cast to float32.

    skl2onnx's converter builds float32 trees and constants, so on double inputs it fails, and a
    whole graph in float computes the steps before it in float32 too, which moves rows across the
    trees' thresholds. Double inputs get a Cast to float32 in front of skl2onnx's own converter.
    """
    from onnx import TensorProto
    from skl2onnx import update_registered_converter
    from skl2onnx.algebra.onnx_operator import OnnxSubEstimator
    from skl2onnx.algebra.onnx_ops import OnnxCast, OnnxIdentity
    from skl2onnx.common.data_types import FloatTensorType, guess_proto_type
    from skl2onnx.operator_converters.isolation_forest import convert_sklearn_isolation_forest
    from skl2onnx.shape_calculators.isolation_forest import calculate_isolation_forest_output_shapes
    from sklearn.ensemble import IsolationForest

    def convert(scope: Any, operator: Any, container: Any) -> None:
        if isinstance(operator.inputs[0].type, FloatTensorType):
            convert_sklearn_isolation_forest(scope, operator, container)
            return
        opset = container.target_opset
        as_float = OnnxCast(operator.inputs[0], to=TensorProto.FLOAT, op_version=opset)
        features = operator.inputs[0].type.shape[1]
        forest = OnnxSubEstimator(  # this converter again, on float32
            operator.raw_operator, as_float, op_version=opset, input_types=[FloatTensorType([None, features])]
        )
        label, scores = operator.outputs[:2]
        OnnxIdentity(forest[0], op_version=opset, output_names=[label]).add_to(scope, container)
        cast = OnnxCast(forest[1], to=guess_proto_type(scores.type), op_version=opset, output_names=[scores])
        cast.add_to(scope, container)

    update_registered_converter(
        IsolationForest, "SklearnIsolationForest", calculate_isolation_forest_output_shapes, convert,
        options={"score_samples": [True, False]},
    )  # fmt: skip


def _svm_regressors_in_double() -> None:
    """OneClassSVM, SVR and NuSVR in double, from their own double support vectors and coefficients.

    skl2onnx writes them as an SVMRegressor node with float32 attributes, which onnxruntime runs on
    floats only: a graph on doubles would not load, and one on floats answers to float precision.
    On double inputs the kernel expansion is built from standard operators instead (ONNX opset 17).
    """
    import numpy as np
    from onnx import TensorProto
    from skl2onnx import update_registered_converter
    from skl2onnx.algebra.onnx_ops import (
        OnnxAdd,
        OnnxCast,
        OnnxExp,
        OnnxMatMul,
        OnnxMul,
        OnnxPow,
        OnnxReduceSumSquare,
        OnnxSign,
        OnnxSub,
        OnnxTanh,
    )
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.operator_converters.support_vector_machines import convert_sklearn_svm_regressor
    from skl2onnx.shape_calculators.support_vector_machines import calculate_sklearn_svm_output_shapes
    from sklearn.svm import SVR, NuSVR, OneClassSVM

    def convert(scope: Any, operator: Any, container: Any) -> None:
        svm = operator.raw_operator
        if not isinstance(operator.inputs[0].type, DoubleTensorType) or svm.kernel not in KERNELS:
            convert_sklearn_svm_regressor(scope, operator, container)
            return
        opset, X = container.target_opset, operator.inputs[0]
        vectors = np.asarray(svm.support_vectors_.toarray() if hasattr(svm.support_vectors_, "toarray")
                             else svm.support_vectors_, dtype=np.float64)  # fmt: skip
        dot = OnnxMatMul(X, vectors.T, op_version=opset)
        gamma, coef0 = np.array([svm._gamma]), np.array([svm.coef0], dtype=np.float64)
        if svm.kernel == "linear":
            kernel = dot
        elif svm.kernel == "rbf":
            squares = OnnxReduceSumSquare(X, axes=[1], keepdims=1, op_version=opset)
            distances = OnnxAdd(
                OnnxSub(squares, OnnxMul(dot, np.array([2.0]), op_version=opset), op_version=opset),
                (vectors**2).sum(axis=1)[np.newaxis, :],
                op_version=opset,
            )
            kernel = OnnxExp(OnnxMul(distances, -gamma, op_version=opset), op_version=opset)
        else:
            scaled = OnnxAdd(OnnxMul(dot, gamma, op_version=opset), coef0, op_version=opset)
            if svm.kernel == "poly":
                kernel = OnnxPow(scaled, np.array([float(svm.degree)]), op_version=opset)
            else:
                kernel = OnnxTanh(scaled, op_version=opset)
        coefficients = np.asarray(svm.dual_coef_, dtype=np.float64).reshape(-1, 1)
        intercept = np.asarray(svm.intercept_, dtype=np.float64).reshape(1, 1)
        names = operator.outputs
        if isinstance(svm, OneClassSVM):  # (label, score), as skl2onnx answers for it
            score = OnnxAdd(OnnxMatMul(kernel, coefficients, op_version=opset), intercept, op_version=opset,
                            output_names=[names[1]])  # fmt: skip
            label = OnnxCast(OnnxSign(score, op_version=opset), to=TensorProto.INT64, op_version=opset,
                             output_names=[names[0]])  # fmt: skip
            label.add_to(scope, container)
            score.add_to(scope, container)
        else:
            value = OnnxAdd(OnnxMatMul(kernel, coefficients, op_version=opset), intercept, op_version=opset,
                            output_names=[names[0]])  # fmt: skip
            value.add_to(scope, container)

    KERNELS = ("linear", "rbf", "poly", "sigmoid")
    for model, alias in ((OneClassSVM, "SklearnOneClassSVM"), (SVR, "SklearnSVR"), (NuSVR, "SklearnNuSVR")):
        update_registered_converter(model, alias, calculate_sklearn_svm_output_shapes, convert)


def _register_library_converters() -> None:
    """XGBoost's and LightGBM's converters (onnxmltools) for skl2onnx, where those libraries are
    installed; IsolationForest on float32 and support vector regressors in double, as scikit-learn
    computes them."""
    _isolation_forest_on_float32()
    _svm_regressors_in_double()
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    with contextlib.suppress(ImportError):
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from xgboost import XGBClassifier, XGBRegressor

        update_registered_converter(
            XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes, convert_xgboost,
            options=classifier_options,
        )  # fmt: skip
        update_registered_converter(
            XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost
        )
    with contextlib.suppress(ImportError):
        from lightgbm import LGBMClassifier, LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        update_registered_converter(
            LGBMClassifier, "LightGbmLGBMClassifier", calculate_linear_classifier_output_shapes, convert_lightgbm,
            options=classifier_options,
        )  # fmt: skip
        update_registered_converter(
            LGBMRegressor, "LightGbmLGBMRegressor", calculate_linear_regressor_output_shapes, convert_lightgbm,
            options={"split": None},
        )  # fmt: skip


def versions() -> dict[str, str]:
    found = {}
    for name in CONVERTERS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelgen.engines.onnx_convert", description=__doc__.splitlines()[0]
    )
    parser.add_argument("model", type=Path, help="the pickled model (joblib or pickle)")
    parser.add_argument("spec", type=Path, help="JSON: columns (the contract's), output (type), code_dir")
    parser.add_argument("out", type=Path, help="the .onnx file to write; OUT.json gets the facts about it")
    parser.add_argument("--no-tree-cast", action="store_true", help=argparse.SUPPRESS)  # a wrong conversion, for tests
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text("utf-8"))
    code_dir = Path(spec["code_dir"])
    sys.path.insert(0, str(code_dir))
    try:
        import joblib

        model = joblib.load(args.model)
        _register_library_converters()
        hooks = _call_converter_hooks(code_dir)
        failure: Unconvertible | None = None
        for precision in ("double", "float"):  # some converters mix float constants into double graphs
            try:
                data, output = convert(
                    model, spec["columns"], spec["output"], precision=precision, cast_trees=not args.no_tree_cast
                )
                _check_session(data)
            except Unconvertible as err:
                failure = failure or err  # the double path's reason is the one to tell
                if err.final:
                    break
            else:
                failure = None
                break
        if failure is not None:
            raise failure
    except Unconvertible as err:
        print(str(err), file=sys.stderr)
        return EXIT_UNCONVERTIBLE
    except ImportError as err:
        print(f"the ONNX converters are not installed here ({err.name}): pip install 'modelgen[onnx]'", file=sys.stderr)
        return EXIT_UNCONVERTIBLE
    args.out.write_bytes(data)
    facts = {
        "output": output,
        "precision": precision,
        "nullToken": NULL_TOKEN,
        "converters": versions(),
        "hooks": hooks,
    }
    args.out.with_name(args.out.name + ".json").write_text(json.dumps(facts, indent=1), "utf-8")
    return 0


def _check_session(data: bytes) -> None:
    """onnxruntime must load the graph (a type clash only shows here)."""
    import onnxruntime

    try:
        onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise Unconvertible(f"onnxruntime refuses the converted graph: {_first_line(err)}") from err


if __name__ == "__main__":
    sys.exit(main())
