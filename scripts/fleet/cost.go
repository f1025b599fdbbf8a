package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
)

// snapshot is every counter at one moment: the robots' meters, HAProxy's
// robots frontend, the nodes' own counters and the cloud's.
type snapshot struct {
	at        time.Time
	kinds     map[string]tally
	wire      [2]int64
	proxyIn   int64 // bytes HAProxy received from the robots
	proxyOut  int64 // bytes HAProxy sent to the robots
	received  float64
	delivered float64
	cloudRecv map[string]tally
	cloudSent map[string]tally
	erlang    float64
	rss       float64
}

func (f *fleet) snap(ctx context.Context, cl *cluster) (snapshot, error) {
	s := snapshot{at: time.Now()}
	s.kinds, s.wire = meters(f.robots)
	st, err := cl.stats()
	if err != nil {
		return s, err
	}
	s.proxyIn = st["robots/FRONTEND"].n("bin") + st["robots_ns/FRONTEND"].n("bin")
	s.proxyOut = st["robots/FRONTEND"].n("bout") + st["robots_ns/FRONTEND"].n("bout")
	nm, err := cl.scrape(ctx)
	if err != nil {
		return s, err
	}
	s.received = nm.sum("rabbitmq_global_messages_received_total")
	s.delivered = nm.sum("rabbitmq_global_messages_delivered_total")
	s.erlang, s.rss = nm.memory()
	s.cloudRecv, s.cloudSent = f.cloud.tallies()
	return s, nil
}

// window is what happened between two snapshots.
type window struct {
	Seconds float64          `json:"seconds"`
	Kinds   map[string]tally `json:"kinds"` // at the robots, by direction and kind
	// At the robots, all kinds together.
	WireOut int64 `json:"wire_out"`
	WireIn  int64 `json:"wire_in"`
	// At HAProxy's robots frontends.
	ProxyIn  int64 `json:"haproxy_in"`
	ProxyOut int64 `json:"haproxy_out"`
	// At the nodes: messages received from publishers and delivered to
	// consumers, less the cloud's own (counted at the cloud).
	BrokerFromRobots, BrokerToRobots float64
	RobotPublishes, RobotDeliveries  int64
}

func between(a, b snapshot) window {
	w := window{Seconds: b.at.Sub(a.at).Seconds(), Kinds: diffTallies(a.kinds, b.kinds),
		WireOut: b.wire[0] - a.wire[0], WireIn: b.wire[1] - a.wire[1],
		ProxyIn: b.proxyIn - a.proxyIn, ProxyOut: b.proxyOut - a.proxyOut}
	cloudPub, cloudGot := int64(0), int64(0)
	for k, t := range b.cloudSent {
		cloudPub += t.Msgs - a.cloudSent[k].Msgs
	}
	for k, t := range b.cloudRecv {
		cloudGot += t.Msgs - a.cloudRecv[k].Msgs
	}
	w.BrokerFromRobots = b.received - a.received - float64(cloudPub)
	w.BrokerToRobots = b.delivered - a.delivered - float64(cloudGot)
	for k, t := range w.Kinds {
		switch {
		case strings.HasPrefix(k, "out ") && !isControl(k):
			w.RobotPublishes += t.Msgs
		case strings.HasPrefix(k, "in ") && !isControl(k):
			w.RobotDeliveries += t.Msgs
		}
	}
	return w
}

// isControl tells MQTT control packets from PUBLISHes (by kind name).
func isControl(kind string) bool {
	k := kind[strings.IndexByte(kind, ' ')+1:]
	return k == strings.ToUpper(k)
}

func isPing(kind string) bool {
	return strings.HasSuffix(kind, "PINGREQ") || strings.HasSuffix(kind, "PINGRESP")
}

// costResult is the cost of a robot-day at the broker, and its memory.
type costResult struct {
	Settings settings `json:"settings"`
	Robots   int      `json:"robots"`
	Connect  window   `json:"connect"`  // the fleet connecting
	Idle     window   `json:"idle"`     // connected, nothing to do
	Day      window   `json:"busy_day"` // the compressed day and its drain
	// Per robot and day (pings at the rate measured idle, for 24 h).
	IdleDay perDay `json:"idle_day"`
	BusyDay perDay `json:"busy_day_per_robot"`
	// Broker memory (the three Erlang VMs' allocated memory; RSS apart).
	MemBase, MemConnected, MemOffline, MemOfflineCmd, MemCleaned float64
	RSSBase, RSSConnected, RSSOffline, RSSOfflineCmd, RSSCleaned float64
	PerConnected, PerOffline, PerQueuedCommand                   float64
	RSSPerConnected, RSSPerOffline                               float64
	Outcome                                                      outcome
	Resent                                                       float64 // artifacts sent whole again (no ack within the timeout), per robot and day
	DaySeconds, DrainSeconds                                     float64
}

// perDay is one robot's day, by kind (messages and bytes each way), with
// the broker's own totals beside the robots'.
type perDay struct {
	Kinds                 map[string]tally `json:"kinds"`
	MsgsOut, MsgsIn       float64          // MQTT packets, PUBLISH and control
	BytesOut, BytesIn     float64          // at the robots
	ProxyIn, ProxyOut     float64          // at HAProxy
	BrokerIn, BrokerOut   float64          // messages at the nodes (PUBLISHes only)
	PublishOut, PublishIn float64          // PUBLISHes at the robots
}

// cost measures what the fleet costs the broker. Memory first, on fresh
// client ids: the robots connecting, then stopping (their sessions stay,
// on quorum queues), then a command waiting in each session; each
// reading after a full garbage collection of every node. Then traffic:
// an idle window of real time (pings), a busy day and its drain. Then
// the sessions are ended (clean session) so the next run starts clean.
func (f *fleet) cost(ctx context.Context, cl *cluster, idle, day time.Duration, round int) (costResult, error) {
	res := costResult{Settings: f.s, Robots: len(f.robots)}
	n := float64(len(f.robots))
	quiet := func(d time.Duration) (snapshot, error) {
		time.Sleep(d)
		if err := cl.run("gc"); err != nil {
			return snapshot{}, err
		}
		return f.snap(ctx, cl)
	}
	s0, err := quiet(5 * time.Second)
	if err != nil {
		return res, err
	}
	f.start()
	if err := f.waitConnected(f.robots, 3*time.Minute); err != nil {
		return res, fmt.Errorf("connecting: %w", err)
	}
	s1, err := quiet(20 * time.Second)
	if err != nil {
		return res, err
	}
	f.stop()
	m2, err := quiet(10 * time.Second)
	if err != nil {
		return res, err
	}
	// What waits for an offline robot: commands, acks, firmware chunks.
	// Twenty small commands each, so the queues' share is not lost in
	// the nodes' noise.
	for i := range queuedPerSession {
		for _, r := range f.robots {
			if err := f.cloud.command(r.id, fmt.Sprintf("offline-%d-%d-%s", round, i, r.id), "set_features", map[string]any{"usage_analytics": false}); err != nil {
				return res, err
			}
		}
	}
	m3, err := quiet(5 * time.Second)
	if err != nil {
		return res, err
	}
	res.MemBase, res.RSSBase = s0.erlang, s0.rss
	res.MemConnected, res.RSSConnected = s1.erlang, s1.rss
	res.MemOffline, res.RSSOffline = m2.erlang, m2.rss
	res.MemOfflineCmd, res.RSSOfflineCmd = m3.erlang, m3.rss
	res.PerConnected = (s1.erlang - m2.erlang) / n
	res.PerOffline = (m2.erlang - s0.erlang) / n
	res.PerQueuedCommand = (m3.erlang - m2.erlang) / n / queuedPerSession
	res.RSSPerConnected = (s1.rss - m2.rss) / n
	res.RSSPerOffline = (m2.rss - s0.rss) / n

	f.start() // each robot restarts, as a daemon does
	if err := f.waitConnected(f.robots, 3*time.Minute); err != nil {
		return res, fmt.Errorf("reconnecting: %w", err)
	}
	time.Sleep(10 * time.Second)
	s2, err := f.snap(ctx, cl)
	if err != nil {
		return res, err
	}
	fmt.Printf("cost: %d robots connected; idle for %s\n", len(f.robots), idle)
	time.Sleep(idle)
	s3, err := f.snap(ctx, cl)
	if err != nil {
		return res, err
	}
	start := time.Now()
	if err := f.playDay(ctx, f.robots, day, round, nil); err != nil {
		return res, err
	}
	res.DaySeconds = time.Since(start).Seconds()
	if err := f.drain(f.robots, round, 10*time.Minute); err != nil {
		return res, err
	}
	res.DrainSeconds = time.Since(start).Seconds() - res.DaySeconds
	time.Sleep(2 * time.Second) // the last PUBACKs and acks
	s4, err := f.snap(ctx, cl)
	if err != nil {
		return res, err
	}
	res.Outcome, err = f.check(f.robots, round)
	if err != nil {
		return res, err
	}
	for _, r := range f.robots {
		for _, k := range r.box.Stats()[outbox.StatResent] {
			res.Resent += float64(k) / n
		}
	}
	res.Connect, res.Idle, res.Day = between(s0, s1), between(s2, s3), between(s3, s4)
	res.IdleDay = res.perDay(res.Connect, res.Idle, nil, n)
	res.BusyDay = res.perDay(res.Connect, res.Idle, &res.Day, n)

	f.stop()
	if err := f.dropSessions(); err != nil {
		return res, err
	}
	s5, err := quiet(10 * time.Second)
	if err != nil {
		return res, err
	}
	res.MemCleaned, res.RSSCleaned = s5.erlang, s5.rss
	return res, nil
}

// queuedPerSession is how many commands wait in each offline session
// when its memory is read.
const queuedPerSession = 20

// perDay scales the windows to one robot and 24 hours: the connection
// once, pings (and whatever else an idle link sends) at the idle rate for
// the whole day, and the busy day's traffic without its pings.
func (res *costResult) perDay(connect, idle window, busy *window, n float64) perDay {
	scale := 24 * 3600 / idle.Seconds
	p := perDay{Kinds: map[string]tally{}}
	add := func(k string, t tally, f float64) {
		s := p.Kinds[k]
		s.Msgs += int64(float64(t.Msgs)*f/n + 0.5)
		s.Bytes += int64(float64(t.Bytes)*f/n + 0.5)
		p.Kinds[k] = s
	}
	for k, t := range connect.Kinds {
		add(k, t, 1)
	}
	for k, t := range idle.Kinds {
		add(k, t, scale)
	}
	p.ProxyIn = float64(connect.ProxyIn)/n + float64(idle.ProxyIn)*scale/n
	p.ProxyOut = float64(connect.ProxyOut)/n + float64(idle.ProxyOut)*scale/n
	p.BrokerIn = connect.BrokerFromRobots/n + idle.BrokerFromRobots*scale/n
	p.BrokerOut = connect.BrokerToRobots/n + idle.BrokerToRobots*scale/n
	if busy != nil {
		for k, t := range busy.Kinds {
			if !isPing(k) {
				add(k, t, 1)
			}
		}
		// HAProxy counts pings too: take the day's pings out at the
		// robots' count of them.
		var pingOut, pingIn int64
		for k, t := range busy.Kinds {
			if isPing(k) && strings.HasPrefix(k, "out ") {
				pingOut += t.Bytes
			} else if isPing(k) {
				pingIn += t.Bytes
			}
		}
		p.ProxyIn += float64(busy.ProxyIn-pingOut) / n
		p.ProxyOut += float64(busy.ProxyOut-pingIn) / n
		p.BrokerIn += busy.BrokerFromRobots / n
		p.BrokerOut += busy.BrokerToRobots / n
	}
	for k, t := range p.Kinds {
		if strings.HasPrefix(k, "out ") {
			p.MsgsOut += float64(t.Msgs)
			p.BytesOut += float64(t.Bytes)
			if !isControl(k) {
				p.PublishOut += float64(t.Msgs)
			}
		} else {
			p.MsgsIn += float64(t.Msgs)
			p.BytesIn += float64(t.Bytes)
			if !isControl(k) {
				p.PublishIn += float64(t.Msgs)
			}
		}
	}
	return p
}

// dropSessions ends every robot's persistent session at the broker the
// way MQTT 3.1.1 does: a connection with clean session on, under the
// robot's client id.
func (f *fleet) dropSessions() error {
	for _, r := range f.robots {
		opts := mqtt.NewClientOptions().AddBroker(f.broker).SetClientID("aibo-privacyd-" + r.id).
			SetCleanSession(true).SetConnectTimeout(30 * time.Second)
		c := mqtt.NewClient(opts)
		tok := c.Connect()
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			return fmt.Errorf("drop session of %s: %v", r.id, tok.Error())
		}
		c.Disconnect(0)
	}
	return nil
}
