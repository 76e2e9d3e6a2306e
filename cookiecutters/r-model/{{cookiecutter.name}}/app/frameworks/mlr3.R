# mlr3: Learners and GraphLearners (R6 objects of class "Learner"). Untested here: mlr3 is not
# installable on the machine the templates are tested on.

prepared.Learner <- function(model) model

training_frame.Learner <- function(model) NULL

model_classes.Learner <- function(model) {
  if (!is.null(model$state) && !is.null(model$state$train_task)) model$state$train_task$class_names else NULL
}

probability_function.Learner <- function(model) function(frame) as.matrix(model$predict_newdata(frame)$prob)

value_function.Learner <- function(model) function(frame) model$predict_newdata(frame)$response
