# Init container: download the artifact into the shared volume and check its sha256.
#   Rscript app/fetch_artifact.R   with ARTIFACT_URI, ARTIFACT_SHA256 and MODEL_PATH; optional
#   REGISTRY_USERNAME / REGISTRY_PASSWORD for basic auth (from a Secret, never from Git), and
#   MODEL_CACHE_DIR (with MODEL_CACHE_MAX_AGE_DAYS) for a cache the pods share.
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
sha256 <- tolower(env[["ARTIFACT_SHA256"]])
target <- env[["MODEL_PATH"]]
dir.create(dirname(target), showWarnings = FALSE, recursive = TRUE)
partial <- paste0(target, ".partial")
cache_partial <- "" # the cache's file being downloaded, when there is one
fail <- function(text) {
  unlink(c(partial, cache_partial))
  message(text)
  quit(status = 1, save = "no")
}

# The artifact at `uri` into `dest`, checked against sha256, synced to disk.
download <- function(dest) {
  if (startsWith(uri, "file://")) {
    if (!file.copy(utils::URLdecode(sub("^file://", "", uri)), dest, overwrite = TRUE)) fail(paste("cannot copy", uri))
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
      status <- tryCatch(curl::curl_fetch_disk(uri, dest, handle = h)$status_code, error = function(err) conditionMessage(err))
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
  checked(dest, sprintf("sha256 mismatch for %s: got %%s, expected %s", uri, sha256))
}

# Fails (removing `path`) unless its bytes are the pinned ones; then syncs it to disk.
checked <- function(path, message) {
  actual <- digest::digest(file = path, algo = "sha256")
  if (!identical(actual, sha256)) {
    unlink(path)
    fail(sprintf(message, actual))
  }
  invisible(system2("sync", shQuote(path)))
}

cache <- Sys.getenv("MODEL_CACHE_DIR")
if (!nzchar(cache)) {
  download(partial)
  invisible(file.rename(partial, target))
  cat(sprintf("fetched %s -> %s (sha256 ok)\n", uri, target))
  quit(status = 0, save = "no")
}

# Through the cache pods share (a ReadWriteMany volume), as the Python init container does:
# files named by sha256 and checked on every use, one download under the file's lock however
# many pods start together, a file with other bytes replaced (and said), old files pruned.
dir.create(cache, showWarnings = FALSE, recursive = TRUE)
max_age <- as.numeric(Sys.getenv("MODEL_CACHE_MAX_AGE_DAYS", "30"))
for (old in list.files(cache, pattern = "^[0-9a-f]{64}$", full.names = TRUE)) {
  if (difftime(Sys.time(), file.mtime(old), units = "days") < max_age) next
  held <- filelock::lock(paste0(old, ".lock"), exclusive = TRUE, timeout = 0)
  if (is.null(held)) next # a pod is fetching it right now
  unlink(old)
  filelock::unlock(held)
  cat(sprintf("pruned %s (unused for %g days)\n", old, max_age))
}
cached <- file.path(cache, sha256)
held <- filelock::lock(paste0(cached, ".lock"), exclusive = TRUE, timeout = Inf)
how <- "cache hit"
if (file.exists(cached) && !identical(digest::digest(file = cached, algo = "sha256"), sha256)) {
  unlink(cached)
  how <- "replaced a corrupt cache file"
}
if (!file.exists(cached)) {
  cache_partial <- paste0(cached, ".partial")
  download(cache_partial)
  invisible(file.rename(cache_partial, cached))
  cache_partial <- ""
  if (how == "cache hit") how <- "downloaded into the cache"
}
Sys.setFileTime(cached, Sys.time()) # in use: pruning keeps it
# What reaches the model path is checked again, so a wrong file never does.
if (!file.copy(cached, partial, overwrite = TRUE)) fail(paste("cannot copy", cached))
checked(partial, sprintf("the cached %s changed while it was copied (sha256 %%s)", cached))
invisible(file.rename(partial, target))
filelock::unlock(held)
cat(sprintf("fetched %s -> %s (sha256 ok; %s)\n", uri, target, how))
