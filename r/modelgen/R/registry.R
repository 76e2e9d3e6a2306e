# The model registry: a folder (or file:// URL) or a Nexus raw repository over HTTP(S). A
# published version never changes: other bytes under an existing file are refused.

registry_of <- function(location) {
  if (grepl("^https?://", location)) return(http_registry(sub("/+$", "", location)))
  root <- sub("/+$", "", sub("^file://", "", location))
  local_registry(if (startsWith(root, "/")) root else file.path(getwd(), root))
}

local_registry <- function(root) {
  target_of <- function(name, version, file) file.path(root, name, version, file)
  uri_of <- function(name, version, file) paste0("file://", utils::URLencode(target_of(name, version, file)))
  list(
    exists = function(path) file.exists(file.path(root, path)),
    read = function(path) {
      target <- file.path(root, path)
      if (file.exists(target)) readBin(target, "raw", file.size(target)) else NULL
    },
    uri = uri_of,
    publish = function(name, version, file, data) {
      target <- target_of(name, version, file)
      dir.create(dirname(target), recursive = TRUE, showWarnings = FALSE)
      if (file.exists(target)) {
        if (!identical(readBin(target, "raw", file.size(target)), data)) {
          stop(sprintf("%s %s is already published with other bytes: publish under a new version", name, version), call. = FALSE)
        }
      } else {
        partial <- paste0(target, ".partial")
        writeBin(data, partial)
        file.rename(partial, target)
      }
      uri_of(name, version, file)
    }
  )
}

http_registry <- function(base) {
  handle <- function() {
    h <- curl::new_handle()
    user <- Sys.getenv("MODELGEN_REGISTRY_USERNAME")
    if (nzchar(user)) curl::handle_setopt(h, username = user, password = Sys.getenv("MODELGEN_REGISTRY_PASSWORD"))
    h
  }
  get <- function(url) curl::curl_fetch_memory(url, handle = handle())
  list(
    exists = function(path) {
      h <- handle()
      curl::handle_setopt(h, nobody = TRUE)
      curl::curl_fetch_memory(paste0(base, "/", path), handle = h)$status_code == 200
    },
    read = function(path) {
      got <- get(paste0(base, "/", path))
      if (got$status_code == 200) got$content else NULL
    },
    uri = function(name, version, file) sprintf("%s/%s/%s/%s", base, name, version, file),
    publish = function(name, version, file, data) {
      url <- sprintf("%s/%s/%s/%s", base, name, version, file)
      existing <- get(url)
      if (existing$status_code == 200) {
        if (!identical(existing$content, data)) {
          stop(sprintf("%s %s is already published with other bytes: publish under a new version", name, version), call. = FALSE)
        }
        return(url)
      }
      h <- handle()
      curl::handle_setopt(h, customrequest = "PUT", postfields = data)
      curl::handle_setheaders(h, "Content-Type" = "application/octet-stream")
      status <- curl::curl_fetch_memory(url, handle = h)$status_code
      if (!status %in% c(200, 201, 204)) stop(sprintf("upload of %s failed: HTTP %d", url, status), call. = FALSE)
      url
    }
  )
}

# The first 1.0.x with no artifact, and the versions before it (newest first).
known_versions <- function(store, name) {
  patch <- 0
  while (store$exists(sprintf("%s/1.0.%d/model.rds", name, patch))) patch <- patch + 1
  sprintf("1.0.%d", rev(seq_len(patch) - 1))
}

next_version <- function(store, name) sprintf("1.0.%d", length(known_versions(store, name)))
