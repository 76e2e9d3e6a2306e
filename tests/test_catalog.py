"""`modelgen catalog`: the GitOps repository as a static site.

The repository is made as users make it: `init-gitops`, then `generate --gitops` of each version
of each model, every branch merged as GitLab merges a merge request; one environment promoted by
hand (`release.json`, as the promotion work will write it) and a drift report written by
`modelgen monitor`. The fast tests read the facts and the pages; the slow ones add an R model and
open the site in headless Chromium (Playwright's driver, Debian's browser) and run the
repository's `pages` job with gitlab-ci-local.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import numpy as np
import pandas as pd
import pytest
import yaml
from gitops_support import Remote, git
from markupsafe import escape
from support import BIN, ROOT
from test_drift import drifted
from test_gitops_ci import gitlab_ci_local
from test_monitoring import chromium
from test_r_service import R_ENV, rscript

from modelgen.catalog.facts import collect
from modelgen.cli import main
from modelgen.gitops.live import live_of
from modelgen.gitops.repo import GitopsRepo
from modelgen.gitops.scaffold import GitopsSettings, scaffold
from modelgen.manifest import load, load_text
from modelgen.registry.backends import registry_for

SPECIES, ANOMALY, R_MODEL = "penguin-species", "penguin-anomaly", "penguin-species-r"
JANE, OLA = "jane.doe@example.com", "ola.nordmann@example.com"
HOSTILE = "Flags odd penguins. <script>alert('owned')</script><img src=x onerror=alert(2)> & more"
REPO_URL = "https://gitlab.example.com/ml/gitops.git"
# Each model's versions in the order they are merged, with the metrics each one records.
SPECIES_VERSIONS = {"1.0.0": 0.97, "1.1.0": 0.985, "1.2.0": 0.96}  # the last one lost accuracy
ANOMALY_VERSIONS = {"1.0.0": 0.81, "1.1.0": 0.9}
R_VERSIONS = {"1.0.0": {"accuracy": 0.95, "kappa": 0.92}, "1.1.0": {"accuracy": 0.97, "kappa": 0.95}}
# What drifted() changes, in the profile's (sorted) feature order.
DRIFTED = ("body_mass_g", "flipper_length_mm", "island")
# The images dev built for 1.1.0 and 1.2.0, which promote and canary pin prod to.
IMAGE, CANARY_IMAGE = "sha256:" + "ab" * 32, "sha256:" + "cd" * 32
# The subjects of the promote and canary commits (their merge requests' titles).
MERGED = {
    "promote": f"Promote {SPECIES} 1.1.0 to prod (first in prod)",
    "canary": f"Canary {SPECIES} 1.2.0 in prod at 10%",
}


def modelgen(*args: object) -> tuple[int, str, str]:
    """``modelgen ARGS`` in this process (module-scoped fixtures cannot use capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def a_version(manifest: Path, where: Path, registry: Path, version: str, **changes) -> Path:
    """A copy of ``manifest``'s folder as ``version``: its artifact's bytes published under that
    version in ``registry`` (a retrained model stands in for itself) and metadata changed."""
    shutil.copytree(manifest.parent, where)
    doc = yaml.safe_load(manifest.read_text())
    uri = doc["spec"]["artifact"]["uri"]
    data = Path(url2pathname(urlsplit(uri).path)).read_bytes()
    published = registry_for(registry).publish(doc["metadata"]["name"], version, uri.rsplit("/", 1)[1], data)
    doc["metadata"]["version"] = version
    doc["spec"]["artifact"]["uri"] = published.uri
    metrics = changes.pop("metrics", None)
    if metrics is not None:
        doc["metadata"].setdefault("provenance", {})["metrics"] = metrics
    doc["metadata"].update(changes)
    (where / "model.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return where / "model.yaml"


class Merger:
    """Merges branches into the remote's main as GitLab does, numbering the merge requests."""

    def __init__(self, remote: Remote, work: Path):
        self.remote, self.work, self.number = remote, work, 0

    def checkout(self) -> Path:
        shutil.rmtree(self.work, ignore_errors=True)
        git("clone", "--quiet", str(self.remote.path), str(self.work))
        return self.work

    def merge(self, branch: str, title: str) -> None:
        self.number += 1
        message = f"Merge branch '{branch}' into 'main'\n\n{title}\n\nSee merge request ml/gitops!{self.number}"
        work = self.checkout()
        git("merge", "--no-ff", "--quiet", "-m", message, f"origin/{branch}", cwd=work)
        git("push", "--quiet", "origin", "main", cwd=work)

    def generate(self, manifest: Path) -> None:
        m = load(manifest)
        code, out, err = modelgen("generate", manifest, "--gitops", self.remote.path)
        assert code == 0, err
        self.merge(f"modelgen/{m.name}-{m.version}", f"{m.name} {m.version}")

    def change(self, *args: object) -> None:
        """A command that pushes a branch (promote, canary), and its merge request merged."""
        code, out, err = modelgen(*args, "--gitops", self.remote.path)
        assert code == 0, err
        branch = re.search(r"^pushed (\S+) \(", out, re.MULTILINE).group(1)
        self.merge(branch, " ".join(map(str, args)))


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    """A private clone cache, and no GitOps or GitLab settings from the environment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELGEN_CACHE", str(tmp_path_factory.mktemp("cache")))
        for name in ("GITLAB_URL", "GITLAB_TOKEN", "MODELGEN_GITOPS", "MODELGEN_REGISTRY", "MODELGEN_TEMPLATES"):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="module")
def repository(environment, tmp_path_factory, penguins_manifest, anomaly_manifest) -> Remote:
    """Two Python models, three and two versions, merged in turn; penguin-species 1.1.0 promoted to
    prod, and 1.2.0 its canary there. The other models' later environment is not promoted to: it
    runs nothing yet."""
    tmp = tmp_path_factory.mktemp("catalog")
    registry = tmp / "registry"
    remote = Remote.create(tmp / "gitops.git")
    assert modelgen("init-gitops", remote.path, "--repo-url", REPO_URL)[0] == 0
    merger = Merger(remote, tmp / "work")
    for (version, accuracy), anomaly in zip(SPECIES_VERSIONS.items(), [*ANOMALY_VERSIONS.items(), None], strict=True):
        merger.generate(a_version(penguins_manifest, tmp / f"species-{version}", registry, version,
                                  metrics={"accuracy": accuracy}))  # fmt: skip
        if version == "1.1.0":  # prod gets 1.1.0 once dev runs it
            merger.change("promote", SPECIES, "--to", "prod", "--image", IMAGE)
        if anomaly:
            merger.generate(a_version(anomaly_manifest, tmp / f"anomaly-{anomaly[0]}", registry, anomaly[0],
                                      owner=OLA, description=HOSTILE, metrics={"precision": anomaly[1]}))  # fmt: skip
    merger.change("canary", SPECIES, "1.2.0", "--env", "prod", "--weight", "10", "--image", CANARY_IMAGE)
    return remote


@pytest.fixture(scope="module")
def reports(repository, penguins_manifest, tmp_path_factory) -> Path:
    """prod's drift report of penguin-species, by `modelgen monitor` on drifted traffic, where
    the catalog reads reports: <model>/<environment>/."""
    tmp = tmp_path_factory.mktemp("reports")
    profile = tmp / "profile.json"
    profile.write_text(repository.show("main", f"models/{SPECIES}/deploy/base/monitoring/profile.json"))
    live = tmp / "live.csv"
    drifted(pd.read_csv(penguins_manifest.parent / "reference.csv")).to_csv(live, index=False)
    folder = tmp / "reports"
    code, _, err = modelgen(
        "monitor", SPECIES, "--profile", profile, "--live", live, "--out", folder / SPECIES / "prod"
    )
    assert code == 0, err
    return folder


def test_the_facts_are_every_version_in_order_and_what_runs_where(repository, reports):
    catalog = collect(GitopsRepo.open(repository.path), reports)
    assert [m.name for m in catalog.models] == [ANOMALY, SPECIES] and catalog.skipped == ()
    species = {m.name: m for m in catalog.models}[SPECIES]

    assert [(v.version, v.metrics) for v in species.versions] == [
        (v, {"accuracy": a}) for v, a in SPECIES_VERSIONS.items()
    ]
    (dev, prod) = species.releases
    assert (dev.environment, dev.version, dev.sha256, dev.release) == ("dev", "1.2.0", species.versions[2].sha256, None)
    assert (prod.environment, prod.version, prod.sha256) == ("prod", "1.1.0", species.versions[1].sha256)
    assert (prod.promoted_from, prod.image, prod.canary.version, prod.canary.weight) == ("dev", IMAGE, "1.2.0", 10)
    assert [r.environment for r in {m.name: m for m in catalog.models}[ANOMALY].releases] == ["dev"]
    assert species.runs("1.1.0") == ["prod"] and species.runs("1.2.0") == ["dev", "prod (canary 10%)"]
    headline = species.headline
    assert (headline.metric, headline.value, headline.previous, headline.previous_version) == (
        "accuracy", 0.96, 0.985, "1.1.0"
    )  # fmt: skip
    assert headline.worse
    assert not {m.name: m for m in catalog.models}[ANOMALY].headline.worse  # precision rose

    # Newest first: each merged merge request, with what its branch did.
    assert [(c.merge_request, c.merged) for c in species.changes] == [
        ("7", MERGED["canary"]),
        ("6", f"{SPECIES} 1.2.0 (update 1.1.0 → 1.2.0)"),
        ("4", MERGED["promote"]),
        ("3", f"{SPECIES} 1.1.0 (update 1.0.0 → 1.1.0)"),
        ("1", f"{SPECIES} 1.0.0 (new model)"),
    ]
    (drift,) = species.drift
    assert (drift.environment, drift.drifted) == ("prod", DRIFTED)
    assert drift.html is not None and drift.html.startswith(b"<!DOCTYPE html>")


def test_the_site_is_the_same_bytes_for_the_same_repository(repository, reports, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    code, out, err = modelgen("catalog", "--gitops", repository.path, "-o", first, "--reports", reports)
    assert code == 0, err
    assert out.startswith(f"{first}: catalog of 2 models, main at ") and out.endswith("(written)\n")
    assert modelgen("catalog", "--gitops", repository.path, "-o", second, "--reports", reports)[0] == 0
    files = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert files == [
        "assets/catalog.css",
        "assets/catalog.js",
        "index.html",
        f"models/{ANOMALY}/index.html",
        f"models/{SPECIES}/drift-prod.html",
        f"models/{SPECIES}/index.html",
    ]
    assert files == sorted(p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    code, out, _ = modelgen("catalog", "--gitops", repository.path, "-o", first, "--reports", reports)
    assert code == 0 and out.endswith("(unchanged)\n")


class Parsed(HTMLParser):
    """Tags, attributes and text of a page, as a browser's parser splits them."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_a_hostile_description_is_text_on_every_page(repository, tmp_path):
    assert modelgen("catalog", "--gitops", repository.path, "-o", tmp_path / "site")[0] == 0
    index, card = tmp_path / "site" / "index.html", tmp_path / "site" / "models" / ANOMALY / "index.html"
    # Only the catalog's own script, on the index; no tag or handler the description tried to add.
    for page, scripts in ((index, [{"src": "assets/catalog.js"}]), (card, [])):
        parsed = Parsed(page.read_text("utf-8"))
        assert [attrs for tag, attrs in parsed.tags if tag == "script"] == scripts, page
        assert not [tag for tag, _ in parsed.tags if tag == "img"], page
        assert not any(name.startswith("on") for _, attrs in parsed.tags for name in attrs), page
    assert HOSTILE in "".join(Parsed(card.read_text("utf-8")).text)
    # The index has it in the row's search text, escaped as an attribute value.
    assert str(escape(HOSTILE.lower())) in index.read_text("utf-8")
    # Without JavaScript the index is its table: the filters, which need the script, stay hidden.
    assert '<form id="filters" hidden>' in index.read_text("utf-8")


def test_a_model_card_tells_versions_environments_and_history(repository, reports, tmp_path):
    assert modelgen("catalog", "--gitops", repository.path, "-o", tmp_path / "site", "--reports", reports)[0] == 0
    card = (tmp_path / "site" / "models" / SPECIES / "index.html").read_text("utf-8")
    text = " ".join(" ".join(Parsed(card).text).split())
    assert "jane.doe@example.com" in text and "Training data palmerpenguins" in text
    assert "prod 1.1.0" in text and "promoted from dev" in text and "1.2.0 at 10%" in text
    assert "accuracy 0.96 ▼ −0.025 since 1.1.0" in text
    assert f"prod: drift in {', '.join(DRIFTED)} (2000 rows)" in text
    assert '<a href="drift-prod.html">' in card
    assert '<a href="https://gitlab.example.com/ml/gitops/-/merge_requests/6">!6</a>' in card
    for column in load_text(repository.show("main", f"models/{SPECIES}/model.yaml"), "model.yaml").columns:
        assert f"<td>{column.name}</td>" in card


@pytest.mark.parametrize(
    "release",
    [
        b"{",
        b"[]",
        b'{"version": "1.0.0"}',
        b'{"version": "1.0.0", "sha256": "ab", "image": "sha256:01", "canary": "1.0.1"}',
    ],
)
def test_a_broken_release_json_is_reported_on_its_environment(release):
    from modelgen.manifest.docs import EXAMPLE

    where = "models/x/deploy/overlays/prod/release.json"
    found = live_of("prod", load_text(EXAMPLE, "model.yaml"), release, where)
    assert (found.environment, found.version, found.release) == ("prod", "?", None)
    assert found.problem.startswith(f"{where} is not a release modelgen wrote ("), found.problem


def test_the_repository_s_pipeline_publishes_the_catalog_from_its_target_branch(tmp_path):
    settings = GitopsSettings(REPO_URL, target_revision="production")
    ci = tmp_path / ".gitlab-ci.yml"
    ci.write_bytes(scaffold(settings)[".gitlab-ci.yml"])
    done = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.gitlab-ci", "--data-transform", "gitlab-ci", ci],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    pages = yaml.safe_load(ci.read_text())["pages"]
    assert pages["rules"] == [{"if": '$CI_COMMIT_BRANCH == "production"'}]
    assert pages["artifacts"] == {"paths": ["public"]} and pages["variables"] == {"GIT_DEPTH": "0"}
    assert "modelgen catalog --gitops . -o public" in pages["script"][0]


def test_a_reports_folder_that_is_not_there_is_refused(repository, tmp_path):
    code, _, err = modelgen(
        "catalog", "--gitops", repository.path, "-o", tmp_path / "site", "--reports", tmp_path / "x"
    )
    assert code == 2 and f"--reports {tmp_path / 'x'}: no such folder" in err
    assert not (tmp_path / "site").exists()


# --- in the browser and in the repository's pipeline (slow: R, Chromium, gitlab-ci-local) ----------


def playwright_core() -> Path:
    """Playwright's driver, installed by `make system-deps` into .work/npm; a failure in CI."""
    path = ROOT / ".work" / "npm" / "node_modules" / "playwright-core"
    if not path.is_dir() or not shutil.which("node"):
        message = f"playwright-core ({path}) or node missing: run `make system-deps`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def full_repository(repository, tmp_path_factory) -> Remote:
    """The Python models' repository and an R model of two versions, trained by its example's script."""
    tmp = tmp_path_factory.mktemp("catalog-r")
    remote = Remote(tmp / "gitops.git")
    shutil.copytree(repository.path, remote.path, symlinks=True)
    done = subprocess.run(
        [rscript(), ROOT / "examples/penguins-r/train.R", "--out", tmp / "trained", "--registry", tmp / "registry"],
        capture_output=True, text=True, timeout=300, env={**os.environ, **R_ENV},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    merger = Merger(remote, tmp / "work")
    merger.number = 7  # after the Python models' merge requests
    for version, metrics in R_VERSIONS.items():
        merger.generate(a_version(tmp / "trained" / "model.yaml", tmp / f"r-{version}", tmp / "registry", version,
                                  metrics=metrics))  # fmt: skip
    return remote


@pytest.fixture(scope="module")
def site(full_repository, reports, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "public"
    code, _, err = modelgen("catalog", "--gitops", full_repository.path, "-o", out, "--reports", reports)
    assert code == 0, err
    return out


@pytest.mark.slow
def test_a_newcomer_finds_jane_s_models_and_the_one_that_lost_accuracy_in_chromium(site, tmp_path):
    from PIL import Image

    shot = tmp_path / "card.png"
    done = subprocess.run(
        ["node", ROOT / "tests" / "catalog_browser.js", site, SPECIES, JANE, shot, ANOMALY],
        capture_output=True, text=True, timeout=180,
        env={**os.environ, "PLAYWRIGHT_CORE": str(playwright_core()), "CHROMIUM": chromium()},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout)
    # Every request stayed in the site's folder: no CDN, no font, no analytics.
    assert seen["requests"] and all(url.startswith(site.as_uri() + "/") for url in seen["requests"]), seen["requests"]
    assert seen["errors"] == [] and not [c for c in seen["console"] if c.startswith("error")], seen
    # The hostile description is text on its card: no dialog opened, no image element made.
    assert seen["dialogs"] == [] and seen["hostile"] == {"description": HOSTILE, "images": 0}, seen["hostile"]

    assert seen["filtersShown"]
    rows = {row["name"]: row for row in seen["all"]}
    assert list(rows) == [ANOMALY, SPECIES, R_MODEL]
    assert rows[SPECIES]["live"] == "dev 1.2.0 prod 1.1.0 (canary 1.2.0 at 10%)"
    # Not promoted to yet: prod runs nothing of these.
    assert rows[ANOMALY]["live"] == "dev 1.1.0" and rows[R_MODEL]["live"] == "dev 1.1.0"
    # The question the catalog must answer: jane.doe's models, and which lost accuracy in its last version.
    assert [(r["name"], r["worse"]) for r in seen["owned"]] == [(SPECIES, True), (R_MODEL, False)]
    assert seen["count"] == "2 of 3 models"
    assert {r["name"]: r["headline"] for r in seen["owned"]} == {
        SPECIES: "accuracy 0.96 ▼ −0.025 since 1.1.0",
        R_MODEL: "accuracy 0.97 ▲ +0.02 since 1.0.0",
    }
    # Sorted by the headline metric's value: the anomaly model's precision 0.9, then 0.96, then 0.97.
    assert seen["ascending"] == [ANOMALY, SPECIES, R_MODEL] and seen["descending"] == [R_MODEL, SPECIES, ANOMALY]
    assert seen["searched"] == [ANOMALY]

    card = seen["card"]
    assert card["title"] == f"{SPECIES}: model card"
    assert [row[:2] for row in card["environments"]] == [["dev", "1.2.0"], ["prod", "1.1.0"]]
    assert card["environments"][1][3].startswith("promoted from dev") and card["environments"][1][4] == "1.2.0 at 10%"
    assert card["metricNames"] == ["Version", "Reached main", "Artifact sha256", "accuracy", "Runs in"]
    assert [(row[0], float(row[3]), row[4]) for row in card["metrics"]] == [
        ("1.0.0", 0.97, ""), ("1.1.0", 0.985, "prod"), ("1.2.0", 0.96, "dev, prod (canary 10%)"),
    ]  # fmt: skip
    assert card["plots"] == ["accuracy by version"]

    # The plot drawn: its line and points in the catalog's blue, over most of the plot's height
    # (the three versions span it from the best to the worst value).
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    blue = (pixels == (0x4C, 0x78, 0xA8)).all(axis=2)
    rows_, columns = np.flatnonzero(blue.any(axis=1)), np.flatnonzero(blue.any(axis=0))
    assert len(rows_) > 70 and columns.max() - columns.min() > 200, (len(rows_), columns.min(), columns.max())


@pytest.mark.slow
def test_the_pages_job_publishes_the_same_catalog_with_gitlab_ci_local(full_repository, reports, site, tmp_path):
    # A clone of main, as GitLab checks it out for the target branch's pipeline (full depth: GIT_DEPTH 0),
    # with the drift reports' folder given as the CI/CD variable the job reads.
    work = tmp_path / "work"
    git("clone", "--quiet", str(full_repository.path), str(work))
    path = os.pathsep.join([str(BIN), os.environ["PATH"]])  # modelgen, as the CI image has it
    done = subprocess.run(
        [gitlab_ci_local(), "--force-shell-executor", "--no-color", "--variable", f"MODELGEN_DRIFT_REPORTS={reports}",
         "pages"],
        cwd=work, env={**os.environ, "PATH": path}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "public: catalog of 3 models, main at" in log
    # Byte for byte what the command makes of the same commit and reports anywhere else.
    published = work / ".gitlab-ci-local" / "artifacts" / "pages" / "public"
    files = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(published).as_posix() for p in published.rglob("*") if p.is_file())
    for rel in files:
        assert (published / rel).read_bytes() == (site / rel).read_bytes(), rel
    assert f"models/{R_MODEL}/index.html" in files and f"models/{SPECIES}/drift-prod.html" in files
