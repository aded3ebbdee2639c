#!/usr/bin/env bash
# bench/startup.sh: how long `operator-bridge serve` takes to become ready
# with many environments, as an operator would see it: from the process's
# start to the first 200 from /readyz. The environments file holds ENVS
# (100000) Kubernetes environments spread over ENDPOINTS (10) fake operators
# (with PER_PATH=1, each environment an operator of its own on them:
# fake-operator --per-path, operator_url http://HOST:PORT/<environment>);
# the bridge runs as shipped (default configuration, the environments
# bucket watched, info logs to a file) against its own nats-server. Run 1
# starts on a fresh server (it creates the streams and buckets), runs 2 to
# RUNS (5) on the same server; it prints each run and the median of runs
# 2 to RUNS, with the peak resident memory of the bridge. With PROFILE_DIR
# set, one more start is profiled (CPU and allocations, from the process's
# start to ready; a build overlay adds the profiling, the source is left as
# it is) into PROFILE_DIR/startup-{cpu,allocs}.pprof, and the top of each is
# printed. Knobs: ENVS, ENDPOINTS, PER_PATH, RUNS, PORT_BASE, TOP.
set -euo pipefail
cd "$(dirname "$0")/.."
ENVS=${ENVS:-100000}
ENDPOINTS=${ENDPOINTS:-10}
PER_PATH=${PER_PATH:-0}
RUNS=${RUNS:-5}
[ "$RUNS" -ge 2 ] || RUNS=2 # the median leaves run 1 out
PORT_BASE=${PORT_BASE:-14720}
NATS_PORT=$PORT_BASE OPS=127.0.0.1:$((PORT_BASE + 1)) OP_PORT=$((PORT_BASE + 2))
source bench/lib.sh

nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$work/js" >"$work/nats.log" 2>&1 & pids+=($!)
for i in $(seq 0 $((ENDPOINTS - 1))); do
  ./bin/operator-bridge fake-operator --kind kubernetes --listen "127.0.0.1:$((OP_PORT + i))" \
    $([ "$PER_PATH" = 1 ] && echo --per-path) >/dev/null 2>&1 & pids+=($!)
done
wait_port "127.0.0.1:$NATS_PORT"
for i in $(seq 0 $((ENDPOINTS - 1))); do wait_port "127.0.0.1:$((OP_PORT + i))"; done
python3 - "$ENVS" "$ENDPOINTS" "$OP_PORT" "$PER_PATH" "$work/envs.json" <<'PY'
import json, sys
n, endpoints, port, per_path, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]
with open(path, "w") as f:
    json.dump([{"id": "env-%06d" % i, "name": "bench %d" % i, "type": "kubernetes",
                "operator_url": "http://127.0.0.1:%d%s" % (port + i % endpoints, "/env-%06d" % i if per_path else "")}
               for i in range(n)], f, indent=1)
PY
if [ -n "${PROFILE_DIR:-}" ]; then
  mkdir -p "$PROFILE_DIR"
  cat >"$work/startprof.go" <<'GO'
package main

import (
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
)

// Added by bench/startup.sh's build overlay: a CPU profile from the
// process's start until SIGUSR1, then the allocations so far.
func init() {
	dir := os.Getenv("STARTUP_PROFILE_DIR")
	if dir == "" {
		return
	}
	f, err := os.Create(dir + "/startup-cpu.pprof")
	if err != nil || pprof.StartCPUProfile(f) != nil {
		return
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	go func() {
		<-sig
		pprof.StopCPUProfile()
		_ = f.Close()
		runtime.GC()
		if a, err := os.Create(dir + "/startup-allocs.pprof"); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(a, 0)
			_ = a.Close()
		}
		_ = os.WriteFile(dir+"/startup.done", nil, 0o600)
	}()
}
GO
  printf '{"Replace":{"%s":"%s"}}' "$PWD/cmd/operator-bridge/zz_startup_profile.go" "$work/startprof.go" >"$work/overlay.json"
  go build -overlay "$work/overlay.json" -o "$work/operator-bridge-prof" ./cmd/operator-bridge
fi
echo "startup: serve with $ENVS environments on $ENDPOINTS operator processes$([ "$PER_PATH" = 1 ] && echo ", one operator per environment") ($(du -h "$work/envs.json" | cut -f1) file), $RUNS runs; load $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)" >&2

ms() { date +%s%3N; }
# start BINARY LOG: runs serve, waits for /readyz; sets ready_ms and rss_mib,
# leaves the bridge running as $bridge.
start() {
  local t0 t
  t0=$(ms); ready_ms=
  OPERATOR_BRIDGE_NATS_URL="nats://127.0.0.1:$NATS_PORT" OPERATOR_BRIDGE_ENVIRONMENTS_FILE="$work/envs.json" \
  OPERATOR_BRIDGE_HTTP_ADDR=$OPS "$1" serve 2>"$2" & bridge=$!; pids+=("$bridge")
  for _ in $(seq 1 3000); do
    if curl -fsS -o /dev/null "http://$OPS/readyz" 2>/dev/null; then t=$(ms); ready_ms=$((t - t0)); break; fi
    kill -0 "$bridge" 2>/dev/null || break
    sleep 0.01
  done
  rss_mib=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$bridge/status" 2>/dev/null || echo '?')
  if [ -z "$ready_ms" ]; then echo "startup: not ready; the bridge's log ends with:" >&2; tail -n 5 "$2" >&2; exit 1; fi
}
stop() { kill "$bridge"; wait "$bridge" || true; }

times=()
for run in $(seq 1 "$RUNS"); do
  start ./bin/operator-bridge "$work/bridge-$run.log"
  stop
  times+=("$ready_ms")
  echo "  run $run: ready after $ready_ms ms, peak RSS $rss_mib MiB" >&2
done
median=$(printf '%s\n' "${times[@]:1}" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2)}')
echo "startup: $ENVS environments: ready after $median ms (median of runs 2-$RUNS; target < 2000 ms)"
[ -n "${PROFILE_DIR:-}" ] || exit 0

rm -f "$PROFILE_DIR/startup.done"
export STARTUP_PROFILE_DIR=$PROFILE_DIR
start "$work/operator-bridge-prof" "$work/bridge-prof.log"
unset STARTUP_PROFILE_DIR
kill -USR1 "$bridge"
for _ in $(seq 1 500); do [ -e "$PROFILE_DIR/startup.done" ] && break; sleep 0.02; done
stop
echo "  profiled run: ready after $ready_ms ms" >&2
for p in cpu allocs; do
  echo "=== startup-$p (top ${TOP:-25} by cumulative share)"
  index=; [ "$p" = allocs ] && index=-sample_index=alloc_space
  go tool pprof -top -cum $index -nodecount=300 "$PROFILE_DIR/startup-$p.pprof" 2>/dev/null | sed '1,/flat%/d' |
    grep -v ' runtime\.' | head -n "${TOP:-25}" || true
done
echo "profiles in $PROFILE_DIR (go tool pprof -http 127.0.0.1:0 $PROFILE_DIR/startup-cpu.pprof)"
