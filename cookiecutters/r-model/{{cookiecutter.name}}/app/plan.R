# Prints what start.sh needs: the number of workers, a free local port for each, the body
# limit and the request timeout. Workers: MODELGEN_WORKERS, else serving.workers, else the
# container's CPU limit (cgroup quota), else the machine's cores.
app_dir <- normalizePath(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])))
contract <- jsonlite::read_json(file.path(app_dir, "contract.json"))

cpu_limit <- function() {
  v2 <- "/sys/fs/cgroup/cpu.max"
  if (file.exists(v2)) {
    parts <- strsplit(readLines(v2, warn = FALSE)[1], " ")[[1]]
    if (parts[1] != "max") return(ceiling(as.numeric(parts[1]) / as.numeric(parts[2])))
  }
  quota <- "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"
  if (file.exists(quota)) {
    q <- as.numeric(readLines(quota, warn = FALSE)[1])
    p <- as.numeric(readLines("/sys/fs/cgroup/cpu/cpu.cfs_period_us", warn = FALSE)[1])
    if (q > 0) return(ceiling(q / p))
  }
  NA
}

workers <- suppressWarnings(as.integer(Sys.getenv("MODELGEN_WORKERS", "")))
if (is.na(workers) && !is.null(contract$workers)) workers <- as.integer(contract$workers)
if (is.na(workers)) workers <- cpu_limit()
if (is.na(workers)) workers <- parallel::detectCores()
workers <- max(1L, as.integer(workers))
ports <- integer()
while (length(ports) < workers) ports <- unique(c(ports, httpuv::randomPort(min = 20000L, max = 60000L, host = "127.0.0.1")))
limit <- Sys.getenv("MAX_REQUEST_BYTES", as.character(contract$maxRequestBytes))
cat(workers, paste(ports, collapse = ","), limit, contract$timeoutSeconds, "\n")
