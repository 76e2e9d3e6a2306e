"""MLflow's scoring server (``mlflow models serve``) on the same pipeline and on its ONNX conversion, in a
virtualenv of its own."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import re
import shutil
import sys
import sysconfig
import time
from pathlib import Path

from lib.common import PROGRAMS, BenchError, log, run
from lib.servers import Server, free_port

PACKAGE = "mlflow-skinny"
# The libraries the pickle needs, held at the project venv's versions.
PINNED = ("scikit-learn", "xgboost", "pandas", "numpy")
# What MLflow's onnx flavour loads and runs the graph with (mlflow.onnx imports onnx and
# onnxruntime), held at the versions the generated service's ONNX engine runs.
ONNX_PINNED = ("onnx", "onnxruntime")
PROJECT_PTH = "project-venv.pth"
PINS_STAMP = ".bench-pins"


def mlflow_venv(path: Path) -> tuple[Path, str]:
    """MLflow's virtualenv, made once and reused: (its python, a note on what it runs).

    MLflow holds its own pins (mlflow 3.17 wants gunicorn<27, older than the one the generated
    service runs on), so it does not go into the project venv. Its venv reads the project venv's
    site-packages through a .pth file, after its own: the pickle loads with exactly the project's
    scikit-learn, xgboost, pandas and numpy (and the ONNX model with the project's onnx and
    onnxruntime), and pip installs only what MLflow adds. mlflow-skinny is MLflow without its
    tracking server and UI; ``mlflow models serve`` is the same code.
    """
    python = path / "bin" / "python"
    own = path / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    project = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    pth = own / PROJECT_PTH
    if path.exists() and not pth.exists():
        raise BenchError(f"{path} is not a virtualenv this bench made: remove it or pass another --mlflow-venv")
    pins = [f"{name}=={metadata.version(name)}" for name in (*PINNED, *ONNX_PINNED)]
    stamp = path / PINS_STAMP
    if _version(own) and pth.read_text().split() == project and stamp.is_file() and stamp.read_text().split() == pins:
        log(f"reusing {path} ({PACKAGE} {_version(own)})")
    else:
        began = time.monotonic()
        if not python.exists():
            log(f"creating {path}")
            run([sys.executable, "-m", "venv", path], timeout=120, what="python -m venv")
        pth.write_text("".join(f"{line}\n" for line in project))
        log(f"pip install {PACKAGE} {' '.join(pins)} into {path} (first run, or new pins)")
        (path / ".bench-note").unlink(missing_ok=True)
        try:
            run([python, "-m", "pip", "install", "--quiet", PACKAGE, *pins], timeout=900, what="pip install")
        except BenchError as err:
            raise BenchError(f"pip could not install {PACKAGE} beside {' '.join(pins)}: {err}") from err
        stamp.write_text("".join(f"{pin}\n" for pin in pins))
        log(f"installed {PACKAGE} {_version(own)} in {time.monotonic() - began:.0f} s")
    borrowed = [name for name in (*PINNED, *ONNX_PINNED) if _version(own, name)]
    if borrowed:
        raise BenchError(f"pip installed its own {', '.join(borrowed)} into {path}: the models would load differently")
    note_file = path / ".bench-note"
    if not note_file.exists():
        note_file.write_text(_note(python, _version(own), pins) + "\n")
    return python, note_file.read_text().strip()


def _version(site: Path, name: str = PACKAGE) -> str | None:
    """The version of ``name`` installed in ``site`` itself (not through the .pth)."""
    if not site.is_dir():
        return None
    wanted = name.lower().replace("-", "_")
    for dist in metadata.distributions(path=[str(site)]):
        if dist.metadata["Name"].lower().replace("-", "_") == wanted:
            return dist.version
    return None


def _note(python: Path, version: str | None, pins: list[str]) -> str:
    """pip backtracks to an older MLflow when the newest one conflicts with the pins: say which."""
    note = f"{PACKAGE} {version} (own venv over the project's libraries, pip install {PACKAGE} {' '.join(pins)})"
    try:
        index = run([python, "-m", "pip", "index", "versions", PACKAGE], timeout=120, what="pip index")
    except BenchError:
        return note
    latest = re.search(rf"{re.escape(PACKAGE)} \(([^)]+)\)", index.stdout)
    if latest and latest.group(1) != version:
        note += f"; the newest on the index, {latest.group(1)}, did not resolve here (pip picked {version})"
    elif latest:
        note += ", the newest on the index"
    return note


def mlflow_model(python: Path, model_path: Path, work: Path) -> tuple[Path, str]:
    """The pipeline saved by mlflow.sklearn.save_model in the MLflow venv: (model dir, note)."""
    target = work / "mlflow-model"
    if target.exists():
        shutil.rmtree(target)
    program = PROGRAMS / "save_mlflow_model.py"
    done = run([python, program, model_path, target], timeout=180, what="save_model", cwd=work)
    trusted = json.loads(done.stdout.strip().splitlines()[-1])["trusted"]
    match = re.search(r"serialization_format:\s*(\S+)", (target / "MLmodel").read_text())
    flavor = f"serialization_format {match.group(1)}" if match else "serialization format unknown"
    note = f"model saved by mlflow.sklearn.save_model(pyfunc_predict_fn='predict_proba'), {flavor}"
    if trusted:
        note += f", skops_trusted_types={trusted} (MLflow refused the default save without them)"
    log(f"saved the pipeline as an MLflow model in {target}: {note}")
    return target, note


def mlflow_onnx_model(python: Path, onnx_path: Path, work: Path) -> tuple[Path, str]:
    """The ONNX file saved by mlflow.onnx.save_model (onnx flavour) in the MLflow venv: (model dir, note)."""
    target = work / "mlflow-onnx-model"
    if target.exists():
        shutil.rmtree(target)
    program = PROGRAMS / "save_mlflow_onnx_model.py"
    done = run([python, program, onnx_path, target], timeout=180, what="mlflow.onnx.save_model", cwd=work)
    inputs = json.loads(done.stdout.strip().splitlines()[-1])["inputs"]
    kinds = ", ".join(f"{name} {kind.removeprefix('tensor(').removesuffix(')')}" for name, kind in inputs)
    note = (
        f"ONNX file saved by mlflow.onnx.save_model (MLflow's defaults: onnxruntime's own thread pools, "
        f"providers CUDA then CPU) with a tensor signature of the graph's inputs, each [-1, 1]: {kinds}"
    )
    log(f"saved the ONNX file as an MLflow model in {target}")
    return target, note


def workers_flag(python: Path) -> str:
    """``mlflow models serve``'s flag for the number of workers, as its --help names it."""
    text = run(
        [python.parent / "mlflow", "models", "serve", "--help"], timeout=60, what="mlflow models serve --help"
    ).stdout
    for flag in ("--workers", "-w"):
        if re.search(rf"(^|\s|,){re.escape(flag)}[\s,]", text):
            return flag
    raise BenchError(f"mlflow models serve --help names no workers flag:\n{text}")


def mlflow_server(python: Path, model_dir: Path, work: Path, extra: list[str], label: str, env: dict) -> Server:
    """``mlflow models serve`` of ``model_dir`` on a free port (``extra``: more options, e.g. workers)."""
    port = free_port()
    bin_dir = python.parent
    # `mlflow models serve` starts uvicorn by name: the MLflow venv's bin/ goes first on PATH.
    env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(bin_dir.parent)}
    cmd = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local"]
    cmd += ["-h", "127.0.0.1", "-p", str(port), *extra]
    slug = re.sub(r"[^A-Za-z0-9-]+", "-", label).strip("-")
    return Server(name=label, cmd=cmd, cwd=work, env=env, port=port, log_path=work / f"server-{slug}.log")
