# What the project serves, for every entry point (worker.R, batch.R): the contract modelgen wrote,
# and the model file and its sha256 (the environment wins over the contract). Sourced once
# app_dir and project_dir are set.
env <- function(name, default) {
  value <- Sys.getenv(name, "")
  if (nzchar(value)) value else default
}
contract <- jsonlite::read_json(file.path(app_dir, "contract.json"))
model_path <- env("MODEL_PATH", file.path(project_dir, paste0("model.", contract$artifact$format)))
sha256 <- tolower(env("MODEL_SHA256", contract$artifact$sha256))
# The packages the model was pinned with (spec.requirements, dependencies included).
required_packages <- vapply(contract$requirements, function(r) sub("==.*$", "", r), "")
