# What the drift job and the alerts need from live traffic (the R twin of app/monitoring.py):
# per input feature, counts of missing values, of values per reference bin (numeric) or per
# known category, and of unseen categories (a datetime, kind "missing", has its missing values
# counted and nothing else); the predictions by label or reference bin; and a
# sampled share of requests appended to an input log (JSON lines, one file per process, rotated
# by size). Label sets are fixed by the contract's monitoring section (modelgen wrote the
# reference bins and their labels there), so no request adds a time series.

# Values to bins the way numpy's searchsorted(edges, v, side = "left") does: v <= edge[i] is bin i.
bin_of <- function(edges, v) findInterval(v, edges, left.open = TRUE) + 1L

# A column as the input log writes it: datetimes as ISO 8601 strings (instants in UTC, with Z),
# which the drift job reads as the Python service's log.
loggable <- function(v) {
  if (inherits(v, "Date")) return(format(v, "%Y-%m-%d"))
  if (inherits(v, "POSIXt")) return(iso_datetimes(v))
  v
}

# monitoring: the contract's section of that name (what to count, and by which labels).
new_monitor <- function(monitoring, log_dir, sample_rate, max_bytes, backups = 3L) {
  features <- lapply(monitoring$features, function(f) {
    if (identical(f$kind, "numeric")) {
      list(name = f$name, numeric = TRUE, edges = as.numeric(unlist(f$edges)), labels = as.character(unlist(f$bins)))
    } else if (identical(f$kind, "missing")) {
      list(name = f$name, numeric = FALSE, only_missing = TRUE, labels = character())
    } else {
      list(name = f$name, numeric = FALSE, labels = as.character(unlist(f$categories)))
    }
  })
  names(features) <- vapply(features, function(f) f$name, "")
  field <- monitoring$field
  expected <- monitoring$predictions
  numeric_predictions <- identical(expected$kind, "numeric")
  prediction_edges <- if (numeric_predictions) as.numeric(unlist(expected$edges)) else numeric()
  state <- new.env()
  state$missing <- setNames(numeric(length(features)), names(features))
  state$unseen <- setNames(numeric(length(features)), names(features))
  state$values <- lapply(features, function(f) setNames(numeric(length(f$labels)), f$labels))
  state$predictions <- if (numeric_predictions) {
    labels <- as.character(unlist(expected$bins))
    setNames(numeric(length(labels)), labels)
  } else {
    numeric()
  }
  log_file <- if (nzchar(log_dir) && sample_rate > 0) {
    dir.create(log_dir, recursive = TRUE, showWarnings = FALSE)
    file.path(log_dir, sprintf("inputs-%s-%d.jsonl", Sys.info()[["nodename"]], Sys.getpid()))
  } else {
    ""
  }

  monitored <- function(predictions) {
    if (field == "label") return(as.character(predictions$labels))
    if (field == "cluster") return(as.character(predictions$cells))
    suppressWarnings(as.numeric(predictions$cells))
  }

  write_log <- function(values, predicted) {
    if (!nzchar(log_file) || stats::runif(1) >= sample_rate) return(invisible())
    rows <- structure(lapply(values, loggable), class = "data.frame", row.names = seq_along(values[[1]]))
    rows[["__ts"]] <- round(as.numeric(Sys.time()), 3)
    rows[["__prediction"]] <- predicted
    tryCatch(
      {
        con <- file(log_file, open = "a", encoding = "UTF-8")
        jsonlite::stream_out(rows, con, verbose = FALSE, na = "null", digits = NA)
        close(con)
        if (file.size(log_file) >= max_bytes) {
          for (i in rev(seq_len(backups - 1L))) {
            older <- paste0(log_file, ".", i)
            if (file.exists(older)) file.rename(older, paste0(log_file, ".", i + 1L))
          }
          file.rename(log_file, paste0(log_file, ".1"))
        }
      },
      error = function(err) message(sprintf("input log: %s", conditionMessage(err)))
    )
  }

  list(
    observe = function(values, predictions) {
      for (f in features) {
        v <- values[[f$name]]
        absent <- is.na(v)
        state$missing[[f$name]] <- state$missing[[f$name]] + sum(absent)
        v <- v[!absent]
        if (!length(v) || isTRUE(f$only_missing)) next
        if (f$numeric) {
          counts <- tabulate(bin_of(f$edges, as.numeric(v)), nbins = length(f$labels))
          state$values[[f$name]] <- state$values[[f$name]] + counts
        } else {
          keys <- if (is.logical(v)) ifelse(v, "true", "false") else as.character(v)
          known <- keys %in% f$labels
          state$unseen[[f$name]] <- state$unseen[[f$name]] + sum(!known)
          if (any(known)) {
            counts <- table(factor(keys[known], levels = f$labels))
            state$values[[f$name]] <- state$values[[f$name]] + as.numeric(counts)
          }
        }
      }
      predicted <- monitored(predictions)
      if (numeric_predictions) {
        counts <- tabulate(bin_of(prediction_edges, predicted), nbins = length(state$predictions))
        state$predictions <- state$predictions + counts
      } else {
        for (label in unique(predicted)) {
          have <- if (label %in% names(state$predictions)) state$predictions[[label]] else 0
          state$predictions[[label]] <- have + sum(predicted == label)
        }
      }
      write_log(values, predicted)
    },
    snapshot = function() {
      list(
        missing = as.list(state$missing), unseen = as.list(state$unseen),
        values = lapply(state$values, as.list), predictions = as.list(state$predictions)
      )
    }
  )
}

# Prometheus text of the monitoring counters summed over the workers' snapshots.
monitor_exposition <- function(snapshots) {
  add <- function(total, part) {
    for (k in names(part)) total[[k]] <- (if (is.null(total[[k]])) 0 else total[[k]]) + part[[k]]
    total
  }
  missing <- list()
  unseen <- list()
  values <- list()
  predictions <- list()
  for (s in snapshots) {
    if (is.null(s)) next
    missing <- add(missing, s$missing)
    unseen <- add(unseen, s$unseen)
    for (f in names(s$values)) values[[f]] <- add(if (is.null(values[[f]])) list() else values[[f]], s$values[[f]])
    predictions <- add(predictions, s$predictions)
  }
  if (!length(missing)) return(character())
  n <- function(x) format(x, scientific = FALSE)
  esc <- function(x) gsub("\n", "\\\\n", gsub('"', '\\\\"', gsub("\\\\", "\\\\\\\\", x)))
  c(
    "# HELP modelgen_feature_missing_total Missing values per input feature.",
    "# TYPE modelgen_feature_missing_total counter",
    sprintf('modelgen_feature_missing_total{feature="%s"} %s', esc(names(missing)), vapply(missing, n, "")),
    "# HELP modelgen_feature_unseen_total Values of a categorical feature the reference never had.",
    "# TYPE modelgen_feature_unseen_total counter",
    sprintf('modelgen_feature_unseen_total{feature="%s"} %s', esc(names(unseen)), vapply(unseen, n, "")),
    "# HELP modelgen_feature_values_total Values per input feature, by reference bin (numeric) or category.",
    "# TYPE modelgen_feature_values_total counter",
    unlist(lapply(names(values), function(f) {
      sprintf('modelgen_feature_values_total{feature="%s",bin="%s"} %s', esc(f), esc(names(values[[f]])), vapply(values[[f]], n, ""))
    })),
    "# HELP modelgen_predictions_total Predictions by label or reference bin.",
    "# TYPE modelgen_predictions_total counter",
    if (length(predictions)) sprintf('modelgen_predictions_total{bin="%s"} %s', esc(names(predictions)), vapply(predictions, n, ""))
  )
}
