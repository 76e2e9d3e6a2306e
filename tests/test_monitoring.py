"""Drift monitoring end to end: the generated penguins service with monitoring on, its counters
and input log, `modelgen monitor` on what it logged (notifying a real HTTP receiver and a real
SMTP server), the HTML report in headless Chromium, and `modelgen retrain --local`."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import numpy as np
import pandas as pd
import pytest
import yaml
from gitops_support import Remote, cli, git, variant
from support import Service, smtp_inbox, wait_until
from test_drift import Receiver, drifted, undrifted

from modelgen.cli import main
from modelgen.registry.backends import sha256_hex

NAME = "penguin-species"
DRIFTED = ["body_mass_g", "flipper_length_mm", "island"]  # in the profile's (sorted) feature order
BATCH = 100  # rows per request: 20 requests per phase, as an application scoring in batches


@pytest.fixture(scope="module")
def reference(penguins_manifest) -> pd.DataFrame:
    # The rows the example trained on, as it wrote them for the profile.
    return pd.read_csv(penguins_manifest.parent / "reference.csv")


@pytest.fixture(scope="module")
def model_path(penguins_manifest) -> Path:
    uri = yaml.safe_load(penguins_manifest.read_text())["spec"]["artifact"]["uri"]
    return Path(url2pathname(urlsplit(uri).path))


def records(frame: pd.DataFrame) -> list[dict]:
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [{k: (int(v) if k == "year" else v) for k, v in row.items()} for row in rows]


MONITORING = ("modelgen_feature_", "modelgen_predictions_")  # the counts each worker flushes every 0.5 s


def serve_and_send(project: Path, python: Path, model: Path, rows: list[dict], log_dir: Path) -> str:
    """Start the service with every request logged, send ``rows`` in batches; returns /metrics."""
    env = {"MODELGEN_INPUT_LOG": str(log_dir), "MODELGEN_LOG_SAMPLE_RATE": "1", "MODELGEN_WORKERS": "2"}
    service = Service(project, python, model, env=env).start()
    try:
        for start in range(0, len(rows), BATCH):
            body = json.dumps(rows[start : start + BATCH]).encode()
            response = service.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            assert response.status == 200, response.body[:500]
        # Each worker moves its counts to the counters every 0.5 s: wait until every row's prediction is
        # counted and a second read finds the same counts (the flush that moved them has finished).
        seen: list[list[str]] = []

        def settled(text: str) -> bool:
            seen.append([line for line in text.splitlines() if line.startswith(MONITORING)])
            predicted = sum(value for _, value in samples(text, "modelgen_predictions_total"))
            return predicted == len(rows) and len(seen) > 1 and seen[-1] == seen[-2]

        return wait_until(
            lambda: service.request("GET", "/metrics").body.decode(),
            settled,
            timeout=30,
            interval=0.1,
            message=f"/metrics did not settle on {len(rows)} counted predictions",
        )
    finally:
        service.stop()


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of metric ``name`` in Prometheus text: its labels (any order) and value."""
    found = []
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line[len(name) : line.rindex("}") + 1]))
            found.append((labels, float(line.rsplit(" ", 1)[1])))
    return found


def metric(text: str, name: str, **labels: str) -> float:
    values = [value for found, value in samples(text, name) if found == labels]
    assert len(values) == 1, f"{name}{labels}: {len(values)} samples in /metrics"
    return values[0]


@pytest.fixture(scope="module")
def smtp_server():
    with smtp_inbox() as server:
        yield server


@pytest.fixture(scope="module")
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def traffic(penguins_project, penguins_python, model_path, reference, tmp_path_factory):
    """Two runs of the service: 2,000 rows like the reference, then 2,000 drifted rows."""
    root = tmp_path_factory.mktemp("traffic")
    calm_rows, drift_rows = records(undrifted(reference)), records(drifted(reference))
    calm = serve_and_send(penguins_project, penguins_python, model_path, calm_rows, root / "calm")
    drift = serve_and_send(penguins_project, penguins_python, model_path, drift_rows, root / "drift")
    return {"calm": (calm, root / "calm"), "drift": (drift, root / "drift"), "drift_rows": drift_rows}


def modelgen(*args: str | Path) -> tuple[int, str, str]:
    """``modelgen ARGS`` in this process (module fixtures have no capsys); exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def monitor(project: Path, log_dir: Path, out: Path, receiver, smtp) -> tuple[int, str]:
    controller, _ = smtp
    code, stdout, err = modelgen(
        "monitor", NAME,
        "--profile", project / "deploy/base/monitoring/profile.json",
        "--live", log_dir, "--window", "1h", "--out", out,
        "--webhook", receiver.url, "--smtp", f"127.0.0.1:{controller.port}", "--mail-to", "jane.doe@example.com",
        "--fail-on-drift",
    )  # fmt: skip
    assert code in (0, 4), err
    return code, stdout


@pytest.mark.slow
def test_the_service_counts_inputs_and_predictions_per_reference_bin(traffic, reference):
    text, log_dir = traffic["drift"]
    rows = traffic["drift_rows"]
    atlantis = sum(r["island"] == "Atlantis" for r in rows)
    no_mass = sum(r["body_mass_g"] is None for r in rows)
    assert atlantis > 200 and no_mass > 700  # the drift the test means to send
    assert metric(text, "modelgen_feature_unseen_total", feature="island") == atlantis
    assert metric(text, "modelgen_feature_unseen_total", feature="sex") == 0
    assert metric(text, "modelgen_feature_missing_total", feature="body_mass_g") == no_mass
    # Every present flipper length lands in exactly one reference bin; +25% empties the low ones.
    values = samples(text, "modelgen_feature_values_total")
    flipper = {labels["bin"]: v for labels, v in values if labels["feature"] == "flipper_length_mm"}
    present = sum(r["flipper_length_mm"] is not None for r in rows)
    assert len(flipper) == 10 and sum(flipper.values()) == present
    assert flipper["(-inf, 185]"] == 0 and flipper["(220.9, inf]"] > 0.9 * present
    labels = {found["bin"]: v for found, v in samples(text, "modelgen_predictions_total")}
    assert sum(labels.values()) == len(rows) and set(labels) <= {"Adelie", "Chinstrap", "Gentoo"}
    # Every request was logged (sample rate 1), one file per worker process.
    files = sorted(log_dir.glob("inputs-*.jsonl"))
    assert 1 <= len(files) <= 2
    logged = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(logged) == len(rows)
    assert {k for k in logged[0]} == {*reference.columns, "__ts", "__prediction"}


@pytest.mark.slow
def test_monitor_raises_nothing_on_undrifted_traffic(traffic, penguins_project, receiver, smtp_server, tmp_path):
    _, log_dir = traffic["calm"]
    code, out = monitor(penguins_project, log_dir, tmp_path / "calm", receiver, smtp_server)
    assert code == 0 and "no drift in 2000 live rows" in out
    assert receiver.bodies == [] and smtp_server[1].messages == []


@pytest.fixture(scope="module")
def drift_report(traffic, penguins_project, receiver, smtp_server, tmp_path_factory):
    _, log_dir = traffic["drift"]
    out = tmp_path_factory.mktemp("drift-report")
    code, stdout = monitor(penguins_project, log_dir, out, receiver, smtp_server)
    return code, stdout, out


@pytest.mark.slow
def test_monitor_flags_exactly_the_three_drifted_features_and_notifies(drift_report, receiver, smtp_server):
    code, out, folder = drift_report
    assert code == 4
    report = json.loads((folder / "drift-report.json").read_text())
    # Exactly the three changed inputs. The changed inputs also move the predictions (the share
    # of Adelie, the reference's most frequent class), which the CUSUM reports on its own line.
    assert report["drifted"] == [*DRIFTED, "predictions"]
    assert [f["name"] for f in report["features"] if f["drifted"]] == DRIFTED
    assert report["predictions"]["tracked"] == "Adelie" and report["predictions"]["alarm"] is True
    ((body),) = receiver.bodies
    assert body["drifted"] == [*DRIFTED, "predictions"]
    assert body["text"].startswith(f"{NAME}: drift in body_mass_g, flipper_length_mm, island, predictions")
    ((mail),) = smtp_server[1].messages
    assert mail["To"] == "jane.doe@example.com" and "Atlantis" in mail.get_payload()
    assert "body_mass_g, flipper_length_mm, island" in " ".join(mail["Subject"].split())


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: run `make system-deps`")
        pytest.skip("chromium is not installed")
    return found


@pytest.mark.slow
def test_html_report_renders_its_per_feature_sections_in_headless_chromium(drift_report, tmp_path):
    from PIL import Image

    _, _, folder = drift_report
    page = (folder / "drift-report.html").as_uri()
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [chromium(), *flags, f"--user-data-dir={profile}", "--dump-dom", page],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    sections = re.findall(r'<section id="([^"]+)"', dom.stdout)
    assert set(DRIFTED) <= set(sections) and len(sections) == 7  # one per input feature

    # The whole page, screenshotted: each feature's chart draws reference (blue) and live (orange)
    # bars; the legend alone would give a dozen rows of each colour, seven charts hundreds.
    shot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [chromium(), *flags, f"--user-data-dir={profile}", "--window-size=900,3200", f"--screenshot={shot}", page],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (3200, 900, 3)
    for colour in ((0x4C, 0x78, 0xA8), (0xF5, 0x85, 0x18)):
        rows = np.flatnonzero((pixels == colour).all(axis=2).any(axis=1))
        assert len(rows) > 7 * 60, f"{colour}: bars on {len(rows)} rows"


@pytest.mark.slow  # runs the training script, then generate
def test_retrain_local_publishes_a_new_artifact_and_a_branch_with_the_updated_manifest(
    penguins_manifest, registry, gitops_cache, capsys, tmp_path
):
    remote = Remote.create(tmp_path / "gitops.git")
    assert cli(capsys, "init-gitops", remote.path)[0] == 0
    code, _, err = cli(capsys, "generate", penguins_manifest, "--gitops", remote.path)
    assert code == 0, err
    remote.merge(f"modelgen/{NAME}-1.0.0", tmp_path / "work")
    main_before = git("rev-parse", "main", cwd=remote.path)

    code, out, err = cli(capsys, "retrain", NAME, "--local", "--gitops", remote.path, "--merge-request")
    assert code == 0, err
    version = re.search(rf"^{NAME} (\d+\.\d+\.\d+): ", out, re.M).group(1)
    assert version != "1.0.0"
    branch = f"modelgen/{NAME}-{version}"
    assert branch in remote.branches()
    assert git("rev-parse", "main", cwd=remote.path) == main_before  # never a push to the target branch

    # The new artifact is in the registry, and the manifest on the branch pins it.
    artifact = registry / NAME / version / "model.joblib"
    assert artifact.is_file()
    manifest = yaml.safe_load(remote.show(branch, f"models/{NAME}/model.yaml"))
    assert manifest["metadata"]["version"] == version
    assert manifest["spec"]["artifact"]["uri"] == artifact.as_uri()
    assert manifest["spec"]["artifact"]["sha256"] == sha256_hex(artifact.read_bytes())
    provenance = manifest["metadata"]["provenance"]
    assert 0.9 < provenance["metrics"]["accuracy"] <= 1 and provenance["source"] == "train.py"
    training = yaml.safe_load(penguins_manifest.read_text())["spec"]["training"]
    assert provenance["parameters"] == training["hyperparameters"]
    # The reference for drift comes with the new model, from the training run.
    reference = manifest["spec"]["monitoring"]["reference"]
    assert reference == (registry / NAME / version / "reference.csv").as_uri()
    # The merge request shows the new metrics beside the old ones.
    (push,) = [p for p in remote.pushes() if any(ref[2] == f"refs/heads/{branch}" for ref in p["refs"])]
    options = dict(option.partition("=")[::2] for option in push["options"])
    assert "merge_request.create" in options and options["merge_request.target"] == "main"
    description = options["merge_request.description"]
    assert f"| metric | 1.0.0 (now) | {version} (retrained) | change |" in description
    assert re.search(r"\| accuracy \| 0\.98\d* \| 0\.98\d* \| [+-]", description)
    assert not math.isnan(provenance["metrics"]["accuracy"])


@pytest.mark.slow
def test_batch_entry_point_scores_a_file_and_names_a_bad_cell(
    penguins_manifest, penguins_project, penguins_python, model_path, tmp_path
):
    env = {**os.environ, "MODEL_PATH": str(model_path)}
    source = penguins_manifest.parent / "reference.csv"
    out = tmp_path / "predictions.csv"
    command = [penguins_python, "-m", "app.batch", source, out]
    done = subprocess.run(command, cwd=penguins_project, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    predictions = pd.read_csv(out)
    header = ["label", "probability_Adelie", "probability_Chinstrap", "probability_Gentoo"]
    assert list(predictions.columns) == [*header, "model_name", "model_version", "model_sha256"]
    assert len(predictions) == len(pd.read_csv(source))
    # The profile's prediction shares are these predictions' shares.
    shares = predictions["label"].value_counts(normalize=True).to_dict()
    profile = json.loads((penguins_project / "deploy/base/monitoring/profile.json").read_text())
    assert profile["predictions"]["frequencies"] == pytest.approx(shares)

    bad = tmp_path / "bad.csv"
    lines = source.read_text().splitlines()
    bad.write_text("\n".join([lines[0], lines[1], lines[2].replace("2007", "late")]) + "\n")
    before = out.read_bytes()
    done = subprocess.run(
        [penguins_python, "-m", "app.batch", bad, out], cwd=penguins_project, env=env, capture_output=True, text=True
    )
    assert done.returncode == 2 and "column 'year', row 1" in done.stderr and "'late' is not an integer" in done.stderr
    # No half-written predictions: the output is renamed into place only when complete, so the
    # earlier run's file is as it was, and nothing else was left beside it.
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "predictions.csv"]


def test_a_missing_reference_is_a_clear_error_and_writes_nothing(penguins_manifest, tmp_path, capsys):
    update = variant(penguins_manifest, tmp_path / "model", {"reference: reference.csv": "reference: gone.csv"})
    code, out, err = cli(capsys, "generate", update, "-o", tmp_path / "out")
    assert code != 0 and "Traceback" not in err
    assert "spec.monitoring.reference: file 'gone.csv' not found" in err
    assert not (tmp_path / "out").exists()


def test_retrain_dry_run_prints_the_training_job(penguins_manifest, gitops_cache, capsys, tmp_path, monkeypatch):
    remote = Remote.create(tmp_path / "gitops.git")
    assert cli(capsys, "init-gitops", remote.path)[0] == 0
    assert cli(capsys, "generate", penguins_manifest, "--gitops", remote.path)[0] == 0
    code, _, err = cli(capsys, "retrain", NAME, "--dry-run", "--gitops", remote.path)
    assert code == 2 and f"models/{NAME}/training/job.yaml not found" in err  # not merged yet
    remote.merge(f"modelgen/{NAME}-1.0.0", tmp_path / "work")
    code, out, err = cli(capsys, "retrain", NAME, "--dry-run", "--gitops", remote.path)
    assert code == 0, err
    job = yaml.safe_load(out)
    assert job["kind"] == "Job" and job["metadata"]["generateName"] == f"{NAME}-retrain-"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["retrain", NAME]
    # Without --dry-run, kubectl creates it; with no cluster to reach, kubectl's own words, exit 2.
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    code, _, err = cli(capsys, "retrain", NAME, "--gitops", remote.path)
    assert code == 2 and err.startswith("error: kubectl create in models-dev failed: ")


ROTATION = """
import json, sys
from pathlib import Path
from app.monitoring import InputLog
from app.payload import InputSchema
contract = json.loads(Path("app/contract.json").read_text())
frame = InputSchema(contract["columns"], contract["values"]).from_json(Path("tests/sample.json").read_bytes())
log = InputLog(Path(sys.argv[1]), sample_rate=1.0, max_bytes=4000, backups=3)
for _ in range(40):
    log.maybe_write(frame, ["Adelie"] * len(frame))
"""


@pytest.mark.slow
def test_the_input_log_rotates_by_size_and_keeps_three_old_files(penguins_project, penguins_python, tmp_path):
    logs = tmp_path / "inputs"
    done = subprocess.run(
        [penguins_python, "-c", ROTATION, logs], cwd=penguins_project, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    names = sorted(p.name.split(".jsonl")[1] for p in logs.iterdir())
    assert names == ["", ".1", ".2", ".3"]  # the current file and three rotated ones; older ones dropped
    for path in logs.iterdir():
        lines = path.read_text().splitlines()
        assert path.stat().st_size < 4000 + 20 * 400  # rotated once over the limit, by whole requests
        assert all(json.loads(line)["__prediction"] == "Adelie" for line in lines)
