#' Ship a fitted model from RStudio with one call.
#'
#' Saves `model` as RDS, checks in a fresh R process that the file predicts `sample` exactly
#' like the object in memory, infers the manifest (input columns from `sample`, task and
#' classes from the model, pinned packages with their dependencies, provenance), uploads the
#' RDS to the registry under `<name>/<version>/` and runs
#' `modelgen generate --gitops ... --merge-request`.
#'
#' @param model the fitted model, the whole pipeline (e.g. a caret `train` object).
#' @param name the model's name (lower-case letters, digits and '-').
#' @param sample a data.frame of raw input rows (e.g. `head(training_data[features], 200)`).
#' @param version "1.0.0"; by default the next version free in the registry.
#' @param registry a folder, a `file://` URL or the http(s) URL of a Nexus raw repository
#'   (credentials in MODELGEN_REGISTRY_USERNAME / MODELGEN_REGISTRY_PASSWORD).
#' @param gitops the GitOps repository (a git URL or path).
#' @param metadata a list: description, data, metrics (named numbers), source, strict
#'   (columns whose categories are the only ones allowed), lockfile ("packrat" or "renv").
#' @return a `modelgen_deployment`: name, version, artifact URI, sha256, manifest, branch.
#' @export
deploy <- function(model, name, sample, version = NULL, task = NULL, owner = NULL,
                   registry = Sys.getenv("MODELGEN_REGISTRY"), gitops = Sys.getenv("MODELGEN_GITOPS"),
                   merge_request = TRUE, packages = NULL, metadata = list(),
                   modelgen = Sys.getenv("MODELGEN_CLI", "modelgen")) {
  if (!grepl("^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$", name)) {
    stop("name must be lower-case letters, digits and '-', starting with a letter (at most 40 characters)", call. = FALSE)
  }
  if (!is.data.frame(sample) || nrow(sample) == 0) {
    stop("sample must be a non-empty data.frame of raw input rows (e.g. head(data[features], 200))", call. = FALSE)
  }
  if (!nzchar(registry)) stop("say where the registry is: registry = ... or MODELGEN_REGISTRY", call. = FALSE)
  if (!nzchar(gitops)) stop("say where the GitOps repository is: gitops = ... or MODELGEN_GITOPS", call. = FALSE)
  owner <- if (is.null(owner)) Sys.getenv("MODELGEN_OWNER", git_email()) else owner
  if (!nzchar(owner)) stop("say who owns the model: owner = \"jane.doe@example.com\" (or MODELGEN_OWNER)", call. = FALSE)

  columns <- input_columns(sample, unlist(metadata$strict))
  output <- infer_output(model, sample, task)
  rds <- tempfile(fileext = ".rds")
  on.exit(unlink(rds), add = TRUE)
  saveRDS(model, rds)
  check_round_trip(model, rds, sample, output)
  sha256 <- digest::digest(file = rds, algo = "sha256")
  pins <- pinned_packages(c(model_packages(model), packages))

  store <- registry_of(registry)
  version <- if (is.null(version)) next_version(store, name) else version
  uri <- store$publish(name, version, "model.rds", readBin(rds, "raw", file.size(rds)))

  out <- file.path(tempdir(), "modelgen", name, version)
  dir.create(out, recursive = TRUE, showWarnings = FALSE)
  sample_rows <- lapply(seq_len(min(nrow(sample), 20)), function(i) {
    row <- lapply(names(sample), function(n) {
      v <- sample[[n]][i]
      if (is.na(v)) NULL else if (is.factor(v)) as.character(v) else v
    })
    names(row) <- names(sample)
    row
  })
  writeLines(jsonlite::toJSON(sample_rows, auto_unbox = TRUE, null = "null", pretty = TRUE, digits = NA), file.path(out, "sample.json"))
  manifest <- file.path(out, "model.yaml")
  writeLines(manifest_text(name, version, owner, metadata, output, uri, sha256, pins, columns, model), manifest)

  args <- c("generate", manifest, "--gitops", gitops, if (merge_request) "--merge-request")
  said <- suppressWarnings(system2(modelgen, args, stdout = TRUE, stderr = TRUE))
  status <- attr(said, "status")
  if (!is.null(status) && status != 0) {
    stop(sprintf("modelgen generate failed (exit %d):\n%s", status, paste(said, collapse = "\n")), call. = FALSE)
  }
  store$publish(name, version, "model.yaml", readBin(manifest, "raw", file.size(manifest)))
  store$publish(name, version, "sample.json", readBin(file.path(out, "sample.json"), "raw", file.size(file.path(out, "sample.json"))))
  message <- paste(said, collapse = "\n")
  branch <- regmatches(message, regexpr("modelgen/[^ ]+", message))
  structure(
    list(name = name, version = version, artifact_uri = uri, sha256 = sha256, manifest = manifest,
         branch = if (length(branch)) branch else NULL, message = message),
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

input_columns <- function(sample, strict = character()) {
  lapply(names(sample), function(n) {
    x <- sample[[n]]
    if (inherits(x, c("Date", "POSIXt"))) {
      stop(sprintf("column '%s' holds dates or times; a model's input columns hold numbers, integers, strings or booleans: convert it before training", n), call. = FALSE)
    }
    type <- if (is.factor(x) || is.character(x)) "string" else if (is.integer(x)) "integer" else if (is.logical(x)) "boolean" else if (is.numeric(x)) "number" else {
      stop(sprintf("column '%s' holds %s values: convert it before training", n, class(x)[1]), call. = FALSE)
    }
    column <- list(name = n, type = type)
    if (anyNA(x)) column$nullable <- TRUE
    categories <- if (is.factor(x)) levels(x) else if (is.character(x)) sort(unique(x[!is.na(x)]), method = "radix") else NULL
    if (length(categories)) column$categories <- categories
    if (n %in% strict) column$strict <- TRUE
    column
  })
}

infer_output <- function(model, sample, task) {
  classes <- NULL
  if (inherits(model, "train")) classes <- if (identical(model$modelType, "Classification")) model$levels
  if (inherits(model, "WrappedModel")) classes <- model$task.desc$class.levels
  if (is.null(classes) && is.null(task)) {
    predicted <- stats::predict(model, newdata = sample)
    if (is.factor(predicted)) classes <- levels(predicted)
  }
  task <- if (is.null(task)) if (length(classes)) "classification" else "regression" else task
  switch(task,
    classification = list(type = "probabilities", classes = classes),
    regression = list(type = "value"),
    clustering = list(type = "cluster"),
    `anomaly-detection` = list(type = "score"),
    stop("task must be classification, regression, clustering or anomaly-detection", call. = FALSE)
  )
}

predictions_of <- function(model, sample, output) {
  if (identical(output$type, "probabilities")) {
    if (inherits(model, "train")) return(stats::predict(model, newdata = sample, type = "prob", na.action = stats::na.pass))
    return(stats::predict(model, newdata = sample, type = "prob"))
  }
  if (inherits(model, "train")) return(stats::predict(model, newdata = sample, na.action = stats::na.pass))
  stats::predict(model, newdata = sample)
}

check_round_trip <- function(model, rds, sample, output) {
  expected <- predictions_of(model, sample, output)
  inputs <- tempfile(fileext = ".rds")
  result <- tempfile(fileext = ".rds")
  on.exit(unlink(c(inputs, result)), add = TRUE)
  saveRDS(list(sample = sample, output = output, predictions_of = predictions_of), inputs)
  script <- "a <- commandArgs(TRUE); x <- readRDS(a[2]); m <- readRDS(a[1]); saveRDS(x$predictions_of(m, x$sample, x$output), a[3])"
  status <- system2(file.path(R.home("bin"), "Rscript"), c("-e", shQuote(script), rds, inputs, result), stdout = FALSE, stderr = FALSE)
  if (status != 0 || !file.exists(result)) {
    stop("the saved model does not load and predict in a fresh R session: load the packages it needs in your code, not only in the session", call. = FALSE)
  }
  if (!identical(readRDS(result), expected)) {
    stop("the saved model predicts differently once loaded again: it would not serve the same answers", call. = FALSE)
  }
}

model_packages <- function(model) {
  found <- character()
  if (inherits(model, "train")) found <- c("caret", unlist(model$modelInfo$library))
  if (inherits(model, "WrappedModel")) found <- c(found, "mlr")
  if (is.list(model) && inherits(model$recipe, "recipe")) found <- c(found, "recipes", model_packages(model$model))
  method <- utils::getS3method("predict", class(model)[1], optional = TRUE)
  if (!is.null(method)) found <- c(found, environmentName(environment(method)))
  setdiff(unique(found), c("", "R_GlobalEnv", "base", "stats"))
}

# Every package needed, with its dependencies, pinned as installed, dependencies first (packrat
# installs a lock file's packages in order). Base and recommended packages come with R.
pinned_packages <- function(packages) {
  installed <- utils::installed.packages()
  needed <- tools::package_dependencies(packages, db = installed, recursive = TRUE, which = c("Depends", "Imports", "LinkingTo"))
  core <- rownames(utils::installed.packages(priority = c("base", "recommended")))
  all <- setdiff(unique(c(packages, unlist(needed))), core)
  direct <- tools::package_dependencies(all, db = installed, which = c("Depends", "Imports", "LinkingTo"))
  ordered <- character()
  visit <- function(p) {
    if (p %in% ordered) return(invisible())
    for (d in intersect(direct[[p]], all)) visit(d)
    ordered <<- c(ordered, p)
  }
  for (p in sort(all, method = "radix")) visit(p)
  vapply(ordered, function(p) sprintf("%s==%s", p, utils::packageDescription(p)$Version), "", USE.NAMES = FALSE)
}

registry_of <- function(location) {
  if (grepl("^https?://", location)) return(http_registry(sub("/+$", "", location)))
  local_registry(normalizePath(sub("^file://", "", location), mustWork = FALSE))
}

local_registry <- function(root) {
  list(
    exists = function(path) file.exists(file.path(root, path)),
    publish = function(name, version, file, data) {
      target <- file.path(root, name, version, file)
      dir.create(dirname(target), recursive = TRUE, showWarnings = FALSE)
      if (file.exists(target)) {
        if (!identical(readBin(target, "raw", file.size(target)), data)) {
          stop(sprintf("%s %s is already published with other bytes: publish under a new version", name, version), call. = FALSE)
        }
      } else {
        partial <- paste0(target, ".partial")
        writeBin(data, partial)
        file.rename(partial, target)
      }
      paste0("file://", normalizePath(target))
    }
  )
}

http_registry <- function(base) {
  handle <- function() {
    h <- curl::new_handle()
    user <- Sys.getenv("MODELGEN_REGISTRY_USERNAME")
    if (nzchar(user)) curl::handle_setopt(h, username = user, password = Sys.getenv("MODELGEN_REGISTRY_PASSWORD"))
    h
  }
  get <- function(url) curl::curl_fetch_memory(url, handle = handle())
  list(
    exists = function(path) {
      h <- handle()
      curl::handle_setopt(h, nobody = TRUE)
      curl::curl_fetch_memory(paste0(base, "/", path), handle = h)$status_code == 200
    },
    publish = function(name, version, file, data) {
      url <- sprintf("%s/%s/%s/%s", base, name, version, file)
      existing <- get(url)
      if (existing$status_code == 200) {
        if (!identical(existing$content, data)) {
          stop(sprintf("%s %s is already published with other bytes: publish under a new version", name, version), call. = FALSE)
        }
        return(url)
      }
      h <- handle()
      curl::handle_setopt(h, customrequest = "PUT", postfields = data)
      curl::handle_setheaders(h, "Content-Type" = "application/octet-stream")
      status <- curl::curl_fetch_memory(url, handle = h)$status_code
      if (!status %in% c(200, 201, 204)) stop(sprintf("upload of %s failed: HTTP %d", url, status), call. = FALSE)
      url
    }
  )
}

next_version <- function(store, name) {
  patch <- 0
  while (store$exists(sprintf("%s/1.0.%d/model.rds", name, patch))) patch <- patch + 1
  sprintf("1.0.%d", patch)
}

git_email <- function() {
  said <- tryCatch(suppressWarnings(system2("git", c("config", "user.email"), stdout = TRUE, stderr = FALSE)), error = function(e) "")
  if (length(said)) said[1] else ""
}

yaml_string <- function(x) as.character(jsonlite::toJSON(as.character(x), auto_unbox = TRUE))

flow <- function(values) paste0("[", paste(vapply(values, yaml_string, ""), collapse = ", "), "]")

manifest_text <- function(name, version, owner, metadata, output, uri, sha256, pins, columns, model) {
  column_line <- function(c) {
    parts <- c(sprintf("name: %s", yaml_string(c$name)), sprintf("type: %s", c$type))
    if (isTRUE(c$nullable)) parts <- c(parts, "nullable: true")
    if (length(c$categories)) parts <- c(parts, sprintf("categories: %s", flow(c$categories)))
    if (isTRUE(c$strict)) parts <- c(parts, "strict: true")
    sprintf("    - {%s}", paste(parts, collapse = ", "))
  }
  framework <- if (inherits(model, "train")) "caret" else if (inherits(model, "WrappedModel")) "mlr" else if (is.environment(model) && is.function(model$predict_newdata)) "mlr3" else if (is.list(model) && inherits(model$recipe, "recipe")) "recipes" else "stats"
  provenance <- c(
    "  provenance:",
    if (!is.null(metadata$data)) sprintf("    data: %s", yaml_string(metadata$data)),
    if (length(metadata$metrics)) sprintf("    metrics: {%s}", paste(sprintf("%s: %s", names(metadata$metrics), format(unlist(metadata$metrics), digits = 15)), collapse = ", ")),
    sprintf("    trainedBy: %s", yaml_string(paste0(Sys.info()[["user"]], "@", Sys.info()[["nodename"]]))),
    sprintf("    trainedAt: %s", yaml_string(format(Sys.time(), "%Y-%m-%dT%H:%M:%SZ", tz = "UTC"))),
    sprintf("    libraries: {%s}", paste(vapply(strsplit(pins, "==", fixed = TRUE), function(p) sprintf("%s: %s", p[1], yaml_string(p[2])), ""), collapse = ", ")),
    if (!is.null(metadata$source)) sprintf("    source: %s", yaml_string(metadata$source))
  )
  c(
    "# Written by modelgen::deploy(); the GitOps repository keeps the reviewed copy.",
    "apiVersion: modelgen/v1",
    "kind: Model",
    "metadata:",
    sprintf("  name: %s", name),
    sprintf("  version: %s", version),
    sprintf("  owner: %s", owner),
    if (!is.null(metadata$description)) sprintf("  description: %s", yaml_string(metadata$description)),
    provenance,
    "spec:",
    "  runtime: r",
    sprintf("  framework: %s", framework),
    sprintf("  task: %s", if (output$type == "probabilities") "classification" else switch(output$type, value = "regression", cluster = "clustering", score = "anomaly-detection")),
    "  artifact:",
    sprintf("    uri: %s", uri),
    sprintf("    sha256: %s", sha256),
    "    format: rds",
    sprintf("  requirements: %s", flow(pins)),
    if (!is.null(metadata$lockfile)) sprintf("  lockfile: %s", metadata$lockfile),
    sprintf("  rVersion: %s.%s", R.version$major, R.version$minor),
    "  input:",
    vapply(columns, column_line, ""),
    if (output$type == "probabilities") sprintf("  output: {type: probabilities, classes: %s}", flow(output$classes)) else sprintf("  output: {type: %s}", output$type),
    "  sample: sample.json"
  )
}
