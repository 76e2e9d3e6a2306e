# One worker process: check and load the artifact, then serve the contract on 127.0.0.1:PORT
# (behind the pod's nginx) or on HOST:PORT when it is the only worker.
#   Rscript app/worker.R          serve
#   Rscript app/worker.R --check  check the artifact and the contract, then exit (exit 3 if wrong)
args <- commandArgs(trailingOnly = TRUE)
app_dir <- normalizePath(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])))
project_dir <- dirname(app_dir)
for (part in c("settings.R", "payload.R", "model.R", "monitoring.R", "service.R")) source(file.path(app_dir, part))
options(plumber.methodNotAllowed = FALSE)

# Drift monitoring: on when the contract has its reference bins, unless MODELGEN_MONITORING=0.
monitor <- NULL
if (env("MODELGEN_MONITORING", "1") != "0" && !is.null(contract$monitoring)) {
  monitor <- new_monitor(
    contract$monitoring,
    log_dir = env("MODELGEN_INPUT_LOG", ""),
    sample_rate = as.numeric(env("MODELGEN_LOG_SAMPLE_RATE", contract$sampleRate)),
    max_bytes = as.numeric(env("MODELGEN_LOG_MAX_BYTES", 100 * 1024 * 1024))
  )
}

model <- tryCatch(
  {
    m <- load_model(model_path, sha256, file.path(project_dir, "model_code"), required_packages)
    router <- build_router(
      m, contract, app_dir, sha256,
      max_request_bytes = as.numeric(env("MAX_REQUEST_BYTES", contract$maxRequestBytes)),
      metrics_dir = env("METRICS_DIR", ""),
      monitor = monitor
    )
    m
  },
  artifact_error = function(err) {
    message(sprintf("%s: %s", contract$name, conditionMessage(err)))
    quit(status = 3, save = "no")
  }
)
if ("--check" %in% args) quit(status = 0, save = "no")
message(sprintf("%s %s: worker %d on %s:%s", contract$name, contract$version, Sys.getpid(), env("HOST", "127.0.0.1"), env("PORT", "8080")))
plumber::pr_run(router, host = env("HOST", "127.0.0.1"), port = as.integer(env("PORT", "8080")), docs = FALSE, quiet = TRUE)
