# Init container: download the artifact into the shared volume and check its sha256.
#   Rscript app/fetch_artifact.R   with ARTIFACT_URI, ARTIFACT_SHA256 and MODEL_PATH; optional
#   REGISTRY_USERNAME / REGISTRY_PASSWORD for basic auth (from a Secret, never from Git).
# Writes a temporary file and renames it, so the service never sees a partial artifact.
# Retries and gives up as `download` in contract.json says (modelgen's one policy, which the Python
# init container and modelgen's HTTP registry follow too): connection failures, a silent server, a
# body cut short and the retryStatuses are tried again after backoffSeconds; everything ends by
# deadlineSeconds (ARTIFACT_DEADLINE_SECONDS overrides it), however slowly the server sends.
env <- Sys.getenv(c("ARTIFACT_URI", "ARTIFACT_SHA256", "MODEL_PATH"))
missing <- names(env)[!nzchar(env)]
if (length(missing)) {
  message("missing environment variable(s): ", paste(missing, collapse = ", "))
  quit(status = 1, save = "no")
}
script <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])
policy <- jsonlite::read_json(file.path(dirname(script), "contract.json"))$download
deadline_text <- Sys.getenv("ARTIFACT_DEADLINE_SECONDS")
deadline <- if (nzchar(deadline_text)) suppressWarnings(as.numeric(deadline_text)) else policy$deadlineSeconds
if (is.na(deadline) || deadline <= 0 || deadline >= 1e6) {
  message(sprintf("ARTIFACT_DEADLINE_SECONDS must be a number of seconds above 0, not '%s'", deadline_text))
  quit(status = 1, save = "no")
}
uri <- env[["ARTIFACT_URI"]]
target <- env[["MODEL_PATH"]]
dir.create(dirname(target), showWarnings = FALSE, recursive = TRUE)
partial <- paste0(target, ".partial")
fail <- function(text) {
  unlink(partial)
  message(text)
  quit(status = 1, save = "no")
}
if (startsWith(uri, "file://")) {
  if (!file.copy(utils::URLdecode(sub("^file://", "", uri)), partial, overwrite = TRUE)) fail(paste("cannot copy", uri))
} else {
  # Only identity is asked for (the sha256 is of the artifact's bytes); accept_encoding = "" lets
  # curl decode what a server sends encoded anyway.
  headers <- c("Accept-Encoding" = policy$encoding)
  user <- Sys.getenv("REGISTRY_USERNAME")
  if (nzchar(user)) {
    token <- jsonlite::base64_enc(charToRaw(paste0(user, ":", Sys.getenv("REGISTRY_PASSWORD"))))
    headers <- c(headers, Authorization = paste("Basic", token))
  }
  attempts <- policy$attempts
  waits <- unlist(policy$backoffSeconds)
  started <- Sys.time()
  left <- function() deadline - as.numeric(difftime(Sys.time(), started, units = "secs"))
  gave_up <- function(attempt, last) {
    fail(sprintf(
      "download of %s did not finish within %g s (ARTIFACT_DEADLINE_SECONDS): attempt %d of %d; last failure: %s",
      uri, deadline, attempt, attempts, last
    ))
  }
  last <- "none"
  for (attempt in seq_len(attempts)) {
    # Each attempt may only use what is left of the deadline; no byte for idleSeconds is a failure.
    h <- curl::new_handle(
      timeout_ms = max(1, round(left() * 1000)), connecttimeout_ms = round(min(policy$idleSeconds, left()) * 1000),
      low_speed_limit = 1, low_speed_time = policy$idleSeconds, accept_encoding = ""
    )
    curl::handle_setheaders(h, .list = as.list(headers))
    status <- tryCatch(curl::curl_fetch_disk(uri, partial, handle = h)$status_code, error = function(err) conditionMessage(err))
    if (identical(status, 200L)) break
    if (is.numeric(status) && !(status %in% unlist(policy$retryStatuses))) {
      fail(sprintf("download of %s failed: HTTP %d", uri, status))
    }
    last <- if (is.numeric(status)) sprintf("HTTP %d", status) else gsub("[\r\n]+", " ", status)
    if (left() <= 0) gave_up(attempt, last)
    if (attempt == attempts) fail(sprintf("download of %s failed after %d attempts: %s", uri, attempts, last))
    wait <- waits[min(attempt, length(waits))]
    if (wait >= left()) gave_up(attempt, last)
    Sys.sleep(wait)
  }
}
actual <- digest::digest(file = partial, algo = "sha256")
if (!identical(actual, tolower(env[["ARTIFACT_SHA256"]]))) {
  fail(sprintf("sha256 mismatch for %s: got %s, expected %s", uri, actual, env[["ARTIFACT_SHA256"]]))
}
invisible(file.rename(partial, target))
cat(sprintf("fetched %s -> %s (sha256 ok)\n", uri, target))
