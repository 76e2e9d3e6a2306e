# The request path of the generated R service in one process (parse, predict, encode; best of 5)
# and the monitor's own work on the same requests, timed alone: the cost of drift monitoring
# without the VM's noise. Run from a generated project by bench/serving_r.py --monitoring-rounds:
#   Rscript path_cost.R [SCALE]   (SCALE, default 1, multiplies the repetitions; REFERENCE_CSV, MODEL_PATH set)
args <- commandArgs(trailingOnly = TRUE)
scale <- if (length(args) >= 1) as.numeric(args[1]) else 1
for (part in c("payload.R", "model.R", "monitoring.R")) source(file.path("app", part))
contract <- jsonlite::read_json("app/contract.json")
model <- load_model(Sys.getenv("MODEL_PATH"), contract$artifact$sha256, "model_code")
types <- training_types(model, contract$columns)
predictor <- predictor_for(model, contract$output)
schema <- input_schema(contract$columns, contract$values)
one <- charToRaw(as.character(jsonlite::toJSON(jsonlite::read_json("tests/sample.json")[1], auto_unbox = TRUE, null = "null")))
lines <- readLines(Sys.getenv("REFERENCE_CSV"))
many <- charToRaw(paste(c(lines[1], rep(lines[-1], 3)[1:1000]), collapse = "\n"))
monitors <- list(on = new_monitor(contract$monitoring, "", 0, 1e9), log = new_monitor(contract$monitoring, tempfile(), 0.1, 1e9))
best <- function(n, f) min(vapply(1:5, function(i) system.time(for (j in 1:n) f())[["elapsed"]] / n, 0))
for (case in list(list("1-row JSON", one, schema$from_json, 100), list("1000-row CSV", many, schema$from_csv, 10))) {
  n <- max(1, round(case[[4]] * scale))
  values <- case[[3]](case[[2]])
  path <- best(n, function() predictor$csv(predictor$predict(as_frame(case[[3]](case[[2]]), types))))
  p <- predictor$predict(as_frame(values, types))
  on <- best(n * 5, function() monitors$on$observe(values, p))
  lg <- best(n * 5, function() monitors$log$observe(values, p))
  cat(sprintf("| %s | %.2f | %.3f | %.1f%% | %.3f | %.1f%% |\n", case[[1]], path * 1000, on * 1000, 100 * on / (path + on), lg * 1000, 100 * lg / (path + lg)))
}
