# Two commands on a fresh Debian 12 machine: `make run` and `make test`.
GO      ?= go
BIN     := bin
DAEMON  := ./cmd/aibo-privacyd ./cmd/aiboctl
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: setup build run demo test bench lint fuzz clean deb test-deb

setup:
	@scripts/setup.sh

build: setup
	@mkdir -p $(BIN)
	@$(GO) build -buildvcs=auto -o $(BIN)/ ./cmd/...

# make run CONFIG=my.yaml runs the daemon with another configuration.
CONFIG ?= configs/dev.yaml
run: build
	@scripts/run-dev.sh $(CONFIG)

demo: build
	scripts/demo.sh

test: setup
	$(GO) test -race -count=1 -timeout 12m ./...

bench: setup
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

lint: setup
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	scripts/check-ignored.sh

# Each fuzz target for FUZZTIME (make test runs their seed corpora only).
FUZZTIME ?= 60s
FUZZ_TARGETS := \
	./agent/command:FuzzParse ./agent/command:FuzzVerifier ./agent/command:FuzzHandle \
	./agent/config:FuzzParse ./capture:FuzzValidate ./agent/diag:FuzzHandler \
	./sync/outbox:FuzzAck ./agent/vision:FuzzReadRequest \
	./agent/command:FuzzPeekID ./internal/strictjson:FuzzUnmarshal \
	./internal/tfjs:FuzzLoad ./facerec/descriptor:FuzzDecode

fuzz: setup
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; echo "== $$fn in $$pkg"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# Debian packages for amd64 and arm64 into build/deb/ (packaging/build-deb.sh
# says how; the arm64 worker needs a 170 MiB sysroot of Debian's arm64
# OpenCV, fetched once into build/arm64/).
deb: setup
	packaging/build-deb.sh

# The packages' own checks: lintian, install/upgrade/remove/purge, and the
# arm64 daemon and worker scoring a photo under qemu-user-static. Not part
# of make test, which stays fast and needs no arm64 download.
test-deb: deb
	$(GO) test -tags debtest -count=1 -timeout 30m -v ./packaging/

clean:
	rm -rf $(BIN) var build
