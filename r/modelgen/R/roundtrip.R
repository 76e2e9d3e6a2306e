# The round trip: the staged project's own batch entry point (app/batch.R, the service's row
# checks, artifact loading and predict methods) scores the sample in a fresh R process, and its
# answers must be what the object in memory answers.

# What the model in memory answers for `frame`, in the output's terms: a matrix of class
# probabilities (columns in class order), labels, or numbers. It is written apart from the
# service's frameworks/ methods on purpose, as each library documents its own predict(): ranger
# takes data =, a glm answers on the response scale, caret and mlr keep rows with gaps.
predictions_of <- function(model, frame, output) {
  if (is_recipe_bundle(model)) return(predictions_of(model$model, baked(model, frame), output))
  if (inherits(model, c("glmnet", "cv.glmnet"))) return(glmnet_predictions(model, frame, output))
  classes <- output$classes
  if (output$type == "label") {
    if (inherits(model, "ranger")) return(as.character(stats::predict(model, data = frame)$predictions))
    p <- predictions_of(model, frame, utils::modifyList(output, list(type = "probabilities")))
    return(classes[max.col(p, ties.method = "first")])
  }
  if (output$type == "probabilities") {
    p <- if (inherits(model, "glm")) {
      p <- stats::predict(model, newdata = frame, type = "response", na.action = stats::na.pass)
      matrix(c(1 - p, p), ncol = 2, dimnames = list(NULL, classes))
    } else if (inherits(model, "ranger")) {
      stats::predict(model, data = frame)$predictions
    } else if (inherits(model, "train")) {
      stats::predict(model, newdata = frame, type = "prob", na.action = stats::na.pass)
    } else if (inherits(model, "WrappedModel")) {
      mlr::getPredictionProbabilities(stats::predict(model, newdata = frame), cl = classes)
    } else if (is.environment(model) && is.function(model$predict_newdata)) {
      model$predict_newdata(frame)$prob
    } else {
      stats::predict(model, newdata = frame, type = "prob")
    }
    return(as.matrix(p)[, classes, drop = FALSE])
  }
  values <- if (inherits(model, "ranger")) {
    stats::predict(model, data = frame)$predictions
  } else if (inherits(model, "glm")) {
    stats::predict(model, newdata = frame, type = "response", na.action = stats::na.pass)
  } else if (inherits(model, "train")) {
    stats::predict(model, newdata = frame, type = "raw", na.action = stats::na.pass)
  } else if (inherits(model, "WrappedModel")) {
    stats::predict(model, newdata = frame)$data$response
  } else if (is.environment(model) && is.function(model$predict_newdata)) {
    model$predict_newdata(frame)$response
  } else {
    stats::predict(model, newdata = frame)
  }
  if (output$type == "cluster") as.integer(values) else as.numeric(values)
}

# Scores `rows` (a JSON file of records) with the rendered project in `project` and `rds` as its
# artifact; stops with the entry point's own message when it fails.
batch_predictions <- function(project, rds, rows) {
  result <- tempfile(fileext = ".csv")
  on.exit(unlink(result), add = TRUE)
  script <- file.path(project, "app", "batch.R")
  said <- with_env(c(MODEL_PATH = rds, MODEL_SHA256 = ""), suppressWarnings(system2(
    file.path(R.home("bin"), "Rscript"), c(shQuote(script), shQuote(rows), shQuote(result)), stdout = TRUE, stderr = TRUE
  )))
  status <- attr(said, "status")
  if ((!is.null(status) && status != 0) || !file.exists(result)) {
    stop(sprintf(
      "the saved model does not load and predict in a fresh R session, as the service would run it: %s\n(load the packages it needs in your code, not only in the session)",
      paste(utils::tail(said, 3), collapse = "\n")
    ), call. = FALSE)
  }
  utils::read.csv(result, colClasses = "character", check.names = FALSE, na.strings = character())
}

with_env <- function(values, code) {
  old <- Sys.getenv(names(values), unset = NA, names = TRUE)
  on.exit({
    for (n in names(old)) if (is.na(old[[n]])) Sys.unsetenv(n) else do.call(Sys.setenv, as.list(old[n]))
  }, add = TRUE)
  do.call(Sys.setenv, as.list(values))
  code
}

# The first cell where the served answers differ from the expected ones, as "row i: <column> is
# x in memory, y served", or NULL when every cell agrees (numbers to 1e-10, relative).
first_difference <- function(expected, got) {
  for (column in names(expected)) {
    want <- expected[[column]]
    cells <- got[[column]]
    if (is.null(cells)) return(sprintf("the service answers no column %s", column))
    differs <- if (is.numeric(want)) {
      have <- suppressWarnings(as.numeric(ifelse(cells == "null", NA, cells)))
      is.na(want) != is.na(have) | (!is.na(want) & !is.na(have) & abs(want - have) > 1e-10 * pmax(1, abs(want)))
    } else {
      as.character(want) != cells
    }
    if (any(differs)) {
      i <- which(differs)[1]
      return(sprintf("row %d: %s is %s in memory, %s served", i, column, format(want[i], digits = 15), cells[i]))
    }
  }
  NULL
}

check_round_trip <- function(model, sample, output, project, rds, rows) {
  predicted <- predictions_of(model, sample, output)
  expected <- switch(output$type,
    probabilities = c(
      list(label = output$classes[max.col(predicted, ties.method = "first")]),
      stats::setNames(lapply(seq_along(output$classes), function(j) predicted[, j]), paste0("probability_", output$classes))
    ),
    label = list(label = as.character(predicted)),
    stats::setNames(list(predicted), output$type)
  )
  got <- batch_predictions(project, rds, rows)
  difference <- if (nrow(got) != nrow(sample)) sprintf("%d rows in, %d answers", nrow(sample), nrow(got)) else first_difference(expected, got)
  if (!is.null(difference)) {
    stop(sprintf(
      "the saved model, served with output type %s, does not answer like the object in memory (%s): it would not serve the same answers",
      output$type, difference
    ), call. = FALSE)
  }
}

# A glmnet fit predicts from model.matrix(~ ., frame) as its documentation builds newx, with the
# columns the fit names (a backquoted name is the column's own), at the penalty to be served.
glmnet_predictions <- function(model, frame, output) {
  fit <- if (inherits(model, "cv.glmnet")) model$glmnet.fit else model
  beta <- if (is.list(fit$beta)) fit$beta[[1]] else fit$beta
  x <- stats::model.matrix(~ ., stats::model.frame(~ ., frame, na.action = stats::na.pass))
  at <- match(gsub("`", "", rownames(beta)), gsub("`", "", colnames(x)))
  if (anyNA(at)) {
    stop(sprintf(
      "the glmnet fit uses column(s) %s, which model.matrix(~ ., sample) does not make: fit it on model.matrix(~ ., data)[, -1] or on as.matrix() of numeric columns, named as the sample's",
      quoted(rownames(beta)[is.na(at)])
    ), call. = FALSE)
  }
  x <- x[, at, drop = FALSE]
  args <- list(model, newx = x, type = "response")
  if (!is.null(attr(model, "modelgen.s"))) args$s <- attr(model, "modelgen.s")
  p <- do.call(stats::predict, args)
  if (output$type == "value") return(as.numeric(p[, 1]))
  p <- if (length(dim(p)) == 3L) matrix(p[, , 1], nrow = nrow(frame)) else cbind(1 - p[, 1], p[, 1])
  p <- matrix(p, ncol = length(output$classes), dimnames = list(NULL, output$classes))
  if (output$type == "label") output$classes[max.col(p, ties.method = "first")] else p
}
