"""Drift: `modelgen profile` of the penguins, then `modelgen monitor` on undrifted and drifted
traffic, with notifications reaching a real HTTP receiver and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest
from gitops_support import cli
from support import smtp_inbox

from modelgen.monitoring.drift import DEFAULT_THRESHOLDS, compare, cusum, profile


@pytest.fixture(scope="module")
def reference():
    import palmerpenguins

    frame = palmerpenguins.load_penguins().dropna(subset=["species"]).drop(columns=["species"])
    return frame.reset_index(drop=True)


@pytest.fixture(scope="module")
def columns(penguins_manifest):
    from modelgen.manifest import load

    return [
        {"name": c.name, "type": c.type, "categories": list(c.categories or [])}
        for c in load(penguins_manifest).columns
    ]


def undrifted(reference: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    return reference.sample(2000, replace=True, random_state=seed).reset_index(drop=True)


def drifted(reference: pd.DataFrame) -> pd.DataFrame:
    """Flipper length +25%, 40% of body mass missing, a new island: what the test must flag, and only that."""
    live = undrifted(reference, seed=2)
    rng = np.random.default_rng(3)
    live["flipper_length_mm"] = live["flipper_length_mm"] * 1.25
    live.loc[rng.random(len(live)) < 0.4, "body_mass_g"] = np.nan
    live.loc[rng.random(len(live)) < 0.15, "island"] = "Atlantis"
    return live


def test_undrifted_traffic_raises_nothing(reference, columns):
    ref = profile(reference, columns)
    for seed in (1, 5, 9):
        report = compare(ref, undrifted(reference, seed))
        assert report.drifted == [], [f.reasons for f in report.features if f.reasons]


def test_drifted_traffic_flags_exactly_the_three_changed_features(reference, columns):
    report = compare(profile(reference, columns), drifted(reference))
    assert report.drifted == ["island", "flipper_length_mm", "body_mass_g"]
    by_name = {f.name: f for f in report.features}
    assert "distribution shifted" in by_name["flipper_length_mm"].reasons[0]
    assert by_name["flipper_length_mm"].mean_live == pytest.approx(1.25 * by_name["flipper_length_mm"].mean_live / 1.25)
    assert any("missing values" in r for r in by_name["body_mass_g"].reasons)
    assert "Atlantis" in by_name["island"].unseen and any("unseen categories" in r for r in by_name["island"].reasons)


def test_cusum_catches_a_shift_of_the_predictions():
    reference = {"mean": 0.5, "std": 0.1}
    rng = np.random.default_rng(0)
    steady = rng.normal(0.5, 0.1, 500)
    assert cusum(steady, reference, DEFAULT_THRESHOLDS)["alarm"] is False
    shifted = np.concatenate([steady[:200], rng.normal(0.6, 0.1, 300)])
    result = cusum(shifted, reference, DEFAULT_THRESHOLDS)
    assert result["alarm"] is True and 200 <= result["alarm_at"] < 260


class Receiver:
    """A chat-webhook stand-in: records the JSON bodies posted to it."""

    def __init__(self):
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def do_POST(self):
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/drift"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def smtp():
    with smtp_inbox() as server:
        yield server


def test_monitor_reports_and_notifies_on_drift_only(reference, penguins_manifest, tmp_path, capsys, smtp):
    controller, inbox = smtp
    receiver = Receiver()
    try:
        reference_file = tmp_path / "reference.csv"
        reference.to_csv(reference_file, index=False)
        profile_file = tmp_path / "profile.json"
        code, out, err = cli(capsys, "profile", reference_file, "--manifest", penguins_manifest, "-o", profile_file)
        assert code == 0, err
        assert set(json.loads(profile_file.read_text())["features"]) == set(reference.columns)

        notify = [
            "--webhook", receiver.url, "--smtp", f"127.0.0.1:{controller.port}",
            "--mail-to", "jane.doe@example.com", "--fail-on-drift",
        ]  # fmt: skip
        calm = tmp_path / "calm.jsonl"
        undrifted(reference).to_json(calm, orient="records", lines=True)
        code, out, _ = cli(capsys, "monitor", "penguin-species", "--profile", profile_file, "--live", calm,
                           "--out", tmp_path / "calm", *notify)  # fmt: skip
        assert code == 0 and "no drift in 2000 live rows" in out
        assert receiver.bodies == [] and inbox.messages == []

        window = tmp_path / "window.csv"
        drifted(reference).to_csv(window, index=False)
        code, out, _ = cli(capsys, "monitor", "penguin-species", "--profile", profile_file, "--live", window,
                           "--out", tmp_path / "drift", *notify)  # fmt: skip
        assert code == 4
        ((body),) = receiver.bodies
        assert body["drifted"] == ["island", "flipper_length_mm", "body_mass_g"]
        assert body["text"].startswith("penguin-species: drift in island, flipper_length_mm, body_mass_g")
        ((mail),) = inbox.messages
        assert mail["To"] == "jane.doe@example.com"
        subject = " ".join(mail["Subject"].split())  # long headers arrive folded
        assert subject == "[modelgen] drift in penguin-species: island, flipper_length_mm, body_mass_g"
        assert "Atlantis" in mail.get_payload()

        report = json.loads((tmp_path / "drift" / "drift-report.json").read_text())
        assert report["drifted"] == ["island", "flipper_length_mm", "body_mass_g"]
        page = (tmp_path / "drift" / "drift-report.html").read_text()
        assert page.count("<section id=") == len(reference.columns) and page.count("<svg") == len(reference.columns)
        assert "<tr class='drift'>" in page
    finally:
        receiver.close()


def test_a_wide_model_profile_fits_argo_cds_last_applied_annotation():
    # 60 numeric features of 5,000 rows: the KS samples shrink so the ConfigMap stays applyable.
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(5000, 60)), columns=[f"x{i}" for i in range(60)])
    columns = [{"name": name, "type": "number"} for name in frame.columns]
    result = profile(frame, columns)
    text = json.dumps(result, indent=1, sort_keys=True)  # as render writes it
    assert len(text.encode()) < 256 * 1024
    assert all(len(f["sample"]) == 8000 // 60 for f in result["features"].values())
    # A narrow model keeps the full sample.
    narrow = profile(frame[["x0"]], columns[:1])
    assert len(narrow["features"]["x0"]["sample"]) == 1000


def test_the_html_report_escapes_what_comes_from_the_data(reference, columns, tmp_path):
    # Category values, feature names and the model name all reach the page; none may become markup.
    from html.parser import HTMLParser

    from modelgen.monitoring.report import write_reports

    hostile = "<script>alert(1)</script>"
    ref = reference.assign(island=reference["island"].where(reference.index % 3 != 0, hostile))
    ref = ref.rename(columns={"sex": "sex<b onmouseover='x()'>"})
    cols = [c | {"name": "sex<b onmouseover='x()'>"} if c["name"] == "sex" else c for c in columns]
    live = ref.copy()
    live.loc[live.index % 4 == 0, "island"] = "<img src=x onerror=alert(2)>"
    _, page = write_reports(compare(profile(ref, cols), live), "<i>model</i>", tmp_path)
    text = page.read_text("utf-8")

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.attributes, self.text = set(), set(), []

        def handle_starttag(self, tag, attrs):
            self.tags.add(tag)
            self.attributes.update(name for name, _ in attrs)

        def handle_data(self, data):
            self.text.append(data)

    parsed = Tags()
    parsed.feed(text)
    assert {"script", "img", "b", "i"}.isdisjoint(parsed.tags), parsed.tags
    assert {"onmouseover", "onerror"}.isdisjoint(parsed.attributes)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the category is in the chart, as text
    shown = "".join(parsed.text)
    assert hostile in shown and "<img src=x onerror=alert(2)>" in shown and "Drift report: <i>model</i>" in shown
    assert "sex<b onmouseover='x()'>" in shown
