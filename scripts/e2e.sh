#!/usr/bin/env bash
# scripts/e2e.sh BIN: the end-to-end test (make e2e, part of make test and CI).
#
# Starts, as separate processes on free loopback ports, a nats-server from
# deploy/nats/nats-server.conf (its users and permissions), a fake Kubernetes
# and a fake physical-machine operator, and the bridge (BIN serve, logged in
# as `bridge`) with three environments:
#
#   e2e-000  kubernetes  active
#   e2e-001  physical    active
#   e2e-off  kubernetes  inactive
#
# then drives them the way a person would: the bridge's own client commands
# (deploy, status, envs, watch, bench) and the nats CLI, as the `master`
# and `viewer` users. Stops at the first failed check with a message
# and the tail of every log; prints `e2e: N passed, 0 failed` at the end.
#
# Needs go (to install what is missing), python3 (JSON checks) and, on PATH
# or installed here through the Go module proxy:
#   go install github.com/nats-io/nats-server/v2@v2.15.2
#   go install github.com/nats-io/natscli/nats@v0.5.0
# E2E_KEEP=1 keeps the temporary directory (logs, data) for a look afterwards.
set -euo pipefail

usage() { echo "usage: scripts/e2e.sh path/to/operator-bridge" >&2; exit 2; }
[ $# -eq 1 ] || usage
[ -x "$1" ] && [ -f "$1" ] || { echo "e2e: $1 is not an executable (run make build first)" >&2; exit 2; }
BIN="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
START=$SECONDS

NATS_SERVER_MODULE=github.com/nats-io/nats-server/v2@v2.15.2
NATS_CLI_MODULE=github.com/nats-io/natscli/nats@v0.5.0

passed=0
work=""
pids=()

log() { echo "e2e: $*"; }
ok() { passed=$((passed + 1)); printf "e2e: ok   [%3ds] %s\n" "$((SECONDS - START))" "$*"; }
fail() { # message [output to show]
  echo "e2e: FAIL $1" >&2
  if [ $# -gt 1 ] && [ -n "$2" ]; then printf '%s\n' "$2" | tail -n 40 | sed 's/^/      | /' >&2; fi
  exit 1
}

alive() { # pid: running (not exited, not a zombie)
  [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

stop_pid() { # pid: SIGTERM, up to 10 s, then SIGKILL; reaps it and returns its exit status
  local p=$1
  [ -n "$p" ] || return 0
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 100); do alive "$p" || break; sleep 0.1; done
  alive "$p" && kill -KILL "$p" 2>/dev/null
  local rc=0
  wait "$p" 2>/dev/null || rc=$?
  return $rc
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # Newest first: the bridge before the operators and NATS.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]}" || true; done
  if [ "$rc" -ne 0 ] && [ -n "$work" ]; then
    for f in "$work"/*.log; do
      [ -f "$f" ] || continue
      echo "----- $(basename "$f") (last 25 lines)" >&2
      tail -n 25 "$f" >&2
    done
    echo "e2e: failed after $((SECONDS - START)) s, $passed checks passed before" >&2
  fi
  if [ -n "$work" ]; then
    if [ -n "${E2E_KEEP:-}" ]; then echo "e2e: kept $work" >&2; else rm -rf "$work"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start() { # name command...: runs it in the background, output to $work/name.log
  local name=$1; shift
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
}

wait_port() { # host:port pid
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
    alive "$2" || return 1
    sleep 0.05
  done
  return 1
}

retry() { # seconds command...: runs the command until it succeeds or the time is up
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# jq-like checks with python3. check_json 'expr' reads JSON on stdin, binds it
# to d and exits 0 when expr is true.
check_json() {
  python3 -c '
import json, sys
try:
    d = json.loads(sys.stdin.read())
    sys.exit(0 if eval("(" + sys.argv[1] + ")") else 1)
except Exception as e:
    print(f"e2e: check {sys.argv[1].strip()!r}: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)' "$1"
}
# The CloudEvent in a `nats stream get --json` answer, and its headers.
msg_body() { python3 -c 'import base64, json, sys; print(base64.b64decode(json.load(sys.stdin)["data"]).decode())'; }
msg_headers() { python3 -c 'import base64, json, sys; print(base64.b64decode(json.load(sys.stdin).get("hdrs") or b"").decode())'; }

http_status() { # url -> HTTP status code, 0 when nothing answers
  python3 - "$1" <<'PY'
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print(0)
PY
}

# ---------------------------------------------------------------- tools
command -v python3 >/dev/null || { echo "e2e: python3 is needed for the JSON checks" >&2; exit 2; }
if command -v go >/dev/null; then
  gobin=$(go env GOBIN)
  [ -n "$gobin" ] || gobin="$(go env GOPATH | cut -d: -f1)/bin"
  export PATH="$gobin:$PATH"
fi
need() { # command module@version
  command -v "$1" >/dev/null && return 0
  command -v go >/dev/null || { echo "e2e: $1 is not on PATH and go is not there to install it" >&2; exit 2; }
  log "$1 not on PATH: go install $2 (into $gobin)"
  go install "$2" || { echo "e2e: go install $2 failed" >&2; exit 2; }
  command -v "$1" >/dev/null || { echo "e2e: $1 still not on PATH after go install (PATH=$PATH)" >&2; exit 2; }
}
need nats-server "$NATS_SERVER_MODULE"
need nats "$NATS_CLI_MODULE"
log "using $(command -v nats-server) ($(nats-server --version 2>&1)), $(command -v nats) ($(nats --version 2>&1)), $BIN ($("$BIN" version 2>&1 | head -n 1))"

START=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/operator-bridge-e2e.XXXXXX")

# Five free loopback ports: NATS clients, NATS monitoring, the two operators, the bridge's HTTP.
read -r NATS_PORT MON_PORT K8S_PORT PM_PORT HTTP_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
NATS=nats://127.0.0.1:$NATS_PORT
HTTP=http://127.0.0.1:$HTTP_PORT

# ---------------------------------------------------------------- start
# nats-server with the project's config and users; store_dir ./data is
# relative to its working directory, so it runs in the temp dir.
mkdir -p "$work/nats"
cp "$ROOT/deploy/nats/nats-server.conf" "$ROOT/deploy/nats/users.conf" "$work/nats/"
start nats-server sh -c 'cd "$1" && exec nats-server -c nats-server.conf -p "$2" -m "$3"' sh "$work/nats" "$NATS_PORT" "$MON_PORT"
wait_port "127.0.0.1:$NATS_PORT" "${pids[-1]}" || fail "nats-server did not start on port $NATS_PORT"

start k8s-operator "$BIN" fake-operator --kind kubernetes --listen "127.0.0.1:$K8S_PORT" --log-format json
start pm-operator "$BIN" fake-operator --kind physical --listen "127.0.0.1:$PM_PORT" --log-format json
wait_port "127.0.0.1:$K8S_PORT" "${pids[-2]}" || fail "the kubernetes fake operator did not start on port $K8S_PORT"
wait_port "127.0.0.1:$PM_PORT" "${pids[-1]}" || fail "the physical fake operator did not start on port $PM_PORT"

cat >"$work/environments.yaml" <<EOF
environments:
  - id: e2e-000
    name: e2e-kubernetes
    type: kubernetes
    operator_url: http://127.0.0.1:$K8S_PORT
  - id: e2e-001
    name: e2e-physical
    type: pm
    operator_url: http://127.0.0.1:$PM_PORT
  - id: e2e-off
    name: e2e-inactive
    type: kubernetes
    operator_url: http://127.0.0.1:$K8S_PORT
    active: false
EOF

start_bridge() { # log name
  start "$1" env \
    OPERATOR_BRIDGE_NATS_URL="$NATS" \
    OPERATOR_BRIDGE_NATS_USER=bridge OPERATOR_BRIDGE_NATS_PASSWORD=bridge-dev-password \
    OPERATOR_BRIDGE_ENVIRONMENTS_FILE="$work/environments.yaml" \
    OPERATOR_BRIDGE_HTTP_ADDR="127.0.0.1:$HTTP_PORT" \
    OPERATOR_BRIDGE_HEALTH_INTERVAL=2s \
    OPERATOR_BRIDGE_INSTANCE=e2e \
    OPERATOR_BRIDGE_LOG_FORMAT=json \
    "$BIN" serve
  BRIDGE_PID=${pids[-1]}
  BRIDGE_IDX=$((${#pids[@]} - 1))
}
start_bridge bridge
ready() { alive "$BRIDGE_PID" || fail "the bridge exited"; [ "$(http_status "$HTTP/readyz")" = 200 ]; }
retry 30 ready || fail "the bridge's /readyz did not answer 200 within 30 s (now $(http_status "$HTTP/readyz"))"
ok "nats-server, two fake operators and the bridge started; /readyz 200 after $((SECONDS - START)) s"
[ "$(http_status "$HTTP/healthz")" = 200 ] || fail "/healthz is not 200"
ok "/healthz 200"

# The client commands and the nats CLI as master-service (what a reader of
# the README would export); viewer gives --user/--password.
export OPERATOR_BRIDGE_NATS_URL="$NATS" OPERATOR_BRIDGE_NATS_USER=master OPERATOR_BRIDGE_NATS_PASSWORD=master-dev-password
export NATS_URL="$NATS" NATS_USER=master NATS_PASSWORD=master-dev-password
VIEWER=(--user viewer --password viewer-dev-password)

results=0      # deploy results the DEPLOY stream should hold
request_ids=() # the request ids among them

apply_count() { grep -c '"path":"/api/apply"' "$work/k8s-operator.log" || true; }
deploy_count() { grep -c '"path":"/api/deploy"' "$work/pm-operator.log" || true; }

# ---------------------------------------------------------------- deploy, status, envs
out=$("$BIN" deploy --env e2e-000 --app shop --version v1.0.0 --json 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] || fail "deploy to e2e-000 exited $rc, want 0" "$out"
echo "$out" | check_json 'd["outcome"] == "succeeded" and d["success"] and d["operator"] == "kubernetes" and d["version"] == "v1.0.0" and "error" not in d' ||
  fail "deploy to e2e-000: want outcome succeeded by the kubernetes operator" "$out"
request_ids+=("$(echo "$out" | python3 -c 'import json, sys; print(json.load(sys.stdin)["request_id"])')"); results=$((results + 1))
[ "$(apply_count)" -eq 1 ] || fail "the kubernetes operator got $(apply_count) applies, want 1"
ok "deploy --env e2e-000 --app shop --version v1.0.0: exit 0, succeeded (kubernetes), one /api/apply"

out=$("$BIN" deploy --env e2e-001 --app shop --version v1.0.0 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] || fail "deploy to e2e-001 exited $rc, want 0" "$out"
grep -q '^outcome .*succeeded' <<<"$out" || fail "deploy to e2e-001: no 'outcome succeeded' line" "$out"
grep -q '^operator .*physical' <<<"$out" || fail "deploy to e2e-001: no 'operator physical' line" "$out"
request_ids+=("$(echo "$out" | awk '$1 == "request" {print $2}')"); results=$((results + 1))
[ "$(deploy_count)" -eq 1 ] || fail "the physical operator got $(deploy_count) deploys, want 1"
ok "deploy --env e2e-001 --app shop --version v1.0.0 (text): exit 0, succeeded (physical), one /api/deploy"

out=$("$BIN" deploy --env e2e-000 --app shop --version v1.1.0 --deployments v1.1.0=20%,v1.0.0=80% --json 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] || fail "canary deploy to e2e-000 exited $rc, want 0" "$out"
echo "$out" | check_json 'd["outcome"] == "succeeded"' || fail "canary deploy: want succeeded" "$out"
request_ids+=("$(echo "$out" | python3 -c 'import json, sys; print(json.load(sys.stdin)["request_id"])')"); results=$((results + 1))
ok "deploy --version v1.1.0 --deployments v1.1.0=20%,v1.0.0=80%: exit 0, succeeded"

applies=$(apply_count)
out=$("$BIN" deploy --env e2e-off --app shop --version v1.0.0 --json 2>&1) && rc=0 || rc=$?
[ $rc -eq 1 ] || fail "deploy to the inactive e2e-off exited $rc, want 1" "$out"
echo "$out" | check_json 'd["outcome"] == "rejected" and not d["success"] and d["error"]["code"] == "environment_inactive" and d["error"]["retryable"] is False' ||
  fail "deploy to e2e-off: want outcome rejected, error.code environment_inactive, not retryable" "$out"
request_ids+=("$(echo "$out" | python3 -c 'import json, sys; print(json.load(sys.stdin)["request_id"])')"); results=$((results + 1))
[ "$(apply_count)" -eq "$applies" ] || fail "a deploy to the inactive environment reached the operator"
ok "deploy --env e2e-off (inactive): exit 1, rejected environment_inactive, no operator call"

out=$("$BIN" status --env e2e-000 --app shop --json 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] || fail "status of shop in e2e-000 exited $rc, want 0" "$out"
echo "$out" | check_json '
not d["degraded"] and d["operator"] == "kubernetes" and
{v["version"]: v["percent"] for v in d["status"]["versions"]} == {"v1.1.0": 0.2, "v1.0.0": 0.8} and
all(v["nodes"] for v in d["status"]["versions"])' ||
  fail "status of shop in e2e-000: want v1.1.0 at 20% and v1.0.0 at 80%, with nodes, not degraded" "$out"
ok "status --env e2e-000 --app shop --json: v1.1.0 20%, v1.0.0 80%"

out=$("$BIN" status --env e2e-001 --app shop --json 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] || fail "status of shop in e2e-001 exited $rc, want 0" "$out"
echo "$out" | check_json 'not d["degraded"] and d["operator"] == "physical" and [v["version"] for v in d["status"]["versions"]] == ["v1.0.0"] and d["status"]["versions"][0]["percent"] == 1' ||
  fail "status of shop in e2e-001: want v1.0.0 at 100%" "$out"
ok "status --env e2e-001 --app shop --json: v1.0.0 100%"

out=$("$BIN" status --env e2e-off --app shop --json 2>&1) && rc=0 || rc=$?
[ $rc -eq 1 ] || fail "status in the inactive e2e-off exited $rc, want 1" "$out"
echo "$out" | check_json 'd["degraded"] and d["error"]["code"] == "environment_inactive"' ||
  fail "status in e2e-off: want degraded with environment_inactive" "$out"
ok "status --env e2e-off: exit 1, degraded environment_inactive"

# Health: new events arrive every interval (2 s) for both active environments.
out=$("$BIN" watch --from new --subjects 'operator.health.>' --count 4 --for 10s --json 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] || fail "watch of health events exited $rc" "$out"
envs=$(echo "$out" | python3 -c '
import json, sys
print(" ".join(sorted({json.loads(l)["event"]["data"]["environment"] for l in sys.stdin if l.strip()})))')
[ "$envs" = "e2e-000 e2e-001" ] && [ "$(echo "$out" | grep -c .)" -eq 4 ] ||
  fail "watch --from new --subjects 'operator.health.>' --count 4: want 4 new health events of e2e-000 and e2e-001 (not e2e-off) within 10 s, got '$envs'" "$out"
ok "watch --from new --subjects 'operator.health.>' --count 4: periodic health of e2e-000 and e2e-001"

out=$("$BIN" envs --json 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] || fail "envs exited $rc" "$out"
echo "$out" | check_json '
{e["id"]: (e["type"], e["active"], (e["health"] or {}).get("healthy")) for e in d} ==
{"e2e-000": ("kubernetes", True, True), "e2e-001": ("physical", True, True), "e2e-off": ("kubernetes", False, None)}' ||
  fail "envs --json: want e2e-000 kubernetes and e2e-001 physical active and healthy, e2e-off inactive without health" "$out"
ok "envs --json: e2e-000 (kubernetes) and e2e-001 (physical) healthy, e2e-off inactive"

# ---------------------------------------------------------------- the nats CLI
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
deploy_event() { # id app version time
  printf '{"specversion":"1.0","type":"io.boreas.deploy.request.v1","source":"/e2e/nats-cli","id":"%s","time":"%s","datacontenttype":"application/json","data":{"app":"%s","version":"%s"}}' "$1" "$4" "$2" "$3"
}
# last_result ENV ID [NOT_RESULT_ID]: the last result on deploy.result.ENV,
# when it answers request ID (and is not the result NOT_RESULT_ID); in $result
# (the event) and $result_headers.
last_result() {
  local m
  m=$(nats stream get DEPLOY --last-for "deploy.result.$1" --json 2>/dev/null) || return 1
  result=$(echo "$m" | msg_body) || return 1
  result_headers=$(echo "$m" | msg_headers)
  echo "$result" | check_json "d.get('requestid') == '$2' and d['id'] != '${3:-}'"
}

EV_ID=e2e-cli-$$-1
EVENT=$(deploy_event "$EV_ID" web v2.0.0 "$(now)")
out=$(nats pub -J deploy.request.e2e-000 "$EVENT" -H "Nats-Msg-Id:$EV_ID" 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] || fail "nats pub of a deploy request as master exited $rc" "$out"
grep -q 'Stored in Stream: DEPLOY' <<<"$out" || fail "nats pub -J: the request was not stored in DEPLOY" "$out"
retry 15 last_result e2e-000 "$EV_ID" || fail "no result for request $EV_ID on deploy.result.e2e-000 within 15 s" "${result:-}"
echo "$result" | check_json "
d['type'] == 'io.boreas.deploy.result.v1' and d['source'] == '/operator-bridge/e2e' and d['environment'] == 'e2e-000' and
d['id'] != '$EV_ID' and d['data']['request_id'] == '$EV_ID' and d['data']['outcome'] == 'succeeded' and d['data']['version'] == 'v2.0.0'" ||
  fail "result of $EV_ID: want a succeeded io.boreas.deploy.result.v1 from /operator-bridge/e2e with its own id" "$result"
first_result_id=$(echo "$result" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
grep -qi "^Nats-Msg-Id: *$first_result_id" <<<"$result_headers" || fail "the result's Nats-Msg-Id is not its id $first_result_id" "$result_headers"
grep -qi '^Content-Type: *application/cloudevents+json' <<<"$result_headers" || fail "the result's Content-Type is not application/cloudevents+json" "$result_headers"
request_ids+=("$EV_ID"); results=$((results + 1))
ok "nats pub -J deploy.request.e2e-000 (structured CloudEvent, Nats-Msg-Id) -> nats stream get DEPLOY --last-for deploy.result.e2e-000: succeeded"

# The same message again within the duplicate window: JetStream stores it once.
before=$(nats stream info DEPLOY --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["state"]["messages"])')
out=$(nats pub -J deploy.request.e2e-000 "$EVENT" -H "Nats-Msg-Id:$EV_ID" 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] && grep -q 'Duplicate: true' <<<"$out" || fail "re-sending $EV_ID with the same Nats-Msg-Id: want a duplicate PubAck" "$out"
sleep 0.5
after=$(nats stream info DEPLOY --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["state"]["messages"])')
[ "$after" -eq "$before" ] || fail "re-sending with the same Nats-Msg-Id changed DEPLOY from $before to $after messages"
ok "the same request with the same Nats-Msg-Id: Duplicate: true, nothing stored, no new result"

out=$(nats req operator-bridge.environments '' --raw 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] || fail "nats req operator-bridge.environments exited $rc" "$out"
echo "$out" | check_json 'sorted(e["id"] for e in d) == ["e2e-000", "e2e-001", "e2e-off"] and all(set(e) >= {"id", "name", "type", "endpoint", "active", "health"} for e in d)' ||
  fail "nats req operator-bridge.environments: want e2e-000, e2e-001, e2e-off with id, name, type, endpoint, active, health" "$out"
ok "nats req operator-bridge.environments '': the three environments"

out=$(nats req operator-bridge.status.e2e-000 '{"app":"web"}' --raw 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] || fail "nats req operator-bridge.status.e2e-000 exited $rc" "$out"
echo "$out" | check_json 'd["type"] == "io.boreas.status.result.v1" and not d["data"]["degraded"] and [v["version"] for v in d["data"]["status"]["versions"]] == ["v2.0.0"]' ||
  fail "nats req operator-bridge.status.e2e-000 '{\"app\":\"web\"}': want a status result with v2.0.0" "$out"
ok "nats req operator-bridge.status.e2e-000 '{\"app\":\"web\"}': v2.0.0"

out=$(nats "${VIEWER[@]}" micro ls --json 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] || fail "nats micro ls as viewer exited $rc" "$out"
echo "$out" | check_json 'any(s["name"] == "operator-bridge" and {e["subject"] for e in s["endpoints"]} >= {"operator-bridge.environments", "operator-bridge.status.*"} for s in d)' ||
  fail "nats micro ls: operator-bridge with its two endpoints is not listed" "$out"
ok "nats micro ls (viewer): operator-bridge with operator-bridge.environments and operator-bridge.status.*"

# Replay: the applied request again as a new message (same id, no
# Nats-Msg-Id): a result of its own saying already applied, no operator call.
applies=$(apply_count)
out=$(nats pub -J deploy.request.e2e-000 "$EVENT" 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] && grep -q 'Stored in Stream: DEPLOY' <<<"$out" && ! grep -q 'Duplicate: true' <<<"$out" ||
  fail "replaying $EV_ID without Nats-Msg-Id: want it stored as a new message" "$out"
retry 15 last_result e2e-000 "$EV_ID" "$first_result_id" || fail "no second result for the replayed $EV_ID within 15 s" "${result:-}"
echo "$result" | check_json "d['data']['outcome'] == 'succeeded' and 'already applied' in d['data']['message'] and d['data']['attempts'] == 0" ||
  fail "the replay's result: want succeeded, 'already applied', 0 attempts" "$result"
[ "$(apply_count)" -eq "$applies" ] || fail "the replay reached the kubernetes operator ($applies -> $(apply_count) applies)"
n=$(timeout 20 nats sub --stream DEPLOY --all -T --raw deploy.result.e2e-000 2>/dev/null | grep -c "\"requestid\":\"$EV_ID\"" || true)
[ "$n" -eq 2 ] || fail "nats sub --stream DEPLOY --all -T --raw deploy.result.e2e-000: want 2 results of $EV_ID (publish, replay), got $n"
results=$((results + 1))
ok "replay of $EV_ID (same id, new message): succeeded 'already applied', no /api/apply, 2 results in all"

# An older request (a replay of history) never moves the app back.
OLD_ID=e2e-cli-$$-old
out=$(nats pub -J deploy.request.e2e-000 "$(deploy_event "$OLD_ID" web v1.9.0 "$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)")" -H "Nats-Msg-Id:$OLD_ID" 2>&1) && rc=0 ||
  fail "nats pub of an older request exited $?" "$out"
retry 15 last_result e2e-000 "$OLD_ID" || fail "no result for the older request $OLD_ID within 15 s" "${result:-}"
echo "$result" | check_json "d['data']['outcome'] == 'superseded' and d['data']['error']['code'] == 'superseded' and '$EV_ID' in d['data']['message']" ||
  fail "an older request after $EV_ID: want superseded, naming $EV_ID" "$result"
[ "$(apply_count)" -eq "$applies" ] || fail "the superseded request reached the kubernetes operator"
out=$("$BIN" status --env e2e-000 --app web --json 2>&1) || fail "status of web in e2e-000 failed" "$out"
echo "$out" | check_json '[v["version"] for v in d["status"]["versions"]] == ["v2.0.0"]' || fail "web in e2e-000 is no longer v2.0.0 alone" "$out"
request_ids+=("$OLD_ID"); results=$((results + 1))
ok "a request older than the applied one: superseded (names $EV_ID), no operator call, web stays v2.0.0"

# viewer may not publish requests: a permissions violation, nothing stored.
before=$(nats stream info DEPLOY --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["state"]["messages"])')
VIEWER_ID=e2e-cli-$$-viewer
out=$(nats "${VIEWER[@]}" pub deploy.request.e2e-000 "$(deploy_event "$VIEWER_ID" web v3.0.0 "$(now)")" -H "Nats-Msg-Id:$VIEWER_ID" 2>&1) && rc=0 || rc=$?
[ $rc -ne 0 ] || fail "nats pub deploy.request.e2e-000 as viewer exited 0, want a failure" "$out"
grep -q 'Permissions Violation for Publish to "deploy.request.e2e-000"' <<<"$out" || fail "nats pub as viewer: no permissions violation reported" "$out"
sleep 1
after=$(nats stream info DEPLOY --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["state"]["messages"])')
[ "$after" -eq "$before" ] || fail "a publish by viewer changed DEPLOY from $before to $after messages"
ok "nats pub as viewer: exit $rc, Permissions Violation, DEPLOY still $after messages"

# Garbage: dead-lettered with Operator-Bridge-Error, no result.
before=$(nats stream info DEPLOY --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["state"]["messages"])')
out=$(nats pub -J deploy.request.e2e-001 'not json' 2>&1) || fail "nats pub of garbage as master failed" "$out"
dead_letter() { dl=$(nats "${VIEWER[@]}" stream get DEADLETTER --last-for deadletter.deploy.request.e2e-001 --json 2>/dev/null); }
retry 15 dead_letter || fail "nothing on deadletter.deploy.request.e2e-001 within 15 s"
[ "$(echo "$dl" | msg_body)" = "not json" ] || fail "the dead letter's body is not the original 'not json'" "$dl"
hdrs=$(echo "$dl" | msg_headers)
grep -qi '^Operator-Bridge-Error: *[^ ]' <<<"$hdrs" || fail "the dead letter has no Operator-Bridge-Error header" "$hdrs"
grep -qi '^Operator-Bridge-Subject: *deploy.request.e2e-001' <<<"$hdrs" || fail "the dead letter's Operator-Bridge-Subject is not deploy.request.e2e-001" "$hdrs"
sleep 0.5
after=$(nats stream info DEPLOY --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["state"]["messages"])')
[ "$after" -eq $((before + 1)) ] || fail "garbage on deploy.request.e2e-001 got a result (DEPLOY $before -> $after messages, want +1: the request alone)"
ok "nats pub deploy.request.e2e-001 'not json': on DEADLETTER with $(echo "$hdrs" | grep -i '^Operator-Bridge-Error' | tr -d '\r'), no result"

# ---------------------------------------------------------------- watch, bench
out=$("$BIN" watch --from all --subjects 'deploy.result.>' --count "$results" --for 15s --json 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] || fail "watch --from all exited $rc" "$out"
echo "$out" | python3 -c '
import json, sys
want, ids = int(sys.argv[1]), set(sys.argv[2:])
lines = [json.loads(l) for l in sys.stdin if l.strip()]
seen = [l["event"]["data"]["request_id"] for l in lines]
sys.exit(0 if len(lines) == want and set(seen) == ids and all(l["stream"] == "DEPLOY" for l in lines) else 1)' "$results" "${request_ids[@]}" ||
  fail "watch --from all --subjects 'deploy.result.>' --count $results: want the $results results of ${request_ids[*]}" "$out"
ok "watch --from all --subjects 'deploy.result.>' --count $results --json: every result so far"

out=$("$BIN" bench --requests 300 --envs 2 --env-prefix e2e- --json 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] || fail "bench --requests 300 --envs 2 --env-prefix e2e- exited $rc, want 0" "$out"
echo "$out" | check_json 'd["ok"] and d["requests"] == d["published"] == d["results"] == 300 and d["missing"] == 0 and d["duplicates"] == 0 and d["publish_errors"] == 0 and set(d["outcomes"]) <= {"succeeded", "superseded"}' ||
  fail "bench: want 300 requests with exactly one result each, none failed or rejected" "$out"
ok "bench --requests 300 --envs 2 --env-prefix e2e-: exit 0, 300 results, $(echo "$out" | python3 -c 'import json, sys; d = json.load(sys.stdin); print(", ".join(f"{v} {k}" for k, v in sorted(d["outcomes"].items())))')"

out=$(nats "${VIEWER[@]}" stream info DEADLETTER --json 2>&1) || fail "nats stream info DEADLETTER failed" "$out"
echo "$out" | check_json 'd["state"]["messages"] == 1' || fail "DEADLETTER should hold the one garbage message" "$out"
ok "DEADLETTER holds exactly the one dead letter"

# ---------------------------------------------------------------- crash
# SIGKILL the bridge in the middle of a load, start it again: every request
# still ends with exactly one stored result (the unacknowledged ones come
# back after the consumers' 30 s ack wait; the dead bridge's order leases
# run out after OPERATOR_TIMEOUT + 5 s).
"$BIN" bench --requests 600 --rate 200 --envs 2 --env-prefix e2e- --wait 90s --json >"$work/crash-bench.json" 2>&1 &
bench_pid=$!
sleep 1.5
kill -KILL "$BRIDGE_PID"
wait "$BRIDGE_PID" 2>/dev/null || true
pids[BRIDGE_IDX]=""
start_bridge bridge-restarted
retry 30 ready || fail "the restarted bridge's /readyz did not answer 200 within 30 s"
wait "$bench_pid" && rc=0 || rc=$?
out=$(cat "$work/crash-bench.json")
[ $rc -eq 0 ] || fail "bench across a SIGKILL of the bridge exited $rc, want 0" "$out"
echo "$out" | check_json 'd["ok"] and d["results"] == 600 and d["missing"] == 0 and d["duplicates"] == 0' ||
  fail "bench across a SIGKILL: want 600 requests with exactly one result each" "$out"
ok "SIGKILL of the bridge during 600 requests at 200/s, then a restart: every request exactly one result"

# ---------------------------------------------------------------- shutdown
pids[BRIDGE_IDX]=""
stop_pid "$BRIDGE_PID" && rc=0 || rc=$?
[ $rc -eq 0 ] || fail "the bridge exited $rc on SIGTERM, want 0"
ok "the bridge stopped on SIGTERM with exit 0"

log "all checks passed in $((SECONDS - START)) s"
echo "e2e: $passed passed, 0 failed"
