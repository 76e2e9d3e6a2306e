# The HTTP contract (same as the Python service): /invocations, /ping, /metadata, /schema,
# /openapi.json, /metrics. Everything per request is prepared here once, per worker process.

JSON <- "application/json"
CSV <- "text/csv"

encode <- function(doc) as.character(jsonlite::toJSON(doc, auto_unbox = TRUE, null = "null", digits = NA, na = "null"))

# Prometheus counters of this process, written to METRICS_DIR after each request so that
# /metrics, whichever worker answers it, adds up every worker of the pod.
BUCKETS <- c(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

new_metrics <- function(dir, monitor = NULL) {
  state <- new.env()
  state$requests <- list()  # "endpoint|method|status" -> count
  state$latency <- list()   # endpoint -> list(buckets, sum, count)
  state$rows <- 0
  file <- if (nzchar(dir)) file.path(dir, sprintf("worker-%d.json", Sys.getpid())) else ""
  state$pending <- FALSE
  save <- function() {
    state$pending <- FALSE
    if (!nzchar(file)) return(invisible())
    partial <- paste0(file, ".tmp")
    snapshot <- list(requests = state$requests, latency = state$latency, rows = state$rows)
    if (!is.null(monitor)) snapshot$monitor <- monitor$snapshot()
    writeLines(encode(snapshot), partial)
    file.rename(partial, file)
  }
  # Writing the file costs about a millisecond: batch the requests of 0.2 s into one write,
  # done by httpuv's event loop once the request is answered.
  save_soon <- function() {
    if (!state$pending && nzchar(file)) {
      state$pending <- TRUE
      later::later(save, 0.2)
    }
  }
  list(
    request = function(endpoint, method, status, seconds = NULL) {
      key <- paste(endpoint, method, status, sep = "|")
      state$requests[[key]] <- (if (is.null(state$requests[[key]])) 0 else state$requests[[key]]) + 1
      if (!is.null(seconds)) {
        l <- state$latency[[endpoint]]
        if (is.null(l)) l <- list(buckets = rep(0, length(BUCKETS)), sum = 0, count = 0)
        l$buckets <- l$buckets + (seconds <= BUCKETS)
        l$sum <- l$sum + seconds
        l$count <- l$count + 1
        state$latency[[endpoint]] <- l
      }
      save_soon()
    },
    rows = function(n) state$rows <- state$rows + n,
    exposition = function(info) {
      save()  # this worker's own counts, up to the request just answered
      workers <- if (nzchar(dir)) list.files(dir, pattern = "^worker-[0-9]+\\.json$", full.names = TRUE) else character()
      snapshots <- lapply(workers, function(f) tryCatch(jsonlite::read_json(f), error = function(e) NULL))
      if (!nzchar(dir)) {
        own <- list(requests = state$requests, latency = state$latency, rows = state$rows)
        if (!is.null(monitor)) own$monitor <- monitor$snapshot()
        snapshots <- list(own)
      }
      requests <- list()
      latency <- list()
      rows <- 0
      for (s in Filter(Negate(is.null), snapshots)) {
        for (k in names(s$requests)) requests[[k]] <- (if (is.null(requests[[k]])) 0 else requests[[k]]) + s$requests[[k]]
        for (e in names(s$latency)) {
          l <- s$latency[[e]]
          have <- latency[[e]]
          if (is.null(have)) have <- list(buckets = rep(0, length(BUCKETS)), sum = 0, count = 0)
          have$buckets <- have$buckets + unlist(l$buckets)
          have$sum <- have$sum + l$sum
          have$count <- have$count + l$count
          latency[[e]] <- have
        }
        rows <- rows + s$rows
      }
      lines <- c(
        "# HELP modelgen_requests_total HTTP requests by endpoint and status code.",
        "# TYPE modelgen_requests_total counter"
      )
      for (k in sort(names(requests))) {
        p <- strsplit(k, "|", fixed = TRUE)[[1]]
        lines <- c(lines, sprintf('modelgen_requests_total{endpoint="%s",method="%s",status="%s"} %s', p[1], p[2], p[3], format(requests[[k]], scientific = FALSE)))
      }
      lines <- c(lines,
        "# HELP modelgen_request_duration_seconds Time from request received to response ready, by endpoint.",
        "# TYPE modelgen_request_duration_seconds histogram"
      )
      for (e in sort(names(latency))) {
        l <- latency[[e]]
        for (i in seq_along(BUCKETS)) {
          lines <- c(lines, sprintf('modelgen_request_duration_seconds_bucket{endpoint="%s",le="%s"} %s', e, format(BUCKETS[i]), format(l$buckets[i], scientific = FALSE)))
        }
        lines <- c(lines,
          sprintf('modelgen_request_duration_seconds_bucket{endpoint="%s",le="+Inf"} %s', e, format(l$count, scientific = FALSE)),
          sprintf('modelgen_request_duration_seconds_sum{endpoint="%s"} %s', e, format(l$sum, digits = 15)),
          sprintf('modelgen_request_duration_seconds_count{endpoint="%s"} %s', e, format(l$count, scientific = FALSE))
        )
      }
      lines <- c(lines,
        "# HELP modelgen_predicted_rows_total Rows scored by the model.",
        "# TYPE modelgen_predicted_rows_total counter",
        sprintf("modelgen_predicted_rows_total %s", format(rows, scientific = FALSE)),
        "# HELP modelgen_model_info The model this service serves (always 1), and the engine that runs it (native or onnx).",
        "# TYPE modelgen_model_info gauge",
        sprintf('modelgen_model_info{name="%s",version="%s",sha256="%s",engine="native"} 1', info$name, info$version, info$sha256),
        if (!is.null(monitor)) monitor_exposition(lapply(snapshots, function(s) s$monitor))
      )
      paste0(paste(lines, collapse = "\n"), "\n")
    }
  )
}

reply <- function(res, status, body, type = JSON) {
  res$status <- status
  res$setHeader("Content-Type", type)
  res$body <- body
  res
}

build_router <- function(model, contract, app_dir, sha256, max_request_bytes, metrics_dir, monitor = NULL) {
  schema <- input_schema(contract$columns, contract$values)
  predictor <- predictor_for(model, contract$output)
  types <- training_types(model, contract$columns)
  metrics <- new_metrics(metrics_dir, monitor)
  info <- list(name = contract$name, version = contract$version, sha256 = sha256)
  packages <- vapply(contract$requirements, function(r) strsplit(r, "==", fixed = TRUE)[[1]][1], "")
  libraries <- lapply(c(packages, "plumber", "jsonlite", "digest"), function(p) {
    tryCatch(as.character(utils::packageVersion(p)), error = function(e) NULL)
  })
  names(libraries) <- c(packages, "plumber", "jsonlite", "digest")
  artifact <- contract$artifact
  artifact$secret <- NULL
  artifact$sha256 <- sha256
  static <- list(
    ping = encode(list(status = "ok")),
    metadata = encode(list(
      name = contract$name, version = contract$version, owner = contract$owner,
      description = contract$description, task = contract$task, framework = contract$framework,
      output = contract$output, artifact = artifact, engine = "native", engineReason = contract$engineReason,
      onnx = NULL, r = paste(R.version$major, R.version$minor, sep = "."),
      libraries = libraries, modelgen = contract$modelgen
    )),
    # Written by modelgen with the contract: the Python service serves the same documents.
    schema = encode(contract$schema),
    openapi = encode(contract$openapi)
  )

  invocations <- function(req, res) {
    started <- proc.time()[["elapsed"]]
    status <- 200L
    out <- tryCatch(
      {
        raw <- req$bodyRaw
        if (is.null(raw)) raw <- raw(0)
        if (length(raw) > max_request_bytes) {
          stop(bad_request(sprintf("request body over the limit of %d bytes", max_request_bytes), status = 413L))
        }
        mediatype <- tolower(trimws(strsplit(if (is.null(req$HTTP_CONTENT_TYPE)) "" else req$HTTP_CONTENT_TYPE, ";")[[1]][1]))
        if (is.na(mediatype)) mediatype <- ""
        values <- if (mediatype == JSON || endsWith(mediatype, "+json")) {
          schema$from_json(raw)
        } else if (mediatype %in% c(CSV, "application/csv")) {
          schema$from_csv(raw)
        } else {
          shown <- if (nzchar(mediatype)) mediatype else "(none)"
          stop(bad_request(sprintf("unsupported media type '%s' (allowed: %s, %s)", shown, JSON, CSV), status = 415L))
        }
        frame <- as_frame(values, types)
        predictions <- tryCatch(predictor$predict(frame), error = function(err) {
          # The rows passed the schema but the model refused them: the client's data, a 4xx.
          stop(bad_request(paste("the model could not score these rows:", conditionMessage(err)), status = 422L))
        })
        metrics$rows(predictions$n)
        if (!is.null(monitor)) monitor$observe(values, predictions)
        accept <- if (is.null(req$HTTP_ACCEPT)) "" else req$HTTP_ACCEPT
        if (grepl(CSV, accept, fixed = TRUE)) {
          lines <- c(paste(csv_cells(predictor$header), collapse = ","), predictor$csv(predictions))
          reply(res, 200L, paste0(paste(lines, collapse = "\n"), "\n"), CSV)
        } else {
          reply(res, 200L, paste0('{"predictions":[', paste(predictor$json(predictions), collapse = ","), "]}"))
        }
      },
      bad_request = function(err) {
        status <<- err$status
        reply(res, err$status, encode(error_body(err$message, err$column, err$row)))
      },
      error = function(err) {
        status <<- 500L
        message(sprintf("unexpected error on POST /invocations: %s", conditionMessage(err)))
        reply(res, 500L, encode(error_body(paste("internal error:", class(err)[1]))))
      }
    )
    metrics$request("/invocations", "POST", status, proc.time()[["elapsed"]] - started)
    out
  }

  static_route <- function(path, key) {
    force(path)  # each route keeps its own path and key (R evaluates arguments lazily)
    force(key)
    function(req, res) {
      metrics$request(path, "GET", 200L)
      reply(res, 200L, static[[key]])
    }
  }

  # The body is read raw by the handler; this parser only keeps plumber from parsing it.
  plumber::register_parser("modelgen_raw", function(...) function(value, ...) NULL, regex = ".*")
  pr <- plumber::pr()
  # Every answer says which version gave it: with a canary, two versions answer on one route.
  pr <- plumber::pr_hook(pr, "preroute", function(req, res) res$setHeader("X-Model-Version", contract$version))
  pr <- plumber::pr_post(pr, "/invocations", invocations, parsers = "modelgen_raw")
  # HEAD answers as GET with the GET's Content-Length and no body, as the Python service does
  # (httpuv would send the body, which a client keeping the connection reads as the next answer).
  without_body <- function(res) {
    size <- if (is.raw(res$body)) length(res$body) else sum(nchar(res$body, type = "bytes"))
    res$setHeader("Content-Length", as.character(size))
    res$body <- ""
    res
  }
  head_of <- function(handler) {
    force(handler)
    function(req, res) without_body(handler(req, res))
  }
  for (route in list(c("/ping", "ping"), c("/metadata", "metadata"), c("/schema", "schema"), c("/openapi.json", "openapi"))) {
    pr <- plumber::pr_get(pr, route[1], static_route(route[1], route[2]))
    pr <- plumber::pr_head(pr, route[1], head_of(static_route(route[1], route[2])))
  }
  exposition <- function(req, res) reply(res, 200L, metrics$exposition(info), "text/plain; version=0.0.4; charset=utf-8")
  pr <- plumber::pr_get(pr, "/metrics", exposition)
  pr <- plumber::pr_head(pr, "/metrics", head_of(exposition))
  # The methods of each path, for the Allow header of a 405 and of an OPTIONS answer.
  allowed <- list("/invocations" = "POST, OPTIONS")
  for (path in c("/ping", "/metadata", "/schema", "/openapi.json", "/metrics")) allowed[[path]] <- "GET, HEAD, OPTIONS"
  not_found <- function(req, res) {
    # plumber's own 405 answers in another shape (plumber.methodNotAllowed is off in worker.R).
    methods <- allowed[[req$PATH_INFO]]
    if (!is.null(methods)) {
      res$setHeader("Allow", methods)
      if (req$REQUEST_METHOD == "OPTIONS") return(reply(res, 200L, ""))
      metrics$request(req$PATH_INFO, req$REQUEST_METHOD, 405L)
      return(reply(res, 405L, encode(error_body("The method is not allowed for the requested URL."))))
    }
    metrics$request("other", req$REQUEST_METHOD, 404L)
    reply(res, 404L, encode(error_body("The requested URL was not found on the server.")))
  }
  pr <- plumber::pr_set_404(pr, function(req, res) {
    out <- not_found(req, res)
    if (req$REQUEST_METHOD == "HEAD") without_body(out) else out
  })
  pr <- plumber::pr_set_error(pr, function(req, res, err) {
    reply(res, 500L, encode(error_body(paste("internal error:", class(err)[1]))))
  })
  # The handlers themselves, for the project's smoke tests (tests/smoke.R).
  attr(pr, "handlers") <- list(invocations = invocations, static = static)
  pr
}
