# Two commands on a fresh Debian 12 machine: `make run` and `make test`.
GO      ?= go
BIN     := bin
DAEMON  := ./cmd/aibo-privacyd ./cmd/aiboctl
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: setup build run demo test test-zones bench lint fuzz fuzz-long powerloss test-rabbitmq test-cluster fleet-cost cluster-debs soak clean deb test-deb install-test test-readme

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

# The packages that score and select photos again, in zones where it is
# now about 03:00 and about 15:00: a test that reads the wall clock's hour
# fails one of them. Go ignores POSIX TZ strings such as XXX-9 (and
# libfaketime does not reach its clock), so the zone is an IANA Etc/GMT
# zone (Etc/GMT-9 is UTC+9).
ZONE_PKGS := ./capture/... ./cmd/bestshot/ ./cmd/aibo-vision/
test-zones: setup
	@set -e; for h in 3 15; do \
		off=$$(( (h - $$(date -u +%-H) + 36) % 24 - 12 )); \
		if [ $$off -gt 0 ]; then z=Etc/GMT-$$off; elif [ $$off -lt 0 ]; then z=Etc/GMT+$${off#-}; else z=Etc/UTC; fi; \
		echo "== at about $$h:00 local ($$z, $$(TZ=$$z date +%H:%M))"; \
		TZ=$$z $(GO) test -race -count=1 $(ZONE_PKGS); \
	done

bench: setup
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

lint: setup
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@# The tests behind build tags (make test-deb, install-test, test-readme,
	@# soak, ...) are compiled by no other target of make test: vet them too.
	$(GO) vet -tags "$$(git grep -h '^//go:build [a-z0-9_]*$$' -- '*.go' | cut -d' ' -f2 | sort -u | paste -sd,)" ./...
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
# arm64 daemon and worker scoring a photo under qemu-user-static. As root
# (the arm64 daemon gets a mount namespace of its own). Not part of make
# test, which stays fast and needs no arm64 download.
test-deb: deb
	$(GO) test -tags debtest -count=1 -timeout 30m -v ./packaging/

# The packages as an operator installs them: built from the tree, installed
# with apt into a fresh Debian 12 root (debootstrap, cached under
# build/install-test/), the daemon started the way its unit starts it,
# the photo and Patrol story played through the contract, then purged.
# As root. ARCH=arm64 runs under qemu-user (scripts/install-test.sh).
ARCH ?= $(shell dpkg --print-architecture)
install-test: setup
	ARCH=$(ARCH) scripts/install-test.sh

# Every shell block of the README, as written, from a fresh clone of HEAD
# with nothing beside it: make run, make test, make demo and the long
# targets in their short settings (internal/readme). About an hour; as
# root. make test runs the README's other blocks.
test-readme: setup
	$(GO) test -tags readme -count=1 -timeout 150m -v -run '^TestREADMEFromAFreshClone$$' ./internal/readme/

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
	@mkdir -p build
	@dpkg-query -W -f='$${Status}' rabbitmq-server 2>/dev/null | grep -q "install ok installed" || \
		{ sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; $$sudo apt-get update -qq; \
		  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends rabbitmq-server >/dev/null; }
	$(RABBIT) start
	TEST_BROKER_URL=tcp://127.0.0.1:18883 TEST_BROKER_STOP="$(RABBIT) stop_app" TEST_BROKER_START="$(RABBIT) start_app" \
	TEST_BROKER_LOG=$$($(RABBIT) log) $(GO) test -race -count=1 -p 1 -timeout 40m -v $(RABBIT_PKGS) > build/rabbitmq-test.log 2>&1; rc=$$?; \
	$(RABBIT) stop; grep -E '^(--- FAIL|FAIL|ok|panic)' build/rabbitmq-test.log; \
	echo "test-rabbitmq: $$(grep -c '^--- PASS' build/rabbitmq-test.log) tests passed, $$(grep -c '^--- SKIP' build/rabbitmq-test.log) skipped, $$(grep -c '^--- FAIL' build/rabbitmq-test.log) failed (log: build/rabbitmq-test.log)"; \
	[ $$rc -eq 0 ] || { awk '/^=== RUN   [^\/]*$$/ { out = "" } { out = out $$0 "\n" } /^--- FAIL/ { printf "%s", out }' build/rabbitmq-test.log | tail -150; \
		echo "test-rabbitmq: the log's end:"; tail -30 build/rabbitmq-test.log; }; exit $$rc

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
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends $$missing >/dev/null; fi

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
