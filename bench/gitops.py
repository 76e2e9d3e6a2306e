"""GitOps repository at the user's scale: 60 models, a template upgrade of all, one model update.

Builds a bare GitOps repository whose main holds N models rendered from the current templates
(the trained penguins pipeline under N names), then times the `modelgen` commands a platform
team runs, each as a fresh process (import time included), and prints a Markdown table:

- `list` of every model;
- `upgrade --all` after a template change (one line of the Deployment), with a hand edit in
  one model that must survive: one commit, one branch, one merge request;
- the same `upgrade --all` once that branch is merged: no commit;
- `generate --gitops --merge-request` of a new version of one model;
- `catalog` of the repository once that update is merged (the site GitLab Pages publishes).

    .venv/bin/python bench/gitops.py [--models 60] [--work DIR]
    .venv/bin/python bench/gitops.py --smoke   # 3 models: every step, the same table
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lib.common import ROOT, modelgen, reexec_in_project_venv

reexec_in_project_venv()
sys.path.insert(0, str(ROOT / "generator"))

import yaml  # noqa: E402

from modelgen.gitops.repo import GitopsRepo, model_changes  # noqa: E402
from modelgen.manifest import load  # noqa: E402
from modelgen.registry.backends import registry_for  # noqa: E402
from modelgen.render.templates import templates_dir  # noqa: E402

SMOKE_MODELS = 3
GIT = ["git", "-c", "user.name=Bench", "-c", "user.email=bench@example.com"]
GRACE = "      terminationGracePeriodSeconds: 40\n"


def sh(*args, cwd: Path | None = None, env: dict | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(map(str, args))} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def timed(*args, env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    out = sh(*modelgen(), *args, env=env)
    return time.perf_counter() - started, out


def merge(remote: Path, branch: str, work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    sh(*GIT, "clone", "--quiet", remote, work)
    sh(*GIT, "merge", "--no-ff", "--quiet", "-m", f"Merge {branch}", f"origin/{branch}", cwd=work)
    sh(*GIT, "push", "--quiet", "origin", "main", cwd=work)


def commits(remote: Path) -> int:
    return int(sh("git", "-C", remote, "rev-list", "--all", "--count").strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", type=int, help=f"models in the repository (default 60; {SMOKE_MODELS} with --smoke)"
    )
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_MODELS} models: every step, in seconds")
    parser.add_argument("--work", type=Path, help="keep everything here (default: a temp dir, removed)")
    args = parser.parse_args()
    args.models = args.models or (SMOKE_MODELS if args.smoke else 60)
    if args.models < 2:
        parser.error("--models must be 2 or more (one gets a hand edit, another an update)")
    # model-03 gets the hand edit and model-07 the update, or the last two of a smaller repository.
    edited, updated = f"model-{min(3, args.models - 2):02d}", f"model-{min(7, args.models - 1):02d}"
    work = args.work or Path(tempfile.mkdtemp(prefix="modelgen-bench-gitops-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MODELGEN_CACHE": str(work / "cache")}
    env.pop("MODELGEN_TEMPLATES", None)
    os.environ.update(env)
    try:
        print(f"setting up {args.models} models in {work} ...", file=sys.stderr)
        trained = work / "trained"
        if not (trained / "model.yaml").exists():
            sh(sys.executable, ROOT / "examples/penguins/train.py", "--out", trained, "--registry", work / "registry")
        remote = work / "gitops.git"
        shutil.rmtree(remote, ignore_errors=True)
        sh(*modelgen(), "init-gitops", remote, env=env)

        # Main with every model at once: the state after N merged merge requests.
        text = (trained / "model.yaml").read_text()
        repo = GitopsRepo.open(remote)
        changes: dict = {}
        for i in range(args.models):
            folder = work / "models" / f"m{i:02d}"
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(trained, folder, ignore=shutil.ignore_patterns("*.joblib"))
            (folder / "model.yaml").write_text(text.replace("name: penguin-species", f"name: model-{i:02d}"))
            changes.update(model_changes(repo, load(folder / "model.yaml")))
        commit = repo.git.commit(repo.head, changes, f"{args.models} models\n")
        sh("git", "-C", repo.git.path, "push", "--quiet", "origin", f"{commit}:refs/heads/main")

        # A hand edit in one model, merged: the upgrade must keep it.
        checkout = work / "checkout"
        shutil.rmtree(checkout, ignore_errors=True)
        sh(*GIT, "clone", "--quiet", remote, checkout)
        deployment = checkout / f"models/{edited}/deploy/base/deployment.yaml"
        text = deployment.read_text()
        deployment.write_text(text.replace("            periodSeconds: 5\n", "            periodSeconds: 3\n"))
        sh(*GIT, "commit", "--quiet", "-am", "hand edit", cwd=checkout)
        sh(*GIT, "push", "--quiet", "origin", "main", cwd=checkout)

        rows = []
        seconds, out = timed("list", "--gitops", remote, env=env)
        rows.append(("list", seconds, f"{len(out.splitlines()) - 1} models"))

        # The platform team changes one line of the Deployment template.
        templates = work / "templates"
        shutil.rmtree(templates, ignore_errors=True)
        shutil.copytree(templates_dir(), templates, ignore=shutil.ignore_patterns("__pycache__"))
        deployment = templates / "common/{{cookiecutter.name}}/deploy/base/deployment.yaml"
        deployment.write_text(deployment.read_text().replace(GRACE, GRACE.replace("40", "45")))
        upgraded_env = {**env, "MODELGEN_TEMPLATES": str(templates)}

        before = commits(remote)
        seconds, out = timed("upgrade", "--all", "--gitops", remote, "--merge-request", env=upgraded_env)
        branch = next(line.split()[1] for line in out.splitlines() if line.startswith("pushed "))
        upgraded = sh("git", "-C", remote, "show", f"{branch}:models/{edited}/deploy/base/deployment.yaml")
        kept = "periodSeconds: 3" in upgraded
        new_commits = commits(remote) - before
        rows.append((f"upgrade --all ({args.models} models)", seconds, f"{new_commits} commit, hand edit kept: {kept}"))

        merge(remote, branch, work / "merge")
        before = commits(remote)
        seconds, out = timed("upgrade", "--all", "--gitops", remote, "--merge-request", env=upgraded_env)
        rows.append(("upgrade --all again (merged)", seconds, f"{commits(remote) - before} commit: {out.strip()}"))

        # A new version of one model: its artifact is uploaded first, as the training job does, since
        # generate reads it (the reference profile is scored with the model). The same bytes stand
        # in for a retrained model; the manifest points at the new upload.
        update = work / "update"
        shutil.rmtree(update, ignore_errors=True)
        shutil.copytree(work / "models" / f"m{updated[-2:]}", update)
        manifest = yaml.safe_load((update / "model.yaml").read_text())
        data = (trained / "model.joblib").read_bytes()
        artifact = registry_for(work / "registry").publish(updated, "1.1.0", "model.joblib", data)
        text = (update / "model.yaml").read_text()
        text = text.replace("version: 1.0.0", "version: 1.1.0").replace(
            manifest["spec"]["artifact"]["uri"], artifact.uri
        )
        (update / "model.yaml").write_text(text)
        seconds, out = timed("generate", update / "model.yaml", "--gitops", remote, "--merge-request", env=upgraded_env)
        diff = sh("git", "-C", remote, "diff", "--stat", "main", f"modelgen/{updated}-1.1.0")
        changed = diff.strip().splitlines()[-1]
        rows.append(("generate --gitops (one update)", seconds, changed.strip()))

        # The catalog the repository's pages job publishes, the update merged: a second version of one model.
        merge(remote, f"modelgen/{updated}-1.1.0", work / "merge")
        site = work / "site"
        seconds, out = timed("catalog", "--gitops", remote, "-o", site, env=upgraded_env)
        pages = len(list(site.rglob("*.html")))
        rows.append((f"catalog ({args.models} models)", seconds, f"{pages} pages"))

        print(f"\n{args.models} models, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}\n")
        print("| command | seconds | result |\n|---|---:|---|")
        for name, secs, note in rows:
            print(f"| {name} | {secs:.2f} | {note} |")
        goal = rows[1][1]
        verdict = "PASS" if goal < 10 else "FAIL"
        print(f"\nGoal: upgrade --all of {args.models} models under 10 s: {verdict} ({goal:.2f} s)")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
