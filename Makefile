# Two commands on a fresh Debian 12 machine: `make run` and `make test`.
GO      ?= go
BIN     := bin
DAEMON  := ./cmd/aibo-privacyd ./cmd/aiboctl
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: setup build run demo test bench lint fuzz fuzz-long powerloss test-rabbitmq soak clean

setup:
	@scripts/setup.sh

build: setup
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

run: build
	scripts/run-dev.sh

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

# Each fuzz target for FUZZTIME (make test runs their seed corpora only).
FUZZTIME ?= 60s
FUZZ_TARGETS := \
	./agent/command:FuzzParse ./agent/command:FuzzVerifier ./agent/command:FuzzHandle \
	./agent/config:FuzzParse ./capture:FuzzValidate ./agent/diag:FuzzHandler \
	./sync/outbox:FuzzAck ./agent/vision:FuzzReadRequest

fuzz: setup
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; echo "== $$fn in $$pkg"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# Proofs under faults, not part of make test (README, "Proven under faults").
# Power loss: data_dir on LazyFS (test/powerloss, a FUSE layer that loses
# what was not fsynced), a cut before every write, sync and name operation
# of a scenario. Needs root and /dev/fuse. POWERLOSS_POINTS=all or a count.
POWERLOSS_POINTS ?= all
powerloss: setup
	cd test/powerloss && POWERLOSS_POINTS=$(POWERLOSS_POINTS) $(GO) test -count=1 -timeout 90m -v .

clean:
	rm -rf $(BIN) var
