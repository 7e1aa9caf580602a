-- wrk script for scripts/load.sh: POSTs the queries of a JSON Lines file
-- (one query per line, as gen_routes writes them) in rotation, the way
-- Kamailio's http_async_client sends them (text/plain, keep-alive).
--
--   C4ROUTE_QUERIES=queries.jsonl C4ROUTE_PATH=/kamailio/rtjson \
--     wrk -t1 -c16 -d10s --latency -s scripts/load/rotate.lua http://127.0.0.1:8000
--
-- At the end it prints one machine-readable line:
--   RESULT requests=N rps=R p50_us=A p90_us=B p99_us=C max_us=D errors=E non2xx=F

local path = os.getenv("C4ROUTE_PATH") or "/kamailio/rtjson"
local file = os.getenv("C4ROUTE_QUERIES") or "queries.jsonl"

local requests = {}
local i = 0

function init(args)
  local headers = { ["Content-Type"] = "text/plain" }
  local f = assert(io.open(file, "r"), "cannot open " .. file)
  for line in f:lines() do
    if #line > 0 then
      requests[#requests + 1] = wrk.format("POST", path, headers, line)
    end
  end
  f:close()
  assert(#requests > 0, "no queries in " .. file)
  -- Threads start at different offsets so they do not send in lock step.
  i = math.random(#requests)
end

function request()
  i = i % #requests + 1
  return requests[i]
end

function done(summary, latency, _)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d rps=%.0f p50_us=%d p90_us=%d p99_us=%d max_us=%d errors=%d non2xx=%d\n",
    summary.requests, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
