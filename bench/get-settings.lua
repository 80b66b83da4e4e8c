-- wrk script for the GET benchmark of bench/settings-api.sh.
-- The request itself is plain (URL and Authorization header come from the command line);
-- this only adds one machine-readable result line for the script to parse.
-- No response() callback, so wrk does not hand every response to Lua.

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT seconds=%.3f rps=%.1f ok_rps=%.1f p50_ms=%.3f p99_ms=%.3f mean_ms=%.3f requests=%d non2xx=%d connect_err=%d read_err=%d write_err=%d timeouts=%d\n",
    seconds, summary.requests / seconds, (summary.requests - summary.errors.status) / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000,
    summary.requests, e.status, e.connect, e.read, e.write, e.timeout))
end
