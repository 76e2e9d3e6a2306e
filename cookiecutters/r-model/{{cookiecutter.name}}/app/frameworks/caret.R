# caret: `train` objects. Their preProcess (impute, centre, scale, PCA) runs inside predict().

# A ranger forest inside caret would predict with every core: one thread per worker instead.
prepared.train <- function(model) {
  if (inherits(model$finalModel, "ranger")) {
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

training_frame.train <- function(model) model$trainingData

model_classes.train <- function(model) model$levels

probability_function.train <- function(model) {
  function(frame) as.matrix(stats::predict(model, newdata = frame, type = "prob", na.action = stats::na.pass))
}

value_function.train <- function(model) {
  function(frame) stats::predict(model, newdata = frame, type = "raw", na.action = stats::na.pass)
}
