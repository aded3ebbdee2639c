#!/usr/bin/env bash
# make soak: the bridge under a steady load for a bounded time (default 10
# minutes at 2,000 requests/s), its resident memory sampled every 30 s, to
# show that it does not grow. Needs what bench/run.sh needs.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-10}
RATE=${RATE:-2000}
NATS_PORT=${NATS_PORT:-14522}
OP_PORT=${OP_PORT:-18581}
source bench/lib.sh

nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$work/js" >"$work/nats.log" 2>&1 & pids+=($!)
./bin/operator-bridge fake-operator --kind kubernetes --listen "127.0.0.1:$OP_PORT" >/dev/null 2>&1 & pids+=($!)
wait_port "127.0.0.1:$NATS_PORT"; wait_port "127.0.0.1:$OP_PORT"
envs_file 4 "$OP_PORT" "$work/envs.json"
OPERATOR_BRIDGE_NATS_URL="nats://127.0.0.1:$NATS_PORT" OPERATOR_BRIDGE_ENVIRONMENTS_FILE="$work/envs.json" \
OPERATOR_BRIDGE_HTTP_ADDR=127.0.0.1:0 OPERATOR_BRIDGE_LOG_LEVEL=warn \
  ./bin/operator-bridge serve 2>"$work/bridge.log" & bridge=$!; pids+=($bridge)
sleep 1

requests=$((MINUTES * 60 * RATE))
./bin/operator-bridge bench --nats "nats://127.0.0.1:$NATS_PORT" --requests "$requests" --rate "$RATE" \
  --envs 4 --apps 50 --progress off --wait 2m --json >"$work/soak.json" & load=$!
echo "soak: $requests requests at $RATE/s for $MINUTES min; bridge RSS every 30 s:"
printf '%8s %10s\n' "seconds" "RSS MiB"
start=$(date +%s)
while kill -0 "$load" 2>/dev/null; do
  printf '%8d %10.1f\n' $(( $(date +%s) - start )) "$(awk '/VmRSS/ {print $2/1024}' "/proc/$bridge/status")"
  for _ in $(seq 1 30); do kill -0 "$load" 2>/dev/null || break; sleep 1; done
done
wait "$load" || true
python3 - "$work/soak.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"results {s['results']} of {s['requests']}, missing {s['missing']}, duplicates {s['duplicates']}, "
      f"p50 {s['latency_ms']['p50']} ms, p99 {s['latency_ms']['p99']} ms, ok {s['ok']}")
sys.exit(0 if s["ok"] else 1)
PY
