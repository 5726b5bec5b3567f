-- One machine-readable line per run: throughput, latency percentiles, errors.
return function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    "RESULT requests/s=%.0f p50=%dus p99=%dus p99.9=%dus non2xx_or_errors=%d\n",
    summary.requests / seconds, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), errors))
end
