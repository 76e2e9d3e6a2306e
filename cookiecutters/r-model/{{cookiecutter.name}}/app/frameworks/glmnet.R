# glmnet and cv.glmnet fits. glmnet learns from a numeric matrix, not from rows, so the service
# builds that matrix from the checked frame the way data scientists build it for glmnet:
# model.matrix(~ ., data)[, -1] (a factor as treatment dummies, named column + level) or
# as.matrix() of numeric columns (named as the columns). Either way the fit names its columns,
# and the service takes those, in the fit's order (model.matrix backquotes names with spaces;
# the quotes are not compared). The penalty served is the one deploy(s =) stored on the object,
# else glmnet's own default: lambda.1se for a cv.glmnet, the only one for a single-penalty fit.

glmnet_fit <- function(model) if (inherits(model, "cv.glmnet")) model$glmnet.fit else model

glmnet_penalty <- function(model) {
  s <- attr(model, "modelgen.s")
  if (!is.null(s)) return(s)
  if (inherits(model, "cv.glmnet")) return("lambda.1se")
  if (length(model$lambda) != 1L) {
    stop(sprintf("a glmnet path of %d penalties: deploy it with s = the one to serve, or as a cv.glmnet", length(model$lambda)))
  }
  NULL
}

glmnet_features <- function(model) {
  beta <- glmnet_fit(model)$beta
  if (is.list(beta)) beta <- beta[[1]] # multinomial: one coefficient matrix per class, same rows
  gsub("`", "", rownames(beta), fixed = TRUE)
}

# The design matrix for `frame`, columns as the fit names them; a gap gives an NA row (glmnet
# then predicts NA, served as null), never a dropped one.
glmnet_design <- function(features, frame) {
  design <- stats::model.matrix(~ ., stats::model.frame(~ ., frame, na.action = stats::na.pass))
  colnames(design) <- gsub("`", "", colnames(design), fixed = TRUE)
  missing <- setdiff(features, colnames(design))
  if (length(missing)) {
    stop(sprintf(
      "the glmnet fit uses column(s) %s, which model.matrix(~ ., data) does not make from the input columns (%s)",
      paste(sprintf("'%s'", missing), collapse = ", "), paste(sprintf("'%s'", colnames(design)[-1]), collapse = ", ")
    ))
  }
  design[, features, drop = FALSE]
}

glmnet_response <- function(model) {
  features <- glmnet_features(model)
  s <- glmnet_penalty(model)
  function(frame) {
    args <- list(model, newx = glmnet_design(features, frame), type = "response")
    if (!is.null(s)) args$s <- s
    do.call(stats::predict, args)
  }
}

model_classes.glmnet <- function(model) {
  fit <- glmnet_fit(model)
  if (inherits(fit, c("lognet", "multnet"))) fit$classnames else NULL
}
model_classes.cv.glmnet <- model_classes.glmnet

# Binomial: the probability of the second class, as one column; multinomial: one per class.
probability_function.glmnet <- function(model) {
  respond <- glmnet_response(model)
  binomial <- inherits(glmnet_fit(model), "lognet")
  function(frame) {
    p <- respond(frame)
    if (binomial) cbind(1 - p[, 1], p[, 1]) else matrix(p[, , 1], nrow = nrow(frame))
  }
}
probability_function.cv.glmnet <- probability_function.glmnet

value_function.glmnet <- function(model) {
  respond <- glmnet_response(model)
  function(frame) as.numeric(respond(frame)[, 1])
}
value_function.cv.glmnet <- value_function.glmnet
