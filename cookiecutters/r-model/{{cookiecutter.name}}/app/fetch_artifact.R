# Init container: download the artifact into the shared volume and check its sha256.
#   Rscript app/fetch_artifact.R   with ARTIFACT_URI, ARTIFACT_SHA256 and MODEL_PATH; optional
#   REGISTRY_USERNAME / REGISTRY_PASSWORD for basic auth (from a Secret, never from Git).
# Writes a temporary file and renames it, so the service never sees a partial artifact.
env <- Sys.getenv(c("ARTIFACT_URI", "ARTIFACT_SHA256", "MODEL_PATH"))
missing <- names(env)[!nzchar(env)]
if (length(missing)) {
  message("missing environment variable(s): ", paste(missing, collapse = ", "))
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
  headers <- character()
  user <- Sys.getenv("REGISTRY_USERNAME")
  if (nzchar(user)) {
    token <- jsonlite::base64_enc(charToRaw(paste0(user, ":", Sys.getenv("REGISTRY_PASSWORD"))))
    headers <- c(Authorization = paste("Basic", token))
  }
  done <- FALSE
  for (attempt in 1:4) {
    status <- tryCatch(
      {
        h <- curl::new_handle()
        if (length(headers)) curl::handle_setheaders(h, .list = as.list(headers))
        curl::curl_fetch_disk(uri, partial, handle = h)$status_code
      },
      error = function(err) conditionMessage(err)
    )
    if (identical(status, 200L)) {
      done <- TRUE
      break
    }
    if (is.numeric(status) && status < 500) fail(sprintf("download of %s failed: HTTP %d", uri, status))
    if (attempt < 4) Sys.sleep(2^attempt)
  }
  if (!done) fail(sprintf("download of %s failed: %s", uri, status))
}
actual <- digest::digest(file = partial, algo = "sha256")
if (!identical(actual, tolower(env[["ARTIFACT_SHA256"]]))) {
  fail(sprintf("sha256 mismatch for %s: got %s, expected %s", uri, actual, env[["ARTIFACT_SHA256"]]))
}
invisible(file.rename(partial, target))
cat(sprintf("fetched %s -> %s (sha256 ok)\n", uri, target))
