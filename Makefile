# operator-bridge: build, test, run, bench, e2e.
GO      ?= go
BIN     ?= bin/operator-bridge
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build test check unit e2e run demo bench soak clean

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/operator-bridge

## test: everything CI runs: format and vet checks, unit and integration tests under -race, then the end-to-end script.
test: check unit e2e

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 15m ./...

e2e: build
	@if [ -x scripts/e2e.sh ]; then scripts/e2e.sh $(BIN); else echo "e2e: scripts/e2e.sh not present yet"; fi

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

## soak: the bridge under the realistic mix at a steady rate for 10 minutes, its memory sampled (MINUTES, RATE to change).
soak:
	bench/soak.sh

clean:
	rm -rf bin
