# Score a file of rows with the service's own checks and model (the R twin of app/batch.py):
#   Rscript app/batch.R INPUT OUTPUT [--on-error fail|skip] [--rejected FILE] [--chunk-rows N]
# INPUT is CSV with a header row, JSON lines (.jsonl) or one JSON document in any shape
# /invocations accepts (.json, read whole); OUTPUT is CSV: the columns the service answers with
# Accept: text/csv, then model_name, model_version and model_sha256. CSV and JSON lines are read,
# checked and scored in chunks, so memory stays flat whatever the file's size; rows are numbered
# from 0 over the whole file. Parquet needs R's arrow package, which this image does not have:
# convert it, or score it with a Python model's batch job.
# --on-error fail (default): the first bad row stops the run (exit 2, its row and column named),
# and no output is left behind. skip: bad rows go to the rejected file (JSON lines: row, column,
# reason, values), the others are scored. Exit 3: a bad artifact.
args <- commandArgs(trailingOnly = TRUE)
usage <- "usage: Rscript app/batch.R INPUT OUTPUT [--on-error fail|skip] [--rejected FILE] [--chunk-rows N]"
options <- list(`on-error` = "fail", rejected = NA_character_, `chunk-rows` = "10000")
positional <- character()
i <- 1L
while (i <= length(args)) {
  if (startsWith(args[i], "--")) {
    key <- substring(args[i], 3L)
    if (!key %in% names(options) || i == length(args)) {
      message(usage)
      quit(status = 2, save = "no")
    }
    options[[key]] <- args[i + 1L]
    i <- i + 2L
  } else {
    positional <- c(positional, args[i])
    i <- i + 1L
  }
}
if (length(positional) != 2 || !options$`on-error` %in% c("fail", "skip")) {
  message(usage)
  quit(status = 2, save = "no")
}
input <- positional[1]
output <- positional[2]
skip <- options$`on-error` == "skip"
chunk_rows <- as.integer(options$`chunk-rows`)
fail <- function(text) {
  message(sprintf("%s: %s", input, text))
  quit(status = 2, save = "no")
}
format <- tolower(tools::file_ext(input))
if (format == "ndjson") format <- "jsonl"
if (format == "parquet") fail("Parquet needs R's arrow package, which this image does not have (allowed: .csv, .jsonl, .json)")
if (!format %in% c("csv", "jsonl", "json")) fail("cannot tell the format from the name (allowed: .csv, .jsonl, .json)")
if (tolower(tools::file_ext(output)) != "csv") fail(sprintf("%s: the R batch job writes CSV (.csv)", output))

app_dir <- normalizePath(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])))
project_dir <- dirname(app_dir)
for (part in c("settings.R", "payload.R", "model.R")) source(file.path(app_dir, part))

predictor <- tryCatch(
  {
    model <- load_model(model_path, sha256, file.path(project_dir, "model_code"), required_packages)
    types <- training_types(model, contract$columns)
    predictor_for(model, contract$output)
  },
  artifact_error = function(err) {
    message(sprintf("%s: %s", contract$name, conditionMessage(err)))
    quit(status = 3, save = "no")
  }
)
schema <- input_schema(contract$columns, contract$values)
trace <- paste(csv_cells(c(contract$name, contract$version, sha256)), collapse = ",")

# Written beside their names and renamed into place at the end: a failed run leaves nothing.
partial <- function(path) file.path(dirname(path), paste0(".", basename(path), ".partial-", Sys.getpid()))
rejected_path <- if (is.na(options$rejected)) sub("\\.[^./]*$", ".rejected.jsonl", output) else options$rejected
out <- file(partial(output), open = "wb")
rejected_out <- if (skip) file(partial(rejected_path), open = "wb") else NULL
give_up <- function(text) {
  close(out)
  unlink(partial(output))
  if (skip) {
    close(rejected_out)
    unlink(partial(rejected_path))
  }
  fail(text)
}
write_lines <- function(lines, con) writeBin(charToRaw(paste0(paste(lines, collapse = "\n"), "\n")), con)
write_lines(paste(c(csv_cells(predictor$header), "model_name", "model_version", "model_sha256"), collapse = ","), out)

# JSON lines as one array: trusted when every line gave one row; else the first line that is not
# one JSON value is refused by its row (a line `{...},{...}` would shift every row after it).
one_per_line <- function(lines) {
  values <- schema$from_json(body(lines))
  if (length(values) > 0 && length(values[[1]]) != length(lines)) {
    k <- which(!vapply(lines, function(l) isTRUE(jsonlite::validate(l)), logical(1), USE.NAMES = FALSE))[1]
    if (is.na(k)) k <- 1L
    stop(bad_request(sprintf("row %d: a JSON lines row is one JSON value on one line", k - 1L), row = k - 1L))
  }
  values
}

# One chunk: `body(lines)` is what the service would be sent for these rows; `values(k)` row k as it came.
# A bad row is named by its number over the file (first + its index); with skip it is set aside
# and the rest checked again.
scored <- 0L
rejected <- 0L
score_chunk <- function(lines, first, body, values) {
  rows <- seq_along(lines)
  while (length(rows) > 0) {
    outcome <- tryCatch(
      list(values = if (format == "csv") schema$from_csv(body(lines[rows])) else one_per_line(lines[rows])),
      bad_request = function(err) list(error = err)
    )
    if (is.null(outcome$error)) break
    err <- outcome$error
    if (is.null(err$row)) give_up(err$message)
    k <- rows[err$row + 1L]
    row <- first + k - 1L
    reason <- sub(sprintf("row %d:", err$row), sprintf("row %d:", row), err$message, fixed = TRUE)
    if (!skip) give_up(reason)
    record <- list(row = row, column = if (is.null(err$column)) NA else err$column, reason = reason, values = values(lines[k]))
    write_lines(jsonlite::toJSON(record, auto_unbox = TRUE, null = "null", na = "null", digits = NA), rejected_out)
    rejected <<- rejected + 1L
    rows <- rows[-(err$row + 1L)]
  }
  if (length(rows) == 0) return(invisible())
  predictions <- predictor$predict(as_frame(outcome$values, types))
  if (predictions$n > 0) write_lines(paste(predictor$csv(predictions), trace, sep = ","), out)
  scored <<- scored + predictions$n
}

# Whether each line holds an odd number of quotes: such a line opens (or closes) a cell that
# goes on to the next line.
odd_quotes <- function(lines) lengths(regmatches(lines, gregexpr('"', lines))) %% 2 == 1

# Physical lines joined into rows, by their quote parities (`odd`).
one_per_row <- function(lines, odd) {
  if (!any(odd)) return(lines)
  row <- cumsum(c(TRUE, !(cumsum(odd) %% 2 == 1)[-length(lines)]))
  vapply(split(lines, row), paste, character(1), collapse = "\n", USE.NAMES = FALSE)
}

started <- Sys.time()
logged <- started
progress <- function() {
  now <- Sys.time()
  if (as.numeric(now - logged, units = "secs") >= 10) {
    logged <<- now
    rate <- scored / as.numeric(now - started, units = "secs")
    message(sprintf("scored %d rows (%.0f rows/s), %d rejected", scored, rate, rejected))
  }
}

# Anything else that stops the run (the model refusing rows, an unreadable file) is one line,
# and the partial files go, as for a bad row.
tryCatch({
if (format == "json") {
  body <- readBin(input, "raw", file.size(input))
  outcome <- tryCatch(schema$from_json(body), bad_request = function(err) give_up(err$message))
  predictions <- predictor$predict(as_frame(outcome, types))
  if (predictions$n > 0) write_lines(paste(predictor$csv(predictions), trace, sep = ","), out)
  scored <- predictions$n
} else {
  con <- file(input, open = "r", encoding = "UTF-8")
  header <- if (format == "csv") sub("^\ufeff", "", readLines(con, n = 1L, warn = FALSE)) else NULL
  if (format == "csv" && length(header) == 0) give_up("empty file: a CSV needs a header row")
  to_raw <- function(text) charToRaw(enc2utf8(text))
  body <- if (format == "csv") {
    function(lines) to_raw(paste(c(header, lines), collapse = "\n"))
  } else {
    function(lines) to_raw(paste0("[", paste(lines, collapse = ","), "]"))
  }
  values <- if (format == "csv") {
    function(line) as.list(utils::read.csv(text = c(header, line), colClasses = "character", check.names = FALSE,
                                           na.strings = character()))
  } else {
    function(line) tryCatch(jsonlite::fromJSON(line, simplifyVector = FALSE), error = function(err) line)
  }
  first <- 0L
  repeat {
    lines <- readLines(con, n = chunk_rows, warn = FALSE, encoding = "UTF-8")
    if (length(lines) == 0) break  # the end of the file (a chunk of blank lines is not)
    # A quoted CSV cell may hold a line break: read on until the chunk ends between rows, and
    # make each row one element, so rows are counted and named as the check counts them.
    if (format == "csv") {
      odd <- odd_quotes(lines)
      while (sum(odd) %% 2 == 1) {
        more <- readLines(con, n = 1L, warn = FALSE, encoding = "UTF-8")
        if (length(more) == 0) break
        lines <- c(lines, more)
        odd <- c(odd, odd_quotes(more))
      }
      lines <- one_per_row(lines, odd)
    }
    lines <- lines[nzchar(trimws(lines))]
    if (length(lines) == 0) next
    score_chunk(lines, first, body, values)
    first <- first + length(lines)
    progress()
  }
  close(con)
}
}, error = function(err) give_up(conditionMessage(err)))

close(out)
file.rename(partial(output), output)
if (skip) {
  close(rejected_out)
  file.rename(partial(rejected_path), rejected_path)
}
message(sprintf("%s: %d predictions", output, scored))
if (skip) message(sprintf("%s: %d rejected rows", rejected_path, rejected))
