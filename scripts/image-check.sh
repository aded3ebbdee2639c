#!/usr/bin/env bash
# image-check: builds the image of the Dockerfile without any registry and
# checks it. The Dockerfile's final stage (FROM scratch: nothing to pull) is
# built with podman from the static binary built here and the system's CA
# file, instead of its golang build stage. Then:
#   - the image's configuration: a non-root user, the ops address 0.0.0.0:8090
#     and its port, the entry point, and nothing in it but the binary and the
#     CA file (no shell);
#   - where this machine can run containers: `version`, and `serve` with a
#     read-only root file system, no capabilities, /healthz and /readyz
#     answering, a graceful stop on SIGTERM, and the start-up error in a
#     Kubernetes pod without OPERATOR_BRIDGE_NATS_URL.
# podman (and runc) are installed with apt-get when missing; without them the
# check says so and stops.
#
#   scripts/image-check.sh        # from make test
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "image-check: $*"; }
fail() { echo "image-check: FAIL: $*" >&2; exit 1; }

install() {
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		return 1
	fi
	say "installing $* with apt-get"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 ||
		{ apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1; }
}
command -v podman >/dev/null || install podman || true
command -v runc >/dev/null || install runc || true
if ! command -v podman >/dev/null; then
	say "SKIPPED: podman is not installed and cannot be installed here (needs root and apt-get); the image was not built"
	exit 0
fi

work=$(mktemp -d)
# A store of its own, so the check leaves the machine's images alone.
podman=(podman --root "$work/storage" --runroot "$work/run" --storage-driver vfs --cgroup-manager cgroupfs)
command -v runc >/dev/null && podman+=(--runtime runc)
image=localhost/operator-bridge:image-check
name=operator-bridge-image-check-$$
cleanup() {
	"${podman[@]}" rm -f "$name" >/dev/null 2>&1 || true
	"${podman[@]}" rmi -f "$image" >/dev/null 2>&1 || true
	chmod -R u+w "$work" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# The build context: the static binary, the CA file, and the Dockerfile's
# final stage with its COPY --from=build taken from the context.
ctx=$work/context
mkdir -p "$ctx"
version=image-check-$(git rev-parse --short HEAD 2>/dev/null || echo dev)
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$ctx/operator-bridge" ./cmd/operator-bridge
ca=/etc/ssl/certs/ca-certificates.crt
if [ -f "$ca" ]; then cp "$ca" "$ctx/ca-certificates.crt"; else : >"$ctx/ca-certificates.crt"; fi
awk '/^FROM /{stage=""} {stage=stage $0 "\n"} END{printf "%s", stage}' Dockerfile |
	sed -E 's#^COPY --from=build +[^ ]*/([^ /]+) +#COPY \1 #' >"$ctx/Containerfile"
grep -q '^FROM scratch' "$ctx/Containerfile" || fail "the Dockerfile's final stage is not FROM scratch"
if grep -q -- '--from=' "$ctx/Containerfile"; then fail "the final stage copies something this check cannot provide: $(grep -- '--from=' "$ctx/Containerfile")"; fi

"${podman[@]}" build --pull=never --quiet -t "$image" -f "$ctx/Containerfile" "$ctx" >/dev/null ||
	fail "podman build of the Dockerfile's final stage"
say "built $image from the Dockerfile's final stage (FROM scratch, no registry)"

# The image's configuration.
inspect() { "${podman[@]}" image inspect --format "$1" "$image"; }
user=$(inspect '{{.Config.User}}')
case "$user" in "" | 0 | 0:* | root | root:*) fail "the image runs as root (User=\"$user\")" ;; esac
# Each output is taken whole before it is searched: with pipefail, grep -q
# quitting at its match could end the pipe with the writer's SIGPIPE.
env=$(inspect '{{range .Config.Env}}{{println .}}{{end}}')
grep -qx 'OPERATOR_BRIDGE_HTTP_ADDR=0.0.0.0:8090' <<<"$env" ||
	fail "OPERATOR_BRIDGE_HTTP_ADDR=0.0.0.0:8090 is not in the image's environment: $(tr '\n' ' ' <<<"$env")"
ports=$(inspect '{{json .Config.ExposedPorts}}')
grep -q '"8090/tcp"' <<<"$ports" || fail "port 8090 is not exposed: $ports"
[ "$(inspect '{{json .Config.Entrypoint}}')" = '["/operator-bridge"]' ] || fail "entry point $(inspect '{{json .Config.Entrypoint}}')"
"${podman[@]}" create --name "$name" "$image" >/dev/null
files=$("${podman[@]}" export "$name" | tar -t | grep -v '/$' | sort | tr '\n' ' ')
"${podman[@]}" rm "$name" >/dev/null
[ "$files" = "etc/ssl/certs/ca-certificates.crt operator-bridge " ] || fail "the image holds more than the binary and the CA file: $files"
say "configuration: user $user, OPERATOR_BRIDGE_HTTP_ADDR=0.0.0.0:8090, port 8090, entry point /operator-bridge, files: $files(no shell)"

# Running it. The host's network, so nothing but 127.0.0.1 is listened on.
run=("${podman[@]}" run --network host --read-only --cap-drop ALL --security-opt no-new-privileges
	--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
set +e
out=$("${run[@]}" --rm "$image" version 2>&1)
code=$?
set -e
if [ $code -ge 125 ]; then
	say "cannot run containers on this machine (podman exit $code: $out); checked the image's configuration only"
	exit 0
fi
[ $code = 0 ] && [ "$out" = "operator-bridge $version" ] || fail "version: exit $code: $out"
say "version: $out"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
http=127.0.0.1:$(free_port)
"${run[@]}" -d --name "$name" --tmpfs /tmp \
	-e OPERATOR_BRIDGE_HTTP_ADDR="$http" -e OPERATOR_BRIDGE_EMBEDDED_NATS_LISTEN=127.0.0.1:$(free_port) \
	"$image" serve >/dev/null
healthy=""
for _ in $(seq 1 60); do
	if curl -fsS "http://$http/healthz" >/dev/null 2>&1 && curl -fsS "http://$http/readyz" >/dev/null 2>&1; then
		healthy=1
		break
	fi
	sleep 0.5
done
[ -n "$healthy" ] || fail "serve in the image: /healthz and /readyz did not answer 200 within 30s; its log: $("${podman[@]}" logs "$name" 2>&1 | tail -5)"
ready=$(curl -fsS "http://$http/readyz")
grep -q 'embedded NATS' <<<"$ready" || fail "/readyz does not say NATS is the embedded server: $ready"
"${podman[@]}" stop -t 30 "$name" >/dev/null
code=$("${podman[@]}" wait "$name" 2>/dev/null | tail -1)
[ "$code" = 0 ] || fail "serve in the image exited $code on SIGTERM; its log: $("${podman[@]}" logs "$name" 2>&1 | tail -5)"
"${podman[@]}" rm "$name" >/dev/null
say "serve: /healthz and /readyz answered 200 under a read-only root file system, without capabilities, as $user; SIGTERM: exit 0"

set +e
out=$("${run[@]}" --rm -e KUBERNETES_SERVICE_HOST=10.0.0.1 "$image" serve 2>&1)
code=$?
set -e
[ $code = 2 ] && grep -q 'OPERATOR_BRIDGE_NATS_URL: empty in a Kubernetes pod' <<<"$out" || fail "in a pod without NATS_URL: exit $code: $out"
say "in a Kubernetes pod without OPERATOR_BRIDGE_NATS_URL: exit 2, saying so"
say "passed"
