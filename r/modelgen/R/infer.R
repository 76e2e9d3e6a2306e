# What deploy() reads off the sample and the model: the input columns, the task and its output,
# the packages to pin.

# What columns = list(<name> = list(...)) may say about a column.
COLUMN_SETTINGS <- c("nullable", "strict", "categories", "description")

# One entry per column of `sample`, in order. A column is nullable unless something says
# otherwise: columns[[name]]$nullable when given, else whether `reference` (the training rows) or
# the sample has gaps, else nullable: a sample without gaps says nothing about the traffic the
# model's imputation was built for.
input_columns <- function(sample, reference = NULL, columns = list(), strict = character()) {
  settings <- checked_settings(sample, columns)
  if (!is.null(reference)) {
    lacking <- setdiff(names(sample), names(reference))
    if (length(lacking)) stop(sprintf("reference lacks the input column(s) %s", quoted(lacking)), call. = FALSE)
  }
  lapply(names(sample), function(n) {
    x <- sample[[n]]
    given <- settings[[n]]
    if (is.null(given)) given <- list()
    column <- list(name = n, type = column_type(n, x))
    # The class the service rebuilds a datetime as (POSIXlt is served as POSIXct, as a data.frame holds it).
    if (column$type == "datetime") column$dtype <- if (inherits(x, "Date")) "Date" else "POSIXct"
    nullable <- if (!is.null(given$nullable)) isTRUE(given$nullable) else if (!is.null(reference)) anyNA(reference[[n]]) || anyNA(x) else TRUE
    if (!nullable && anyNA(x)) {
      stop(sprintf("column '%s' cannot be required (nullable = FALSE): the sample has gaps in it", n), call. = FALSE)
    }
    if (nullable) column$nullable <- TRUE
    categories <- if (is.factor(x)) levels(x) else if (is.character(x)) sort(unique(x[!is.na(x)]), method = "radix") else NULL
    if (!is.null(given$categories)) {
      if (column$type != "string") stop(sprintf("column '%s' holds %s values: categories apply to strings only", n, column$type), call. = FALSE)
      categories <- as.character(unlist(given$categories))
    }
    if (length(categories)) column$categories <- categories
    if (isTRUE(given$strict) || n %in% strict) {
      if (!length(categories)) stop(sprintf("column '%s' cannot be strict: it has no categories (string values)", n), call. = FALSE)
      column$strict <- TRUE
    }
    if (!is.null(given$description)) column$description <- as.character(given$description)
    column
  })
}

checked_settings <- function(sample, columns) {
  if (is.null(columns)) return(list())
  if (!is.list(columns) || (length(columns) && is.null(names(columns)))) {
    stop("columns must be a named list, e.g. columns = list(age = list(nullable = FALSE))", call. = FALSE)
  }
  unknown <- setdiff(names(columns), names(sample))
  if (length(unknown)) {
    stop(sprintf("columns names no column of the sample: %s (allowed: %s)", quoted(unknown), quoted(names(sample))), call. = FALSE)
  }
  for (n in names(columns)) {
    keys <- names(columns[[n]])
    if (!is.list(columns[[n]]) || (length(columns[[n]]) && is.null(keys))) {
      stop(sprintf("columns$`%s` must be a named list of %s", n, paste(COLUMN_SETTINGS, collapse = ", ")), call. = FALSE)
    }
    bad <- setdiff(keys, COLUMN_SETTINGS)
    if (length(bad)) {
      stop(sprintf("columns$`%s` has unknown setting(s) %s (allowed: %s)", n, paste(bad, collapse = ", "), paste(COLUMN_SETTINGS, collapse = ", ")), call. = FALSE)
    }
  }
  columns
}

column_type <- function(n, x) {
  if (inherits(x, "Date") || inherits(x, "POSIXt")) return("datetime")
  if (is.factor(x) || is.character(x)) return("string")
  if (is.integer(x)) return("integer")
  if (is.logical(x)) return("boolean")
  if (is.numeric(x)) return("number")
  stop(sprintf("column '%s' holds %s values (allowed: numbers, integers, strings, factors, logicals, Dates, POSIXct)", n, class(x)[1]), call. = FALSE)
}

quoted <- function(x) paste(sprintf("'%s'", x), collapse = ", ")

# The task and output the model serves, from what the object says of itself; `task`, when given,
# must agree with it. A classifier is never shipped as a regression: a binomial glm would then
# serve log-odds.
infer_output <- function(model, sample, task = NULL) {
  found <- model_output(model, sample)
  tasks <- c("classification", "regression", "clustering", "anomaly-detection")
  if (!is.null(task) && !task %in% tasks) stop(sprintf("task must be one of %s", paste(tasks, collapse = ", ")), call. = FALSE)
  if (is.null(found)) {
    if (is.null(task)) {
      stop("cannot tell what the model predicts: say task = \"classification\", \"regression\", \"clustering\" or \"anomaly-detection\"", call. = FALSE)
    }
    if (task == "classification") {
      stop("cannot read the classes off this model (its predict() does not return a factor): it cannot ship as a classifier", call. = FALSE)
    }
    return(switch(task, regression = list(type = "value"), clustering = list(type = "cluster"), `anomaly-detection` = list(type = "score")))
  }
  inferred <- task_of(found)
  if (!is.null(task) && task != inferred && !(inferred == "regression" && task %in% c("clustering", "anomaly-detection"))) {
    what <- if (inferred == "classification") sprintf("a classifier (classes %s)", paste(found$classes, collapse = ", ")) else "a regression"
    stop(sprintf("task = \"%s\", but the model is %s: leave task out, or fit the model for that task", task, what), call. = FALSE)
  }
  if (!is.null(task) && task != inferred) {
    return(switch(task, clustering = list(type = "cluster"), `anomaly-detection` = list(type = "score")))
  }
  found
}

task_of <- function(output) {
  switch(output$type, probabilities = , label = "classification", value = "regression", cluster = "clustering", score = "anomaly-detection")
}

# The output by the model's class, as the service's frameworks/ methods predict it; NULL when the
# object does not say.
model_output <- function(model, sample) {
  classifier <- function(classes, type = "probabilities") list(type = type, classes = as.character(classes))
  if (inherits(model, "train")) {
    return(if (identical(model$modelType, "Classification")) classifier(model$levels) else list(type = "value"))
  }
  if (inherits(model, "WrappedModel")) {
    levels <- model$task.desc$class.levels
    if (!length(levels)) return(list(type = "value"))
    if (!identical(model$learner$predict.type, "prob")) {
      stop("the mlr learner predicts classes only: make it with predict.type = \"prob\" so the service can serve probabilities", call. = FALSE)
    }
    return(classifier(levels))
  }
  if (is.environment(model) && is.function(model$predict_newdata)) {
    trained <- if (!is.null(model$state)) model$state$train_task else NULL
    if (is.null(trained)) stop("the mlr3 learner is not trained", call. = FALSE)
    return(if (identical(trained$task_type, "classif")) classifier(trained$class_names) else list(type = "value"))
  }
  if (is_recipe_bundle(model)) return(model_output(model$model, baked(model, utils::head(sample, 5))))
  if (inherits(model, c("glmnet", "cv.glmnet"))) {
    fit <- if (inherits(model, "cv.glmnet")) model$glmnet.fit else model
    if (inherits(fit, c("lognet", "multnet"))) return(classifier(fit$classnames))
    if (inherits(fit, c("elnet", "fishnet"))) return(list(type = "value"))
    stop(sprintf("a glmnet %s fit is not a model modelgen serves (allowed: gaussian, poisson, binomial, multinomial)", class(fit)[1]), call. = FALSE)
  }
  if (inherits(model, "glm")) {
    if (!model$family$family %in% c("binomial", "quasibinomial")) return(list(type = "value"))
    return(classifier(binomial_classes(model)))
  }
  if (inherits(model, "lm")) return(list(type = "value"))
  if (inherits(model, "ranger")) {
    return(switch(model$treetype,
      Classification = classifier(model$forest$levels, "label"),
      `Probability estimation` = classifier(model$forest$levels),
      Regression = list(type = "value"),
      stop(sprintf("a ranger %s forest is not a model modelgen serves (allowed: classification, probability estimation, regression)", model$treetype), call. = FALSE)
    ))
  }
  if (inherits(model, "randomForest")) {
    return(switch(model$type,
      classification = classifier(model$classes),
      regression = list(type = "value"),
      stop("an unsupervised randomForest predicts nothing to serve", call. = FALSE)
    ))
  }
  predicted <- tryCatch(stats::predict(model, newdata = utils::head(sample, 5)), error = function(e) NULL)
  if (is.factor(predicted)) return(classifier(levels(predicted)))
  NULL
}

# A binomial glm's classes: the levels of a factor response (the second is the one predicted),
# FALSE/TRUE for a logical one, 0/1 for numbers.
binomial_classes <- function(model) {
  response <- model$model[[1]]
  if (is.factor(response)) return(levels(response))
  if (is.logical(response)) return(c("FALSE", "TRUE"))
  c("0", "1")
}

# The packages an object needs beyond R itself, found from its classes and its framework.
model_packages <- function(model) {
  found <- character()
  if (inherits(model, "train")) found <- c("caret", unlist(model$modelInfo$library))
  if (inherits(model, "WrappedModel")) found <- c(found, "mlr")
  if (is.list(model) && inherits(model$recipe, "recipe")) found <- c(found, "recipes", model_packages(model$model))
  for (cls in class(model)) {
    method <- utils::getS3method("predict", cls, optional = TRUE)
    if (!is.null(method)) {
      found <- c(found, environmentName(environment(method)))
      break
    }
  }
  setdiff(unique(found), c("", "R_GlobalEnv", "base", "stats"))
}

# Every package needed, with its dependencies, pinned as installed, dependencies first (packrat
# installs a lock file's packages in order). Base and recommended packages come with R.
pinned_packages <- function(packages) {
  if (!length(packages)) return(character())
  installed <- utils::installed.packages()
  missing <- setdiff(packages, rownames(installed))
  if (length(missing)) stop(sprintf("package(s) %s are not installed here: they cannot be pinned", quoted(missing)), call. = FALSE)
  needed <- tools::package_dependencies(packages, db = installed, recursive = TRUE, which = c("Depends", "Imports", "LinkingTo"))
  core <- rownames(utils::installed.packages(priority = c("base", "recommended")))
  all <- setdiff(unique(c(packages, unlist(needed))), core)
  direct <- tools::package_dependencies(all, db = installed, which = c("Depends", "Imports", "LinkingTo"))
  ordered <- character()
  visit <- function(p) {
    if (p %in% ordered) return(invisible())
    for (d in intersect(direct[[p]], all)) visit(d)
    ordered <<- c(ordered, p)
  }
  for (p in sort(all, method = "radix")) visit(p)
  vapply(ordered, function(p) sprintf("%s==%s", p, utils::packageDescription(p)$Version), "", USE.NAMES = FALSE)
}

# A prepped recipe bundled with the model fitted on its output: list(recipe =, model =).
is_recipe_bundle <- function(model) is.list(model) && inherits(model$recipe, "recipe") && !is.null(model$model)

baked <- function(model, frame) recipes::bake(model$recipe, new_data = frame)

framework_of <- function(model) {
  if (inherits(model, "train")) return("caret")
  if (inherits(model, "WrappedModel")) return("mlr")
  if (is.environment(model) && is.function(model$predict_newdata)) return("mlr3")
  if (is.list(model) && inherits(model$recipe, "recipe")) return("recipes")
  if (inherits(model, c("glmnet", "cv.glmnet"))) return("glmnet")
  "stats"
}
