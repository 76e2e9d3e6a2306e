"""What the service is (``contract.json``, written by modelgen) and how it runs (environment)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent


def one_thread_per_process() -> None:
    """BLAS and OpenMP on one thread: the server, the batch job and Spark already run a process
    (or task) per CPU, and threads on top only contend. Before numpy, xgboost or onnxruntime load."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


CONTRACT_PATH = Path(__file__).resolve().parent / "contract.json"


@dataclass(frozen=True)
class Settings:
    contract: dict[str, Any]
    model_path: Path
    model_sha256: str
    engine: str  # native, or onnx when the contract has the converted model
    onnx_path: Path
    onnx_sha256: str
    host: str
    port: int
    server: str
    workers: int
    max_request_bytes: int
    timeout_seconds: int
    access_log: bool
    monitoring: bool
    input_log: Path | None
    log_sample_rate: float
    log_max_bytes: int

    @property
    def scoring_sha256(self) -> str:
        """The sha256 of the file that scores: the ONNX conversion on the ONNX engine, else the artifact."""
        return self.onnx_sha256 if self.engine == "onnx" else self.model_sha256


def load_contract() -> dict[str, Any]:
    return json.loads(CONTRACT_PATH.read_text("utf-8"))


def from_env(env: dict[str, str] | None = None) -> Settings:
    """Settings from the environment, falling back to the contract's values."""
    env = os.environ if env is None else env
    contract = load_contract()
    default_path = PROJECT_DIR / f"model.{contract['artifact']['format']}"
    onnx = contract.get("onnx") or {}
    return Settings(
        contract=contract,
        model_path=Path(env.get("MODEL_PATH", default_path)),
        # The sha256 pinned in the contract is the default; the Deployment passes the same value.
        model_sha256=env.get("MODEL_SHA256", contract["artifact"]["sha256"]).lower(),
        # MODELGEN_ENGINE=native switches a converted model back to its own library, no new image needed.
        engine=_engine(env.get("MODELGEN_ENGINE") or contract["engine"], onnx),
        onnx_path=Path(env.get("ONNX_PATH", PROJECT_DIR / "model.onnx")),
        onnx_sha256=env.get("ONNX_SHA256", onnx.get("sha256", "")).lower(),
        host=env.get("HOST", "0.0.0.0"),
        port=int(env.get("PORT", "8080")),
        server=env.get("MODELGEN_SERVER", contract["server"]),
        workers=int(env.get("MODELGEN_WORKERS") or contract["workers"] or cpu_limit()),
        max_request_bytes=int(env.get("MAX_REQUEST_BYTES", contract["maxRequestBytes"])),
        timeout_seconds=int(env.get("TIMEOUT_SECONDS", contract["timeoutSeconds"])),
        access_log=env.get("ACCESS_LOG", "0") == "1",
        # Drift monitoring: on when the contract has its reference bins, unless MODELGEN_MONITORING=0.
        monitoring=contract["monitoring"] is not None and env.get("MODELGEN_MONITORING") != "0",
        input_log=Path(env["MODELGEN_INPUT_LOG"]) if env.get("MODELGEN_INPUT_LOG") else None,
        log_sample_rate=float(env.get("MODELGEN_LOG_SAMPLE_RATE", contract["sampleRate"])),
        log_max_bytes=int(env.get("MODELGEN_LOG_MAX_BYTES", 100 * 1024 * 1024)),
    )


def _engine(asked: str, onnx: dict[str, Any]) -> str:
    if asked not in ("native", "onnx"):
        raise SystemExit(f"MODELGEN_ENGINE must be native or onnx, not {asked!r}")
    if asked == "onnx" and not onnx:
        raise SystemExit("MODELGEN_ENGINE=onnx, but this model has no ONNX artifact (spec.artifact.onnx)")
    return asked


def cpu_limit() -> int:
    """CPUs this container may use: the cgroup quota if one is set, else the CPUs it may run on.

    ``os.cpu_count()`` reports the node's CPUs, which would start far too many workers in a
    pod limited to one or two cores.
    """
    quota = _cgroup_quota()
    available = len(os.sched_getaffinity(0))
    return max(1, min(available, math.ceil(quota))) if quota else available


def _cgroup_quota() -> float | None:
    try:  # cgroup v2: "max 100000" or "200000 100000"
        limit, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return None if limit == "max" else int(limit) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 else None
    except (OSError, ValueError):
        return None
