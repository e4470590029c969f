# berth — build, run and test. Every target that runs berth or its tests
# needs root.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
# nri_no_wasm: NRI's WebAssembly plugins (not supported) stay out;
# grpcnotrace: gRPC's golang.org/x/net/trace pages (never served) and the
# html/template they bring stay out of the daemon — 4 MB of its binary.
export GOFLAGS := -buildvcs=false -tags=nri_no_wasm,grpcnotrace

GO ?= go
# berth-pause, a shared PID namespace's init: freestanding C, no libc.
PAUSE_CC := gcc -Os -static -nostdlib -fno-stack-protector -fno-asynchronous-unwind-tables -s -Wall -Werror
VERSION ?= $(shell hack/version.sh)
LDFLAGS := -X github.com/berth-cri/berth/internal/version.Version=$(VERSION)
# Flags for `make run`; e.g. make run RUN_FLAGS="--log-level debug".
RUN_FLAGS ?=
# Where the e2e harness caches crictl, critest and Debian's busybox package.
E2E_CACHE ?= /var/cache/berth-e2e

.PHONY: all build deps run test lint unit e2e e2e-go conformance e2e-go-crun conformance-crun conformance-debian-runc e2e-kubelet install uninstall deb clean fuzz

all: build

# berth and its per-pod monitor, side by side: the daemon looks for
# berth-monitor next to its own executable. The monitor is static and small.
# Both static (nothing of berth's needs libc: DNS and user lookups have Go
# resolvers; libc and ld.so mapped into the daemon cost 1.5 MB of its RSS)
# and without DWARF and the symbol table (-s -w): panics and profiles still
# name every function (that is the pclntab, which stays).
build:
	CGO_ENABLED=0 $(GO) build -ldflags "-s -w $(LDFLAGS)" -o bin/berth ./cmd/berth
	CGO_ENABLED=0 $(GO) build -ldflags "-s -w $(LDFLAGS)" -o bin/berth-monitor ./cmd/berth-monitor
	$(PAUSE_CC) -o bin/berth-pause cmd/berth-pause/pause.c

bin/testbin: $(wildcard test/e2e/testbin/*.go)
	CGO_ENABLED=0 $(GO) build -ldflags "-s -w" -o bin/testbin ./test/e2e/testbin

# The NRI plugin the e2e tests and the NRI benchmark run against berth.
bin/nriplugin: $(wildcard test/e2e/nriplugin/*.go)
	CGO_ENABLED=0 $(GO) build -ldflags "-s -w" -o bin/nriplugin ./test/e2e/nriplugin

deps:
	@hack/install-deps.sh

# Installs what is missing, builds, and serves CRI on /run/berth/berth.sock
# in the foreground (Ctrl-C stops the daemon; containers keep running).
run: deps build
	bin/berth $(RUN_FLAGS)

# Everything CI runs: lint, unit tests with -race, e2e tests through the
# socket, and the critest conformance run against the expectations file.
test: deps lint unit e2e

lint:
	@unformatted=$$(gofmt -l cmd internal test); \
	if [[ -n "$$unformatted" ]]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	@if grep -rnE 'TODO\([a-zA-Z]' --include='*.go' cmd internal test; then \
		echo "TODOs cite an issue: TODO(#N)"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./cmd/... ./internal/...

# Everything end to end runs twice: pods on the runc handler (which runs the
# current runc hack/install-deps.sh builds, its userns_path, since Debian's
# runc 1.1.5 cannot run pods in user namespaces), then on crun; critest runs
# a third time on debian-runc, a handler with Debian's runc alone, as a host
# without a current runc has it.
# Last, a real kubelet drives berth (built once into the e2e cache).
e2e: e2e-go conformance e2e-go-crun conformance-crun conformance-debian-runc e2e-kubelet

e2e-go: build bin/testbin bin/nriplugin
	BERTH_BIN_DIR=$(CURDIR)/bin BERTH_E2E_CACHE=$(E2E_CACHE) $(GO) test -count=1 ./test/e2e/...

e2e-go-crun: build bin/testbin bin/nriplugin
	BERTH_E2E_HANDLER=crun BERTH_BIN_DIR=$(CURDIR)/bin BERTH_E2E_CACHE=$(E2E_CACHE) $(GO) test -count=1 ./test/e2e/

conformance: build bin/testbin
	$(GO) run ./test/e2e/conformance -berth bin/berth -testbin bin/testbin -cache $(E2E_CACHE)

conformance-crun: build bin/testbin
	$(GO) run ./test/e2e/conformance -berth bin/berth -testbin bin/testbin -cache $(E2E_CACHE) -handler crun -report-dir _output/critest-crun

conformance-debian-runc: build bin/testbin
	$(GO) run ./test/e2e/conformance -berth bin/berth -testbin bin/testbin -cache $(E2E_CACHE) -handler debian-runc -runtime-config 'handlers.debian-runc.path = "runc"' -report-dir _output/critest-debian-runc

# A real kubelet (standalone: static pods, no API server) on berth, on runc
# and on crun. The first
# run builds kubelet from the Go module proxy into $(E2E_CACHE)/bin (about 9
# minutes on 2 cores); later runs reuse it.
e2e-kubelet: build bin/testbin
	BERTH_BIN_DIR=$(CURDIR)/bin BERTH_E2E_CACHE=$(E2E_CACHE) $(GO) test -count=1 -timeout 40m -v ./test/kubelet/
	BERTH_E2E_HANDLER=crun BERTH_BIN_DIR=$(CURDIR)/bin BERTH_E2E_CACHE=$(E2E_CACHE) $(GO) test -count=1 -timeout 10m -v ./test/kubelet/

# Install like a packaged runtime: berth and berth-monitor side by side in
# $(PREFIX)/bin, /etc/berth/config.toml (all defaults) unless one exists,
# and the systemd unit berth.service. DESTDIR stages it elsewhere.
PREFIX ?= /usr/local
install: build
	hack/install.sh "$(DESTDIR)" "$(PREFIX)/bin" /etc /etc/systemd/system

uninstall:
	hack/uninstall.sh "$(DESTDIR)" "$(PREFIX)/bin" /etc/systemd/system

# The Debian package (apt install ./_output/deb/berth_*.deb).
deb: build
	hack/build-deb.sh _output/deb

clean:
	rm -rf bin _output

# Benchmarks (not part of `make test`): berth against containerd 1.6 from
# Debian, in one run. Installs containerd if missing.
.PHONY: bench-pull
bench-pull: deps build
	@command -v containerd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containerd
	$(GO) run ./bench/pull -berth bin/berth

# The daemon's idle footprint after a pull against containerd 1.6's, and the
# memory of the per-pod monitor and init for both pod shapes (issues #4, #15).
.PHONY: bench-monitor-mem
bench-monitor-mem: deps build bin/testbin
	@command -v containerd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containerd
	$(GO) run ./bench/monitormem -berth bin/berth -testbin bin/testbin -pods 3

# Pod and container lifecycle through CRI, berth against containerd 1.6.
.PHONY: bench-pods
bench-pods: deps build bin/testbin
	@command -v containerd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containerd
	$(GO) run ./bench/podlifecycle -berth bin/berth -testbin bin/testbin -iterations 20 -parallel 100

# critest's own benchmark suite (critest -benchmark) against berth and
# containerd 1.6, same images, mirror and CNI.
.PHONY: bench-critest
bench-critest: deps build bin/testbin
	@command -v containerd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containerd
	$(GO) run ./bench/critestbench -berth bin/berth -testbin bin/testbin

# A static pod's manifest to Running under a real kubelet, berth against
# containerd 2.4.2 (both built once into the e2e cache).
.PHONY: bench-kubelet
bench-kubelet: deps build bin/testbin
	$(GO) run ./bench/kubeletstart -berth bin/berth -testbin bin/testbin -cache $(E2E_CACHE) -n 5

# Fuzzing (not part of `make test`; `make unit` runs the seed corpora): each
# fuzz target for FUZZTIME, one at a time, since -fuzz takes one target per
# package. New crashers land in the package's testdata/fuzz/<FuzzName>/.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzBuild$$' -fuzztime $(FUZZTIME) ./internal/spec
	$(GO) test -run '^$$' -fuzz '^FuzzValidatePodConfig$$' -fuzztime $(FUZZTIME) ./internal/cri
	$(GO) test -run '^$$' -fuzz '^FuzzContainerLogFile$$' -fuzztime $(FUZZTIME) ./internal/cri
	$(GO) test -run '^$$' -fuzz '^FuzzNormalize$$' -fuzztime $(FUZZTIME) ./internal/image
	$(GO) test -run '^$$' -fuzz '^FuzzParseQuantity$$' -fuzztime $(FUZZTIME) ./internal/network
	$(GO) test -run '^$$' -fuzz '^FuzzCopy$$' -fuzztime $(FUZZTIME) ./internal/crilog
	$(GO) test -run '^$$' -fuzz '^FuzzFrameReader$$' -fuzztime $(FUZZTIME) ./internal/monitor/api

# NRI's cost per CRI call: NRI off, on with no plugin, and with one no-op
# plugin, berth against containerd 2.4.2 (built once into $(E2E_CACHE)).
.PHONY: bench-nri
bench-nri: deps build bin/testbin bin/nriplugin
	$(GO) run ./bench/nri -berth bin/berth -testbin bin/testbin -plugin bin/nriplugin -cache $(E2E_CACHE) -iterations 200

# 500 pods on one node, berth against containerd 1.6, with a latency plot.
.PHONY: bench-density
bench-density: deps build bin/testbin
	@command -v containerd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containerd
	$(GO) run ./bench/density -berth bin/berth -testbin bin/testbin -pods 500 -batch 50 -png _output/density.png

# Status reads (ContainerStatus, ListContainers) idle and while 8 goroutines
# create, start, stop and remove containers, berth against containerd 1.6.
.PHONY: bench-reads
bench-reads: deps build bin/testbin
	@command -v containerd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containerd
	$(GO) run ./bench/readlatency -berth bin/berth -testbin bin/testbin
