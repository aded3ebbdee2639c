#!/usr/bin/env bash
# make bench: the bridge as shipped against the bare loop (bench/baseline),
# fairly and in steady state, with traffic like a CD platform's (bench --mix
# realistic: 4 environments x 50 apps, CloudEvent times, every other request
# a canary split with a docker package, versions rising per app).
#
# Each side has its own nats-server (file storage) and fake Kubernetes
# operators (one per environment, fake-operator --per-path), all kept up for
# all its runs: run 1 is on a fresh server, runs 2
# to 1+RUNS on the same server with its streams, order bucket and caches
# already full. Runs alternate between the sides, so each ratio compares runs
# made moments apart on this shared machine. A run is a throughput run
# (REQUESTS at IN_FLIGHT in flight) and a latency run (RATE_REQUESTS at a
# steady RATE/s); each then watches DUP_WAIT (the ack wait) for duplicates.
# Then a second bridge replica joins the first for REPLICA_RUNS throughput
# runs.
#
# Fair: the same Go runtime settings (the baseline gets the GOGC and
# GOMEMLIMIT that serve sets itself), NATS connection, async-publish and
# consumer settings, HTTP pool and in-flight limit (see bench/baseline). The
# bridge runs with its defaults: info logs (to a file), health checks (and
# pprof only with PROFILE_DIR). CPU is read from /proc over each run (first
# publish to last result) for the process and for its nats-server.
#
# Prints a table of medians and ratios with the targets, and writes it to
# $BENCH_OUT/bench.json and bench.md. Exit 1 when a request lost or doubled
# its result; BENCH_STRICT=1 also fails on a missed target.
#
# NO_ROLLOUT=1 sends every request with "rollout": false, to measure the
# bridge without rollout tracking (the bare loop ignores the field).
# Knobs (environment): REQUESTS (20000), IN_FLIGHT (1000), RATE (2000),
# RATE_REQUESTS (10000), RUNS (5), REPLICA_RUNS (3), DUP_WAIT (30s), ENVS
# (4), APPS (50), BENCH_OUT (bench/results), PROFILE_DIR (when set: the
# bridge serves pprof, and its CPU and allocation profiles are taken during
# its last run).
# BENCH_QUICK=1 is a short trial: 4000 requests, 3000 at the steady rate, 3
# steady runs, 2 s of duplicate watch.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${BENCH_QUICK:-}" = 1 ]; then
  : "${REQUESTS:=4000}" "${RATE_REQUESTS:=3000}" "${RUNS:=3}" "${REPLICA_RUNS:=3}" "${DUP_WAIT:=2s}"
fi
REQUESTS=${REQUESTS:-20000}
IN_FLIGHT=${IN_FLIGHT:-1000}
RATE=${RATE:-2000}
RATE_REQUESTS=${RATE_REQUESTS:-10000}
RUNS=${RUNS:-5}
REPLICA_RUNS=${REPLICA_RUNS:-3}
DUP_WAIT=${DUP_WAIT:-30s}
ENVS=${ENVS:-4}
APPS=${APPS:-50}
BENCH_OUT=${BENCH_OUT:-bench/results}
PORT_BASE=${PORT_BASE:-14320}

source bench/lib.sh
go build -o bin/baseline ./bench/baseline

# The Go runtime settings serve gives itself (tuneGC), for the baseline.
SERVE_GOGC=200
SERVE_GOMEMLIMIT=256MiB

# side NAME INDEX: a nats-server and a fake operator for one side.
start_side() {
  local name=$1 i=$2
  local nport=$((PORT_BASE + i)) oport=$((PORT_BASE + 10 + i))
  nats-server -a 127.0.0.1 -p "$nport" -js -sd "$work/js-$name" >"$work/nats-$name.log" 2>&1 &
  pids+=($!); eval "nats_$name=$!"
  ./bin/operator-bridge fake-operator --kind kubernetes --per-path --listen "127.0.0.1:$oport" >"$work/op-$name.log" 2>&1 &
  pids+=($!)
  wait_port "127.0.0.1:$nport"; wait_port "127.0.0.1:$oport"
  eval "url_$name=nats://127.0.0.1:$nport op_$name=http://127.0.0.1:$oport"
}

# ready URL: one request through end to end.
ready() {
  for _ in $(seq 1 150); do
    ./bin/operator-bridge bench --nats "$1" --requests 1 --envs 1 --apps 1 --dup-wait 1ms --wait 2s --progress off --json >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "bench: no result from $1" >&2; return 1
}

op_calls() { curl -fsS "$1/stats" | python3 -c 'import json, sys; print(json.load(sys.stdin)["apply"])'; }

# conflicts HTTP_ADDR...: the sum of operator_bridge_lease_conflicts_total, or n/a.
conflicts() {
  local total=0 found=0 v
  for a in "$@"; do
    v=$(curl -fsS "http://$a/metrics" | awk '/^operator_bridge_lease_conflicts_total/ {s += $2; f = 1} END {if (f) print s}') || true
    if [ -n "$v" ]; then total=$(python3 -c "print($total + $v)"); found=1; fi
  done
  if [ "$found" = 1 ]; then echo "$total"; else echo n/a; fi
}

# one SIDE RUN KIND PIDS: one bench run, its JSON in $work/SIDE.RUN.KIND.json
# with the operator calls it caused added.
one() {
  local side=$1 run=$2 kind=$3 pidlist=$4 url op
  eval "url=\$url_$side op=\$op_$side"
  local args=(--requests "$REQUESTS")
  [ "$kind" = rate ] && args=(--requests "$RATE_REQUESTS" --rate "$RATE")
  local before; before=$(op_calls "$op")
  ./bin/operator-bridge bench --nats "$url" "${args[@]}" --envs "$ENVS" --apps "$APPS" --in-flight "$IN_FLIGHT" \
    --mix realistic ${NO_ROLLOUT:+--no-rollout} --dup-wait "$DUP_WAIT" --wait 2m --pids "$pidlist" --progress off --json >"$work/$side.$run.$kind.json" || true
  python3 bench/report.py addcalls "$work/$side.$run.$kind.json" "$(( $(op_calls "$op") - before ))"
  printf '  %-8s run %-2s %-4s %s\n' "$side" "$run" "$kind" "$(python3 bench/report.py line "$work/$side.$run.$kind.json")" >&2
}

load() { cut -d' ' -f1-3 /proc/loadavg; }

start_side baseline 0
start_side bridge 1
GOGC=$SERVE_GOGC GOMEMLIMIT=$SERVE_GOMEMLIMIT ./bin/baseline --nats "$url_baseline" --operator "$op_baseline/{env}" >"$work/baseline.log" 2>&1 &
baseline=$!; pids+=($baseline)

envs_file "$ENVS" "${op_bridge##*:}" "$work/envs.json"
ops1="127.0.0.1:$((PORT_BASE + 20))" ops2="127.0.0.1:$((PORT_BASE + 21))"
serve_bridge() { # OPS_ADDR INSTANCE LOG
  OPERATOR_BRIDGE_NATS_URL="$url_bridge" OPERATOR_BRIDGE_ENVIRONMENTS_FILE="$work/envs.json" \
  OPERATOR_BRIDGE_HTTP_ADDR="$1" OPERATOR_BRIDGE_INSTANCE="$2" OPERATOR_BRIDGE_PPROF=${PROFILE_DIR:+true} \
    ./bin/operator-bridge serve 2>"$3" &
}
serve_bridge "$ops1" bridge-1 "$work/bridge-1.log"; bridge=$!; pids+=($bridge)
ready "$url_baseline"; ready "$url_bridge"

echo "bench: $REQUESTS requests at $IN_FLIGHT in flight, $RATE_REQUESTS at $RATE/s, $ENVS environments x $APPS apps (realistic mix);" \
  "run 1 on fresh servers, then $RUNS more; duplicates watched $DUP_WAIT; load $(load)" >&2
load_start=$(load)
last=$((RUNS + 1))
for run in $(seq 1 "$last"); do
  for side in baseline bridge; do
    eval "sut=\$$side nsrv=\$nats_$side"
    if [ "$side" = bridge ] && [ "$run" = "$last" ] && [ -n "${PROFILE_DIR:-}" ]; then
      mkdir -p "$PROFILE_DIR"
      curl -fsS "http://$ops1/debug/pprof/profile?seconds=5" -o "$PROFILE_DIR/cpu.pprof" &
      prof=$!
    fi
    c0=$(conflicts "$ops1")
    one "$side" "$run" tput "$sut,$nsrv"
    if [ "$side" = bridge ]; then
      echo "$c0 $(conflicts "$ops1")" >"$work/bridge.$run.conflicts"
      [ -n "${prof:-}" ] && { wait "$prof" || true; prof=; for p in allocs heap block mutex goroutine; do
        curl -fsS "http://$ops1/debug/pprof/$p" -o "$PROFILE_DIR/$p.pprof" || true; done; }
    fi
    one "$side" "$run" rate "$sut,$nsrv"
  done
done

# Two replicas share the load.
if [ "$REPLICA_RUNS" -gt 0 ]; then
  serve_bridge "$ops2" bridge-2 "$work/bridge-2.log"; bridge2=$!; pids+=($bridge2)
  wait_port "$ops2"
  for _ in $(seq 1 150); do curl -fsS "http://$ops2/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
  for run in $(seq 1 "$REPLICA_RUNS"); do
    c0=$(conflicts "$ops1" "$ops2")
    one bridge "r$run" tput "$bridge,$bridge2,$nats_bridge"
    echo "$c0 $(conflicts "$ops1" "$ops2")" >"$work/bridge.r$run.conflicts"
  done
fi
load_end=$(load)

mkdir -p "$BENCH_OUT"
python3 bench/report.py report "$work" "$BENCH_OUT" "$last" "$REPLICA_RUNS" "load average at start $load_start, at end $load_end ($(nproc) cores)" \
  "REQUESTS=$REQUESTS IN_FLIGHT=$IN_FLIGHT RATE=$RATE RATE_REQUESTS=$RATE_REQUESTS RUNS=$RUNS REPLICA_RUNS=$REPLICA_RUNS DUP_WAIT=$DUP_WAIT ENVS=$ENVS APPS=$APPS"
