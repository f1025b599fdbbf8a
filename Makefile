# Two commands on a fresh Debian 12 machine: `make run` and `make test`.
GO      ?= go
BIN     := bin
DAEMON  := ./cmd/aibo-privacyd ./cmd/aiboctl
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: setup build run demo test bench lint fuzz clean

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
	scripts/check-ignored.sh

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

clean:
	rm -rf $(BIN) var
