-- wrk script for the benches (bench/lib/wrk.py): POST the bytes of $WRK_BODY_FILE with $WRK_CONTENT_TYPE.
-- Top-level code runs once in every wrk thread, before the first request is built.
local path = os.getenv("WRK_BODY_FILE")
assert(path, "set WRK_BODY_FILE to the file holding the request body")
local file = assert(io.open(path, "rb"))
wrk.body = file:read("*a")
file:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "application/json"
