#!/usr/bin/env bash
# bench/profile.sh: where the bridge's time goes under make bench's traffic.
# Starts a nats-server (with its profiling port), a fake Kubernetes operator
# and the bridge with its default configuration (info logs to a file), built
# with block and mutex profiling on (a build overlay adds the rates; the
# source is left as it is). Then it runs RUNS throughput runs in a row on
# that one server and a steady-rate run, and takes profiles from the ops
# address's /debug/pprof/ (and nats-server's) during them:
#
#   cpu-first, nats-cpu-first  CPU during the first throughput run
#   cpu-last, nats-cpu-last    CPU during the last one (the steady state)
#   allocs, block, mutex       during the last throughput run (deltas)
#   cpu-rate, block-rate       during the steady-rate run
#
# and prints the top of each (cumulative, the bridge's own functions first).
# The sampling of blocking and locking costs CPU itself (stack walks):
# PROFILE_RATES=0 builds the bridge as shipped, for CPU profiles that are not
# distorted by it. Knobs: REQUESTS (20000), IN_FLIGHT (1000),
# RATE (2000), RATE_REQUESTS (10000), RUNS (5), PROF_SECONDS (profile length, 6),
# PROFILE_DIR (bench/results/profiles), TOP (15).
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-20000}
IN_FLIGHT=${IN_FLIGHT:-1000}
RATE=${RATE:-2000}
RATE_REQUESTS=${RATE_REQUESTS:-10000}
RUNS=${RUNS:-5}
PROF_SECONDS=${PROF_SECONDS:-6}
PROFILE_DIR=${PROFILE_DIR:-bench/results/profiles}
TOP=${TOP:-15}
PORT_BASE=${PORT_BASE:-14620}
NATS_PORT=$PORT_BASE NATS_PROF=$((PORT_BASE + 1)) OP_PORT=$((PORT_BASE + 2)) OPS=127.0.0.1:$((PORT_BASE + 3))
source bench/lib.sh

cat >"$work/rates.go" <<'GO'
package main

import "runtime"

// Added by bench/profile.sh's build overlay: block and mutex profiles.
func init() {
	runtime.SetBlockProfileRate(10_000) // one sample per 10 µs blocked
	runtime.SetMutexProfileFraction(10)
}
GO
printf '{"Replace":{"%s":"%s"}}' "$PWD/cmd/operator-bridge/zz_profile_rates.go" "$work/rates.go" >"$work/overlay.json"
[ "${PROFILE_RATES:-1}" = 1 ] || echo '{"Replace":{}}' >"$work/overlay.json"
go build -overlay "$work/overlay.json" -o "$work/operator-bridge" ./cmd/operator-bridge

nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$work/js" --profile "$NATS_PROF" >"$work/nats.log" 2>&1 & pids+=($!)
./bin/operator-bridge fake-operator --kind kubernetes --per-path --listen "127.0.0.1:$OP_PORT" >/dev/null 2>&1 & pids+=($!)
wait_port "127.0.0.1:$NATS_PORT"; wait_port "127.0.0.1:$OP_PORT"
envs_file 4 "$OP_PORT" "$work/envs.json"
OPERATOR_BRIDGE_NATS_URL="nats://127.0.0.1:$NATS_PORT" OPERATOR_BRIDGE_ENVIRONMENTS_FILE="$work/envs.json" \
OPERATOR_BRIDGE_HTTP_ADDR=$OPS OPERATOR_BRIDGE_PPROF=true "$work/operator-bridge" serve 2>"$work/bridge.log" & pids+=($!)
wait_port "$OPS"
for _ in $(seq 1 150); do curl -fsS "http://$OPS/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
mkdir -p "$PROFILE_DIR"

bench() { ./bin/operator-bridge bench --nats "nats://127.0.0.1:$NATS_PORT" --envs 4 --apps 50 --mix realistic \
  --in-flight "$IN_FLIGHT" --dup-wait 1s --progress off "$@"; }
grab() { # URL FILE: in the background
  curl -fsS "$1" -o "$PROFILE_DIR/$2.pprof" & grabs+=($!)
}
echo "profile: $RUNS runs of $REQUESTS at $IN_FLIGHT in flight, then $RATE_REQUESTS at $RATE/s; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for run in $(seq 1 "$RUNS"); do
  grabs=()
  if [ "$run" = 1 ] || [ "$run" = "$RUNS" ]; then
    which=first; [ "$run" = "$RUNS" ] && which=last
    grab "http://$OPS/debug/pprof/profile?seconds=$PROF_SECONDS" "cpu-$which"
    grab "http://127.0.0.1:$NATS_PROF/debug/pprof/profile?seconds=$PROF_SECONDS" "nats-cpu-$which"
    if [ "$run" = "$RUNS" ]; then
      for p in allocs block mutex; do grab "http://$OPS/debug/pprof/$p?seconds=$PROF_SECONDS" "$p"; done
    fi
  fi
  bench --requests "$REQUESTS" | sed -n 's/^/  /; /^  \(requests\|results\|outcomes\|latency\)/p' >&2
  [ ${#grabs[@]} -eq 0 ] || wait "${grabs[@]}"
done
grabs=()
grab "http://$OPS/debug/pprof/profile?seconds=$PROF_SECONDS" cpu-rate
grab "http://$OPS/debug/pprof/block?seconds=$PROF_SECONDS" block-rate
bench --requests "$RATE_REQUESTS" --rate "$RATE" | sed -n 's/^/  /; /^  \(requests\|results\|latency\)/p' >&2
wait "${grabs[@]}"
curl -fsS "http://$OPS/debug/pprof/goroutine?debug=1" -o "$PROFILE_DIR/goroutine.txt" || true

for p in cpu-first cpu-last nats-cpu-first nats-cpu-last cpu-rate allocs block mutex block-rate; do
  echo "=== $p (top $TOP by cumulative share)"
  index=; [ "$p" = allocs ] && index=-sample_index=alloc_space
  go tool pprof -top -cum $index -nodecount=200 "$PROFILE_DIR/$p.pprof" 2>/dev/null | sed '1,/flat%/d' |
    grep -v ' runtime\.\| sync\.(\*WaitGroup)\.Go\| runtime/pprof' | head -n "$TOP" || true
done
echo "profiles in $PROFILE_DIR (e.g. go tool pprof -http 127.0.0.1:0 $PROFILE_DIR/cpu-last.pprof)"
