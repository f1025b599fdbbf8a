# Two commands on a fresh Debian 12 machine: `make run` and `make test`.
GO      ?= go
BIN     := bin
DAEMON  := ./cmd/aibo-privacyd ./cmd/aiboctl
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: setup build run demo test bench lint fuzz fuzz-long powerloss test-rabbitmq test-cluster fleet-cost cluster-debs soak clean deb test-deb

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

# Every Fuzz* target, found with go test -list in each package whose tests
# declare one (make test runs their seed corpora only). make fuzz runs each
# for FUZZTIME (default a minute); make fuzz-long for FUZZTIME (default an
# hour), keeping the corpus it grows under testdata/fuzz/<package>/ and
# going on past a crasher (go writes it to the package's testdata/fuzz/);
# it ends with a summary and fails if any target found one. FUZZFLAGS adds
# flags (e.g. -parallel 1 on a shared machine).
FUZZTIME ?= 60s
FUZZFLAGS ?=
LONG_FUZZTIME := $(if $(filter command line environment,$(origin FUZZTIME)),$(FUZZTIME),1h)
FUZZ_LIST = for pkg in $$(grep -l '^func Fuzz' $$(git ls-files '*_test.go') | xargs -n1 dirname | sort -u); do \
		for fn in $$($(GO) test -list '^Fuzz' ./$$pkg | grep '^Fuzz'); do echo "$$pkg:$$fn"; done; done

fuzz: setup
	@set -e; for t in $$($(FUZZ_LIST)); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "== $$fn in ./$$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./$$pkg; \
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

fuzz-long: setup
	@fail=0; n=0; start=$$(date +%s); for t in $$($(FUZZ_LIST)); do pkg=$${t%%:*}; fn=$${t##*:}; n=$$((n+1)); \
		echo "== $$fn in ./$$pkg for $(LONG_FUZZTIME)"; \
		if ! $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(LONG_FUZZTIME) $(FUZZFLAGS) ./$$pkg \
			-args -test.fuzzcachedir=$(CURDIR)/testdata/fuzz/$$pkg; then \
			echo "!! $$fn in ./$$pkg: crasher (see ./$$pkg/testdata/fuzz/$$fn)"; fail=$$((fail+1)); fi; \
	done; \
	echo "fuzz-long: $$n targets, $(LONG_FUZZTIME) each, $$(( ($$(date +%s)-start)/60 )) minutes in all, $$fail with a crasher"; \
	test $$fail -eq 0

# Proofs under faults, not part of make test (README, "Proven under faults").
# Power loss: data_dir on LazyFS (test/powerloss, a FUSE layer that loses
# what was not fsynced), a cut before every write, sync and name operation
# of a scenario. Needs root and /dev/fuse. POWERLOSS_POINTS=all or a count.
POWERLOSS_POINTS ?= all
powerloss: setup
	cd test/powerloss && POWERLOSS_POINTS=$(POWERLOSS_POINTS) $(GO) test -count=1 -timeout 90m -v .

# A second broker: the MQTT scenarios (link, outbox, events, firmware and the
# daemon's end-to-end suite) against a private RabbitMQ node with the MQTT
# plugin (scripts/rabbitmq.sh), outages played with stop_app/start_app.
RABBIT := $(CURDIR)/scripts/rabbitmq.sh
RABBIT_PKGS := ./sync/link/ ./sync/outbox/ ./sync/events/ ./firmware/ ./cmd/aibo-privacyd/
test-rabbitmq: setup
	@dpkg-query -W -f='$${Status}' rabbitmq-server 2>/dev/null | grep -q "install ok installed" || \
		{ sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; $$sudo apt-get update -qq; \
		  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null; }
	$(RABBIT) start
	TEST_BROKER_URL=tcp://127.0.0.1:18883 TEST_BROKER_STOP="$(RABBIT) stop_app" TEST_BROKER_START="$(RABBIT) start_app" \
	TEST_BROKER_LOG=$$($(RABBIT) log) $(GO) test -race -count=1 -p 1 -timeout 40m $(RABBIT_PKGS); rc=$$?; $(RABBIT) stop; exit $$rc

# A fleet on a clustered broker (README, "A fleet on a clustered broker"):
# three RabbitMQ nodes with the MQTT plugin behind HAProxy, and a network
# namespace, all private to scripts/cluster.sh (ports 18900-18940, never
# the system's services nor make test-rabbitmq's node); scripts/fleet runs
# FLEET_ROBOTS robots with the daemon's uplink against it. test-cluster
# kills a node during uploads, cuts one robot off for a simulated day and
# restarts the whole cluster, and fails if an artifact is lost or corrupt,
# a command or erase request does not arrive, or a robot does not come
# back. fleet-cost measures a robot-day's cost at the broker with the
# former settings and the shipped ones. Both need root (the namespace).
FLEET_ROBOTS ?= 200
FLEET_FLAGS ?=
CLUSTER := $(CURDIR)/scripts/cluster.sh
CLUSTER_DEBS := rabbitmq-server haproxy iproute2
cluster-debs:
	@missing=""; for p in $(CLUSTER_DEBS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; $$sudo apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

test-cluster: setup cluster-debs
	$(GO) build -o $(BIN)/fleet ./scripts/fleet
	$(CLUSTER) start
	$(BIN)/fleet -cluster $(CLUSTER) -robots $(FLEET_ROBOTS) $(FLEET_FLAGS); rc=$$?; $(CLUSTER) stop; exit $$rc

fleet-cost: setup cluster-debs
	$(GO) build -o $(BIN)/fleet ./scripts/fleet
	$(CLUSTER) start
	$(BIN)/fleet -cluster $(CLUSTER) -robots $(FLEET_ROBOTS) -scenarios cost -compare $(FLEET_FLAGS); rc=$$?; $(CLUSTER) stop; exit $$rc

# Soak: a simulated week through the daemon's test-only clock, a day every
# SOAK_DAY_SECONDS (default 60); memory, goroutines, open files and store
# size per day, which must stay flat. The daemon is built without -race.
SOAK_DAY_SECONDS ?= 60
soak: setup
	E2E_NO_RACE=1 SOAK_DAY_SECONDS=$(SOAK_DAY_SECONDS) $(GO) test -tags soak -count=1 -timeout 60m -v -run '^TestSoak$$' ./cmd/aibo-privacyd/

clean:
	rm -rf $(BIN) var build
