// Command fleet runs N robots in one process against a broker, each with
// the daemon's real uplink (sync/link, sync/outbox, sync/events) on its
// own bbolt store and keyring in a temporary folder, under its own client
// id, and a cloud that assembles, checks and acks what they upload. Only
// the camera and the clock are simulated. Against the cluster of
// scripts/cluster.sh (make test-cluster, make fleet-cost) it plays:
//
//   - kill: a busy day; once a quarter of the photos arrived, the node
//     with the most robot connections is killed -9. Every artifact must
//     arrive whole (or be erased unsent by the day's withdrawal), every
//     robot come back; the time they took is reported.
//   - partition: the robot in the network namespace is cut off for a
//     simulated day (its link's packets dropped), then healed: its outbox
//     must stay within max_queue_bytes and it must catch up; its catch-up
//     rate is read from HAProxy.
//   - restart: the three nodes are stopped and started again; the cloud
//     publishes a QoS 1 command to every robot while they are away; every
//     command must arrive; the robots' return is counted per second
//     against what the backoff's jitter predicts.
//   - cost: what a robot costs the broker per day, idle and busy, per
//     topic kind, reconciled with HAProxy's and the nodes' own counters;
//     broker memory per connected robot and per offline session; scaled
//     to 100,000 and 1,000,000 robots. -compare runs it with the former
//     settings and with this branch's, for the before/after table.
//
// It exits 1 when an artifact is lost or corrupt, a command or an erase
// request does not arrive, or a robot does not come back.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/config"
	"github.com/aibo-privacy/aibo-privacyd/sync/link"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

// before is what a robot ran with before this round: keepalive 30 s,
// chunks of 64 KiB, uploads unpaced.
var before = settings{KeepAlive: 30 * time.Second, ChunkSize: 64 << 10, AckTimeout: 30 * time.Second, MaxQueue: 64 << 20}

// shipped is what a robot runs with now: the link's keepalive and the
// package's configuration (chunk size, ack timeout, queue bound, pace).
func shipped(path string) (settings, error) {
	c, err := config.Load(path)
	if err != nil {
		return settings{}, err
	}
	return settings{KeepAlive: link.DefaultKeepAlive, ChunkSize: c.MQTT.ChunkSize, AckTimeout: c.MQTT.AckTimeout.D(),
		MaxQueue: c.MQTT.MaxQueueBytes, SendRate: c.MQTT.MaxSendRate}, nil
}

func run() error {
	script := flag.String("cluster", "scripts/cluster.sh", "the cluster's control script")
	pkgConfig := flag.String("config", "packaging/config.yaml", "the robots' settings come from this configuration (and the link's keepalive)")
	n := flag.Int("robots", 200, "robots (plus one in the network namespace)")
	clouds := flag.Int("cloud-clients", 4, "the cloud's MQTT clients")
	day := flag.Duration("day", 90*time.Second, "real length of a simulated day")
	scenarios := flag.String("scenarios", "kill,partition,restart", "kill, partition, restart, cost (comma-separated)")
	compare := flag.Bool("compare", false, "cost: run with the former settings first, then with the configuration's")
	idle := flag.Duration("idle", 0, "cost: idle window (default 2.5 keepalives, at least 90 s)")
	keepAlive := flag.Duration("keepalive", 0, "MQTT keepalive (default: the link's)")
	out := flag.String("out", "", "write the report as JSON here")
	tmp := flag.String("dir", os.TempDir(), "where the robots' folders go")
	flag.Parse()
	s, err := shipped(*pkgConfig)
	if err != nil {
		return err
	}
	if *keepAlive != 0 {
		s.KeepAlive = *keepAlive
	}

	cl, err := openCluster(*script)
	if err != nil {
		return err
	}
	// Every node takes MQTT sessions (HAProxy's check) before anything starts.
	for deadline := time.Now().Add(2 * time.Minute); cl.serversUp() < 3; time.Sleep(250 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of 3 nodes take MQTT sessions after 2 minutes (HAProxy's check)", cl.serversUp())
		}
	}
	dir, err := os.MkdirTemp(*tmp, "aibo-fleet-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logFile, err := os.Create(filepath.Join(dir, "fleet.log"))
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx := context.Background()
	report := map[string]any{"robots": *n, "day_real": day.String(), "settings": s}
	started := time.Now()
	defer func() {
		report["seconds"] = time.Since(started).Seconds()
		if *out != "" {
			raw, _ := json.MarshalIndent(report, "", "  ")
			os.WriteFile(*out, raw, 0o644)
		}
	}()
	want := map[string]bool{}
	for _, sc := range strings.Split(*scenarios, ",") {
		want[strings.TrimSpace(sc)] = true
	}
	opts := func(prefix string, s settings) fleetOptions {
		netns := ""
		if want["partition"] {
			netns = "/run/netns/" + cl.env["CLUSTER_NS"]
		}
		return fleetOptions{dir: dir, prefix: prefix, n: *n, broker: cl.env["CLUSTER_URL"], nsBroker: cl.env["CLUSTER_NS_URL"],
			netns: netns, cloudURL: cl.env["CLUSTER_CLOUD_URL"], cloudClients: *clouds, s: s, log: log}
	}

	if want["cost"] {
		runs := []settings{s}
		if *compare {
			runs = []settings{before, s}
		}
		var results []costResult
		for i, rs := range runs {
			w := *idle
			if w == 0 {
				w = max(90*time.Second, rs.KeepAlive*5/2)
			}
			f, err := newFleet(opts(fmt.Sprintf("c%d-", i), rs))
			if err != nil {
				return err
			}
			fmt.Printf("cost: %d robots, keepalive %s, chunks of %d bytes, ack timeout %s\n", *n, rs.KeepAlive, rs.ChunkSize, rs.AckTimeout)
			res, err := f.cost(ctx, cl, w, *day, 1)
			f.close()
			if err != nil {
				return fmt.Errorf("cost: %w", err)
			}
			printCost(res)
			results = append(results, res)
		}
		report["cost"] = results
		if len(results) == 2 {
			printCompare(results[0], results[1])
		}
		rb := retainedBytes(cl.env["CLUSTER_DIR"])
		report["retained_store_bytes"] = rb
		var total int64
		for _, b := range rb {
			total += b
		}
		fmt.Printf("retained messages: %d bytes in the nodes' stores (%d files) for the %d robots of %d runs, none expiring\n", total, len(rb), *n+1, len(results))
		return nil
	}

	f, err := newFleet(opts("r", s))
	if err != nil {
		return err
	}
	defer f.close()
	f.start()
	if err := f.waitConnected(f.robots, 3*time.Minute); err != nil {
		return err
	}
	fmt.Printf("fleet: %d robots connected after %.1f s\n", len(f.robots), time.Since(started).Seconds())
	var failures []error
	dayN := 0
	if want["kill"] {
		dayN++
		res, err := f.kill(ctx, cl, dayN, *day)
		report["kill"] = res
		fmt.Printf("kill: %+v\n", res.Outcome)
		if err != nil {
			failures = append(failures, fmt.Errorf("kill: %w", err))
		}
	}
	if want["partition"] && f.part != nil {
		dayN++
		res, err := f.partition(ctx, cl, dayN, *day)
		report["partition"] = res
		fmt.Printf("partition: %+v\n", res.Outcome)
		if err != nil {
			failures = append(failures, fmt.Errorf("partition: %w", err))
		}
	}
	if want["restart"] {
		res, err := f.restart(ctx, cl, 1)
		report["restart"] = res
		if err != nil {
			failures = append(failures, fmt.Errorf("restart: %w", err))
		}
	}
	all := f.ledger.outcome(nil)
	report["outcome"] = all
	fmt.Printf("fleet: %d artifacts queued, %d arrived whole, %d erased unsent by a withdrawal, %d missing, %d corrupt copies; %d whole copies in all (resends); %.0f s\n",
		all.Queued, all.Arrived, all.Withdrawn, all.Missing, all.Corrupt, all.Copies, time.Since(started).Seconds())
	if all.Missing > 0 || all.Corrupt > 0 {
		failures = append(failures, fmt.Errorf("%d artifacts missing, %d corrupt", all.Missing, all.Corrupt))
	}
	return errors.Join(failures...)
}

// retainedBytes is the size of each node's retained-message store (the
// status and state every robot left there).
func retainedBytes(clusterDir string) map[string]int64 {
	out := map[string]int64{}
	files, _ := filepath.Glob(filepath.Join(clusterDir, "node*", "mnesia", "*", "mqtt_retained_*.dets"))
	for _, p := range files {
		if st, err := os.Stat(p); err == nil {
			out[p] = st.Size()
		}
	}
	return out
}
