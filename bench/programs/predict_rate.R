# R's in-process predict() rate: Rscript predict_rate.R MODEL.rds ONE.json MANY.json [SECONDS]
# Prints "<1-row calls/s> <rows/s of MANY>", each over SECONDS (default 3). Run by bench/serving_r.py.
args <- commandArgs(trailingOnly = TRUE)
model <- readRDS(args[1])
train <- model$trainingData
seconds <- if (length(args) >= 4) as.numeric(args[4]) else 3
typed <- function(path) {
  rows <- jsonlite::fromJSON(path)
  for (n in names(rows)) {
    if (is.factor(train[[n]])) rows[[n]] <- factor(rows[[n]], levels = levels(train[[n]]))
    if (is.double(train[[n]])) rows[[n]] <- as.double(rows[[n]])
  }
  rows
}
rate <- function(rows) {
  n <- 0
  began <- proc.time()[["elapsed"]]
  while (proc.time()[["elapsed"]] - began < seconds) {
    predict(model, newdata = rows, type = "prob", na.action = na.pass)
    n <- n + 1
  }
  n / (proc.time()[["elapsed"]] - began)
}
one <- typed(args[2])
many <- typed(args[3])
cat(rate(one), rate(many) * nrow(many), "\n")
