package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// cloud plays the cloud's side: K MQTT clients with persistent sessions
// (each robot's topics go to one of them), which assemble artifacts from
// their manifests and chunks, check them against the ledger, ack them,
// and keep command results and events. It connects through its own
// HAProxy frontend, so the robots' frontend counts robots only.
//
// Messages are acknowledged to the broker (PUBACK) after they were
// handled, and handled on a goroutine per client, never in paho's
// callback (publishing and waiting there deadlocks paho).
type cloud struct {
	ledger  *ledger
	clients []mqtt.Client
	owner   map[string]int // robot -> client index

	mu      sync.Mutex
	parts   map[string]*assembly       // robot/artifact_id
	results map[string]map[string]bool // robot -> command id -> ok
	events  map[string]map[string]int  // robot -> type -> deliveries
	eventID map[string]bool            // event ids seen
	status  map[string]string          // robot -> last status
	recv    map[string]*tally          // kind -> deliveries to the cloud (payload bytes)
	sent    map[string]*tally          // kind -> publishes by the cloud (payload bytes)
	pubErrs atomic.Int64
}

type assembly struct {
	manifest *manifest
	chunks   map[int][]byte
}

type manifest struct {
	ArtifactID string `json:"artifact_id"`
	Kind       string `json:"kind"`
	Size       int64  `json:"size"`
	SHA256     string `json:"sha256"`
	Chunks     int    `json:"chunks"`
}

func newCloud(url string, k int, robots []string, l *ledger) (*cloud, error) {
	c := &cloud{ledger: l, owner: map[string]int{}, parts: map[string]*assembly{},
		results: map[string]map[string]bool{}, events: map[string]map[string]int{}, eventID: map[string]bool{},
		status: map[string]string{}, recv: map[string]*tally{}, sent: map[string]*tally{}}
	subs := make([]map[string]byte, k)
	for i := range subs {
		subs[i] = map[string]byte{}
	}
	for i, id := range robots {
		c.owner[id] = i % k
		for _, s := range []string{"artifacts/+/meta", "artifacts/+/chunk/+", "events", "cmd/result", "status", "state"} {
			subs[i%k]["aibo/"+id+"/"+s] = 1
		}
	}
	for i := range k {
		work := make(chan mqtt.Message, 4096)
		opts := mqtt.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("fleet-cloud-%d", i)).
			SetCleanSession(false).SetAutoAckDisabled(true).SetOrderMatters(true).
			SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(500 * time.Millisecond).
			SetMaxReconnectInterval(2 * time.Second).SetKeepAlive(30 * time.Second).
			SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { work <- m })
		topics := subs[i]
		opts.SetOnConnectHandler(func(cl mqtt.Client) {
			// The session keeps the subscriptions; subscribing again on
			// every connect covers the first one and costs nothing.
			go func() {
				tok := cl.SubscribeMultiple(topics, func(_ mqtt.Client, m mqtt.Message) { work <- m })
				if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
					fmt.Printf("cloud %d: subscribe: %v\n", i, tok.Error())
				}
			}()
		})
		cl := mqtt.NewClient(opts)
		c.clients = append(c.clients, cl)
		go func() {
			for m := range work {
				c.handle(cl, m)
				m.Ack()
			}
		}()
		tok := cl.Connect()
		if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
			return nil, fmt.Errorf("cloud client %d: connect %s: %v", i, url, tok.Error())
		}
	}
	return c, nil
}

func (c *cloud) close() {
	for _, cl := range c.clients {
		cl.Disconnect(250)
	}
}

func (c *cloud) connected() bool {
	for _, cl := range c.clients {
		if !cl.IsConnectionOpen() {
			return false
		}
	}
	return true
}

func count(m map[string]*tally, kind string, size int) {
	t := m[kind]
	if t == nil {
		t = &tally{}
		m[kind] = t
	}
	t.Msgs++
	t.Bytes += int64(size)
}

func (c *cloud) handle(cl mqtt.Client, m mqtt.Message) {
	rest, ok := strings.CutPrefix(m.Topic(), "aibo/")
	if !ok {
		return
	}
	robot, sub, ok := strings.Cut(rest, "/")
	if !ok {
		return
	}
	p := m.Payload()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case sub == "status":
		count(c.recv, "status", len(p))
		c.status[robot] = string(p)
	case sub == "state":
		count(c.recv, "state", len(p))
	case sub == "cmd/result":
		count(c.recv, "cmd/result", len(p))
		var r struct {
			ID string `json:"id"`
			OK bool   `json:"ok"`
		}
		if json.Unmarshal(p, &r) == nil {
			if c.results[robot] == nil {
				c.results[robot] = map[string]bool{}
			}
			c.results[robot][r.ID] = r.OK
		}
	case sub == "events":
		count(c.recv, "events", len(p))
		var e struct {
			Type    string `json:"type"`
			EventID string `json:"event_id"`
		}
		if json.Unmarshal(p, &e) == nil {
			if c.events[robot] == nil {
				c.events[robot] = map[string]int{}
			}
			c.events[robot][e.Type]++
			if c.eventID[e.EventID] {
				c.events[robot]["(repeat)"]++
			}
			c.eventID[e.EventID] = true
		}
	case strings.HasPrefix(sub, "artifacts/"):
		parts := strings.Split(sub, "/")
		if len(parts) < 3 {
			return
		}
		aid := parts[1]
		key := robot + "/" + aid
		a := c.parts[key]
		if a == nil {
			a = &assembly{chunks: map[int][]byte{}}
			c.parts[key] = a
		}
		switch parts[2] {
		case "meta":
			count(c.recv, "artifact meta", len(p))
			var mf manifest
			if json.Unmarshal(p, &mf) == nil {
				a.manifest = &mf
			}
		case "chunk":
			count(c.recv, "artifact chunk", len(p))
			if len(parts) != 4 {
				return
			}
			n, err := strconv.Atoi(parts[3])
			if err != nil {
				return
			}
			a.chunks[n] = append([]byte(nil), p...)
		}
		if a.manifest == nil || len(a.chunks) < a.manifest.Chunks {
			return
		}
		var content []byte
		for i := range a.manifest.Chunks {
			content = append(content, a.chunks[i]...)
		}
		delete(c.parts, key)
		switch c.ledger.arrive(robot, aid, a.manifest.SHA256, a.manifest.Size, content) {
		case arrivedFirst, arrivedAgain:
			c.publish(cl, "aibo/"+robot+"/artifacts/"+aid+"/ack", "artifact ack", []byte(`{"ok":true}`))
		case arrivedCorrupt:
			// Not acked: the robot sends it again after ack_timeout.
			fmt.Printf("cloud: %s: a corrupt copy (hash or size differs from what the robot queued)\n", key)
		case arrivedUnknown:
			fmt.Printf("cloud: %s: an artifact no robot queued\n", key)
		}
	}
}

// publish sends a QoS 1 message without waiting (c.mu is held): paho
// queues it; a failure is counted, and the robot's resend or the
// command's retry covers it.
func (c *cloud) publish(cl mqtt.Client, topic, kind string, payload []byte) {
	count(c.sent, kind, len(payload))
	tok := cl.Publish(topic, 1, false, payload)
	go func() {
		if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
			c.pubErrs.Add(1)
		}
	}()
}

// command publishes a command to robot and waits for the broker to take it.
func (c *cloud) command(robot, id, typ string, payload any) error {
	body := mustJSON(map[string]any{"id": id, "type": typ, "payload": payload})
	cl := c.clients[c.owner[robot]]
	c.mu.Lock()
	count(c.sent, "cmd", len(body))
	c.mu.Unlock()
	tok := cl.Publish("aibo/"+robot+"/cmd", 1, false, body)
	if !tok.WaitTimeout(30 * time.Second) {
		return fmt.Errorf("command %s to %s: no PUBACK in 30 s", id, robot)
	}
	return tok.Error()
}

func (c *cloud) result(robot, id string) (ok, seen bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ok, seen = c.results[robot][id]
	return ok, seen
}

// lastStatus is the last retained status the cloud received from robot.
func (c *cloud) lastStatus(robot string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status[robot]
}

func (c *cloud) eventCount(robot, typ string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.events[robot][typ]
}

func (c *cloud) tallies() (recv, sent map[string]tally) {
	c.mu.Lock()
	defer c.mu.Unlock()
	recv, sent = map[string]tally{}, map[string]tally{}
	for k, t := range c.recv {
		recv[k] = *t
	}
	for k, t := range c.sent {
		sent[k] = *t
	}
	return recv, sent
}
