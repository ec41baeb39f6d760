-- wrk script for POST /score: the same multipart body (BODY_FILE, made by bench/harness.py:
-- K small PNGs in the field "images") on every request; K = N for the images/s figure.
-- usage: BODY_FILE=/tmp/body N=16 BOUNDARY=benchBOUNDARY7f3a wrk -t2 -c8 -d10s -s bench/wrk/score.lua URL
local n = tonumber(os.getenv("N") or "1")
local non2xx = 0

function init(args)
  local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" ..
    (os.getenv("BOUNDARY") or "benchBOUNDARY7f3a")
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
