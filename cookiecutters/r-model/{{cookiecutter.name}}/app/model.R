# The model: loaded once per process after its sha256 is checked, then one predict function
# per kind of object (S3 dispatch on the object, so the service never guesses from the manifest).

artifact_error <- function(message) {
  structure(class = c("artifact_error", "error", "condition"), list(message = message, call = NULL))
}

load_model <- function(path, expected_sha256, code_dir, packages = character()) {
  if (!file.exists(path)) stop(artifact_error(sprintf("model artifact %s not found (set MODEL_PATH)", path)))
  actual <- digest::digest(file = path, algo = "sha256")
  if (!identical(actual, tolower(expected_sha256))) {
    stop(artifact_error(sprintf(
      "model artifact %s has sha256 %s, expected %s; refusing to start", path, actual, expected_sha256
    )))
  }
  # The pinned packages' namespaces are loaded first: their S3 methods (predict.randomForest)
  # are registered only then, and an object without closures (randomForest, a plain glm's
  # family aside) would not load them itself.
  for (package in packages) {
    tryCatch(loadNamespace(package), error = function(err) {
      stop(artifact_error(sprintf("package %s (spec.requirements) does not load: %s", package, conditionMessage(err))))
    })
  }
  # Code the model needs (spec.code) is sourced next, as it was in the training session.
  for (file in sort(list.files(code_dir, pattern = "\\.R$", full.names = TRUE))) source(file, local = globalenv())
  tryCatch(prepared(readRDS(path)), error = function(err) {
    stop(artifact_error(sprintf("model artifact %s cannot be loaded: %s", path, conditionMessage(err))))
  })
}

# What differs between frameworks is what their objects can tell and how they predict: five S3
# generics, whose methods for each framework's class live in app/frameworks/<framework>.R
# (caret, mlr, mlr3, recipes, glmnet, stats), as vetiver has one handler per model type. Defaults are
# in stats.R, for plain objects with a predict() method.
#   prepared(model)              the object as served (e.g. one thread per worker)
#   training_frame(model)        the data.frame it was trained on, when it keeps one
#   model_classes(model)         its class labels, in its own order, or NULL
#   probability_function(model)  function(frame) -> matrix of class probabilities
#   value_function(model)        function(frame) -> values, scores or cluster labels
prepared <- function(model) UseMethod("prepared")
training_frame <- function(model) UseMethod("training_frame")
model_classes <- function(model) UseMethod("model_classes")
probability_function <- function(model) UseMethod("probability_function")
value_function <- function(model) UseMethod("value_function")

# Predicting libraries that would use every core get this many threads (the service runs one
# worker per CPU), so the processes do not fight over the cores.
THREADS <- as.integer(Sys.getenv("R_PREDICT_THREADS", "1"))

local({
  # The folder of this file, whichever entry point sourced it.
  sourced <- Filter(Negate(is.null), lapply(sys.frames(), function(frame) frame$ofile))
  here <- dirname(sourced[[length(sourced)]])
  for (file in sort(list.files(file.path(here, "frameworks"), pattern = "\\.R$", full.names = TRUE))) {
    source(file, local = globalenv())
  }
})

# The columns as the model was trained on them: factors with the training levels, integers,
# doubles, logicals, Dates, POSIXct. Read from the object where it keeps its training frame,
# else from the contract's categories and dtype.
training_types <- function(model, columns) {
  frame <- training_frame(model)
  types <- lapply(columns, function(c) {
    trained <- if (!is.null(frame) && c$name %in% names(frame)) frame[[c$name]] else NULL
    if (c$type == "datetime") return(datetime_type(c, trained))
    if (is.factor(trained)) return(list(kind = "factor", levels = levels(trained)))
    if (is.integer(trained)) return(list(kind = "integer"))
    if (is.logical(trained)) return(list(kind = "logical"))
    if (is.numeric(trained)) return(list(kind = "double"))
    if (is.character(trained)) return(list(kind = "character"))
    switch(c$type,
      string = if (length(c$categories)) list(kind = "factor", levels = unlist(c$categories)) else list(kind = "character"),
      integer = list(kind = "integer"),
      number = list(kind = "double"),
      boolean = list(kind = "logical")
    )
  })
  names(types) <- vapply(columns, function(c) c$name, "")
  types
}

# A datetime column is a Date or a POSIXct as the model was trained on it, else as the contract's
# dtype says (POSIXct without one). A POSIXct gets the training frame's zone: the instant is the
# same, but what the model reads off it (the hour, the weekday) depends on the zone; UTC when
# the model keeps no frame or its column had no zone of its own.
datetime_type <- function(column, trained) {
  if (inherits(trained, "Date")) return(list(kind = "Date"))
  if (!inherits(trained, "POSIXt") && identical(column$dtype, "Date")) return(list(kind = "Date"))
  zone <- if (inherits(trained, "POSIXt")) attr(trained, "tzone")[1] else NULL
  list(kind = "POSIXct", tz = if (is.null(zone) || is.na(zone) || !nzchar(zone)) "UTC" else zone)
}

as_frame <- function(values, types) {
  cols <- lapply(names(types), function(n) {
    v <- values[[n]]
    t <- types[[n]]
    switch(t$kind,
      factor = factor(v, levels = t$levels),  # an unseen value becomes NA, as a new level would
      integer = as.integer(v),
      double = as.double(v),
      logical = as.logical(v),
      character = as.character(v),
      # payload.R built the contract's dtype; the training frame's wins (a day is its midnight UTC).
      Date = if (inherits(v, "Date")) v else structure(as.numeric(v) %/% 86400, class = "Date"),
      POSIXct = .POSIXct(if (inherits(v, "Date")) unclass(v) * 86400 else as.numeric(v), tz = t$tz)
    )
  })
  names(cols) <- names(types)
  structure(cols, class = "data.frame", row.names = seq_along(cols[[1]]))
}

# Numbers as JSON writes them (jsonlite's shortest exact form; null for NA), one string each.
json_numbers <- function(x) {
  if (!length(x)) return(character())
  text <- as.character(jsonlite::toJSON(as.numeric(x), digits = NA, na = "null"))
  strsplit(substr(text, 2, nchar(text) - 1), ",", fixed = TRUE)[[1]]
}

json_strings <- function(x) {
  if (!length(x)) return(character())
  vapply(as.character(x), function(s) as.character(jsonlite::toJSON(s, auto_unbox = TRUE)), "", USE.NAMES = FALSE)
}

csv_cells <- function(x) {
  x <- as.character(x)
  quote <- grepl('[",\n]', x)
  x[quote] <- paste0('"', gsub('"', '""', x[quote], fixed = TRUE), '"')
  x
}

# The output hook of the manifest's output type: frame -> the predictions, rendered as the JSON
# array of the Python service (`json`) or as its CSV rows (`csv`), in the same shapes.
predictor_for <- function(model, output) {
  kind <- output$type
  classes <- unlist(output$classes)
  if (kind %in% c("probabilities", "label")) {
    actual <- model_classes(model)
    if (!is.null(actual) && !identical(as.character(actual), as.character(classes))) {
      stop(artifact_error(sprintf(
        "the model's classes are %s, the manifest declares %s",
        paste(actual, collapse = ", "), paste(classes, collapse = ", ")
      )))
    }
    probabilities <- probability_function(model)
    class_keys <- json_strings(classes)
    if (kind == "probabilities") {
      return(list(
        header = c("label", paste0("probability_", classes)),
        predict = function(frame) {
          p <- probabilities(frame)
          list(n = nrow(p), labels = classes[max.col(p, ties.method = "first")], cells = lapply(seq_along(classes), function(j) json_numbers(p[, j])))
        },
        json = function(r) {
          pairs <- do.call(paste0, c(lapply(seq_along(classes), function(j) {
            paste0(if (j > 1) "," else "", class_keys[j], ":", r$cells[[j]])
          })))
          paste0('{"label":', class_keys[match(r$labels, classes)], ',"probabilities":{', pairs, "}}")
        },
        csv = function(r) do.call(paste, c(list(csv_cells(r$labels)), r$cells, sep = ","))
      ))
    }
    return(list(
      header = "label",
      predict = function(frame) {
        labels <- classes[max.col(probabilities(frame), ties.method = "first")]
        list(n = length(labels), labels = labels)
      },
      json = function(r) class_keys[match(r$labels, classes)],
      csv = function(r) csv_cells(r$labels)
    ))
  }
  values <- value_function(model)
  if (kind == "score") {
    return(list(
      header = c("outlier", "score"),
      predict = function(frame) {
        s <- as.numeric(values(frame))
        list(n = length(s), outlier = ifelse(s < 0, "true", "false"), cells = json_numbers(s))
      },
      json = function(r) paste0('{"outlier":', r$outlier, ',"score":', r$cells, "}"),
      csv = function(r) paste(r$outlier, r$cells, sep = ",")
    ))
  }
  list(
    header = if (kind == "cluster") "cluster" else "value",
    predict = function(frame) {
      v <- values(frame)
      v <- if (kind == "cluster") as.integer(v) else as.numeric(v)
      list(n = length(v), cells = json_numbers(v))
    },
    json = function(r) r$cells,
    csv = function(r) r$cells
  )
}
