package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"time"
)

// killBound is the stated bound on a robot's return after its node died:
// the link's first waits (0.5, 1, 2, 4, 8 s at most) and the cluster's
// own recovery (a new leader for the queues and the client-id tracker).
const killBound = 60 * time.Second

// killResult is what the node kill measured.
type killResult struct {
	Node         int       `json:"node"`
	RobotsOnNode int64     `json:"robots_on_node"`
	PhotosAtKill string    `json:"photos_arrived_at_kill"`
	RobotsCut    int       `json:"robots_cut"`
	BackP50      float64   `json:"back_p50_s"`
	BackP90      float64   `json:"back_p90_s"`
	BackMax      float64   `json:"back_max_s"`
	Outcome      outcome   `json:"outcome"`
	DaySeconds   float64   `json:"day_s"`
	DrainSeconds float64   `json:"drain_after_day_s"`
	backDelays   []float64 // seconds, per robot cut
	killedAt     time.Time
}

// kill plays a busy day on every robot and, once a quarter of the day's
// photos have arrived, kills -9 the node holding the most robot
// connections. Every robot it cut must come back, every artifact arrive
// whole (or be erased unsent by the withdrawal); the node is started again
// once the robots are back.
func (f *fleet) kill(ctx context.Context, cl *cluster, day int, d time.Duration) (killResult, error) {
	var res killResult
	start := time.Now()
	during := func(ctx context.Context) error {
		for {
			arrived, _ := f.photoProgress()
			if arrived >= len(f.robots)*10/4 {
				res.PhotosAtKill = fmt.Sprintf("%d of %d", arrived, len(f.robots)*10)
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		node, conns, err := cl.busiestNode()
		if err != nil {
			return err
		}
		res.Node, res.RobotsOnNode = node, conns
		res.killedAt = time.Now()
		if err := cl.run("kill", strconv.Itoa(node)); err != nil {
			return err
		}
		fmt.Printf("kill: node %d (%d robot connections) killed -9 with %s photos arrived\n", node, conns, res.PhotosAtKill)
		// Every robot it cut is back before the node is.
		deadline := time.Now().Add(5 * time.Minute)
		for {
			time.Sleep(250 * time.Millisecond)
			cut, back := 0, 0
			for _, r := range f.robots {
				if r.lostAfter(res.killedAt) {
					cut++
					if _, ok := r.firstUpAfter(res.killedAt); ok {
						back++
					}
				}
			}
			if cut > 0 && cut == back && time.Since(res.killedAt) > 5*time.Second {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("kill: %d of %d robots cut are back after 5 minutes", back, cut)
			}
		}
		for _, r := range f.robots {
			if r.lostAfter(res.killedAt) {
				t, _ := r.firstUpAfter(res.killedAt)
				res.backDelays = append(res.backDelays, t.Sub(res.killedAt).Seconds())
			}
		}
		res.RobotsCut = len(res.backDelays)
		res.BackP50, res.BackP90, res.BackMax = quantiles(res.backDelays)
		if res.BackMax > killBound.Seconds() {
			return fmt.Errorf("kill: a robot came back %.1f s after the kill, over the stated %s", res.BackMax, killBound)
		}
		fmt.Printf("kill: %d robots cut, back after p50 %.1f s, p90 %.1f s, max %.1f s; starting node %d again\n",
			res.RobotsCut, res.BackP50, res.BackP90, res.BackMax, node)
		return cl.run("start_node", strconv.Itoa(node))
	}
	err := f.playDay(ctx, f.robots, d, day, during)
	res.DaySeconds = time.Since(start).Seconds()
	if err != nil {
		return res, err
	}
	drained := time.Now()
	if err := f.drain(f.robots, day, 10*time.Minute); err != nil {
		return res, err
	}
	res.DrainSeconds = time.Since(drained).Seconds()
	res.Outcome, err = f.check(f.robots, day)
	return res, err
}

// restartResult is what the whole-cluster restart measured.
type restartResult struct {
	OutageSeconds   float64 `json:"outage_s"` // stop of the first node to all three up again
	CommandsAway    int     `json:"commands_published_while_away"`
	CommandsArrived int     `json:"commands_arrived"`
	BackP50         float64 `json:"back_p50_s"` // after the cluster was up again
	BackP90         float64 `json:"back_p90_s"`
	BackMax         float64 `json:"back_max_s"`
	PeakPerSecond   int     `json:"peak_connects_per_s"`              // robots, seen by the robots
	ProxyRateMax    int64   `json:"haproxy_server_sessions_rate_max"` // sessions/s to the nodes, seen by HAProxy
	ExpectedPeak    float64 `json:"expected_peak_per_s"`              // the backoff's full jitter, simulated
	EqualJitterPeak float64 `json:"equal_jitter_peak_per_s"`          // the same with the former [d/2, d] jitter
	PerSecond       []int   `json:"connects_per_second"`
}

// restart stops all three nodes, starts them again, and has the cloud
// publish a QoS 1 command to every robot as soon as it can, while the
// robots are still away. The robots come back spread by their backoff;
// every command must arrive.
func (f *fleet) restart(ctx context.Context, cl *cluster, round int) (restartResult, error) {
	var res restartResult
	if err := f.waitConnected(f.robots, 2*time.Minute); err != nil {
		return res, err
	}
	stopped := time.Now()
	fmt.Println("restart: stopping the three nodes")
	if err := cl.run("stop_nodes"); err != nil {
		return res, err
	}
	down := time.Now()
	fmt.Printf("restart: stopped in %.1f s; starting them again\n", down.Sub(stopped).Seconds())
	// HAProxy's rates from here on: the return, not the moves between
	// nodes while they stopped one by one.
	if _, err := cl.haproxy("clear counters"); err != nil {
		return res, err
	}
	started := make(chan error, 1)
	go func() { started <- cl.run("start_nodes") }()
	// The outage ends when HAProxy's MQTT check passes on a node.
	for cl.serversUp() == 0 {
		time.Sleep(100 * time.Millisecond)
	}
	up := time.Now()
	res.OutageSeconds = up.Sub(stopped).Seconds()
	fmt.Printf("restart: MQTT back on a node %.1f s after the stop\n", res.OutageSeconds)
	for !f.cloud.connected() {
		time.Sleep(50 * time.Millisecond)
	}
	// The commands, published as soon as the cloud is back: a robot not
	// connected at that moment gets it from its session.
	away := map[string]bool{}
	for _, r := range f.robots {
		away[r.id] = !r.connected()
		if err := f.cloud.command(r.id, fmt.Sprintf("restart-%d-%s", round, r.id), "set_features", map[string]any{"usage_analytics": false}); err != nil {
			return res, err
		}
		if away[r.id] {
			res.CommandsAway++
		}
	}
	if err := <-started; err != nil {
		return res, err
	}
	fmt.Printf("restart: all three nodes up %.1f s after the stop\n", time.Since(stopped).Seconds())
	deadline := time.Now().Add(5 * time.Minute)
	for {
		arrived := 0
		for _, r := range f.robots {
			if _, ok := r.gotCommand(fmt.Sprintf("restart-%d-%s", round, r.id)); ok {
				arrived++
			}
		}
		res.CommandsArrived = arrived
		if arrived == len(f.robots) && f.waitConnected(f.robots, 0) == nil {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("restart: %d of %d commands arrived after 5 minutes", arrived, len(f.robots))
		}
		time.Sleep(250 * time.Millisecond)
	}
	var delays []float64
	for _, r := range f.robots {
		t, _ := r.firstUpAfter(down)
		delays = append(delays, t.Sub(up).Seconds())
	}
	res.BackP50, res.BackP90, res.BackMax = quantiles(delays)
	res.PerSecond = perSecond(delays)
	res.PeakPerSecond = slices.Max(res.PerSecond)
	res.ExpectedPeak = expectedPeak(len(f.robots), up.Sub(stopped), rand.N[time.Duration], 200)
	res.EqualJitterPeak = expectedPeak(len(f.robots), up.Sub(stopped), func(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) }, 200)
	if st, err := cl.stats(); err == nil {
		res.ProxyRateMax = st["rabbit/BACKEND"].n("rate_max")
	}
	fmt.Printf("restart: %d of %d commands published while the robot was away, all %d arrived; robots back after p50 %.1f s, p90 %.1f s, max %.1f s; peak %d connects/s (HAProxy %d sessions/s), full jitter predicts %.1f, the former jitter %.1f\n",
		res.CommandsAway, len(f.robots), res.CommandsArrived, res.BackP50, res.BackP90, res.BackMax, res.PeakPerSecond, res.ProxyRateMax, res.ExpectedPeak, res.EqualJitterPeak)
	// No herd: a fifth of the fleet in one second at most (without jitter
	// every robot would come back within the same second or two).
	if limit := max(10, len(f.robots)/5); res.PeakPerSecond > limit {
		return res, fmt.Errorf("restart: %d robots came back within one second, over %d", res.PeakPerSecond, limit)
	}
	return res, nil
}

// expectedPeak simulates the link's backoff (0.5 s doubling to 30 s, a
// wait drawn by jitter after each lost connection and failed attempt)
// for n robots that lost the broker for outage, and returns the mean over
// runs of the busiest second of returns.
func expectedPeak(n int, outage time.Duration, jitter func(time.Duration) time.Duration, runs int) float64 {
	var sum float64
	for range runs {
		var delays []float64
		for range n {
			t, ceiling := time.Duration(0), 500*time.Millisecond
			for {
				t += jitter(ceiling)
				ceiling = min(ceiling*2, 30*time.Second)
				if t >= outage {
					break
				}
			}
			delays = append(delays, (t - outage).Seconds())
		}
		sum += float64(slices.Max(perSecond(delays)))
	}
	return sum / float64(runs)
}

// partitionResult is what the partition of one robot measured.
type partitionResult struct {
	Robot          string  `json:"robot"`
	DaySeconds     float64 `json:"day_s"`
	CutSeconds     float64 `json:"cut_s"` // the day, and until both ends had given the connection up
	PeakQueueBytes int64   `json:"peak_queue_bytes"`
	MaxQueueBytes  int64   `json:"max_queue_bytes"`
	// Survived: TCP rode the cut out (nothing wrote enough to block and
	// no ping was due); otherwise BackAfter is the reconnect after the heal.
	Survived       bool    `json:"connection_survived"`
	BackAfter      float64 `json:"back_after_heal_s"`
	CatchUpSeconds float64 `json:"catch_up_s"`
	CatchUpBytes   int64   `json:"catch_up_bytes_in"`
	// The busiest second of the catch-up: at the robot's socket (what the
	// cluster receives, less at most one socket buffer), at the nodes
	// (every connection's bytes in, refreshed each second), and at
	// HAProxy (whose counters move every few seconds: a total, not a rate).
	PeakWrotePerSec  int64   `json:"peak_written_per_s"`
	PeakBrokerPerSec int64   `json:"peak_nodes_in_per_s"`
	PeakBytesPerSec  int64   `json:"peak_haproxy_per_s"`
	RateBound        int64   `json:"stated_bytes_per_s"`
	Outcome          outcome `json:"outcome"`
}

// partition cuts the robot in the network namespace off for a simulated
// day (packets dropped, nothing refused), then heals the link and
// measures its catch-up at HAProxy.
func (f *fleet) partition(ctx context.Context, cl *cluster, day int, d time.Duration) (partitionResult, error) {
	p := f.part
	res := partitionResult{Robot: p.id, MaxQueueBytes: f.s.MaxQueue}
	if err := f.waitConnected([]*robot{p}, 2*time.Minute); err != nil {
		return res, err
	}
	cut := time.Now()
	if err := cl.run("partition"); err != nil {
		return res, err
	}
	p.mu.Lock()
	p.peakQueue = 0
	p.mu.Unlock()
	fmt.Printf("partition: %s cut off for a simulated day (%s)\n", p.id, d)
	start := time.Now()
	if err := f.playDay(ctx, []*robot{p}, d, day, nil); err != nil {
		cl.run("heal")
		return res, err
	}
	res.DaySeconds = time.Since(start).Seconds()
	// A day away ends the session on both sides: the cut lasts until the
	// robot has given its connection up and the broker has dropped its
	// end (1.5 keepalives of silence) and published its last will.
	for deadline := cut.Add(10 * time.Minute); !p.lostAfter(cut) || time.Since(cut) < f.s.KeepAlive*3/2+15*time.Second || f.cloud.lastStatus(p.id) != "offline"; {
		if time.Now().After(deadline) {
			cl.run("heal")
			return res, fmt.Errorf("partition: after 10 minutes cut off, the robot lost its connection %v, the cloud saw it %q", p.lostAfter(cut), f.cloud.lastStatus(p.id))
		}
		time.Sleep(time.Second)
	}
	res.CutSeconds = time.Since(cut).Seconds()
	before, err := cl.stats()
	if err != nil {
		cl.run("heal")
		return res, err
	}
	healed := time.Now()
	if err := cl.run("heal"); err != nil {
		return res, err
	}
	// HAProxy's byte count for the namespace's frontend, every 100 ms,
	// until the robot has nothing left to send.
	type sample struct {
		at                   time.Time
		bytes, wrote, broker int64
	}
	brokerIn := func() int64 {
		nm, err := cl.scrape(ctx)
		if err != nil {
			return 0
		}
		return int64(nm.sum("rabbitmq_connection_incoming_bytes_total"))
	}
	samples := []sample{{healed, before["robots_ns/FRONTEND"].n("bin"), p.meter.wire[dirOut].Load(), brokerIn()}}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		time.Sleep(100 * time.Millisecond)
		st, err := cl.stats()
		if err != nil {
			return res, err
		}
		samples = append(samples, sample{time.Now(), st["robots_ns/FRONTEND"].n("bin"), p.meter.wire[dirOut].Load(), brokerIn()})
		n, _ := p.box.Summary()
		_, answered := f.cloud.result(p.id, fmt.Sprintf("revoke-%d-%s", day, p.id))
		if n == 0 && p.ev.Pending() == 0 && answered {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("partition: %s still has %d artifacts queued 5 minutes after the heal", p.id, n)
		}
	}
	res.Survived = !p.lostAfter(cut)
	if t, ok := p.firstUpAfter(healed); ok {
		res.BackAfter = t.Sub(healed).Seconds()
	}
	res.CatchUpSeconds = time.Since(healed).Seconds()
	res.CatchUpBytes = samples[len(samples)-1].bytes - samples[0].bytes
	for i := range samples {
		for j := i + 1; j < len(samples); j++ {
			if samples[j].at.Sub(samples[i].at) > time.Second {
				res.PeakBytesPerSec = max(res.PeakBytesPerSec, samples[j-1].bytes-samples[i].bytes)
				res.PeakWrotePerSec = max(res.PeakWrotePerSec, samples[j-1].wrote-samples[i].wrote)
				res.PeakBrokerPerSec = max(res.PeakBrokerPerSec, samples[j-1].broker-samples[i].broker)
				break
			}
		}
	}
	if os.Getenv("FLEET_DEBUG") != "" {
		for _, x := range samples {
			fmt.Printf("partition sample %s haproxy %d robot %d nodes %d\n", x.at.Sub(healed).Round(time.Millisecond), x.bytes-samples[0].bytes, x.wrote-samples[0].wrote, x.broker-samples[0].broker)
		}
	}
	p.mu.Lock()
	res.PeakQueueBytes = p.peakQueue
	p.mu.Unlock()
	res.RateBound = f.s.SendRate + int64(f.s.ChunkSize) + 16<<10
	res.Outcome, err = f.check([]*robot{p}, day)
	fmt.Printf("partition: cut off %.0f s (the day, then until both ends gave the connection up and the cloud saw its last will); outbox peaked at %d bytes (max_queue_bytes %d); connection survived %v, back %.1f s after the heal, caught up in %.1f s: %d bytes, at most %d bytes in a second written by the robot (stated bound %d), %d received by the nodes (%d at HAProxy, whose counters move every few seconds)\n",
		res.CutSeconds, res.PeakQueueBytes, res.MaxQueueBytes, res.Survived, res.BackAfter, res.CatchUpSeconds, res.CatchUpBytes, res.PeakWrotePerSec, res.RateBound, res.PeakBrokerPerSec, res.PeakBytesPerSec)
	if err == nil && res.PeakQueueBytes > res.MaxQueueBytes {
		err = fmt.Errorf("partition: the outbox held %d bytes, over max_queue_bytes %d", res.PeakQueueBytes, res.MaxQueueBytes)
	}
	// The stated rate: the pace and one chunk, and 16 KiB for what is not
	// an artifact (the state, events, results) and the MQTT framing.
	if err == nil && f.s.SendRate > 0 && res.PeakWrotePerSec > res.RateBound {
		err = fmt.Errorf("partition: the catch-up reached %d bytes in a second, over the stated %d", res.PeakWrotePerSec, res.RateBound)
	}
	return res, err
}

// quantiles returns p50, p90 and the maximum.
func quantiles(v []float64) (p50, p90, maxV float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)*9/10], s[len(s)-1]
}

// perSecond counts delays (seconds) per whole second.
func perSecond(delays []float64) []int {
	var out []int
	for _, d := range delays {
		i := max(int(d), 0)
		for len(out) <= i {
			out = append(out, 0)
		}
		out[i]++
	}
	if len(out) == 0 {
		out = []int{0}
	}
	return out
}
