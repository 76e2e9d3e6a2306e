# mlr (v2): `WrappedModel`s, as mlr::train returns them.

prepared.WrappedModel <- function(model) model

# The task description has no column types: the contract's are used.
training_frame.WrappedModel <- function(model) NULL

model_classes.WrappedModel <- function(model) model$task.desc$class.levels

probability_function.WrappedModel <- function(model) {
  function(frame) {
    p <- stats::predict(model, newdata = frame)
    as.matrix(mlr::getPredictionProbabilities(p, cl = model$task.desc$class.levels))
  }
}

value_function.WrappedModel <- function(model) function(frame) stats::predict(model, newdata = frame)$data$response
