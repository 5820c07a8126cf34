-- wrk script of bench/api_bench.py (run with -t1: one Lua state, so `n` numbers every request).
-- BENCH_MODE: balance (GET a balance), single (POST a consumption with its own Idempotency-Key),
-- batch (POST BENCH_ITEMS consumptions to /api/v1/consumptions:batch, each with its own key).
local mode = os.getenv("BENCH_MODE")
local customers = tonumber(os.getenv("BENCH_CUSTOMERS"))
local run = os.getenv("BENCH_RUN")
local items = tonumber(os.getenv("BENCH_ITEMS"))
local currency = os.getenv("BENCH_CURRENCY")
local n = 0

local function with(extra)
  local h = {}
  for k, v in pairs(wrk.headers) do h[k] = v end  -- keeps the Authorization header given with -H
  for k, v in pairs(extra) do h[k] = v end
  return h
end

local function item(c, key)
  return '{"customer": "b' .. c .. '", "idempotency_key": "' .. key .. '", "amount": "0.01", "currency": "'
    .. currency .. '"}'
end

request = function()
  n = n + 1
  local c = (n * 7919) % customers
  if mode == "balance" then
    return wrk.format("GET", "/api/v1/customers/b" .. c .. "/balance?currency=" .. currency)
  elseif mode == "single" then
    return wrk.format("POST", "/api/v1/customers/b" .. c .. "/consumptions",
      with({["Content-Type"] = "application/json", ["Idempotency-Key"] = run .. "-" .. n}),
      '{"amount": "0.01", "currency": "' .. currency .. '"}')
  end
  local parts = {}
  for k = 1, items do parts[k] = item((c + k) % customers, run .. "-" .. n .. "-" .. k) end
  return wrk.format("POST", "/api/v1/consumptions:batch", with({["Content-Type"] = "application/json"}),
    '{"items": [' .. table.concat(parts, ",") .. ']}')
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, '
    .. '"p50_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\n', summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
