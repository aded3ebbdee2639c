#!/usr/bin/env bash
# make bench: the bridge against the bare loop (bench/baseline) under
# identical load, each on a fresh nats-server process with file storage, a
# fake Kubernetes operator, and the `operator-bridge bench` load generator,
# all sharing this machine's cores. Prints both and their ratios.
#
# Knobs (environment): REQUESTS (20000), ENVS (4), APPS (50), IN_FLIGHT (1000),
# RATE (2000, the steady-rate run for latency), RATE_REQUESTS (10000).
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-20000}
ENVS=${ENVS:-4}
APPS=${APPS:-50}
IN_FLIGHT=${IN_FLIGHT:-1000}
RATE=${RATE:-2000}
RATE_REQUESTS=${RATE_REQUESTS:-10000}
NATS_PORT=${NATS_PORT:-14322}
OP_PORT=${OP_PORT:-18381}
HTTP_PORT=${HTTP_PORT:-18390}

source bench/lib.sh
go build -o bin/baseline ./bench/baseline

cpu_ticks() { # pid -> utime+stime in clock ticks
  awk '{print $14+$15}' "/proc/$1/stat"
}
rss_kib() { # pid -> peak resident set (VmHWM) in KiB
  awk '/VmHWM/ {print $2}' "/proc/$1/status"
}

./bin/operator-bridge fake-operator --kind kubernetes --listen "127.0.0.1:$OP_PORT" >"$work/op.log" 2>&1 &
pids+=($!)
wait_port "127.0.0.1:$OP_PORT"

envs_file "$ENVS" "$OP_PORT" "$work/envs.json"

# measure NAME CMD...: runs CMD as the system under test on a fresh
# nats-server, drives it with a throughput run and a steady-rate run, and
# writes $work/NAME.{tput,rate}.json and $work/NAME.{cpu,rss}.
measure() {
  local name=$1; shift
  local store="$work/js-$name"
  nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$store" >"$work/nats-$name.log" 2>&1 &
  local npid=$!
  wait_port "127.0.0.1:$NATS_PORT"
  "$@" >"$work/$name.log" 2>&1 &
  local sut=$!
  local url="nats://127.0.0.1:$NATS_PORT"
  # Ready when its consumer exists: one request through end to end.
  for _ in $(seq 1 100); do
    ./bin/operator-bridge bench --nats "$url" --requests 1 --envs 1 --apps 1 --wait 2s --progress off --json >/dev/null 2>&1 && break
    sleep 0.1
  done
  # Warm up, then measure CPU over the throughput run alone.
  ./bin/operator-bridge bench --nats "$url" --requests 2000 --envs "$ENVS" --apps "$APPS" --in-flight "$IN_FLIGHT" --progress off --json >/dev/null
  local before; before=$(cpu_ticks "$sut")
  ./bin/operator-bridge bench --nats "$url" --requests "$REQUESTS" --envs "$ENVS" --apps "$APPS" --in-flight "$IN_FLIGHT" --progress off --json >"$work/$name.tput.json"
  echo $(( $(cpu_ticks "$sut") - before )) >"$work/$name.cpu"
  rss_kib "$sut" >"$work/$name.rss"
  ./bin/operator-bridge bench --nats "$url" --requests "$RATE_REQUESTS" --rate "$RATE" --envs "$ENVS" --apps "$APPS" --in-flight "$IN_FLIGHT" --progress off --json >"$work/$name.rate.json"
  kill "$sut" "$npid"; wait "$sut" "$npid" 2>/dev/null || true
}

echo "bench: $REQUESTS requests over $ENVS environments x $APPS apps, $IN_FLIGHT in flight; latency at $RATE/s" >&2
measure baseline ./bin/baseline --nats "nats://127.0.0.1:$NATS_PORT" --operator "http://127.0.0.1:$OP_PORT" --in-flight 256
OPERATOR_BRIDGE_NATS_URL="nats://127.0.0.1:$NATS_PORT" \
OPERATOR_BRIDGE_ENVIRONMENTS_FILE="$work/envs.json" \
OPERATOR_BRIDGE_HTTP_ADDR="127.0.0.1:$HTTP_PORT" \
OPERATOR_BRIDGE_HEALTH_INTERVAL=30s \
OPERATOR_BRIDGE_LOG_LEVEL=warn \
measure bridge ./bin/operator-bridge serve

python3 - "$work" "$REQUESTS" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
def load(name):
    t = json.load(open(f"{work}/{name}.tput.json"))
    r = json.load(open(f"{work}/{name}.rate.json"))
    cpu = int(open(f"{work}/{name}.cpu").read()) / 100.0  # clock ticks -> s (USER_HZ 100)
    rss = int(open(f"{work}/{name}.rss").read()) / 1024.0
    ok = t["ok"] and r["ok"]
    return dict(tput=t["results_per_s"], p99=r["latency_ms"]["p99"], p50=r["latency_ms"]["p50"],
                cpu_us=cpu / n * 1e6, rss=rss, ok=ok)
b, s = load("baseline"), load("bridge")
rows = [("throughput (req/s)", "tput", ">= 0.75"), ("p50 at steady rate (ms)", "p50", ""),
        ("p99 at steady rate (ms)", "p99", "<= 1.5"), ("CPU per request (us)", "cpu_us", "<= 1.3"),
        ("peak RSS (MiB)", "rss", "< 100 MiB")]
print(f"{'':28}{'bare loop':>12}{'bridge':>12}{'ratio':>8}  target")
for label, k, target in rows:
    ratio = s[k] / b[k] if b[k] else float("nan")
    print(f"{label:28}{b[k]:12.1f}{s[k]:12.1f}{ratio:8.2f}  {target}")
print(f"every request one result: bare loop {b['ok']}, bridge {s['ok']}")
sys.exit(0 if b["ok"] and s["ok"] else 1)
PY
