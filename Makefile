# operator-bridge: build, test, run, bench, e2e.
GO      ?= go
BIN     ?= bin/operator-bridge
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

GOBIN_DIR    := $(shell $(GO) env GOPATH)/bin
HELM_VERSION ?= v4.3.2
HELM         ?= $(GOBIN_DIR)/helm
IMAGE        ?= operator-bridge:$(VERSION)
CONTAINER_TOOL ?= $(shell command -v podman || command -v buildah || command -v docker)

.PHONY: build test check unit e2e chaos-short chaos run demo bench bench-startup soak clean image image-check helm-check

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/operator-bridge

## test: everything CI runs: format and vet checks, the Helm chart and the image, unit and integration tests under -race, the end-to-end script, then the fault suite's short form.
test: check helm-check image-check unit e2e chaos-short

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 15m ./...

e2e: build
	@if [ -x scripts/e2e.sh ]; then scripts/e2e.sh $(BIN); else echo "e2e: scripts/e2e.sh not present yet"; fi

## chaos-short: the fault suite (chaos/, build tag chaos) for a few minutes: a 3-node NATS cluster, bridge processes, faults alone and mixed.
## CHAOS_SEED replays a run; CHAOS_REPORT=path writes its Markdown report.
CHAOS_SHORT_DURATION ?= 1m
chaos-short:
	$(GO) vet -tags chaos ./chaos/
	CHAOS_DURATION=$(CHAOS_SHORT_DURATION) $(GO) test -tags chaos -count=1 -run '^(TestChaos|TestClusterLeaderComesBack)$$' -timeout 20m -v ./chaos/

## chaos: the fault suite for longer (CHAOS_DURATION, default 10m; the run bounds itself to that plus 10 minutes).
CHAOS_DURATION ?= 10m
chaos:
	CHAOS_DURATION=$(CHAOS_DURATION) $(GO) test -tags chaos -count=1 -run '^TestChaos$$' -timeout 0 -v ./chaos/

## image: the container image of the Dockerfile (podman, buildah or docker; IMAGE to name it).
image:
	@test -n "$(CONTAINER_TOOL)" || { echo "image: needs podman, buildah or docker"; exit 1; }
	$(CONTAINER_TOOL) build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

## image-check: the Dockerfile's final stage built from the static binary without a registry, inspected and run.
image-check:
	scripts/image-check.sh

## helm-check: helm (pinned, installed with go install) lints and renders the chart; its test decodes every object strictly.
helm-check:
	@test -x $(HELM) || { echo "installing helm $(HELM_VERSION) into $(GOBIN_DIR)"; $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION); }
	$(HELM) lint --strict deploy/helm/operator-bridge
	@for f in deploy/helm/operator-bridge/ci/*-values.yaml; do $(HELM) lint --strict deploy/helm/operator-bridge --values $$f >/dev/null || exit 1; done
	$(HELM) template bridge deploy/helm/operator-bridge >/dev/null
	HELM=$(HELM) $(GO) test -count=1 ./deploy/helm/

## run: the bridge on its embedded default (embedded NATS; operators from the environment).
run: build
	$(BIN) serve

## demo: embedded NATS + fake operators + the bridge + sample traffic.
demo: build
	$(BIN) demo

## bench: the bridge as shipped against the bare loop, fairly, in steady state, on the realistic mix (ratios and targets,
## written to bench/results), then the Go benchmarks of the hot path. BENCH_QUICK=1 for a short trial; bench/profile.sh for pprof.
bench:
	bench/run.sh
	$(GO) test -run '^$$' -bench . -benchmem $(if $(BENCH_QUICK),-benchtime=200ms) ./events/ ./operator/ ./bridge/

## bench-startup: serve from process start to /readyz with 100,000 environments (bench/startup.sh; ENVS, RUNS, PROFILE_DIR).
bench-startup:
	bench/startup.sh

## soak: the bridge under the realistic mix at a steady rate for 10 minutes, its memory sampled (MINUTES, RATE to change).
soak:
	bench/soak.sh

clean:
	rm -rf bin
