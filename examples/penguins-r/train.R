# Train the penguin species classifier in R and write everything `modelgen generate` needs.
#
#   Rscript examples/penguins-r/train.R --out DIR [--registry DIR] [--version 1.0.0]
#
# The model is one caret object: median imputation, centring, scaling and a PCA
# (preProcess) in front of a random forest (ranger), so the service receives raw rows.
# Writes DIR/model.rds, DIR/model.sha256, DIR/sample.json, DIR/reference.csv (the training
# rows, for the drift job) and DIR/model.yaml; with --registry,
# the artifact is published as REGISTRY/penguin-species-r/VERSION/model.rds (a local folder
# registry, laid out as modelgen's) and the manifest points there.
suppressPackageStartupMessages({
  library(caret)
  library(ranger)
  library(palmerpenguins)
})

args <- commandArgs(trailingOnly = TRUE)
option <- function(name, default = NULL) {
  at <- match(name, args)
  if (is.na(at)) default else args[at + 1]
}
out <- option("--out")
if (is.null(out)) stop("usage: train.R --out DIR [--registry DIR] [--version X.Y.Z]")
registry <- option("--registry")
version <- option("--version", "1.0.0")
name <- "penguin-species-r"
dir.create(out, recursive = TRUE, showWarnings = FALSE)
out <- normalizePath(out)

data <- as.data.frame(penguins[!is.na(penguins$species), ])
data$species <- droplevels(data$species)
# Measurements are numbers (the Python example's contract), even where palmerpenguins stores integers.
data$flipper_length_mm <- as.numeric(data$flipper_length_mm)
data$body_mass_g <- as.numeric(data$body_mass_g)
features <- setdiff(names(data), "species")

set.seed(0)
model <- train(
  species ~ ., data = data, method = "ranger",
  preProcess = c("medianImpute", "center", "scale", "pca"),
  na.action = na.pass,
  trControl = trainControl(method = "cv", number = 5, classProbs = TRUE),
  tuneGrid = expand.grid(mtry = 2, splitrule = "gini", min.node.size = 1),
  num.trees = 200, seed = 0
)
cat(sprintf("cross-validated accuracy: %.4f\n", max(model$results$Accuracy)))

artifact <- file.path(out, "model.rds")
saveRDS(model, artifact)
sha256 <- digest::digest(file = artifact, algo = "sha256")
writeLines(sprintf("%s  model.rds", sha256), file.path(out, "model.sha256"))
uri <- paste0("file://", artifact)
if (!is.null(registry)) {
  target <- file.path(normalizePath(registry, mustWork = FALSE), name, version, "model.rds")
  dir.create(dirname(target), recursive = TRUE, showWarnings = FALSE)
  if (file.exists(target) && digest::digest(file = target, algo = "sha256") != sha256) {
    stop(sprintf("%s %s is already published with other bytes: publish under a new version", name, version))
  }
  file.copy(artifact, target, overwrite = FALSE)
  uri <- paste0("file://", normalizePath(target))
}

# The input columns as applications send them: JSON types, nullability, factor levels.
column <- function(n) {
  x <- data[[n]]
  type <- if (is.factor(x) || is.character(x)) "string" else if (is.integer(x)) "integer" else if (is.logical(x)) "boolean" else "number"
  parts <- c(sprintf("name: %s", n), sprintf("type: %s", type))
  if (anyNA(x)) parts <- c(parts, "nullable: true")
  if (is.factor(x)) parts <- c(parts, sprintf("categories: [%s]", paste(levels(x), collapse = ", ")))
  if (n == "sex") parts <- c(parts, "strict: true")
  sprintf("    - {%s}", paste(parts, collapse = ", "))
}

# The sample: the first rows with gaps, then random rows, as JSON records (null for NA).
set.seed(1)
gaps <- which(!complete.cases(data[features]))[1:3]
rows <- sort(unique(c(gaps, sample(setdiff(seq_len(nrow(data)), gaps), 17))))
sample_rows <- lapply(rows, function(i) {
  record <- lapply(features, function(n) {
    v <- data[[n]][i]
    if (is.na(v)) NULL else if (is.factor(v)) as.character(v) else v
  })
  names(record) <- features
  record
})
writeLines(jsonlite::toJSON(sample_rows, auto_unbox = TRUE, null = "null", pretty = TRUE, digits = NA), file.path(out, "sample.json"))

# Every package the model needs to be loaded and to predict, pinned as installed here (the
# lock file of the service is written from these). Base and recommended packages come with R.
installed <- installed.packages()
needed <- tools::package_dependencies(c("caret", "ranger"), db = installed, recursive = TRUE, which = c("Depends", "Imports", "LinkingTo"))
packages <- setdiff(unique(c("caret", "ranger", unlist(needed))), rownames(installed.packages(priority = c("base", "recommended"))))
# Dependencies first: packrat installs a lock file's packages in the order they are listed.
direct <- tools::package_dependencies(packages, db = installed, which = c("Depends", "Imports", "LinkingTo"))
ordered <- character()
visit <- function(p) {
  if (p %in% ordered) return(invisible())
  for (d in intersect(direct[[p]], packages)) visit(d)
  ordered <<- c(ordered, p)
}
for (p in sort(packages, method = "radix")) visit(p)
packages <- ordered
pins <- vapply(packages, function(p) sprintf("%s==%s", p, utils::packageDescription(p)$Version), "")

manifest <- c(
  "# Written by examples/penguins-r/train.R; rerun it rather than editing by hand.",
  "apiVersion: modelgen/v1",
  "kind: Model",
  "metadata:",
  sprintf("  name: %s", name),
  sprintf("  version: %s", version),
  "  owner: jane.doe@example.com",
  "  description: Species of a Palmer penguin from its island, bill, flipper, body mass, sex and year. A caret random forest (ranger) on a PCA of the median-imputed, centred and scaled measurements.",
  "spec:",
  "  runtime: r",
  "  framework: caret",
  "  task: classification",
  "  artifact:",
  sprintf("    uri: %s", uri),
  sprintf("    sha256: %s", sha256),
  "    format: rds",
  sprintf("  requirements: [%s]", paste(pins, collapse = ", ")),
  sprintf("  rVersion: %s.%s", R.version$major, R.version$minor),
  "  input:",
  vapply(features, column, ""),
  sprintf("  output: {type: probabilities, classes: [%s]}", paste(levels(data$species), collapse = ", ")),
  "  sample: sample.json",
  "  serving:",
  "    replicas: 2",
  "    resources: {cpu: '2', memory: 1Gi}",
  "  environments: [dev, prod]",
  "  # The drift job compares a sample of live requests with the rows the model learned from.",
  "  monitoring: {reference: reference.csv, sampleRate: 0.1}"
)
utils::write.csv(data[features], file.path(out, "reference.csv"), row.names = FALSE, na = "")
writeLines(manifest, file.path(out, "model.yaml"))
cat(sprintf("wrote %s/model.yaml (artifact %s, sha256 %s)\n", out, uri, sha256))
