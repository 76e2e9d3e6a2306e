# Score a file of rows with the service's own checks and model (the R twin of app/batch.py):
#   Rscript app/batch.R INPUT OUTPUT
# INPUT is CSV with a header row or JSON in any shape /invocations accepts; OUTPUT is CSV, the
# columns the service answers with Accept: text/csv. Exit 2 names the column and row of a bad
# value, exit 3 a bad artifact.
args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 2) {
  message("usage: Rscript app/batch.R INPUT OUTPUT")
  quit(status = 2, save = "no")
}
app_dir <- normalizePath(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])))
project_dir <- dirname(app_dir)
for (part in c("settings.R", "payload.R", "model.R")) source(file.path(app_dir, part))

predictor <- tryCatch(
  {
    model <- load_model(model_path, sha256, file.path(project_dir, "model_code"), required_packages)
    types <- training_types(model, contract$columns)
    predictor_for(model, contract$output)
  },
  artifact_error = function(err) {
    message(sprintf("%s: %s", contract$name, conditionMessage(err)))
    quit(status = 3, save = "no")
  }
)
schema <- input_schema(contract$columns, contract$values)
body <- readBin(args[1], "raw", file.size(args[1]))
lines <- tryCatch(
  {
    values <- if (grepl("\\.csv$", tolower(args[1]))) schema$from_csv(body) else schema$from_json(body)
    predictions <- predictor$predict(as_frame(values, types))
    c(paste(csv_cells(predictor$header), collapse = ","), if (predictions$n > 0) predictor$csv(predictions))
  },
  bad_request = function(err) {
    message(sprintf("%s: %s", args[1], err$message))
    quit(status = 2, save = "no")
  }
)
writeLines(lines, args[2], useBytes = TRUE)
message(sprintf("%s: %d predictions", args[2], length(lines) - 1L))
