# Smoke tests of the project, run by its CI job: the real artifact (MODEL_PATH, fetched and
# checked by app/fetch_artifact.R), the sample rows of tests/sample.json, every payload shape.
#   MODEL_PATH=model.rds Rscript tests/smoke.R
project_dir <- normalizePath(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), ".."))
app_dir <- file.path(project_dir, "app")
for (part in c("payload.R", "model.R", "monitoring.R", "service.R")) source(file.path(app_dir, part))
contract <- jsonlite::read_json(file.path(app_dir, "contract.json"))
model_path <- Sys.getenv("MODEL_PATH", file.path(project_dir, paste0("model.", contract$artifact$format)))
model <- load_model(model_path, contract$artifact$sha256, file.path(project_dir, "model_code"))
router <- build_router(model, contract, app_dir, contract$artifact$sha256, contract$maxRequestBytes, "")
handlers <- attr(router, "handlers")
sample <- jsonlite::read_json(file.path(project_dir, "tests", "sample.json"))
names <- vapply(contract$columns, function(c) c$name, "")

call <- function(body, type = "application/json", accept = "application/json") {
  res <- new.env()
  res$setHeader <- function(name, value) assign(paste0("header_", name), value, envir = res)
  raw <- if (is.raw(body)) body else charToRaw(enc2utf8(body))
  handlers$invocations(list(bodyRaw = raw, HTTP_CONTENT_TYPE = type, HTTP_ACCEPT = accept), res)
  list(status = res$status, body = res$body)
}
passed <- 0
check <- function(what, ok) {
  if (!isTRUE(ok)) stop("FAILED: ", what, call. = FALSE)
  passed <<- passed + 1
  cat("ok -", what, "\n")
}

as_json <- function(x) as.character(jsonlite::toJSON(x, auto_unbox = TRUE, null = "null", na = "null", digits = NA))
records <- call(as_json(sample))
check("every sample row is predicted", records$status == 200 &&
  length(jsonlite::parse_json(records$body)$predictions) == length(sample))
split <- call(as_json(list(dataframe_split = list(
  columns = rev(names), data = lapply(sample, function(r) unname(r[rev(names)]))
))))
check("dataframe_split in any column order answers the same", split$status == 200 && identical(split$body, records$body))
for (wrapper in c("dataframe_records", "instances", "inputs")) {
  wrapped <- call(as_json(setNames(list(sample), wrapper)))
  check(paste(wrapper, "answers the same"), identical(wrapped$body, records$body))
}
one <- call(as_json(sample[[1]]))
check("one record", one$status == 200 && length(jsonlite::parse_json(one$body)$predictions) == 1)
cell <- function(v) if (is.null(v)) "" else as.character(v)
csv <- paste0(paste(names, collapse = ","), "\n", paste(vapply(sample, function(r) paste(vapply(names, function(n) cell(r[[n]]), ""), collapse = ","), ""), collapse = "\n"), "\n")
answer <- call(csv, type = "text/csv", accept = "text/csv")
check("CSV in, CSV out", answer$status == 200 && length(strsplit(answer$body, "\n")[[1]]) == length(sample) + 1)
missing <- sample[[1]]
missing[[names[1]]] <- NULL
bad <- jsonlite::parse_json(call(as_json(list(missing)))$body)
check("a missing column is a 400 naming it", identical(bad$error$column, names[1]) && identical(bad$error$row, 0L))
check("metadata names the artifact", grepl(contract$artifact$sha256, handlers$static$metadata, fixed = TRUE))
cat(passed, "passed\n")
