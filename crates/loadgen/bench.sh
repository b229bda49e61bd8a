#!/usr/bin/env bash
# Measures the load generator: three target_server processes share one
# loopback port (SO_REUSEPORT, so the kernel spreads connections like a
# Service), loadgen runs at RATE for DURATION, and the achieved rate, late
# starts, failures and loadgen's own CPU time are printed.
#
#   crates/loadgen/bench.sh [RATE] [DURATION]
# The mix can be changed through loadgen's environment variables, e.g.
#   LOADGEN_FRESH_FRACTION=1 crates/loadgen/bench.sh 3000 20s
set -euo pipefail
rate=${1:-2000}
duration=${2:-20s}
# Defaults for the bench (about 32 pooled connections are busy with slow
# requests alone at 2000/s); each can be overridden from the environment.
export LOADGEN_KEEPALIVE_CONNS=${LOADGEN_KEEPALIVE_CONNS:-128}
export LOADGEN_FRESH_FRACTION=${LOADGEN_FRESH_FRACTION:-0.25}
export LOADGEN_SLOW_FRACTION=${LOADGEN_SLOW_FRACTION:-0.2}
export LOADGEN_SLOW_MS=${LOADGEN_SLOW_MS:-10-200}
cd "$(dirname "$0")/../.."
cargo build --release --quiet -p loadgen --bins --examples
out=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$out"' EXIT
for i in 0 1 2; do
  target/release/examples/target_server "127.0.0.1:$port" "replica-$i" 2>/dev/null &
  pids+=($!)
done
sleep 0.5
/usr/bin/time -f '%U %S %e' -o "$out/time" \
  target/release/loadgen --target "127.0.0.1:$port" --rate "$rate" --duration "$duration" \
  --report "$out/report.json"
python3 - "$out/report.json" "$out/time" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
user, sys_, wall = map(float, open(sys.argv[2]).read().split())
secs = r["config"]["duration_ms"] / 1000
full = [s["sent"] for s in r["timeline"][1:-2]] or [r["sent"]]
c = r["config"]
print(f"target rate      {c['rate']:.0f}/s for {secs:.0f}s; {c['keepalive_conns']} pooled conns, "
      f"fresh {c['fresh_fraction']}, slow {c['slow_fraction']} x {c['slow_ms']['min']}-{c['slow_ms']['max']} ms")
print(f"sent             {r['sent']} ({r['sent'] / secs:.0f}/s; whole seconds min {min(full)}, max {max(full)})")
print(f"ok / failures    {r['outcomes']['ok']} / {r['failures']} (aborted {r['outcomes']['aborted']}, not started {r['not_started']})")
print(f"late starts      {r['late_start']} (max start delay {r['max_start_delay_ms']:.1f} ms)")
print(f"latency root     p50 {r['routes']['root']['latency']['p50_ms']} ms, p99 {r['routes']['root']['latency']['p99_ms']} ms")
print(f"connections      {r['connections']['opened']} opened; served by {r['served_by']}")
print(f"loadgen CPU      {user + sys_:.1f}s over {wall:.1f}s wall = {100 * (user + sys_) / wall:.0f}% of one core")
PY
