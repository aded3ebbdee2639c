# Shared by bench/run.sh and bench/soak.sh (sourced, from the repository's
# root): tools, a temporary work folder cleaned on exit, and port waiting.
export PATH="$(go env GOPATH)/bin:$PATH"
command -v nats-server >/dev/null || go install github.com/nats-io/nats-server/v2@v2.15.2
mkdir -p bin
go build -o bin/operator-bridge ./cmd/operator-bridge

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() { # host:port
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "$(basename "$0"): nothing listens on $1" >&2
  return 1
}

# envs_file count operator-port file: bench-000… as Kubernetes environments,
# each with an operator of its own on one `fake-operator --per-path`
# (http://127.0.0.1:PORT/bench-000, …), as clusters have.
envs_file() {
  printf '[%s]\n' "$(for i in $(seq 0 $(($1 - 1))); do
    printf '%s{"id":"bench-%03d","type":"kubernetes","operator_url":"http://127.0.0.1:%s/bench-%03d"}' "$([ "$i" -gt 0 ] && echo ,)" "$i" "$2" "$i"
  done)" >"$3"
}
