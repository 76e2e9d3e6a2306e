# The manifest deploy() writes, and its problems told as the argument or column to change.

yaml_string <- function(x) as.character(jsonlite::toJSON(as.character(x), auto_unbox = TRUE))

flow <- function(values) paste0("[", paste(vapply(values, yaml_string, ""), collapse = ", "), "]")

manifest_text <- function(name, version, owner, metadata, output, uri, sha256, pins, columns, model) {
  column_line <- function(c) {
    parts <- c(sprintf("name: %s", yaml_string(c$name)), sprintf("type: %s", c$type))
    if (!is.null(c$dtype)) parts <- c(parts, sprintf("dtype: %s", c$dtype))
    if (isTRUE(c$nullable)) parts <- c(parts, "nullable: true")
    if (length(c$categories)) parts <- c(parts, sprintf("categories: %s", flow(c$categories)))
    if (isTRUE(c$strict)) parts <- c(parts, "strict: true")
    if (!is.null(c$description)) parts <- c(parts, sprintf("description: %s", yaml_string(c$description)))
    sprintf("    - {%s}", paste(parts, collapse = ", "))
  }
  libraries <- vapply(strsplit(pins, "==", fixed = TRUE), function(p) sprintf("%s: %s", p[1], yaml_string(p[2])), "")
  provenance <- c(
    "  provenance:",
    if (!is.null(metadata$data)) sprintf("    data: %s", yaml_string(metadata$data)),
    if (length(metadata$metrics)) sprintf("    metrics: {%s}", paste(sprintf("%s: %s", names(metadata$metrics), format(unlist(metadata$metrics), digits = 15)), collapse = ", ")),
    sprintf("    trainedBy: %s", yaml_string(paste0(Sys.info()[["user"]], "@", Sys.info()[["nodename"]]))),
    sprintf("    trainedAt: %s", yaml_string(format(Sys.time(), "%Y-%m-%dT%H:%M:%SZ", tz = "UTC"))),
    if (length(pins)) sprintf("    libraries: {%s}", paste(libraries, collapse = ", ")),
    if (!is.null(metadata$source)) sprintf("    source: %s", yaml_string(metadata$source))
  )
  c(
    "# Written by modelgen::deploy(); the GitOps repository keeps the reviewed copy.",
    "apiVersion: modelgen/v1",
    "kind: Model",
    "metadata:",
    sprintf("  name: %s", name),
    sprintf("  version: %s", yaml_string(version)),
    sprintf("  owner: %s", yaml_string(owner)),
    if (!is.null(metadata$description)) sprintf("  description: %s", yaml_string(metadata$description)),
    provenance,
    "spec:",
    "  runtime: r",
    sprintf("  framework: %s", framework_of(model)),
    sprintf("  task: %s", task_of(output)),
    "  artifact:",
    sprintf("    uri: %s", yaml_string(uri)),
    sprintf("    sha256: %s", sha256),
    "    format: rds",
    sprintf("  requirements: %s", if (length(pins)) flow(pins) else "[]"),
    if (!is.null(metadata$lockfile)) sprintf("  lockfile: %s", yaml_string(metadata$lockfile)),
    sprintf("  rVersion: %s.%s", R.version$major, R.version$minor),
    "  input:",
    vapply(columns, column_line, ""),
    if (length(output$classes)) sprintf("  output: {type: %s, classes: %s}", output$type, flow(output$classes)) else sprintf("  output: {type: %s}", output$type),
    "  sample: sample.json"
  )
}

# Where a manifest problem comes from in the deploy() call, by the manifest path it is reported at.
CAUSES <- c(
  "metadata.name" = "name", "metadata.version" = "version", "metadata.owner" = "owner",
  "metadata.description" = "metadata$description", "metadata.provenance" = "metadata (data, metrics, source)",
  "spec.requirements" = "packages", "spec.lockfile" = "metadata$lockfile", "spec.task" = "task",
  "spec.output" = "task (the output inferred for it)", "spec.artifact" = "registry"
)

# `modelgen generate`'s report on the staged manifest ("<file>:<line>: <path>: <message>"), one
# line per problem, as the arguments and columns of the call: the staged file means nothing to
# the caller.
manifest_problems <- function(said, columns) {
  lines <- grep("model\\.yaml(:[0-9]+)?: ", said, value = TRUE)
  if (!length(lines)) return(paste(said, collapse = "\n"))
  told <- vapply(sub("^.*model\\.yaml(:[0-9]+)?: ", "", lines), function(problem) {
    path <- sub(":.*$", "", problem)
    message <- sub("^[^:]*: ", "", problem)
    sprintf("%s: %s", cause_of(path, columns), message)
  }, "", USE.NAMES = FALSE)
  paste(c("the manifest deploy() would write is not valid:", told), collapse = "\n")
}

cause_of <- function(path, columns) {
  if (startsWith(path, "spec.input[")) {
    index <- as.integer(sub("^spec\\.input\\[([0-9]+)\\].*$", "\\1", path)) + 1
    rest <- sub("^spec\\.input\\[[0-9]+\\]\\.?", "", path)
    column <- if (!is.na(index) && index <= length(columns)) sprintf("column '%s'", columns[[index]]$name) else "sample"
    return(if (nzchar(rest)) sprintf("%s (%s)", column, rest) else column)
  }
  for (prefix in names(CAUSES)) {
    if (path == prefix || startsWith(path, paste0(prefix, ".")) || startsWith(path, paste0(prefix, "["))) {
      return(sprintf("%s (%s)", CAUSES[[prefix]], path))
    }
  }
  path
}
