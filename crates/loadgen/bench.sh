#!/usr/bin/env bash
# Measures the load generator: three target_server processes share one
# loopback port (SO_REUSEPORT, so the kernel spreads connections like a
# Service), loadgen runs at RATE for DURATION, and the achieved rate, late
# starts, failures and loadgen's own CPU time are printed.
#
#   crates/loadgen/bench.sh [RATE] [DURATION] [http1|http2]
# The mix can be changed through loadgen's environment variables, e.g.
#   LOADGEN_FRESH_FRACTION=1 crates/loadgen/bench.sh 3000 20s
#   LOADGEN_SLOW_FRACTION=0 crates/loadgen/bench.sh 20000 15s http2
# Builds go to $CARGO_TARGET_DIR (default: target).
set -euo pipefail
rate=${1:-2000}
duration=${2:-20s}
proto=${3:-http1}
# Defaults for the bench (about 32 pooled connections are busy with slow
# requests alone at 2000/s); each can be overridden from the environment.
export LOADGEN_SLOW_FRACTION=${LOADGEN_SLOW_FRACTION:-0.2}
# The README's figures were measured without POSTs; LOADGEN_POST_FRACTION=0.2
# gives loadgen's default mix (the example server echoes them).
export LOADGEN_POST_FRACTION=${LOADGEN_POST_FRACTION:-0}
export LOADGEN_SLOW_MS=${LOADGEN_SLOW_MS:-10-200}
case $proto in
  http1)
    export LOADGEN_KEEPALIVE_CONNS=${LOADGEN_KEEPALIVE_CONNS:-128}
    export LOADGEN_FRESH_FRACTION=${LOADGEN_FRESH_FRACTION:-0.25}
    ;;
  http2)
    # Every request over HTTP/2, on 4 connections of up to 192 streams (the
    # servers, like hyper by default, take 200 at a time).
    export LOADGEN_H2_FRACTION=1 LOADGEN_FRESH_FRACTION=0
    export LOADGEN_H2_CONNS=${LOADGEN_H2_CONNS:-4}
    export LOADGEN_H2_STREAMS=${LOADGEN_H2_STREAMS:-192}
    export LOADGEN_MAX_IN_FLIGHT=${LOADGEN_MAX_IN_FLIGHT:-2048}
    ;;
  *) echo "protocol must be http1 or http2, not $proto" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/../.."
target_dir=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet -p loadgen --bins --examples
out=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$out"' EXIT
for i in 0 1 2; do
  "$target_dir/release/examples/target_server" "127.0.0.1:$port" "replica-$i" 2>/dev/null &
  pids+=($!)
done
sleep 0.5
# CPU clock ticks (user + system) the three servers have used so far.
server_ticks() {
  local total=0 f
  for pid in "${pids[@]}"; do
    read -r -a f < "/proc/$pid/stat"
    total=$((total + f[13] + f[14]))
  done
  echo "$total"
}
before=$(server_ticks)
/usr/bin/time -f '%U %S %e' -o "$out/time" \
  "$target_dir/release/loadgen" --target "127.0.0.1:$port" --rate "$rate" --duration "$duration" \
  --report "$out/report.json"
servers=$(( $(server_ticks) - before ))
python3 - "$out/report.json" "$out/time" "$servers" "$(getconf CLK_TCK)" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
user, sys_, wall = map(float, open(sys.argv[2]).read().split())
servers = int(sys.argv[3]) / int(sys.argv[4])
secs = r["config"]["duration_ms"] / 1000
full = [s["sent"] for s in r["timeline"][1:-2]] or [r["sent"]]
c = r["config"]
print(f"target rate      {c['rate']:.0f}/s for {secs:.0f}s; slow {c['slow_fraction']} x {c['slow_ms']['min']}-{c['slow_ms']['max']} ms")
print(f"mix              keep-alive {r['modes']['keepalive']['sent']} on {c['keepalive_conns']} conns, "
      f"fresh {r['modes']['fresh']['sent']}, "
      f"http2 {r['modes']['http2']['sent']} on {c['h2_conns']} conns x {c['h2_streams']} streams")
print(f"sent             {r['sent']} ({r['sent'] / secs:.0f}/s; whole seconds min {min(full)}, max {max(full)})")
print(f"ok / failures    {r['outcomes']['ok']} / {r['failures']} (aborted {r['outcomes']['aborted']}, "
      f"refused and resent {r['outcomes']['refused_resent']}, not started {r['not_started']})")
print(f"late starts      {r['late_start']} (max start delay {r['max_start_delay_ms']:.1f} ms)")
print(f"latency root     p50 {r['routes']['root']['latency']['p50_ms']} ms, p99 {r['routes']['root']['latency']['p99_ms']} ms")
print(f"connections      {r['connections']['opened']} opened ({r['connections']['h2_opened']} HTTP/2); served by {r['served_by']}")
print(f"loadgen CPU      {user + sys_:.1f}s over {wall:.1f}s wall = {100 * (user + sys_) / wall:.0f}% of one core")
print(f"servers CPU      {servers:.1f}s = {100 * servers / wall:.0f}% of one core (the three together)")
PY
