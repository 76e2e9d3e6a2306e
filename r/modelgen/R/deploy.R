#' Ship a fitted model from RStudio with one call.
#'
#' Saves `model` as RDS, infers the manifest (input columns from `sample`, task and classes
#' from the model, pinned packages with their dependencies, provenance), renders the project
#' into a staging folder and scores the sample there with the service's own code in a fresh R
#' process, which must answer exactly like the object in memory. Only then is the RDS uploaded
#' to the registry under `<name>/<version>/` and `modelgen generate --gitops ... --merge-request`
#' run. A failed call uploads nothing, and the next one takes the same version; without
#' `version`, an RDS identical to one already in the registry returns that version's deployment.
#'
#' @param model the fitted model, the whole pipeline: a caret `train` object, an mlr
#'   WrappedModel, an mlr3 Learner, a recipe bundled with a model, or any object with a
#'   predict() method (lm, glm, ranger, randomForest...).
#' @param name the model's name (lower-case letters, digits and '-').
#' @param sample a data.frame of raw input rows (e.g. `head(training_data[features], 200)`).
#' @param version "1.0.0"; by default the next version free in the registry.
#' @param task "classification", "regression", "clustering" or "anomaly-detection"; read off
#'   the model when it says (a binomial glm is a classifier), and then it must agree.
#' @param registry a folder, a `file://` URL or the http(s) URL of a Nexus raw repository
#'   (credentials in MODELGEN_REGISTRY_USERNAME / MODELGEN_REGISTRY_PASSWORD).
#' @param gitops the GitOps repository (a git URL or path).
#' @param packages more packages to pin, beyond those read off the model.
#' @param metadata a list: description, data, metrics (named numbers), source, lockfile
#'   ("packrat" or "renv").
#' @param reference the training rows (a data.frame): a column is required only if it has no
#'   gap there nor in `sample`.
#' @param columns what to say of columns by name: `list(age = list(nullable = FALSE),
#'   island = list(strict = TRUE))` (settings: nullable, strict, categories, description).
#' @param s for a glmnet or cv.glmnet model: the penalty to serve, a number or (cv.glmnet)
#'   "lambda.1se" (glmnet's default) or "lambda.min"; stored on the object, so the artifact
#'   says which one it serves.
#' @param out where the manifest and sample are kept (default: the modelgen cache,
#'   `$MODELGEN_CACHE/deployments/<name>/<version>`, or `~/.cache/modelgen/...`).
#' @return a `modelgen_deployment`: name, version, artifact URI, sha256, manifest, branch.
#' @export
deploy <- function(model, name, sample, version = NULL, task = NULL, owner = NULL,
                   registry = Sys.getenv("MODELGEN_REGISTRY"), gitops = Sys.getenv("MODELGEN_GITOPS"),
                   merge_request = TRUE, packages = NULL, metadata = list(), reference = NULL,
                   columns = list(), s = NULL, out = NULL, modelgen = Sys.getenv("MODELGEN_CLI", "modelgen"), ...) {
  unknown <- names(list(...))
  if (length(list(...))) {
    hint <- if (any(c("nullable", "required", "strict") %in% unknown)) "; say which columns may be null or are strict with columns = list(age = list(nullable = FALSE))" else ""
    stop(sprintf("deploy() got unknown argument(s) %s (allowed: %s)%s", paste(unknown, collapse = ", "), paste(setdiff(names(formals()), "..."), collapse = ", "), hint), call. = FALSE)
  }
  if (!grepl("^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$", name)) {
    stop("name must be lower-case letters, digits and '-', starting with a letter (at most 40 characters)", call. = FALSE)
  }
  if (!is.data.frame(sample) || nrow(sample) == 0) {
    stop("sample must be a non-empty data.frame of raw input rows (e.g. head(data[features], 200))", call. = FALSE)
  }
  if (!is.null(reference) && (!is.data.frame(reference) || nrow(reference) == 0)) {
    stop("reference must be a non-empty data.frame of raw input rows (e.g. the training data's features)", call. = FALSE)
  }
  metadata <- checked_metadata(metadata)
  if (!nzchar(registry)) stop("say where the registry is: registry = ... or MODELGEN_REGISTRY", call. = FALSE)
  if (!nzchar(gitops)) stop("say where the GitOps repository is: gitops = ... or MODELGEN_GITOPS", call. = FALSE)
  owner <- if (is.null(owner)) Sys.getenv("MODELGEN_OWNER", git_email()) else owner
  if (!nzchar(owner)) stop("say who owns the model: owner = \"jane.doe@example.com\" (or MODELGEN_OWNER)", call. = FALSE)

  model <- with_penalty(model, s)
  inputs <- input_columns(sample, reference, columns, unlist(metadata$strict))
  output <- infer_output(model, sample, task)
  stage <- tempfile("modelgen-deploy-")
  dir.create(stage)
  on.exit(unlink(stage, recursive = TRUE), add = TRUE)
  rds <- file.path(stage, "model.rds")
  saveRDS(model, rds)
  bytes <- readBin(rds, "raw", file.size(rds))
  sha256 <- digest::digest(file = rds, algo = "sha256")
  pins <- pinned_packages(unique(c(model_packages(model), packages)))

  store <- registry_of(registry)
  if (is.null(version)) {
    same <- already_deployed(store, name, sha256, out)
    if (!is.null(same)) return(same)
  }
  version <- if (!is.null(version)) version else unfinished_version(store, name, bytes) %||% next_version(store, name)
  uri <- store$uri(name, version, "model.rds")
  text <- manifest_text(name, version, owner, metadata, output, uri, sha256, pins, inputs, model)

  # Every check before anything is uploaded: the manifest as it will be written, rendered into a
  # project whose batch entry point scores the sample with the staged RDS.
  write_json_rows(sample, file.path(stage, "rows.json"))
  write_json_rows(utils::head(sample, 20), file.path(stage, "sample.json"))
  writeLines(text, file.path(stage, "model.yaml"), useBytes = TRUE)
  said <- run_cli(modelgen, c("generate", file.path(stage, "model.yaml"), "--output", file.path(stage, "project")))
  if (!is.null(attr(said, "status")) && attr(said, "status") != 0) stop(manifest_problems(said, inputs), call. = FALSE)
  check_round_trip(model, sample, output, file.path(stage, "project", name), rds, file.path(stage, "rows.json"))

  published <- store$publish(name, version, "model.rds", bytes)
  out <- if (is.null(out)) file.path(cache_root(), "deployments", name, version) else out
  dir.create(out, recursive = TRUE, showWarnings = FALSE)
  manifest <- normalizePath(file.path(out, "model.yaml"), mustWork = FALSE)
  file.copy(file.path(stage, c("model.yaml", "sample.json")), out, overwrite = TRUE)

  said <- run_cli(modelgen, c("generate", manifest, "--gitops", gitops, if (merge_request) "--merge-request"))
  status <- attr(said, "status")
  if (!is.null(status) && status != 0) {
    stop(sprintf("modelgen generate failed (exit %d):\n%s", status, paste(said, collapse = "\n")), call. = FALSE)
  }
  # The registry keeps the whole version (manifest and sample beside the artifact), uploaded
  # after the push so a registry webhook finds the branch already there.
  for (file in c("model.yaml", "sample.json")) {
    store$publish(name, version, file, readBin(file.path(out, file), "raw", file.size(file.path(out, file))))
  }
  message <- paste(said, collapse = "\n")
  branch <- regmatches(message, regexpr("modelgen/[^ ]+", message))
  deployment(name, version, published, sha256, manifest, if (length(branch)) branch else NULL, message)
}

# A glmnet model carries the penalty it serves (attribute modelgen.s); any other model takes no s.
with_penalty <- function(model, s) {
  glmnet <- inherits(model, c("glmnet", "cv.glmnet"))
  if (!is.null(s) && !glmnet) stop("s is the penalty of a glmnet or cv.glmnet model; this model takes none", call. = FALSE)
  if (!glmnet) return(model)
  if (!is.null(s)) {
    named <- is.character(s) && length(s) == 1L && s %in% c("lambda.1se", "lambda.min")
    if (!(named && inherits(model, "cv.glmnet")) && !(is.numeric(s) && length(s) == 1L && is.finite(s) && s >= 0)) {
      allowed <- if (inherits(model, "cv.glmnet")) "\"lambda.1se\", \"lambda.min\" or a number >= 0" else "a number >= 0"
      stop(sprintf("s must be one penalty: %s", allowed), call. = FALSE)
    }
    attr(model, "modelgen.s") <- s
  } else if (!inherits(model, "cv.glmnet") && length(model$lambda) != 1L) {
    stop(sprintf("the glmnet fit holds a path of %d penalties: say which to serve with s = (a number), or deploy a cv.glmnet", length(model$lambda)), call. = FALSE)
  }
  model
}

deployment <- function(name, version, uri, sha256, manifest, branch, message) {
  structure(
    list(name = name, version = version, artifact_uri = uri, sha256 = sha256, manifest = manifest, branch = branch, message = message),
    class = "modelgen_deployment"
  )
}

#' @export
print.modelgen_deployment <- function(x, ...) {
  cat(sprintf("Deployment %s %s\n  artifact  %s\n  sha256    %s\n  manifest  %s\n", x$name, x$version, x$artifact_uri, x$sha256, x$manifest))
  if (!is.null(x$branch)) cat(sprintf("  branch    %s\n", x$branch))
  cat(" ", x$message, "\n")
  invisible(x)
}

# What metadata may hold; `strict` (a vector of column names) is the older spelling of
# columns = list(<name> = list(strict = TRUE)).
METADATA <- c("description", "data", "metrics", "source", "lockfile", "strict")

checked_metadata <- function(metadata) {
  if (is.null(metadata)) return(list())
  if (!is.list(metadata) || (length(metadata) && is.null(names(metadata)))) {
    stop(sprintf("metadata must be a named list of %s", paste(METADATA, collapse = ", ")), call. = FALSE)
  }
  unknown <- setdiff(names(metadata), METADATA)
  if (length(unknown)) {
    stop(sprintf("metadata has unknown key(s) %s (allowed: %s)", paste(sort(unknown), collapse = ", "), paste(METADATA, collapse = ", ")), call. = FALSE)
  }
  metrics <- metadata$metrics
  if (length(metrics) && (is.null(names(metrics)) || !all(vapply(metrics, function(m) is.numeric(m) && length(m) == 1, TRUE)))) {
    stop("metadata$metrics must be named numbers, e.g. list(accuracy = 0.97)", call. = FALSE)
  }
  metadata
}

# The registry's version holding these very bytes, as the deployment that shipped it: re-running
# the script changes nothing.
already_deployed <- function(store, name, sha256, out) {
  for (version in known_versions(store, name)) {
    kept <- store$read(sprintf("%s/%s/model.yaml", name, version))
    if (is.null(kept)) next
    text <- rawToChar(kept)
    if (!grepl(sprintf("sha256: %s", sha256), text, fixed = TRUE)) next
    dir <- if (is.null(out)) file.path(cache_root(), "deployments", name, version) else out
    dir.create(dir, recursive = TRUE, showWarnings = FALSE)
    manifest <- normalizePath(file.path(dir, "model.yaml"), mustWork = FALSE)
    if (!file.exists(manifest)) writeBin(kept, manifest)
    message <- sprintf(
      "%s %s already ships these artifact bytes: nothing uploaded or pushed; to ship the same model with other settings, give it a new version (version = ...)",
      name, version
    )
    return(deployment(name, version, store$uri(name, version, "model.rds"), sha256, manifest, NULL, message))
  }
  NULL
}

# A version holding these very bytes but no manifest: an earlier call uploaded the artifact and
# then failed to push. It is taken again rather than left behind with the next version after it.
unfinished_version <- function(store, name, bytes) {
  for (version in known_versions(store, name)) {
    if (!is.null(store$read(sprintf("%s/%s/model.yaml", name, version)))) next
    if (identical(store$read(sprintf("%s/%s/model.rds", name, version)), bytes)) return(version)
  }
  NULL
}

`%||%` <- function(a, b) if (is.null(a)) b else a

# Rows as JSON records, in the forms the service reads: a factor as its label, a Date as
# YYYY-MM-DD, an instant as ISO 8601 in UTC (the zone it was shown in does not change it).
write_json_rows <- function(frame, path) {
  frame[] <- lapply(frame, json_ready)
  rows <- lapply(seq_len(nrow(frame)), function(i) {
    row <- lapply(names(frame), function(n) {
      v <- frame[[n]][i]
      if (is.na(v)) NULL else v
    })
    names(row) <- names(frame)
    row
  })
  writeLines(jsonlite::toJSON(rows, auto_unbox = TRUE, null = "null", pretty = TRUE, digits = NA), path, useBytes = TRUE)
}

json_ready <- function(x) {
  if (inherits(x, "Date")) return(format(x, "%Y-%m-%d"))
  if (inherits(x, "POSIXt")) return(iso_datetimes(x))
  if (is.factor(x)) as.character(x) else x
}

# 2024-05-31T12:30:00Z, with the fraction of a second (to the microsecond) when there is one:
# what the service's own iso_datetimes() writes.
iso_datetimes <- function(x) {
  seconds <- round(as.numeric(as.POSIXct(x)), 6)
  whole <- floor(seconds)
  fraction <- sub("0+$", "", sprintf("%.6f", seconds - whole))
  fraction <- ifelse(fraction == "0.", "", substring(fraction, 2L))
  out <- paste0(format(.POSIXct(whole, tz = "UTC"), "%Y-%m-%dT%H:%M:%S"), fraction, "Z")
  out[is.na(seconds)] <- NA_character_
  out
}

run_cli <- function(modelgen, args) suppressWarnings(system2(modelgen, shQuote(args), stdout = TRUE, stderr = TRUE))

cache_root <- function() {
  root <- Sys.getenv("MODELGEN_CACHE")
  if (nzchar(root)) root else file.path(path.expand("~"), ".cache", "modelgen")
}

git_email <- function() {
  said <- tryCatch(suppressWarnings(system2("git", c("config", "user.email"), stdout = TRUE, stderr = FALSE)), error = function(e) "")
  if (length(said)) said[1] else ""
}
