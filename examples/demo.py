"""`make demo`: the whole path on this machine, with embedded stand-ins for Nexus and GitLab.

train the penguins pipeline → put the artifact in the registry (a local folder, .work/registry)
→ `modelgen init-gitops` (a local bare repository, .work/gitops.git) → `modelgen generate
--gitops --merge-request` (branch + push options) → accept the merge request (merge into main)
→ `modelgen list` → check out main as Argo CD would → fetch the artifact as the init container
does → start the service with its real server (input log on) → one JSON and one CSV prediction
→ the reference rows as traffic → stop it → `modelgen monitor` on its input log (no drift) →
`modelgen retrain --local --merge-request` (a new version on a branch).
"""

from __future__ import annotations

import json
import os
import random
import shutil
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
    trained, registry = WORK / "trained", WORK / "registry"

    step("train examples/penguins (registry: local folder)")
    run(py, ROOT / "examples/penguins/train.py", "--out", trained, "--registry", registry)

    modelgen = Path(py).parent / "modelgen"
    gitops = WORK / "gitops.git"
    os.environ["MODELGEN_CACHE"] = str(WORK / "cache")  # the clone modelgen works in

    step("modelgen init-gitops (GitOps remote: a local bare repository)")
    run(modelgen, "init-gitops", gitops)

    step("modelgen generate --gitops --merge-request")
    run(modelgen, "generate", trained / "model.yaml", "--gitops", gitops, "--merge-request")

    step("accept the merge request (what a reviewer does in GitLab)")
    checkout = WORK / "checkout"
    if checkout.exists():
        shutil.rmtree(checkout)
    git = ["git", "-c", "user.name=Reviewer", "-c", "user.email=reviewer@example.com"]
    run(*git, "clone", "--quiet", gitops, checkout)
    branches = subprocess.run(
        ["git", "branch", "-r", "--no-merged", "origin/main", "--list", "origin/modelgen/*"],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for branch in branches:
        run(*git, "merge", "--no-ff", "--quiet", "-m", f"Merge {branch}", branch, cwd=checkout)
        print(f"merged {branch}")
    run(*git, "push", "--quiet", "origin", "main", cwd=checkout)

    step("modelgen list")
    run(modelgen, "list", "--gitops", gitops)

    project = checkout / "models" / "penguin-species"
    contract = json.loads((project / "app/contract.json").read_text())
    artifact = contract["artifact"]

    step("fetch the artifact and check its sha256 (what the init container does)")
    model_path = WORK / "model" / f"model.{artifact['format']}"
    env = {**os.environ, "ARTIFACT_URI": artifact["uri"], "ARTIFACT_SHA256": artifact["sha256"]}
    run(py, "-m", "app.fetch_artifact", cwd=project, env={**env, "MODEL_PATH": str(model_path)})

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    step(f"start the service (gunicorn) on {url}")
    inputs = WORK / "inputs"
    shutil.rmtree(inputs, ignore_errors=True)
    env = {**os.environ, "MODEL_PATH": str(model_path), "HOST": "127.0.0.1", "PORT": str(port)}
    # Every request to the input log here (the manifest's sampleRate is for production traffic).
    env.update(MODELGEN_INPUT_LOG=str(inputs), MODELGEN_LOG_SAMPLE_RATE="1")
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

        step("traffic like the training rows: the reference rows in random order, 50 per request")
        header, *lines = (trained / "reference.csv").read_text().splitlines()
        # The file is sorted by species; applications do not send penguins that way (and the
        # CUSUM on predictions would rightly call a run of 150 Adelies a shift).
        random.Random(0).shuffle(lines)
        for start in range(0, len(lines), 50):
            post(url + "/invocations", "\n".join([header, *lines[start : start + 50]]).encode(), "text/csv")
        metrics = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
        print("\n".join(line for line in metrics.splitlines() if line.startswith("modelgen_feature_missing_total")))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        step("service stopped")

    step("modelgen monitor: the input log against the reference profile")
    profile = project / "deploy/base/monitoring/profile.json"
    run(modelgen, "monitor", "penguin-species", "--profile", profile, "--live", inputs, "--out", WORK / "drift-report")

    step("modelgen retrain --local --merge-request: a new version as a branch, never on main")
    run(modelgen, "retrain", "penguin-species", "--local", "--gitops", gitops, "--merge-request")
    run("git", "--git-dir", gitops, "branch", "--list", "modelgen/*")


if __name__ == "__main__":
    main()
