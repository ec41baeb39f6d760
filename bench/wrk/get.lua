-- wrk script: plain GET of the URL (e.g. BentoML's /livez), same JSON summary line as generate.lua.
local non2xx = 0
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
    '{"req_per_s": %.2f, "img_per_s": 0, "p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, ' ..
    '"mean_ms": %.3f, "max_ms": %.3f, "errors": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"requests": %d, "ok": %d, "seconds": %.3f, "n": 0, "bytes": %d}\n',
    ok / secs, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000, latency.max / 1000, bad + sock, bad, sock,
    summary.requests, ok, secs, summary.bytes))
end
