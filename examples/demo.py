"""`make demo`: the whole path on this machine, with a local folder as the model registry.

train the penguins pipeline → put the artifact in the registry (.work/registry) → generate the
service project (.work/out/penguin-species) → fetch the artifact as the init container does →
start the service with its real server → one JSON and one CSV prediction → stop it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".work"


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def run(*args: str | Path, **kwargs) -> None:
    subprocess.run([str(a) for a in args], check=True, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes, content_type: str, accept: str = "application/json") -> str:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type, "Accept": accept})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read().decode()


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 30) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the service exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/ping", timeout=1):
                return time.monotonic() - started
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the service did not answer /ping in time")


def main() -> None:
    py = sys.executable
    trained, registry, out = WORK / "trained", WORK / "registry", WORK / "out"

    step("train examples/penguins (registry: local folder)")
    run(py, ROOT / "examples/penguins/train.py", "--out", trained, "--registry", registry)

    step("modelgen generate")
    run(Path(py).parent / "modelgen", "generate", trained / "model.yaml", "-o", out)
    project = out / "penguin-species"
    contract = json.loads((project / "app/contract.json").read_text())
    artifact = contract["artifact"]

    step("fetch the artifact and check its sha256 (what the init container does)")
    model_path = WORK / "model" / f"model.{artifact['format']}"
    env = {**os.environ, "ARTIFACT_URI": artifact["uri"], "ARTIFACT_SHA256": artifact["sha256"]}
    run(py, "-m", "app.fetch_artifact", cwd=project, env={**env, "MODEL_PATH": str(model_path)})

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    step(f"start the service (gunicorn) on {url}")
    env = {**os.environ, "MODEL_PATH": str(model_path), "HOST": "127.0.0.1", "PORT": str(port)}
    proc = subprocess.Popen([py, "-m", "app"], cwd=project, env=env, start_new_session=True)
    try:
        print(f"ready in {wait_ready(url, proc):.2f} s")
        sample = json.loads((project / "tests/sample.json").read_text())[:2]

        step("JSON: POST /invocations")
        print(json.dumps(sample))
        print("->", post(url + "/invocations", json.dumps(sample).encode(), "application/json"))

        step("CSV: POST /invocations (Accept: text/csv)")
        names = [c["name"] for c in contract["columns"]]
        rows = [",".join("" if r[n] is None else str(r[n]) for n in names) for r in sample]
        body = "\n".join([",".join(names), *rows]) + "\n"
        print(body, end="")
        print("->\n" + post(url + "/invocations", body.encode(), "text/csv", "text/csv"), end="")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        step("service stopped")


if __name__ == "__main__":
    main()
