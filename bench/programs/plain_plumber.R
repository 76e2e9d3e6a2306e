# What vetiver and most tutorials ship: one Plumber process, JSON in, predict(), JSON out.
# bench/serving_r.py serves it with plumber::pr_run(plumber::pr(<this file>)), MODEL_PATH set.
model <- readRDS(Sys.getenv("MODEL_PATH"))
train <- model$trainingData

#* @get /ping
function() list(status = "ok")

#* @post /invocations
#* @serializer unboxedJSON
function(req) {
  rows <- jsonlite::fromJSON(req$postBody)
  for (n in names(rows)) {
    if (is.factor(train[[n]])) rows[[n]] <- factor(rows[[n]], levels = levels(train[[n]]))
    if (is.double(train[[n]])) rows[[n]] <- as.double(rows[[n]])
  }
  list(predictions = predict(model, newdata = rows, type = "prob", na.action = na.pass))
}
