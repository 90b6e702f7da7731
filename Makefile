# gocfs build, test and benchmark entry points.

SHELL     := /bin/bash
GO        ?= go
TAGS      := containers_image_openpgp
GOFLAGS_B := -tags $(TAGS) -trimpath
export CGO_ENABLED := 0

GOLDEN    ?= ../shared/golden
FUZZTIME  ?= 60s
BENCHTIME ?= 1x
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(shell $(GO) env GOPATH)/bin/staticcheck)

# The boot tests (tests/vm) find the fetched kernels here and keep the QEMU
# console logs there.
export GOCFS_VM_CACHE     ?= $(CURDIR)/.cache/vm
export GOCFS_VM_ARTIFACTS ?= $(CURDIR)/.cache/vm-logs
BOOT_BENCHTIME ?= 3x

.PHONY: all build test test-unit test-golden test-sweep lint bench bench-ostree fuzz demo clean vm-kernels test-vm bench-boot

all: build

build:
	$(GO) build $(GOFLAGS_B) -o bin/ ./cmd/...

# The whole suite: unit, golden, fuzz-seed, privileged and cross-checking
# tests. Tests that cannot run here print SKIP with the reason.
test: vm-kernels build lint test-golden test-unit

# go test -json through testsum: skipped tests show with their reasons.
test-unit:
	$(GO) build -o bin/.testsum ./tests/testsum
	set -o pipefail; $(GO) test -json -tags $(TAGS) -count=1 -timeout 30m ./... | bin/.testsum

# Debian kernels for the boot tests, fetched once into GOCFS_VM_CACHE.
vm-kernels:
	bash tests/vm/fetch-kernels.sh "$(GOCFS_VM_CACHE)"

# The boot tests alone: QEMU boots of the composefs root on each kernel.
test-vm: vm-kernels
	$(GO) build -o bin/.testsum ./tests/testsum
	set -o pipefail; $(GO) test -json -tags $(TAGS) -count=1 -timeout 60m ./tests/vm/ | bin/.testsum

# The C project's own vector checker, run against our drop-in tools.
test-golden: build
	@test -d $(GOLDEN)/composefs-c || { echo "golden vectors missing at $(GOLDEN)" >&2; exit 1; }
	bash $(GOLDEN)/composefs-c/check.sh -k "$(CURDIR)/bin/mkcomposefs" "$(CURDIR)/bin/composefs-info"

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags $(TAGS) ./...
	@if [ -x "$(STATICCHECK)" ]; then $(STATICCHECK) -tags $(TAGS) ./...; \
	  else echo "SKIP staticcheck: not installed (go install honnef.co/go/tools/cmd/staticcheck@latest)"; fi

# Benchmarks print our figures and, when the C tools are on PATH, the ratio
# ours/C measured in the same run. The pull benchmark needs docker-registry
# (it prints SKIP without) and compares with skopeo, umoci or tar, and the C
# mkcomposefs when all are found. mountbench (root) times mounts per tier and
# against C mount.composefs, and compares cfsmount with the kernel mount.
bench: build bench-boot
	$(GO) test -tags $(TAGS) -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./verity/ ./erofs/... ./mount/...
	bash tests/bench/images.sh "$(CURDIR)/bin"
	bash tests/bench/pull.sh "$(CURDIR)/bin"
	$(GO) run -tags $(TAGS) ./tests/bench/mountbench -bin bin -walk-dump $(GOLDEN)/composefs-c/cs9-x86_64-developer.dump.gz
	bash tests/bench/ostree.sh "$(CURDIR)/bin"

# cfsctl ostree commit (reflinks) against ostree commit of the same tree, on
# an XFS loop filesystem (root; prints SKIP without mkfs.xfs or ostree).
bench-ostree: build
	bash tests/bench/ostree.sh "$(CURDIR)/bin"

# Boot time with composefs-prepare-root against a plain initramfs, in QEMU.
bench-boot: vm-kernels
	$(GO) test -tags $(TAGS) -run '^$$' -bench BenchmarkBoot -benchtime $(BOOT_BENCHTIME) -v ./tests/vm/

# More trees of the golden generator than the suite's default (as root).
SEEDS ?= 1-40
test-sweep:
	GOCFS_MKTREE_SEEDS=$(SEEDS) $(GO) test -tags $(TAGS) -count=1 -timeout 120m -run 'TestMktreeSweep|TestDirectorySources' ./tests/ ./mount/cfsfuse/

# Each fuzz target for FUZZTIME (go test accepts one -fuzz target per run).
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) TAGS=$(TAGS) bash tests/fuzz.sh

demo: build
	bash tests/demo.sh "$(CURDIR)/bin"

clean:
	rm -rf bin
