# recipes: a prepped recipe bundled with the model fitted on its output, list(recipe =, model =).
# A plain list, so these are the methods for "list"; any other list falls back to the defaults.

is_recipe_bundle <- function(model) inherits(model$recipe, "recipe") && !is.null(model$model)

prepared.list <- function(model) if (is_recipe_bundle(model)) model else NextMethod()

training_frame.list <- function(model) if (inherits(model$recipe, "recipe")) model$recipe$template else NextMethod()

model_classes.list <- function(model) if (is_recipe_bundle(model)) model_classes(model$model) else NextMethod()

probability_function.list <- function(model) {
  if (!is_recipe_bundle(model)) return(NextMethod())
  inner <- probability_function(model$model)
  function(frame) inner(recipes::bake(model$recipe, new_data = frame))
}

value_function.list <- function(model) {
  if (!is_recipe_bundle(model)) return(NextMethod())
  inner <- value_function(model$model)
  function(frame) inner(recipes::bake(model$recipe, new_data = frame))
}
