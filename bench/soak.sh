#!/usr/bin/env bash
# make soak: the bridge as shipped (default configuration, info logs to a
# file) under the realistic mix of make bench at a steady rate for a bounded
# time (default 10 minutes at 2,000 requests/s), its memory sampled every
# SAMPLE seconds: resident set from /proc, Go heap in use and goroutines
# from /metrics. Prints the samples as a table and a verdict: flat when the
# last third of the samples stays within 10 % (and 4 MiB) of the first third
# after the first minute, growing otherwise. Exit 1 when it grows or a
# request lost or doubled its result.
#
# Knobs (environment): MINUTES (10), RATE (2000), SAMPLE (30), PORT_BASE.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-10}
RATE=${RATE:-2000}
SAMPLE=${SAMPLE:-30}
PORT_BASE=${PORT_BASE:-14520}
NATS_PORT=$PORT_BASE OP_PORT=$((PORT_BASE + 1)) OPS_ADDR=127.0.0.1:$((PORT_BASE + 2))
source bench/lib.sh

nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$work/js" >"$work/nats.log" 2>&1 & pids+=($!)
./bin/operator-bridge fake-operator --kind kubernetes --per-path --listen "127.0.0.1:$OP_PORT" >/dev/null 2>&1 & pids+=($!)
wait_port "127.0.0.1:$NATS_PORT"; wait_port "127.0.0.1:$OP_PORT"
envs_file 4 "$OP_PORT" "$work/envs.json"
OPERATOR_BRIDGE_NATS_URL="nats://127.0.0.1:$NATS_PORT" OPERATOR_BRIDGE_ENVIRONMENTS_FILE="$work/envs.json" \
OPERATOR_BRIDGE_HTTP_ADDR=$OPS_ADDR \
  ./bin/operator-bridge serve 2>"$work/bridge.log" & bridge=$!; pids+=($bridge)
wait_port "$OPS_ADDR"
for _ in $(seq 1 150); do curl -fsS "http://$OPS_ADDR/readyz" >/dev/null 2>&1 && break; sleep 0.2; done

requests=$((MINUTES * 60 * RATE))
./bin/operator-bridge bench --nats "nats://127.0.0.1:$NATS_PORT" --requests "$requests" --rate "$RATE" \
  --envs 4 --apps 50 --mix realistic --pids "$bridge" --progress off --wait 2m --json >"$work/soak.json" & load=$!
echo "soak: $requests requests (realistic mix) at $RATE/s for $MINUTES min; the bridge every $SAMPLE s; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

metric() { # NAME: its value in /metrics
  curl -fsS "http://$OPS_ADDR/metrics" 2>/dev/null | awk -v n="$1" '$1 == n {print $2; exit}'
}
start=$(date +%s)
while kill -0 "$load" 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2 / 1024}' "/proc/$bridge/status")
  echo "$(( $(date +%s) - start )) $rss $(metric go_memstats_heap_inuse_bytes) $(metric go_goroutines)" >>"$work/samples"
  for _ in $(seq 1 "$SAMPLE"); do kill -0 "$load" 2>/dev/null || break; sleep 1; done
done
wait "$load" || true
python3 - "$work/soak.json" "$work/samples" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import json, statistics, sys
s = json.load(open(sys.argv[1]))
rows = []
for line in open(sys.argv[2]):
    f = line.split()
    if len(f) == 4:
        rows.append((int(f[0]), float(f[1]), float(f[2]) / 2**20, int(float(f[3]))))
print(f"{'seconds':>8} {'RSS MiB':>9} {'heap MiB':>9} {'goroutines':>11}")
for t, rss, heap, g in rows:
    print(f"{t:8d} {rss:9.1f} {heap:9.1f} {g:11d}")
ok = s["ok"]
print(f"results {s['results']} of {s['requests']}, missing {s['missing']}, duplicates {s['duplicates']}, "
      f"p50 {s['latency_ms']['p50']} ms, p99 {s['latency_ms']['p99']} ms, every request exactly one result: {ok}")
for p in s.get("processes", []):
    print(f"bridge CPU {p['cpu_s']} s, {p['cpu_per_request_us']} µs per request, peak RSS {p['peak_rss_mib']} MiB")
warm = [r for r in rows if r[0] >= 60] or rows
third = max(1, len(warm) // 3)
if len(warm) < 3:
    print("verdict: too few samples for a verdict (run longer)")
else:
    verdicts = []
    for name, i in (("RSS", 1), ("heap", 2)):
        a = statistics.median(r[i] for r in warm[:third])
        b = statistics.median(r[i] for r in warm[-third:])
        flat = b <= a * 1.10 or b - a <= 4
        verdicts.append(flat)
        print(f"{name}: {a:.1f} MiB in the first third after the first minute, {b:.1f} MiB in the last: "
              f"{'flat' if flat else 'GROWING'} ({(b - a) / a * 100 if a else 0:+.1f} %)")
    print("verdict:", "flat" if all(verdicts) else "memory GROWS under steady load")
    ok = ok and all(verdicts)
print("load average at the end", sys.argv[3])
sys.exit(0 if ok else 1)
PY
