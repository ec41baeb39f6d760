-- wrk script for POST /generate (ours) and POST /predictions/gan (TorchServe peer): body
-- {"seed": s, "n": N}, s unique per request and thread (images never repeat within a run).
-- BODY=triton-v2 (env) sends the same seed and n as a KServe v2 infer request (PyTriton peer,
-- POST /v2/models/gan/infer), as the peer's wrk_post.lua does.
-- usage: N=16 wrk -t2 -c64 -d10s --latency -s bench/wrk/generate.lua http://127.0.0.1:3000/generate
-- The last line printed is one JSON object (bench/harness.py parses it).
-- Adapted from ../shared/peers/torchserve/wrk_post.lua: same body and seeds, plus p95, mean,
-- non-2xx split from socket errors, and images counted only for 2xx answers.
local threads, counter = {}, 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local k, n = 0, tonumber(os.getenv("N") or "1")
local non2xx = 0
local v2 = os.getenv("BODY") == "triton-v2"

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  k = k + 1
  -- thread t owns seeds [t * 2e9 / 2, ...): far apart, and below 2**32 - 1 for n <= 64
  local seed = tid * 1000000000 + k * n
  if v2 then
    return wrk.format(nil, nil, nil, string.format(
      '{"inputs": [{"name": "seed", "datatype": "INT64", "shape": [1, 1], "data": [%d]}, ' ..
      '{"name": "n", "datatype": "INT64", "shape": [1, 1], "data": [%d]}]}', seed, n))
  end
  return wrk.format(nil, nil, nil, string.format('{"seed": %d, "n": %d}', seed, n))
end

function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  local sock = e.connect + e.read + e.write + e.timeout
  local bad = e.status
  local ok = summary.requests - bad - sock
  if ok < 0 then ok = 0 end
  io.write(string.format(
    '{"req_per_s": %.2f, "img_per_s": %.2f, "p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, ' ..
    '"mean_ms": %.3f, "max_ms": %.3f, "errors": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"requests": %d, "ok": %d, "seconds": %.3f, "n": %d, "bytes": %d}\n',
    ok / secs, n * ok / secs, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000, latency.max / 1000, bad + sock, bad, sock,
    summary.requests, ok, secs, n, summary.bytes))
end
