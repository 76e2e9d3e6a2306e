# Request bodies -> a checked data.frame typed as the model was trained, or a bad_request
# condition naming the column and row. The same payloads, status codes and error messages as
# the Python template (app/payload.py), so clients cannot tell the runtimes apart. What is
# checked is the contract's data (columns, and values: the accepted forms of integers, booleans
# and nulls); this file only applies it.
#
# Datetimes travel as ISO 8601 strings, in JSON and CSV alike (2024-05-31, 2024-05-31T12:30:00Z,
# an offset such as +02:00, a space for the T); one without an offset is UTC. A POSIXct column
# is built in UTC (model.R gives it the training frame's zone when the model keeps one); a Date
# column takes a date, or a time of exactly midnight UTC (how pandas and JavaScript write a date),
# and refuses any other time of day rather than drop it.

WRAPPERS <- c("dataframe_split", "dataframe_records", "instances", "inputs")

bad_request <- function(message, status = 400L, column = NULL, row = NULL) {
  structure(
    class = c("bad_request", "error", "condition"),
    list(message = message, call = NULL, status = status, column = column, row = row)
  )
}

error_body <- function(message, column = NULL, row = NULL) {
  list(error = list(message = message, column = column, row = row))
}

show_value <- function(value) {
  text <- shown_json(value, 41L)
  if (nchar(text) <= 40) text else paste0(substr(text, 1, 37), "...")
}

# The first `room` characters of a value as JSON: a value nested thousands deep is shown without
# walking all of it (jsonlite's toJSON would recurse to the bottom and overflow the C stack).
shown_json <- function(value, room) {
  if (room <= 0L) return("")
  if (!is.list(value)) {
    if (is.null(value)) return("null")
    text <- as.character(jsonlite::toJSON(value, auto_unbox = TRUE, null = "null", digits = NA))
    return(substr(text, 1L, room))
  }
  keys <- names(value)
  text <- if (is.null(keys)) "[" else "{"
  for (i in seq_along(value)) {
    if (nchar(text) >= room) break
    if (i > 1L) text <- paste0(text, ",")
    if (!is.null(keys)) text <- paste0(text, jsonlite::toJSON(keys[i], auto_unbox = TRUE), ":")
    text <- paste0(text, shown_json(value[[i]], room - nchar(text)))
  }
  substr(paste0(text, if (is.null(keys)) "]" else "}"), 1L, room)
}

# Python shows a non-finite float as inf, -inf or nan.
show_non_finite <- function(v) if (is.nan(v)) "nan" else if (v > 0) "inf" else "-inf"

# The integers R holds exactly as its integer type (what a model trained on an integer column gets).
INTEGER_MAX <- .Machine$integer.max

# A name or value as Python's repr() shows it, so both services word their errors alike:
# single quotes unless the text holds ' and no ", backslashes and the quote escaped.
quote_name <- function(x) {
  x <- gsub("\\", "\\\\", x, fixed = TRUE)
  x <- gsub("\n", "\\n", gsub("\r", "\\r", gsub("\t", "\\t", x, fixed = TRUE), fixed = TRUE), fixed = TRUE)
  double <- grepl("'", x, fixed = TRUE) & !grepl('"', x, fixed = TRUE)
  x <- ifelse(double, x, gsub("'", "\\'", x, fixed = TRUE))
  q <- ifelse(double, '"', "'")
  paste0(q, x, q)
}

# Whether the numbers v (finite) are integers by the contract: 3 always, 3.0 with integralFloats.
# jsonlite reads 3 as an integer and 3.0 as a double, except integers beyond R's int range.
integral <- function(v, forms) {
  v == round(v) & (isTRUE(forms$integralFloats) | is.integer(v) | abs(v) > .Machine$integer.max)
}

# One declared column: checks JSON values (a list, NULL for null) and builds the typed vector.
# The common case (every value of the right type, nulls where allowed) is checked in one pass
# over the vector; anything else goes through the per-value checks that name the bad cell.
column_values <- function(column, values, forms) {
  if (column$type == "datetime") return(datetime_column(column, values, forms))
  nulls <- vapply(values, is.null, TRUE)
  if (!any(nulls) || isTRUE(column$nullable)) {
    present <- values[!nulls]
    fast <- switch(column$type,
      number = all(vapply(present, function(v) is.numeric(v) && length(v) == 1L && is.finite(v), TRUE)),
      integer = all(vapply(present, function(v) {
        is.numeric(v) && length(v) == 1L && is.finite(v) && integral(v, forms) && abs(v) <= INTEGER_MAX
      }, TRUE)),
      string = all(vapply(present, function(v) is.character(v) && length(v) == 1L, TRUE)) &&
        !any(unlist(present) %in% NON_FINITE) &&
        !(isTRUE(column$strict) && length(column$categories) && !all(unlist(present) %in% unlist(column$categories))),
      boolean = all(vapply(present, function(v) is.logical(v) && length(v) == 1L && !is.na(v), TRUE))
    )
    if (isTRUE(fast)) {
      out <- switch(column$type, string = rep(NA_character_, length(values)), boolean = rep(NA, length(values)),
                    rep(NA_real_, length(values)))
      if (length(present)) out[!nulls] <- unlist(present)
      return(out)
    }
  }
  column_checked(column, values, forms)
}

column_checked <- function(column, values, forms) {
  name <- column$name
  nullable <- isTRUE(column$nullable)
  bad <- function(i, message) {
    stop(bad_request(sprintf("column %s, row %d: %s", quote_name(name), i - 1L, message), column = name, row = i - 1L))
  }
  null_at <- function(i) if (!nullable) bad(i, "null is not allowed (column is not nullable)")
  n <- length(values)
  type <- column$type
  if (type == "number" || type == "integer") {
    out <- rep(NA_real_, n)
    for (i in seq_len(n)) {
      v <- values[[i]]
      if (is.null(v)) {
        null_at(i)
      } else if (is.character(v) && length(v) == 1 && v %in% NON_FINITE) {
        bad(i, sprintf("%s is not a finite number", sub("^__modelgen_(.*)__$", "\\1", v)))
      } else if (is.numeric(v) && length(v) == 1) {
        if (!is.finite(v)) bad(i, sprintf("%s is not a finite number", show_non_finite(v)))
        if (type == "integer" && !integral(v, forms)) bad(i, sprintf("%s is not an integer", show_value(v)))
        if (type == "integer" && abs(v) > INTEGER_MAX) bad(i, out_of_range(show_value(v)))
        out[i] <- v
      } else {
        bad(i, sprintf("%s is not a%s %s", show_value(v), if (type == "integer") "n" else "", type))
      }
    }
    return(out)
  }
  if (type == "string") {
    out <- rep(NA_character_, n)
    known <- unlist(column$categories)
    strict <- isTRUE(column$strict) && length(known) > 0
    for (i in seq_len(n)) {
      v <- values[[i]]
      if (is.character(v) && length(v) == 1 && !(v %in% NON_FINITE)) {
        if (strict && !(v %in% known)) {
          allowed <- paste(sort(known, method = "radix"), collapse = ", ")  # code-point order, as Python's
          bad(i, sprintf("%s is not a known category (allowed: %s)", quote_name(v), allowed))
        }
        out[i] <- v
      } else if (is.null(v)) {
        null_at(i)
      } else {
        bad(i, sprintf("%s is not a string", show_value(v)))
      }
    }
    return(out)
  }
  out <- rep(NA, n)  # boolean
  for (i in seq_len(n)) {
    v <- values[[i]]
    if (is.logical(v) && length(v) == 1 && !is.na(v)) {
      out[i] <- v
    } else if (is.null(v)) {
      null_at(i)
    } else {
      bad(i, sprintf("%s is not true or false", show_value(v)))
    }
  }
  out
}

# A date, or a date and a time (minutes at least), with an optional offset; ASCII digits only.
# What a datetime looks like is the contract's values$datetime (a pattern matched whole, as the
# Python service matches it); this one, of the same forms, only takes a value apart.
ISO_DATETIME <- paste0(
  "^([0-9]{4})-([0-9]{2})-([0-9]{2})",
  "(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})([.,][0-9]{1,9})?)?(Z|([+-])([0-9]{2})(?::?([0-9]{2}))?)?)?$"
)

# ISO 8601 strings (NA for none) -> seconds since 1970-01-01 UTC. `valid` is whether a string
# names a real instant (no 2024-02-30, no 25:00), `timed` whether it has a time part.
iso_instants <- function(text) {
  parts <- regmatches(text, regexec(ISO_DATETIME, text, perl = TRUE))
  form <- lengths(parts) > 0L
  fields <- lapply(parts, function(p) if (length(p)) p[-1] else rep("", 11L))
  m <- matrix(as.character(unlist(fields)), ncol = 11L, byrow = TRUE)
  number <- function(k) {
    v <- suppressWarnings(as.numeric(sub(",", ".", m[, k], fixed = TRUE)))
    ifelse(is.na(v), 0, v)
  }
  days <- as.numeric(as.Date(paste(m[, 1], m[, 2], m[, 3], sep = "-"), format = "%Y-%m-%d"))
  valid <- form & !is.na(days) & number(1) >= 1 & number(4) <= 23 & number(5) <= 59 & number(6) <= 59 &
    number(10) <= 23 & number(11) <= 59
  offset <- ifelse(m[, 9] == "-", -1, 1) * (number(10) * 3600 + number(11) * 60)
  whole <- days * 86400 + number(4) * 3600 + number(5) * 60 + number(6) - offset
  list(valid = valid, timed = nzchar(m[, 4]), seconds = ifelse(valid, whole + number(7), NA_real_))
}

# Instants as ISO 8601 in UTC: 2024-05-31T12:30:00Z, with the fraction of a second (to the
# microsecond) when there is one; NA stays NA. What the input log writes.
iso_datetimes <- function(x) {
  seconds <- round(as.numeric(x), 6)
  whole <- floor(seconds)
  fraction <- sub("0+$", "", sprintf("%.6f", seconds - whole))
  fraction <- ifelse(fraction == "0.", "", substring(fraction, 2L))
  out <- paste0(format(.POSIXct(whole, tz = "UTC"), "%Y-%m-%dT%H:%M:%S"), fraction, "Z")
  out[is.na(seconds)] <- NA_character_
  out
}

# A datetime column from JSON values (NULL for null; CSV cells come here too, as strings): a
# Date or a POSIXct vector in UTC. Shapes and nulls are checked first, then the instants, as the
# Python service checks them, so both name the same cell.
datetime_column <- function(column, values, forms) {
  name <- column$name
  dates <- identical(column$dtype, "Date")
  bad <- function(i, message) {
    stop(bad_request(sprintf("column %s, row %d: %s", quote_name(name), i - 1L, message), column = name, row = i - 1L))
  }
  nulls <- vapply(values, is.null, TRUE)
  strings <- vapply(values, function(v) is.character(v) && length(v) == 1L && !is.na(v) && !(v %in% NON_FINITE), TRUE)
  text <- rep(NA_character_, length(values))
  text[strings] <- as.character(unlist(values[strings]))
  pattern <- paste0("^(?:", if (is.null(forms$datetime)) ISO_DATETIME else forms$datetime, ")$")
  shaped <- strings
  shaped[strings] <- grepl(pattern, text[strings], perl = TRUE)
  wrong <- which((nulls & !isTRUE(column$nullable)) | (!nulls & !shaped))
  if (length(wrong)) {
    i <- wrong[1]
    v <- values[[i]]
    if (is.null(v)) bad(i, "null is not allowed (column is not nullable)")
    example <- if (dates) "2024-05-31" else "2024-05-31T12:30:00Z"
    if (strings[i]) bad(i, sprintf("%s is not an ISO 8601 date or date-time (e.g. %s)", show_value(v), example))
    shown <- if (is.character(v) && length(v) == 1L && v %in% NON_FINITE) sub("^__modelgen_(.*)__$", "\\1", v) else show_value(v)
    bad(i, sprintf("%s is not a date-time (an ISO 8601 string)", shown))
  }
  parsed <- iso_instants(ifelse(shaped, text, NA_character_))
  # A Date column takes a time of day only at midnight UTC: any other would be dropped unseen.
  off_midnight <- dates & parsed$timed & parsed$valid & parsed$seconds %% 86400 != 0
  wrong <- which(!nulls & (!parsed$valid | off_midnight))
  if (length(wrong)) {
    i <- wrong[1]
    if (!parsed$valid[i]) bad(i, sprintf("%s is not a valid date or date-time", show_value(values[[i]])))
    bad(i, sprintf("%s has a time of day, but the column holds dates (send YYYY-MM-DD)", show_value(values[[i]])))
  }
  if (dates) return(structure(parsed$seconds %/% 86400, class = "Date"))
  .POSIXct(parsed$seconds, tz = "UTC")
}

# CSV cells are strings; the contract's csv$null is null. Whole columns are converted at once;
# the first bad cell is reported as the JSON path would report it.
csv_column <- function(column, cells, forms) {
  name <- column$name
  empty <- is.na(cells) | cells == forms$csv$null
  if (column$type == "datetime") {
    values <- as.list(cells)
    values[empty] <- list(NULL)
    return(datetime_column(column, values, forms))
  }
  if (any(empty) && !isTRUE(column$nullable)) {
    i <- which(empty)[1]
    stop(bad_request(sprintf("column %s, row %d: null is not allowed (column is not nullable)", quote_name(name), i - 1L),
                     column = name, row = i - 1L))
  }
  if (column$type == "string") {
    values <- ifelse(empty, NA_character_, cells)
    known <- unlist(column$categories)
    if (isTRUE(column$strict) && length(known)) {
      unknown <- which(!empty & !(cells %in% known))
      if (length(unknown)) {
        i <- unknown[1]
        allowed <- paste(sort(known, method = "radix"), collapse = ", ")
        stop(bad_request(sprintf("column %s, row %d: %s is not a known category (allowed: %s)", quote_name(name), i - 1L,
                                 quote_name(cells[i]), allowed), column = name, row = i - 1L))
      }
    }
    return(values)
  }
  if (column$type == "boolean") {
    lowered <- tolower(trimws(cells))
    values <- ifelse(lowered %in% unlist(forms$csv$true), TRUE, ifelse(lowered %in% unlist(forms$csv$false), FALSE, NA))
    wrong <- which(!empty & is.na(values))
  } else {
    values <- suppressWarnings(as.numeric(cells))
    ok <- !is.na(values) & is.finite(values)
    if (column$type == "integer") {
      # Without integralFloats only digits are integers ("2007", not "2007.0").
      ok <- ok & values == round(values) & (isTRUE(forms$integralFloats) | grepl("^\\s*[+-]?[0-9]+\\s*$", cells))
      large <- which(!empty & ok & abs(values) > INTEGER_MAX)
      if (length(large)) {
        i <- large[1]
        stop(bad_request(sprintf("column %s, row %d: %s", quote_name(name), i - 1L, out_of_range(quote_name(cells[i]))),
                         column = name, row = i - 1L))
      }
    }
    wrong <- which(!empty & !ok)
  }
  if (length(wrong)) {
    i <- wrong[1]
    article <- if (column$type == "integer") "an" else "a"
    stop(bad_request(sprintf("column %s, row %d: %s is not %s %s", quote_name(name), i - 1L, quote_name(cells[i]),
                             article, column$type), column = name, row = i - 1L))
  }
  values[empty] <- NA
  values
}

out_of_range <- function(shown) sprintf("%s is out of range for an integer (at most %d in magnitude)", shown, INTEGER_MAX)

NON_FINITE <- c("__modelgen_Infinity__", "__modelgen_-Infinity__", "__modelgen_NaN__")

parse_json <- function(text) {
  tryCatch(
    jsonlite::parse_json(text, simplifyVector = FALSE),
    error = function(err) {
      # Python's json (what many clients use) writes Infinity and NaN, which are not JSON:
      # read them as markers, so the column check names them instead of the whole body failing.
      marked <- gsub("([:\\[,]\\s*)(-?Infinity|NaN)(?=\\s*[,\\]}])", "\\1\"__modelgen_\\2__\"", text, perl = TRUE)
      if (!identical(marked, text)) {
        parsed <- tryCatch(jsonlite::parse_json(marked, simplifyVector = FALSE), error = function(e) NULL)
        if (!is.null(parsed)) return(parsed)
      }
      # jsonlite runs out of R's protection stack about 50,000 levels deep (a clean error, not a crash).
      why <- if (inherits(err, "stackOverflowError")) "nested too deeply" else conditionMessage(err)
      stop(bad_request(paste("body is not valid JSON:", why)))
    }
  )
}

is_record <- function(x) is.list(x) && !is.null(names(x)) && all(names(x) != "")

# A JSON object given a key twice is refused, as the Python service refuses it (jsonlite keeps both).
check_keys <- function(x) {
  dup <- anyDuplicated(names(x))
  if (dup) {
    key <- names(x)[dup]
    stop(bad_request(sprintf("key %s appears more than once in an object", quote_name(key)), column = key))
  }
}

# The encoding of a JSON body, found from its first bytes as Python's json.loads finds it (RFC 4627):
# UTF-8 (with or without a BOM), UTF-16 or UTF-32.
json_encoding <- function(raw) {
  starts <- function(...) {
    bom <- as.raw(c(...))
    length(raw) >= length(bom) && identical(raw[seq_along(bom)], bom)
  }
  if (starts(0x00, 0x00, 0xfe, 0xff) || starts(0xff, 0xfe, 0x00, 0x00)) return("UTF-32")
  if (starts(0xfe, 0xff) || starts(0xff, 0xfe)) return("UTF-16")
  if (length(raw) >= 4) {
    zero <- raw[1:4] == as.raw(0)
    if (zero[1]) return(if (zero[2]) "UTF-32BE" else "UTF-16BE")
    if (zero[2]) return(if (zero[3] && zero[4]) "UTF-32LE" else "UTF-16LE")
  } else if (length(raw) == 2) {
    zero <- raw == as.raw(0)
    if (zero[1]) return("UTF-16BE")
    if (zero[2]) return("UTF-16LE")
  }
  "UTF-8"
}

# A JSON body as one UTF-8 string, or a 400: R strings hold no NUL byte, so one (a gzip body,
# UTF-16 read as UTF-8, a raw control character) is refused here instead of failing in rawToChar.
json_text <- function(raw) {
  encoding <- json_encoding(raw)
  if (encoding != "UTF-8") {
    converted <- iconv(list(raw), from = encoding, to = "UTF-8", toRaw = TRUE)[[1]]
    if (is.null(converted)) stop(bad_request(sprintf("body is not valid JSON: not valid %s", encoding)))
    raw <- converted
  } else if (length(raw) >= 3 && identical(raw[1:3], as.raw(c(0xef, 0xbb, 0xbf)))) {
    raw <- raw[-(1:3)]
  }
  text <- tryCatch(rawToChar(raw), error = function(err) {
    at <- which(raw == as.raw(0))[1] - 1L
    stop(bad_request(sprintf("body is not valid JSON: a NUL byte at byte %d (is the body compressed?)", at)))
  })
  if (!validUTF8(text)) stop(bad_request("body is not valid JSON: not UTF-8 (invalid byte sequence)"))
  Encoding(text) <- "UTF-8"
  text
}

# A CSV body as one string. A NUL byte is a character of its cell for the Python service; R strings
# cannot hold it, so it becomes U+FFFD (the replacement character): such a cell is then an unknown
# category or not a number in both runtimes.
csv_text <- function(raw) {
  text <- tryCatch(rawToChar(raw), error = function(err) NULL)
  if (is.null(text)) {
    nul <- raw == as.raw(0)
    width <- ifelse(nul, 3L, 1L)
    out <- raw[rep(seq_along(raw), width)]
    at <- (cumsum(width) - width)[nul]
    out[c(at + 1L, at + 2L, at + 3L)] <- rep(as.raw(c(0xef, 0xbf, 0xbd)), each = length(at))
    text <- rawToChar(out)
  }
  text
}

input_schema <- function(columns, forms) {
  names <- vapply(columns, function(c) c$name, "")
  check_header <- function(header) {
    if (anyDuplicated(header)) {
      dup <- header[anyDuplicated(header)]
      stop(bad_request(sprintf("column %s appears more than once", quote_name(dup)), column = dup))
    }
    if (!setequal(header, names)) explain_columns(header, NULL)
  }
  explain_columns <- function(given, row) {
    at <- if (is.null(row)) "" else sprintf("row %d: ", row)
    missing <- setdiff(names, given)
    extra <- sort(setdiff(given, names), method = "radix")
    if (length(extra)) {
      also <- if (length(missing)) paste0("; missing ", paste(quote_name(missing), collapse = ", ")) else ""
      stop(bad_request(
        sprintf("%sunknown column %s%s (expected: %s)", at, quote_name(extra[1]), also, paste(quote_name(names), collapse = ", ")),
        column = extra[1], row = row
      ))
    }
    stop(bad_request(sprintf("%smissing column %s", at, quote_name(missing[1])), column = missing[1], row = row))
  }
  frame <- function(values) {
    cols <- lapply(columns, function(c) column_values(c, values[[c$name]], forms))
    names(cols) <- names
    cols
  }
  rows_to_values <- function(rows, header) {
    check_header(header)
    width <- length(header)
    for (i in seq_along(rows)) {
      row <- rows[[i]]
      if (!is.list(row) || !is.null(names(row)) || length(row) != width) {
        got <- if (is.list(row) && is.null(names(row))) sprintf("%d values", length(row)) else "not a list"
        stop(bad_request(
          sprintf("row %d: expected a list of %d values (%s), got %s", i - 1L, width, paste(quote_name(header), collapse = ", "), got),
          row = i - 1L
        ))
      }
    }
    values <- lapply(names, function(n) {
      j <- match(n, header)
      lapply(rows, function(r) r[[j]])
    })
    names(values) <- names
    frame(values)
  }
  records <- function(recs, where) {
    if (!is.list(recs) || !is.null(names(recs)) || length(recs) == 0) {
      stop(bad_request(sprintf("%s must be a non-empty list of rows", where)))
    }
    if (is.list(recs[[1]]) && is.null(names(recs[[1]])) && length(recs[[1]]) > 0) {
      return(rows_to_values(recs, names))  # "instances": [[...], ...] in input column order
    }
    for (i in seq_along(recs)) {
      rec <- recs[[i]]
      if (!is_record(rec)) stop(bad_request(sprintf("row %d: expected an object of column: value", i - 1L), row = i - 1L))
      check_keys(rec)
      if (length(rec) != length(names) || !all(names(rec) %in% names)) explain_columns(names(rec), i - 1L)
    }
    values <- lapply(names, function(n) lapply(recs, function(r) r[[n]]))
    names(values) <- names
    frame(values)
  }
  split <- function(doc) {
    if (!is_record(doc) || !is.list(doc$data) || !is.null(names(doc$data))) {
      stop(bad_request("dataframe_split must be an object with 'columns' and 'data'"))
    }
    extra <- sort(setdiff(names(doc), c("columns", "data", "index")))
    if (length(extra)) stop(bad_request(paste("unexpected field(s) in dataframe_split:", paste(extra, collapse = ", "))))
    check_keys(doc)
    if ("columns" %in% names(doc) && is.null(doc$columns)) {
      stop(bad_request("dataframe_split.columns must be a list of column names"))
    }
    header <- if (is.null(doc$columns)) names else doc$columns
    if (!is.list(header) && !is.character(header)) stop(bad_request("dataframe_split.columns must be a list of column names"))
    if (is.list(header) && !all(vapply(header, function(h) is.character(h) && length(h) == 1, TRUE))) {
      stop(bad_request("dataframe_split.columns must be a list of column names"))
    }
    header <- unlist(header)
    check_header(header)
    if (length(doc$data) == 0) stop(bad_request("dataframe_split.data must be a non-empty list of rows"))
    rows_to_values(doc$data, header)
  }
  list(
    names = names,
    from_json = function(raw) {
      text <- json_text(raw)
      if (!nzchar(trimws(text))) stop(bad_request("empty body: send rows as JSON (see /openapi.json)"))
      doc <- parse_json(text)
      if (is.list(doc)) check_keys(doc)
      if (is.list(doc) && is.null(names(doc))) return(records(doc, "body"))
      if (!is_record(doc)) {
        if (is.list(doc) && length(doc) == 0) return(records(doc, "body"))  # {} is a record with no columns
        stop(bad_request("JSON body must be an object or a list of records"))
      }
      wrappers <- intersect(WRAPPERS, names(doc))
      if (length(wrappers) == 0) return(records(list(doc), "body"))  # one record
      key <- wrappers[1]
      if (length(doc) > 1) {
        extra <- sort(setdiff(names(doc), key))
        stop(bad_request(sprintf("unexpected field(s) next to %s: %s", quote_name(key), paste(extra, collapse = ", "))))
      }
      if (key == "dataframe_split") split(doc[[key]]) else records(doc[[key]], key)
    },
    from_csv = function(raw) {
      if (length(raw) >= 3 && identical(raw[1:3], as.raw(c(0xef, 0xbb, 0xbf)))) raw <- raw[-(1:3)]  # a BOM
      text <- csv_text(raw)
      if (!validUTF8(text)) stop(bad_request("CSV body is not UTF-8: invalid byte sequence"))
      if (!nzchar(trimws(text))) stop(bad_request("empty body: send a header row and at least one data row"))
      Encoding(text) <- "UTF-8"
      table <- tryCatch(
        utils::read.csv(text = text, header = FALSE, colClasses = "character", na.strings = character(),
                        strip.white = FALSE, blank.lines.skip = TRUE, check.names = FALSE, fill = TRUE,
                        encoding = "UTF-8", quote = "\""),
        error = function(err) stop(bad_request(paste("body is not valid CSV:", conditionMessage(err))))
      )
      header <- as.character(unlist(table[1, ]))
      # A name may have spaces of its own: a cell is matched exactly first, else without its padding.
      header <- ifelse(header %in% names, header, trimws(header))
      header <- header[header != "" | seq_along(header) <= length(names)]
      fields <- count.fields(textConnection(text), sep = ",", quote = "\"", blank.lines.skip = TRUE)
      check_header(header)
      if (nrow(table) < 2) stop(bad_request("CSV body has a header but no data rows"))
      width <- length(header)
      for (i in seq_along(fields)[-1]) {
        if (!is.na(fields[i]) && fields[i] != width) {
          stop(bad_request(sprintf("row %d: has %d fields, the header has %d", i - 2L, fields[i], width), row = i - 2L))
        }
      }
      rows <- table[-1, seq_len(width), drop = FALSE]
      values <- lapply(columns, function(c) csv_column(c, rows[[match(c$name, header)]], forms))
      names(values) <- names
      values
    }
  )
}
