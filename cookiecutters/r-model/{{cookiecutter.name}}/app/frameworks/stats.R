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

# glm: a binomial model predicts the probability of its second class: the second level of a
# factor response, TRUE of a logical one, 1 of a 0/1 one. Every family answers on the response
# scale (predict()'s default is the link: log-odds, log-counts).
model_classes.glm <- function(model) {
  if (!model$family$family %in% c("binomial", "quasibinomial")) return(NULL)
  response <- model$model[[1]]
  if (is.factor(response)) levels(response) else if (is.logical(response)) c("FALSE", "TRUE") else c("0", "1")
}

probability_function.glm <- function(model) {
  function(frame) {
    p <- stats::predict(model, newdata = frame, type = "response", na.action = stats::na.pass)
    cbind(1 - p, p)
  }
}

value_function.glm <- function(model) {
  function(frame) stats::predict(model, newdata = frame, type = "response", na.action = stats::na.pass)
}

# ranger predicts with every core unless told otherwise.
model_classes.ranger <- function(model) model$forest$levels

# A classification forest (not grown for probabilities) votes a class per row: served as labels,
# through a matrix with a 1 in the column of the class voted.
probability_function.ranger <- function(model) {
  function(frame) {
    p <- stats::predict(model, data = frame, num.threads = THREADS)$predictions
    if (!is.factor(p)) return(as.matrix(p))
    classes <- model$forest$levels
    votes <- matrix(0, nrow = length(p), ncol = length(classes), dimnames = list(NULL, classes))
    votes[cbind(seq_along(p), match(as.character(p), classes))] <- 1
    votes
  }
}

value_function.ranger <- function(model) function(frame) stats::predict(model, data = frame, num.threads = THREADS)$predictions

model_classes.randomForest <- function(model) model$classes

probability_function.randomForest <- function(model) {
  function(frame) as.matrix(stats::predict(model, newdata = frame, type = "prob"))
}
