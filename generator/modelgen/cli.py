"""``modelgen`` on the command line; every command's errors are caught once, in ``main``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from modelgen import __version__
from modelgen.errors import ManifestError, ModelgenError, os_problem
from modelgen.monitoring.drift import EXIT_DRIFT  # monitor --fail-on-drift; status: the last drift job's

log = logging.getLogger("modelgen")

EXIT_INVALID = 1  # the manifest is wrong: the user's to fix
EXIT_FAILED = 2  # something else went wrong (rendering, disk, git)
EXIT_CONFLICTS = 3  # an upgrade left conflicts to resolve on its branch
EXIT_DEGRADED = 5  # status: something is not as it should be (Argo CD, replicas, a failed drift job)
GITOPS_VARIABLE = "MODELGEN_GITOPS"  # the default for --gitops
REGISTRY_VARIABLE = "MODELGEN_REGISTRY"  # the default for --registry


def _validate(args: argparse.Namespace) -> int:
    from modelgen.manifest import load
    from modelgen.render.project import is_project, project_manifest, read_project

    for target in args.manifest:
        path = Path(target)
        if path.is_dir() and is_project(path):
            # A generated project (e.g. models/<name>/ in the GitOps repository).
            with project_manifest(read_project(path), str(path).rstrip("/")) as manifest:
                print(f"{target}: valid ({manifest.name} {manifest.version}, {manifest.runtime}, {manifest.task})")
            continue
        manifest = load(path / "model.yaml" if path.is_dir() else path)
        print(f"{target}: valid ({manifest.name} {manifest.version}, {manifest.runtime}, {manifest.task})")
    return 0


def _generate(args: argparse.Namespace) -> int:
    if args.gitops:
        return _generate_into_gitops(args)
    if args.merge_request:
        raise ModelgenError("--merge-request needs --gitops (the GitOps repository to open it in)")
    from modelgen.api import generate

    result = generate(args.manifest, args.output)
    print(f"{result.path}: {'written' if result.changed else 'unchanged'} ({result.files} files)")
    return 0


def _generate_into_gitops(args: argparse.Namespace) -> int:
    from modelgen.gitops.repo import GitopsRepo, publish_model
    from modelgen.manifest import load

    manifest = load(args.manifest)  # every manifest problem is reported before the repository is fetched
    repo = GitopsRepo.open(args.gitops)
    result = publish_model(repo, manifest, merge_request=args.merge_request, api=_api(args, repo))
    print(result.message)
    return 0


def _diff(args: argparse.Namespace) -> int:
    from modelgen.gitops.repo import GitopsRepo, diff_model
    from modelgen.manifest import load

    manifest = load(args.manifest)
    text = diff_model(GitopsRepo.open(args.gitops), manifest)
    sys.stdout.write(text)
    if not text:
        print(f"{manifest.name} {manifest.version}: no change", file=sys.stderr)
    return 0


def _init_gitops(args: argparse.Namespace) -> int:
    from modelgen.credentials import Transport
    from modelgen.gitops.repo import init_gitops, normalize
    from modelgen.gitops.scaffold import load_settings, read_config

    target = normalize(args.target)
    environments = [e.strip() for e in args.environments.split(",") if e.strip()] if args.environments else None
    config = read_config(Path(args.config)) if args.config else {}
    settings = load_settings(
        args.config,
        # Credentials in TARGET are for pushing it now; what Argo CD and builds clone never has them.
        repo_url=args.repo_url or config.get("repo_url") or _as_url(Transport.of(target).url),
        target_revision=args.target_branch,
        argocd_namespace=args.argocd_namespace,
        project=args.project,
        environments=environments,
        cluster=args.cluster,
        ci_image=args.ci_image,
    )
    api = None
    if args.merge_request:
        from modelgen.gitops.merge_request import GitLabApi

        api = GitLabApi.from_environment(args.gitlab_url, settings.repo_url, args.gitlab_project)
    branch_given = args.target_branch is not None or "target_revision" in config
    result = init_gitops(target, settings, merge_request=args.merge_request, api=api, branch_given=branch_given)
    print(result.message)
    return 0


def _list(args: argparse.Namespace) -> int:
    from modelgen.gitops.repo import GitopsRepo, list_models

    rows = [
        (
            m.name,
            m.version or "-",
            m.owner or "-",
            m.runtime or "-",
            ",".join(m.environments) or "-",
            m.sha256[:12] or "-",
            m.state,
            m.last_commit,
        )
        for m in list_models(GitopsRepo.open(args.gitops))
    ]
    header = ("NAME", "VERSION", "OWNER", "RUNTIME", "ENVIRONMENTS", "SHA256", "STATE", "LAST COMMIT")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def _catalog(args: argparse.Namespace) -> int:
    from modelgen.catalog.facts import collect
    from modelgen.catalog.site import site
    from modelgen.gitops.repo import GitopsRepo
    from modelgen.render.output import write_project

    reports = Path(args.reports) if args.reports else None
    if reports is not None and not reports.is_dir():
        raise ModelgenError(f"--reports {args.reports}: no such folder")
    catalog = collect(GitopsRepo.open(args.gitops), reports)
    changed = write_project(site(catalog), Path(args.output))
    print(
        f"{args.output}: catalog of {len(catalog.models)} models, {catalog.target} at {catalog.commit[:12]}"
        f" ({'written' if changed else 'unchanged'})"
    )
    for name, why in catalog.skipped:
        print(f"not shown: {name}: {why}", file=sys.stderr)
    return 0


def _remove(args: argparse.Namespace) -> int:
    from modelgen.gitops.repo import GitopsRepo, remove_model

    repo = GitopsRepo.open(args.gitops)
    print(remove_model(repo, args.name, merge_request=args.merge_request, api=_api(args, repo)).message)
    return 0


def _promote(args: argparse.Namespace) -> int:
    from modelgen.gitops.promotion import plan_promotion

    return _publish_plan(args, lambda repo, cluster_image: plan_promotion(
        repo, args.name, args.to, version=args.version, image=args.image, force=args.force, cluster_image=cluster_image
    ))  # fmt: skip


def _canary(args: argparse.Namespace) -> int:
    from modelgen.gitops.promotion import plan_canary

    return _publish_plan(args, lambda repo, cluster_image: plan_canary(
        repo, args.name, args.version, args.env, args.weight, image=args.image, cluster_image=cluster_image
    ))  # fmt: skip


def _rollback(args: argparse.Namespace) -> int:
    from modelgen.gitops.promotion import plan_rollback

    return _publish_plan(args, lambda repo, cluster_image: plan_rollback(repo, args.name, args.env))


def _publish_plan(args: argparse.Namespace, plan) -> int:
    from modelgen.cluster.client import image_digest
    from modelgen.gitops.promotion import publish_plan
    from modelgen.gitops.repo import GitopsRepo

    repo = GitopsRepo.open(args.gitops)
    planned = plan(repo, image_digest)
    print(publish_plan(repo, planned, merge_request=args.merge_request, api=_api(args, repo)).message)
    return 0


def _status(args: argparse.Namespace) -> int:
    import json

    from modelgen.cluster.status import Scope, read_status, table

    scope = Scope()
    if args.gitops:
        from modelgen.gitops.repo import GitopsRepo

        scope = Scope.of(GitopsRepo.open(args.gitops))
    if args.argocd_namespace:
        scope = replace(scope, argocd_namespace=args.argocd_namespace)
    statuses = read_status(scope, args.name, args.env)
    print(json.dumps([s.document() for s in statuses], indent=1) if args.json else table(statuses))
    if any(s.degraded for s in statuses):
        return EXIT_DEGRADED
    return EXIT_DRIFT if any(s.drifted for s in statuses) else 0


def _upgrade(args: argparse.Namespace) -> int:
    from modelgen.gitops.repo import GitopsRepo
    from modelgen.gitops.upgrade import upgrade

    if bool(args.names) == bool(args.all):
        raise ModelgenError("name the models to upgrade, or pass --all (not both)")
    repo = GitopsRepo.open(args.gitops)
    result = upgrade(repo, None if args.all else args.names, merge_request=args.merge_request, api=_api(args, repo))
    print(result.published.message)
    if result.upgraded:
        print(f"upgraded: {', '.join(result.upgraded)}")
    for conflict in result.conflicts:
        print(f"conflict: {conflict}", file=sys.stderr)
    return EXIT_CONFLICTS if result.conflicts else 0


def _convert(args: argparse.Namespace) -> int:
    from modelgen.engines.record import convert_manifest

    print(convert_manifest(args.manifest, args.engine).message)
    return 0


def _profile(args: argparse.Namespace) -> int:
    import json

    from modelgen.manifest import load
    from modelgen.monitoring.drift import profile
    from modelgen.monitoring.inputs import read_rows
    from modelgen.monitoring.reference import profile_columns

    manifest = load(args.manifest)
    rows = read_rows(Path(args.reference))
    columns = profile_columns(manifest, rows, args.reference)
    _write(Path(args.output), json.dumps(profile(rows, columns), indent=1) + "\n", "the profile")
    print(f"{args.output}: profile of {len(rows)} reference rows, {len(columns)} features")
    return 0


def _monitor(args: argparse.Namespace) -> int:
    from modelgen.monitoring.drift import compare
    from modelgen.monitoring.inputs import read_profile
    from modelgen.monitoring.notify import notify
    from modelgen.monitoring.report import summary, write_reports

    reference = read_profile(Path(args.profile))
    thresholds = _thresholds(args.thresholds)
    live, predictions = _live_rows(args, list(reference["features"]))
    report = compare(reference, live, predictions, thresholds)
    as_json, as_html = write_reports(report, args.name, Path(args.out))
    print(summary(report, args.name))
    print(f"reports: {as_json} {as_html}")
    sent = notify(
        report,
        args.name,
        webhook=args.webhook or os.environ.get("MODELGEN_NOTIFY_WEBHOOK"),
        smtp=args.smtp or os.environ.get("MODELGEN_SMTP"),
        mail_to=args.mail_to or [a for a in os.environ.get("MODELGEN_NOTIFY_EMAIL", "").split(",") if a],
        mail_from=args.mail_from,
        report_url=args.report_url,
    )
    for target in sent:
        print(f"notified {target}")
    return EXIT_DRIFT if report.drifted and args.fail_on_drift else 0


def _live_rows(args: argparse.Namespace, features: list[str]):
    """The rows ``--live`` names (an input log folder or a file) and the predictions logged with them, if any."""
    from modelgen.monitoring.inputs import PREDICTION, read_input_log, read_rows, window_seconds

    live_path = Path(args.live)
    if live_path.is_dir():
        live = read_input_log(live_path, window_seconds(args.window) if args.window else None)
    else:
        live = read_rows(live_path)
    if features and not set(features) & set(live.columns):
        raise ModelgenError(f"{args.live}: none of the profile's features ({', '.join(features)}) is in these rows")
    column = next((c for c in (args.prediction_column, PREDICTION) if c in live), None)
    predictions = live.pop(column).tolist() if column else None
    if not len(live):
        raise ModelgenError(f"{args.live}: no logged rows{' in the last ' + args.window if args.window else ''}")
    return live, predictions


def _retrain(args: argparse.Namespace) -> int:
    import tempfile

    from modelgen.gitops.repo import GitopsRepo

    repo = GitopsRepo.open(args.gitops)
    if not (args.local or args.from_output):
        return _retrain_job(args, repo)
    from modelgen.monitoring.retrain import retrain

    with tempfile.TemporaryDirectory(prefix="modelgen-retrain-") as tmp:
        result = retrain(
            repo,
            args.name,
            workdir=Path(tmp),
            from_output=Path(args.from_output) if args.from_output else None,
            registry=args.registry,
            merge_request=args.merge_request,
            api=_api(args, repo),
        )
    print(f"{result.name} {result.version}: {result.uri} (sha256 {result.sha256})")
    for metric in sorted(set(result.old_metrics) | set(result.metrics)):
        print(f"  {metric}: {result.old_metrics.get(metric, '—')} → {result.metrics.get(metric, '—')}")
    print(result.published.message)
    return 0


def _retrain_job(args: argparse.Namespace, repo) -> int:
    """The project's training Job, created in the cluster with kubectl (or printed)."""
    import subprocess

    from modelgen.gitops.repo import MODELS

    path = f"{MODELS}/{args.name}/training/job.yaml"
    job = repo.read([path]).get(path)
    if job is None:
        raise ModelgenError(f"{path} not found in {repo.url}: does the model's manifest have spec.training?")
    if args.dry_run:
        sys.stdout.write(job.decode("utf-8"))
        return 0
    namespace = args.namespace or f"{repo.settings.namespace_prefix}{repo.settings.environments[0]}"
    command = ["kubectl", "create", "--namespace", namespace, "-f", "-", "-o", "name"]
    try:
        done = subprocess.run(command, input=job, capture_output=True, check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ModelgenError(f"cannot run kubectl: {err}") from err
    if done.returncode != 0:
        raise ModelgenError(f"kubectl create in {namespace} failed: {done.stderr.decode(errors='replace').strip()}")
    print(f"{done.stdout.decode().strip()} started in {namespace}; its merge request follows when it finishes")
    return 0


def _batch(args: argparse.Namespace) -> int:
    """The model's batch job: here (local), as a Kubernetes Job (job) or a SparkApplication (spark)."""
    import yaml

    from modelgen.batch.objects import batch_job, require_spark, spark_application
    from modelgen.batch.run import batch_arguments, cluster_urls, create, model_project, run_here

    if args.master and args.engine != "spark":
        raise ModelgenError("--master runs the Spark job here: use it with --engine spark")
    here = args.engine == "local" or bool(args.master)
    if here and args.dry_run:
        raise ModelgenError("--dry-run prints a cluster object: use it with --engine job or spark")
    arguments = batch_arguments(args.input, args.output, args.on_error, args.keep, args.rejected, here=here)
    with model_project(args.name, args.gitops) as (files, manifest):
        if manifest.runtime != "python" and args.keep:
            raise ModelgenError("--keep: the R batch job writes the predictions only (Python models keep columns)")
        if args.master:
            require_spark(manifest)
            return run_here(files, manifest, [*arguments, "--master", args.master], spark=True)
        if here:
            return run_here(files, manifest, arguments)
        cluster_urls(args)
        build = batch_job if args.engine == "job" else spark_application
        env = args.env or manifest.environments[0].name
        obj, namespace = build(files, manifest, env, arguments)
    namespace = obj["metadata"]["namespace"] = args.namespace or namespace
    if args.dry_run:
        sys.stdout.write(yaml.safe_dump(obj, sort_keys=False))
        return 0
    name = create(obj, namespace)
    print(f"{obj['kind']} {name} created in {namespace}")
    return 0


def _thresholds(text: str | None) -> dict[str, float] | None:
    """``--thresholds`` JSON, with the manifest's names (pValue) or drift's (p_value)."""
    import json

    from modelgen.manifest.model import THRESHOLD_NAMES
    from modelgen.monitoring.drift import DEFAULT_THRESHOLDS

    if not text:
        return None
    try:
        given = json.loads(text)
    except ValueError as err:
        raise ModelgenError(f"--thresholds is not JSON: {err}") from err
    if not isinstance(given, dict):
        raise ModelgenError('--thresholds must be a JSON object, e.g. {"psi": 0.25}')
    out = {}
    for key, value in given.items():
        name = THRESHOLD_NAMES.get(key, key)
        if name not in DEFAULT_THRESHOLDS or not isinstance(value, (int, float)) or isinstance(value, bool):
            allowed = ", ".join(THRESHOLD_NAMES)
            raise ModelgenError(f"--thresholds: {key}={value!r} (allowed: numbers for {allowed})")
        out[name] = value
    return out


def _webhook_serve(args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    from modelgen.registry.backends import LocalRegistry, registry_for
    from modelgen.registry.webhook import SECRET_VARIABLE, Webhook, serve

    if not args.registry:
        raise ModelgenError(f"--registry (or ${REGISTRY_VARIABLE}) is required: the registry Nexus notifies about")
    if not args.gitops:
        raise ModelgenError(f"--gitops (or ${GITOPS_VARIABLE}) is required")
    registry = registry_for(args.registry)
    if isinstance(registry, LocalRegistry) and not registry.root.is_dir():
        raise ModelgenError(f"--registry {args.registry}: no such folder")
    repository = args.repository
    if repository is None and str(args.registry).startswith(("http://", "https://")):
        repository = urlsplit(args.registry).path.rstrip("/").rsplit("/", 1)[-1] or None
    webhook = Webhook(
        os.environ.get(SECRET_VARIABLE, ""),
        registry,
        args.gitops,
        repository=repository,
        gitlab_url=args.gitlab_url,
    )
    serve(webhook, args.host, args.port)
    return 0


def _api(args: argparse.Namespace, repo):
    if not args.merge_request:
        return None
    from modelgen.gitops.merge_request import GitLabApi

    return GitLabApi.from_environment(args.gitlab_url, repo.settings.repo_url, args.gitlab_project)


def _as_url(target: str) -> str:
    """What BuildConfigs clone: a local path as a file:// URL, anything else as given."""
    return Path(target).as_uri() if target.startswith("/") else target


def _docs(args: argparse.Namespace) -> int:
    from modelgen.manifest.docs import manifest_reference

    text = manifest_reference()
    if args.output:
        _write(Path(args.output), text, "the manifest reference")
    else:
        sys.stdout.write(text)
    return 0


def _write(path: Path, text: str, what: str) -> None:
    try:
        path.write_text(text, "utf-8")
    except OSError as err:
        raise ModelgenError(f"cannot write {what}: {os_problem(err)}") from err


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modelgen", description="Turn a trained model into a GitOps-managed service.")
    p.add_argument("--version", action="version", version=f"modelgen {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log what is done")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = sub.add_parser("validate", help="check manifests (or generated projects) and report every problem")
    v.add_argument("manifest", nargs="+", help="model.yaml, a folder holding one, or a generated project folder")
    v.set_defaults(run=_validate)

    g = sub.add_parser("generate", help="render the model's service project, into a folder or the GitOps repository")
    g.add_argument("manifest", help="path to model.yaml")
    g.add_argument("-o", "--output", default=".", help="folder to write <name>/ into (default: .)")
    _gitops_options(g, required=False)
    _merge_request_options(g)
    g.set_defaults(run=_generate)

    df = sub.add_parser("diff", help="show what generate --gitops would change, as a unified diff")
    df.add_argument("manifest", help="path to model.yaml")
    _gitops_options(df)
    df.set_defaults(run=_diff)

    i = sub.add_parser("init-gitops", help="scaffold the GitOps repository (Argo CD, pipeline, README)")
    i.add_argument("target", help="git URL, or a local path (a new bare repository if it does not exist)")
    i.add_argument("--config", help="a gitops.yaml with the settings below; options override it")
    i.add_argument("--repo-url", help="the URL Argo CD and builds clone (default: TARGET)")
    i.add_argument("--target-branch", help="the branch Argo CD deploys (default: main)")
    i.add_argument("--environments", help="comma-separated environments (default: dev,prod)")
    i.add_argument("--argocd-namespace", help="namespace of the Argo CD instance (default: openshift-gitops)")
    i.add_argument("--project", help="Argo CD project and ApplicationSet name (default: models)")
    i.add_argument("--cluster", help="API server Argo CD deploys to (default: https://kubernetes.default.svc)")
    i.add_argument("--ci-image", help="image of the repository's validate job")
    _merge_request_options(i)
    i.set_defaults(run=_init_gitops)

    ls = sub.add_parser(
        "list", help="the models in the GitOps repository, and changes waiting on unmerged modelgen/ branches"
    )
    _gitops_options(ls)
    ls.set_defaults(run=_list)

    cg = sub.add_parser("catalog", help="render the GitOps repository's models as a static site (index, model cards)")
    _gitops_options(cg)
    cg.add_argument("-o", "--output", metavar="DIR", required=True, help="folder for the site (replaced as a whole)")
    cg.add_argument(
        "--reports",
        metavar="DIR",
        help="drift reports to show, laid out DIR/<model>/<environment>/drift-report.json (and .html), "
        "as `modelgen monitor NAME --out DIR/NAME/ENV` writes them",
    )
    cg.set_defaults(run=_catalog)

    rm = sub.add_parser("remove", help="a merge request deleting a model (Argo CD prunes it)")
    rm.add_argument("name")
    _gitops_options(rm)
    _merge_request_options(rm)
    rm.set_defaults(run=_remove)

    pr = sub.add_parser(
        "promote", help="a merge request that runs in an environment what the one before it runs (only its overlay)"
    )
    pr.add_argument("name")
    pr.add_argument("--to", required=True, metavar="ENV", help="the environment to promote to (not the first)")
    pr.add_argument("--version", help="default: what the environment before runs, or the canary here")
    pr.add_argument("--force", action="store_true", help="promote a version the environment before does not run")
    _image_option(pr)
    _gitops_options(pr)
    _merge_request_options(pr)
    pr.set_defaults(run=_promote)

    ca = sub.add_parser(
        "canary", help="a merge request that serves VERSION beside the stable one, to a share of requests"
    )
    ca.add_argument("name")
    ca.add_argument("version")
    ca.add_argument("--env", required=True, help="a later environment, already promoted once")
    ca.add_argument("--weight", required=True, type=int, help="percent of the requests the canary takes (1-99)")
    _image_option(ca)
    _gitops_options(ca)
    _merge_request_options(ca)
    ca.set_defaults(run=_canary)

    rb = sub.add_parser("rollback", help="a merge request back to what an environment ran before (from git history)")
    rb.add_argument("name")
    rb.add_argument("--env", required=True)
    _gitops_options(rb)
    _merge_request_options(rb)
    rb.set_defaults(run=_rollback)

    st = sub.add_parser(
        "status",
        help="what runs, per model and environment: Argo CD, replicas, version, canary, drift "
        f"(exit {EXIT_DEGRADED}: something degraded, {EXIT_DRIFT}: drift found)",
    )
    st.add_argument("name", nargs="?", help="one model (default: every model)")
    st.add_argument("--env", help="one environment (default: every environment)")
    st.add_argument("--json", action="store_true", help="JSON for scripts instead of the table")
    st.add_argument(
        "--argocd-namespace", help="namespace of the Argo CD instance (default: gitops.yaml's, else openshift-gitops)"
    )
    _gitops_options(st, required=False, why="its gitops.yaml and the models it deploys, each expected to run")
    st.set_defaults(run=_status)

    up = sub.add_parser("upgrade", help="re-render models from the current templates, keeping hand edits")
    up.add_argument("names", nargs="*", metavar="NAME")
    up.add_argument("--all", action="store_true", help="every model in the repository")
    _gitops_options(up)
    _merge_request_options(up)
    up.set_defaults(run=_upgrade)

    cv = sub.add_parser(
        "convert", help="convert the model to ONNX, check it against the artifact, publish it and record it"
    )
    cv.add_argument("manifest", help="the model's model.yaml (edited in place)")
    cv.add_argument(
        "--engine",
        choices=["onnx", "auto"],
        help="onnx: fail unless the conversion passes its gates; auto: else serve natively, saying why "
        "(default: the manifest's spec.serving.engine, auto when it says native)",
    )
    cv.set_defaults(run=_convert)

    pf = sub.add_parser("profile", help="the reference profile drift is measured against")
    pf.add_argument("reference", help="reference rows (CSV, JSON lines, JSON or Parquet), e.g. a training sample")
    pf.add_argument("--manifest", required=True, help="the model's model.yaml (its input columns)")
    pf.add_argument("-o", "--output", default="profile.json")
    pf.set_defaults(run=_profile)

    mo = sub.add_parser("monitor", help="compare logged inputs with the reference profile; report and notify")
    mo.add_argument("name", help="the model's name (for the report and notifications)")
    mo.add_argument("--profile", required=True, help="the reference profile (modelgen profile)")
    mo.add_argument(
        "--live", required=True, help="the services' input log folder, or a file of rows (CSV, JSON lines, Parquet)"
    )
    mo.add_argument("--window", help="with an input log folder: only its last hours or days, e.g. 24h, 7d")
    mo.add_argument(
        "--prediction-column", default="prediction", help=f"column holding predictions (input logs: {'__prediction'})"
    )
    mo.add_argument("--out", default="drift-report", help="folder for drift-report.json and drift-report.html")
    mo.add_argument("--thresholds", help='JSON overriding the defaults, e.g. {"psi": 0.25}')
    mo.add_argument("--webhook", help="chat webhook (Slack/Teams) to notify (default: $MODELGEN_NOTIFY_WEBHOOK)")
    mo.add_argument("--smtp", help="SMTP server host:port (default: $MODELGEN_SMTP)")
    mo.add_argument("--mail-to", action="append", help="address to e-mail (repeat; default: $MODELGEN_NOTIFY_EMAIL)")
    mo.add_argument("--mail-from", default="modelgen@localhost")
    mo.add_argument("--report-url", help="where the HTML report will be, for the notification")
    mo.add_argument("--fail-on-drift", action="store_true", help=f"exit {EXIT_DRIFT} when something drifted")
    mo.set_defaults(run=_monitor)

    rt = sub.add_parser("retrain", help="retrain a model with its training script; the result comes as a merge request")
    rt.add_argument("name", help="the model (a folder under models/ of the GitOps repository)")
    how = rt.add_mutually_exclusive_group()
    how.add_argument("--local", action="store_true", help="run the training script here, in a subprocess")
    how.add_argument("--from-output", metavar="DIR", help="publish what a finished run wrote to DIR (the Job's step)")
    how.add_argument("--dry-run", action="store_true", help="print the training Job instead of creating it")
    rt.add_argument("--namespace", help="where the Job runs (default: the first environment's namespace)")
    rt.add_argument(
        "--registry",
        default=os.environ.get(REGISTRY_VARIABLE),
        help="registry for the new artifact (default: spec.training.registry, else the current artifact's)",
    )
    _gitops_options(rt)
    _merge_request_options(rt)
    rt.set_defaults(run=_retrain)

    bt = sub.add_parser(
        "batch", help="score a file or table with the model's own checks: here, as a Kubernetes Job, or on Spark"
    )
    bt.add_argument("name", help="a model of the GitOps repository (--gitops), or a generated project folder")
    bt.add_argument("--input", required=True, help="rows to score: CSV, JSON lines or Parquet; a path or URL")
    bt.add_argument("--output", required=True, help="where the scores go: CSV, JSON lines or Parquet; a path or URL")
    bt.add_argument(
        "--engine",
        choices=["local", "job", "spark"],
        default="local",
        help="local: the project's batch entry point here; job: a Kubernetes Job of the model's image; "
        "spark: the project's SparkApplication (job and spark: Python models; an R model's batch job runs here)",
    )
    bt.add_argument("--env", help="the environment whose namespace and resources a Job uses (default: the first)")
    bt.add_argument("--namespace", help="instead of the environment's namespace")
    bt.add_argument(
        "--on-error", choices=["fail", "skip"], default="fail", help="a bad row stops the run, or is set aside"
    )
    bt.add_argument("--rejected", help="with --on-error skip: where rejected rows go")
    bt.add_argument("--keep", action="append", default=[], metavar="COLUMN", help="input column copied to the output")
    bt.add_argument("--dry-run", action="store_true", help="print the Job or SparkApplication instead of creating it")
    bt.add_argument("--master", help="with --engine spark: run the Spark job here on this master, e.g. 'local[2]'")
    bt.add_argument(
        "--gitops",
        metavar="PATH_OR_URL",
        default=os.environ.get(GITOPS_VARIABLE),
        help=f"the GitOps repository holding models/NAME/ (default: ${GITOPS_VARIABLE})",
    )
    bt.set_defaults(run=_batch)

    wh = sub.add_parser("webhook", help="the Nexus webhook that turns uploaded models into merge requests")
    wh_sub = wh.add_subparsers(dest="webhook_command", required=True, metavar="COMMAND")
    ws = wh_sub.add_parser("serve", help="serve the webhook (shared secret in $MODELGEN_WEBHOOK_SECRET)")
    ws.add_argument("--registry", default=os.environ.get(REGISTRY_VARIABLE), help="the raw repository's base URL")
    ws.add_argument("--repository", help="only events of this Nexus repository (default: the URL's last segment)")
    ws.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0)")  # noqa: S104
    ws.add_argument("--port", type=int, default=8080)
    ws.add_argument(
        "--gitops",
        metavar="PATH_OR_URL",
        default=os.environ.get(GITOPS_VARIABLE),
        help=f"the GitOps repository (default: ${GITOPS_VARIABLE})",
    )
    ws.add_argument("--gitlab-url", help="open merge requests through GitLab's API (token: $GITLAB_TOKEN)")
    ws.set_defaults(run=_webhook_serve)

    d = sub.add_parser("docs", help="print reference documentation")
    d.add_argument("topic", choices=["manifest"])
    d.add_argument("-o", "--output", help="write to this file instead of stdout")
    d.set_defaults(run=_docs)
    return p


def _gitops_options(p: argparse.ArgumentParser, required: bool = True, why: str = "") -> None:
    default = os.environ.get(GITOPS_VARIABLE)
    p.add_argument(
        "--gitops",
        metavar="PATH_OR_URL",
        default=default,
        required=required and not default,
        help=f"the GitOps repository{': ' + why if why else ''} (default: ${GITOPS_VARIABLE})",
    )


def _image_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--image",
        metavar="sha256:DIGEST",
        help="the image the first environment built for that version (default: read off the cluster "
        "through the kubeconfig, or from the environment that runs it)",
    )


def _merge_request_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--merge-request", action="store_true", help="open a merge request for the pushed branch")
    p.add_argument(
        "--gitlab-url",
        help="open it through GitLab's API at this URL (default: $GITLAB_URL; token from $GITLAB_TOKEN), "
        "instead of with push options",
    )
    p.add_argument("--gitlab-project", help="project path for the API (default: from the repository URL)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except ManifestError as err:
        print(_red(str(err)), file=sys.stderr)
        return EXIT_INVALID
    except ModelgenError as err:
        print(_red(f"error: {err}"), file=sys.stderr)
        return EXIT_FAILED
    except OSError as err:
        # A file the command reads or writes that no command checked first: say which, and why.
        print(_red(f"error: {os_problem(err)}"), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _red(text: str) -> str:
    return f"\033[31m{text}\033[0m" if sys.stderr.isatty() else text


if __name__ == "__main__":
    sys.exit(main())
