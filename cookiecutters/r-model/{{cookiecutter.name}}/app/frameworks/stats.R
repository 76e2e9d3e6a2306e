# Models with their own predict() method (glm, ranger, randomForest) and the defaults for any
# other object: predict(model, newdata = frame), type = "prob" for probabilities.

prepared.default <- function(model) model

# lm/glm (and others) keep their model frame in $model.
training_frame.default <- function(model) {
  if (is.list(model) && is.data.frame(model$model)) model$model else NULL
}

model_classes.default <- function(model) NULL

probability_function.default <- function(model) function(frame) as.matrix(stats::predict(model, newdata = frame, type = "prob"))

value_function.default <- function(model) function(frame) stats::predict(model, newdata = frame)

# glm: a binomial model's response is a factor; predict() gives the second level's probability.
model_classes.glm <- function(model) {
  response <- if (!is.null(model$y)) model$model[[1]] else NULL
  if (is.factor(response)) levels(response) else NULL
}

probability_function.glm <- function(model) {
  function(frame) {
    p <- stats::predict(model, newdata = frame, type = "response", na.action = stats::na.pass)
    cbind(1 - p, p)
  }
}

# ranger predicts with every core unless told otherwise.
model_classes.ranger <- function(model) model$forest$levels

probability_function.ranger <- function(model) {
  function(frame) as.matrix(stats::predict(model, data = frame, num.threads = THREADS)$predictions)
}

value_function.ranger <- function(model) function(frame) stats::predict(model, data = frame, num.threads = THREADS)$predictions

model_classes.randomForest <- function(model) model$classes

probability_function.randomForest <- function(model) {
  function(frame) as.matrix(stats::predict(model, newdata = frame, type = "prob"))
}
