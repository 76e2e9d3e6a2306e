# The model: loaded once per process after its sha256 is checked, then one predict function
# per kind of object (dispatch on the object, so the service never guesses from the manifest).

artifact_error <- function(message) {
  structure(class = c("artifact_error", "error", "condition"), list(message = message, call = NULL))
}

load_model <- function(path, expected_sha256, code_dir) {
  if (!file.exists(path)) stop(artifact_error(sprintf("model artifact %s not found (set MODEL_PATH)", path)))
  actual <- digest::digest(file = path, algo = "sha256")
  if (!identical(actual, tolower(expected_sha256))) {
    stop(artifact_error(sprintf(
      "model artifact %s has sha256 %s, expected %s; refusing to start", path, actual, expected_sha256
    )))
  }
  # Code the model needs (spec.code) is sourced first, as it was in the training session.
  for (file in sort(list.files(code_dir, pattern = "\\.R$", full.names = TRUE))) source(file, local = globalenv())
  tryCatch(single_threaded(readRDS(path)), error = function(err) {
    stop(artifact_error(sprintf("model artifact %s cannot be loaded: %s", path, conditionMessage(err))))
  })
}

# The columns as the model was trained on them: factors with the training levels, integers,
# doubles, logicals. Read from the object where it says (caret, mlr, recipes, glm), else from
# the manifest's categories.
training_types <- function(model, columns) {
  frame <- NULL
  if (inherits(model, "train") && !is.null(model$trainingData)) {
    frame <- model$trainingData
  } else if (is.list(model) && inherits(model$recipe, "recipe")) {
    frame <- model$recipe$template
  } else if (inherits(model, "WrappedModel") && !is.null(model$task.desc)) {
    frame <- NULL
  } else if (!is.null(model$model) && is.data.frame(model$model)) {
    frame <- model$model  # lm/glm keep their model frame
  }
  types <- lapply(columns, function(c) {
    trained <- if (!is.null(frame) && c$name %in% names(frame)) frame[[c$name]] else NULL
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

as_frame <- function(values, types) {
  cols <- lapply(names(types), function(n) {
    v <- values[[n]]
    t <- types[[n]]
    switch(t$kind,
      factor = factor(v, levels = t$levels),  # an unseen value becomes NA, as a new level would
      integer = as.integer(v),
      double = as.double(v),
      logical = as.logical(v),
      character = as.character(v)
    )
  })
  names(cols) <- names(types)
  structure(cols, class = "data.frame", row.names = seq_along(cols[[1]]))
}

model_classes <- function(model) {
  if (inherits(model, "train")) return(model$levels)
  if (inherits(model, "randomForest")) return(model$classes)
  if (inherits(model, "ranger")) return(model$forest$levels)
  if (inherits(model, "WrappedModel")) return(model$task.desc$class.levels)
  if (is.list(model) && inherits(model$recipe, "recipe") && !is.null(model$model)) return(model_classes(model$model))
  if (inherits(model, "glm") && !is.null(model$y)) {
    response <- model$model[[1]]
    if (is.factor(response)) return(levels(response))
  }
  if (is.environment(model) && !is.null(model$state) && !is.null(model$state$train_task)) {
    return(model$state$train_task$class_names)  # mlr3
  }
  NULL
}

# ranger predicts with every core unless told otherwise; each worker process gets one thread
# (the service runs one worker per CPU), so the processes do not fight over the cores.
THREADS <- as.integer(Sys.getenv("R_PREDICT_THREADS", "1"))

single_threaded <- function(model) {
  if (inherits(model, "train") && inherits(model$finalModel, "ranger")) {
    model$modelInfo$prob <- function(modelFit, newdata, submodels = NULL) {
      stats::predict(modelFit, newdata, num.threads = THREADS)$predictions
    }
    model$modelInfo$predict <- function(modelFit, newdata, submodels = NULL) {
      p <- stats::predict(modelFit, newdata, num.threads = THREADS)$predictions
      if (!is.null(modelFit$forest$levels) && is.matrix(p)) modelFit$forest$levels[max.col(p, ties.method = "first")] else p
    }
  }
  model
}

# A function(frame) -> matrix of class probabilities (columns in the model's class order).
probability_function <- function(model) {
  if (is.environment(model) && is.function(model$predict_newdata)) {  # mlr3 Learner or GraphLearner
    return(function(frame) as.matrix(model$predict_newdata(frame)$prob))
  }
  if (inherits(model, "WrappedModel")) {  # mlr (v2)
    return(function(frame) {
      p <- stats::predict(model, newdata = frame)
      as.matrix(mlr::getPredictionProbabilities(p, cl = model$task.desc$class.levels))
    })
  }
  if (inherits(model, "train")) {  # caret; its preProcess (impute, centre, scale, PCA) runs inside
    return(function(frame) as.matrix(stats::predict(model, newdata = frame, type = "prob", na.action = stats::na.pass)))
  }
  if (is.list(model) && inherits(model$recipe, "recipe") && !is.null(model$model)) {
    inner <- probability_function(model$model)
    return(function(frame) inner(recipes::bake(model$recipe, new_data = frame)))
  }
  if (inherits(model, "ranger")) {
    return(function(frame) as.matrix(stats::predict(model, data = frame, num.threads = THREADS)$predictions))
  }
  if (inherits(model, "randomForest")) {
    return(function(frame) as.matrix(stats::predict(model, newdata = frame, type = "prob")))
  }
  if (inherits(model, "glm")) {
    return(function(frame) {
      p <- stats::predict(model, newdata = frame, type = "response", na.action = stats::na.pass)
      cbind(1 - p, p)
    })
  }
  function(frame) as.matrix(stats::predict(model, newdata = frame, type = "prob"))
}

# A function(frame) -> numeric (regression value, anomaly score) or labels (clusters).
value_function <- function(model) {
  if (is.environment(model) && is.function(model$predict_newdata)) {
    return(function(frame) model$predict_newdata(frame)$response)
  }
  if (inherits(model, "WrappedModel")) return(function(frame) stats::predict(model, newdata = frame)$data$response)
  if (inherits(model, "train")) {
    return(function(frame) stats::predict(model, newdata = frame, type = "raw", na.action = stats::na.pass))
  }
  if (is.list(model) && inherits(model$recipe, "recipe") && !is.null(model$model)) {
    inner <- value_function(model$model)
    return(function(frame) inner(recipes::bake(model$recipe, new_data = frame)))
  }
  if (inherits(model, "ranger")) return(function(frame) stats::predict(model, data = frame, num.threads = THREADS)$predictions)
  function(frame) stats::predict(model, newdata = frame)
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
