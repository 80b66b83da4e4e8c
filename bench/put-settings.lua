-- wrk script for the PUT benchmark of bench/settings-api.sh.
-- Sends the body in $BENCH_BODY_FILE as PUT application/json without If-Match (so every
-- write is accepted); the Authorization header comes from the command line (-H).
-- Counts responses per HTTP status and prints them with one machine-readable result line.

local body_file = os.getenv("BENCH_BODY_FILE")
local f = body_file and io.open(body_file, "rb")
if not f then
  io.stderr:write("put-settings.lua: set BENCH_BODY_FILE to the JSON body file\n")
  os.exit(2)
end
wrk.method = "PUT"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses") or {}) do
      totals[status] = (totals[status] or 0) + n
    end
  end
  local codes = {}
  for status in pairs(totals) do table.insert(codes, status) end
  table.sort(codes)
  local parts = {}
  for _, status in ipairs(codes) do table.insert(parts, status .. ":" .. totals[status]) end

  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT seconds=%.3f rps=%.1f ok_rps=%.1f p50_ms=%.3f p99_ms=%.3f mean_ms=%.3f requests=%d non2xx=%d connect_err=%d read_err=%d write_err=%d timeouts=%d statuses=%s\n",
    seconds, summary.requests / seconds, (summary.requests - summary.errors.status) / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000,
    summary.requests, e.status, e.connect, e.read, e.write, e.timeout,
    #parts > 0 and table.concat(parts, ",") or "none"))
end
