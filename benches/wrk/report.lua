-- Loaded with `wrk -s`: prints one JSON line, prefixed "BENCH ", with the
-- figures the harness reads (durations and latencies in microseconds).
-- Defines no request/response hook, so wrk's request loop is unchanged.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nBENCH {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99)))
end
