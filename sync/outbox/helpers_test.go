package outbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
	"github.com/aibo-privacy/aibo-privacyd/internal/testlog"
	"github.com/aibo-privacy/aibo-privacyd/sync/link"
)

const (
	dev  = "aibo-outbox-1"
	wait = 10 * time.Second
)

func topic(suffix string) string { return "aibo/" + dev + "/" + suffix }

// env is one device: a store, an outbox dir, a device key, and the
// callbacks' records.
type env struct {
	t      testing.TB
	dbPath string
	dir    string
	devKey []byte
	data   *keys.Keyring // the data keyring: a slot per artifact that is not person-linked
	st     *store.Store
	logs   *testlog.Buffer

	mu      sync.Mutex
	acked   []Meta
	dropped map[string]string // id -> reason
	changed chan struct{}
}

func newEnv(t testing.TB) *env {
	t.Helper()
	root := t.TempDir()
	e := &env{
		t:       t,
		dbPath:  filepath.Join(root, "state.db"),
		dir:     filepath.Join(root, "outbox"),
		devKey:  keys.New(),
		logs:    &testlog.Buffer{},
		dropped: map[string]string{},
		changed: make(chan struct{}),
	}
	e.openStore()
	ring, err := keys.OpenKeyring(filepath.Join(root, "data.keys"))
	if err != nil {
		t.Fatal(err)
	}
	e.data = ring
	t.Cleanup(func() {
		defer ring.Close()
		if e.st != nil {
			if err := e.st.Check(); err != nil {
				t.Errorf("store check: %v", err)
			}
			e.st.Close()
		}
	})
	return e
}

func (e *env) openStore() {
	e.t.Helper()
	st, err := store.Open(e.dbPath)
	if err != nil {
		e.t.Fatal(err)
	}
	e.st = st
}

func (e *env) closeStore() {
	e.t.Helper()
	if err := e.st.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.st = nil
}

func (e *env) config() Config {
	return Config{
		Dir:        e.dir,
		DeviceKey:  e.devKey,
		DataKeys:   e.data,
		ChunkSize:  1024,
		AckTimeout: 5 * time.Second,
		Logger:     slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnAcked: func(m Meta) {
			e.mu.Lock()
			e.acked = append(e.acked, m)
			e.signal()
			e.mu.Unlock()
		},
		OnDropped: func(m Meta, reason string) {
			e.mu.Lock()
			e.dropped[m.ID] = reason
			e.signal()
			e.mu.Unlock()
		},
	}
}

// signal requires e.mu.
func (e *env) signal() {
	close(e.changed)
	e.changed = make(chan struct{})
}

func (e *env) open(mod func(*Config)) *Outbox {
	e.t.Helper()
	cfg := e.config()
	if mod != nil {
		mod(&cfg)
	}
	o, err := Open(e.st, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return o
}

// waitUntil waits until cond (called with e.mu held) holds.
func (e *env) waitUntil(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.After(wait)
	for {
		e.mu.Lock()
		ok := cond()
		ch := e.changed
		e.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			e.t.Fatalf("timeout waiting for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (e *env) waitAcked(ids ...string) {
	e.t.Helper()
	e.waitUntil(fmt.Sprintf("OnAcked of %d artifacts", len(ids)), func() bool {
		got := map[string]bool{}
		for _, m := range e.acked {
			got[m.ID] = true
		}
		for _, id := range ids {
			if !got[id] {
				return false
			}
		}
		return true
	})
}

func (e *env) waitDropped(id string) string {
	e.t.Helper()
	var reason string
	e.waitUntil("OnDropped of "+id, func() bool {
		r, ok := e.dropped[id]
		reason = r
		return ok
	})
	return reason
}

// records counts the artifact records and inline contents in bbolt.
func (e *env) records(t testing.TB) (arts, contents int) {
	t.Helper()
	err := e.st.View(func(tx *bolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		arts, contents = b.arts.Stats().KeyN, b.content.Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return arts, contents
}

func contentFiles(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, en := range ents {
		out = append(out, en.Name())
	}
	return out
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

func enqueue(t testing.TB, o *Outbox, kind policy.Kind, content []byte) Meta {
	t.Helper()
	m, err := o.Enqueue(context.Background(), Artifact{Kind: kind, ContentType: "application/octet-stream", Content: content})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// startLink connects a real link.Link to b and returns it; it stops at
// the returned cancel (which waits for Run to return) or at cleanup.
func startLink(t testing.TB, b *testbroker.Broker) (*link.Link, func()) {
	t.Helper()
	l, err := link.New(link.Config{
		DeviceID:   dev,
		Broker:     b.URL,
		MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 300 * time.Millisecond,
		Logger:     slog.New(slog.NewTextHandler(&testlog.Buffer{}, nil)),
	}, func(context.Context, []byte) []byte { return nil })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = l.Run(ctx)
	}()
	deadline := time.Now().Add(wait)
	for !l.Connected() {
		if time.Now().After(deadline) {
			t.Fatal("link did not connect")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return l, stop
}

// runOutbox runs o on p until the returned stop (or cleanup).
func runOutbox(t testing.TB, o *Outbox, p Publisher) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx, p) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// cloud plays the cloud: it receives manifests and chunks, reassembles
// artifacts, and acks (or not) as the test decides.
type cloud struct {
	t testing.TB
	c mqtt.Client

	// ack, when set, answers a completely received artifact: nil payload
	// means no ack. Called on paho's goroutine.
	ack atomic.Pointer[func(d Delivery) []byte]
	// light keeps neither messages nor contents (benchmarks).
	light bool

	mu        sync.Mutex
	msgs      []cloudMsg
	cur       map[string]*assembly
	delivered []Delivery
	changed   chan struct{}
}

type cloudMsg struct {
	aid   string
	part  string // "meta" or "chunk"
	n     int
	size  int
	topic string
}

type assembly struct {
	man    manifest
	chunks map[int][]byte
}

// Delivery is one artifact received whole by the cloud.
type Delivery struct {
	Manifest manifest
	Content  []byte
	Seq      int // delivery number for this aid: 1, 2, ...
}

func newCloud(t testing.TB, b *testbroker.Broker) *cloud {
	t.Helper()
	return newCloudWith(t, b, false)
}

func newCloudWith(t testing.TB, b *testbroker.Broker, light bool) *cloud {
	t.Helper()
	cl := &cloud{t: t, light: light, cur: map[string]*assembly{}, changed: make(chan struct{})}
	subscribed := make(chan struct{}, 1)
	opts := mqtt.NewClientOptions().
		AddBroker(b.URL).
		SetClientID(fmt.Sprintf("cloud-%d-%d", os.Getpid(), rand.Int64())).
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(50 * time.Millisecond).
		SetMaxReconnectInterval(200 * time.Millisecond).
		SetConnectTimeout(2 * time.Second).
		SetOrderMatters(true)
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		// Re-subscribe on every connect (clean session).
		go func() {
			tok := c.Subscribe(topic("artifacts/#"), 1, cl.onMessage)
			tok.WaitTimeout(5 * time.Second)
			select {
			case subscribed <- struct{}{}:
			default:
			}
		}()
	})
	cl.c = mqtt.NewClient(opts)
	if tok := cl.c.Connect(); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("cloud connect: %v", tok.Error())
	}
	select {
	case <-subscribed:
	case <-time.After(wait):
		t.Fatal("cloud subscribe timeout")
	}
	t.Cleanup(func() { cl.c.Disconnect(50) })
	return cl
}

// autoAck makes the cloud answer every complete artifact with payload.
func (cl *cloud) autoAck(payload string) {
	f := func(Delivery) []byte { return []byte(payload) }
	cl.ack.Store(&f)
}

func (cl *cloud) setAck(f func(Delivery) []byte) { cl.ack.Store(&f) }

func (cl *cloud) onMessage(_ mqtt.Client, m mqtt.Message) {
	parts := strings.Split(strings.TrimPrefix(m.Topic(), topic("artifacts/")), "/")
	if len(parts) < 2 || parts[len(parts)-1] == "ack" {
		return
	}
	aid := parts[0]
	payload := append([]byte(nil), m.Payload()...)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	msg := cloudMsg{aid: aid, part: parts[1], size: len(payload), topic: m.Topic()}
	var done *Delivery
	switch {
	case parts[1] == "meta" && len(parts) == 2:
		var man manifest
		if err := json.Unmarshal(payload, &man); err != nil {
			cl.t.Errorf("cloud: bad manifest on %s: %v", m.Topic(), err)
			return
		}
		cl.cur[aid] = &assembly{man: man, chunks: map[int][]byte{}}
	case parts[1] == "chunk" && len(parts) == 3:
		n, err := strconv.Atoi(parts[2])
		if err != nil {
			cl.t.Errorf("cloud: bad chunk topic %s", m.Topic())
			return
		}
		msg.n = n
		a := cl.cur[aid]
		if a == nil {
			cl.t.Errorf("cloud: chunk %s before its manifest", m.Topic())
			return
		}
		a.chunks[n] = payload
		if len(a.chunks) == a.man.Chunks {
			var content []byte
			for i := range a.man.Chunks {
				content = append(content, a.chunks[i]...)
			}
			seq := 1
			for _, d := range cl.delivered {
				if !cl.light && d.Manifest.ArtifactID == aid {
					seq++
				}
			}
			d := Delivery{Manifest: a.man, Content: content, Seq: seq}
			if cl.light {
				d.Content = nil
			}
			cl.delivered = append(cl.delivered, d)
			delete(cl.cur, aid)
			done = &d
		}
	default:
		cl.t.Errorf("cloud: unexpected topic %s", m.Topic())
		return
	}
	if !cl.light {
		cl.msgs = append(cl.msgs, msg)
	}
	close(cl.changed)
	cl.changed = make(chan struct{})
	if done != nil {
		if f := cl.ack.Load(); f != nil {
			if p := (*f)(*done); p != nil {
				cl.c.Publish(topic("artifacts/"+aid+"/ack"), 1, false, p) // not waited: paho's goroutine
			}
		}
	}
}

// sendAck publishes an ack payload on artifacts/{aid}/ack and waits for
// the broker.
func (cl *cloud) sendAck(aid, payload string) {
	cl.t.Helper()
	cl.publish(topic("artifacts/"+aid+"/ack"), []byte(payload))
}

func (cl *cloud) publish(tp string, payload []byte) {
	cl.t.Helper()
	tok := cl.c.Publish(tp, 1, false, payload)
	if !tok.WaitTimeout(wait) || tok.Error() != nil {
		cl.t.Fatalf("cloud publish %s: %v", tp, tok.Error())
	}
}

// waitFor waits until cond (called with cl.mu held) holds.
func (cl *cloud) waitFor(what string, timeout time.Duration, cond func() bool) {
	cl.t.Helper()
	deadline := time.After(timeout)
	for {
		cl.mu.Lock()
		ok := cond()
		ch := cl.changed
		cl.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			cl.mu.Lock()
			n := len(cl.msgs)
			cl.mu.Unlock()
			cl.t.Fatalf("cloud: timeout waiting for %s (%d messages so far)", what, n)
		}
	}
}

// waitDelivered waits until aid was delivered whole at least times times
// and returns the last delivery.
func (cl *cloud) waitDelivered(aid string, times int) Delivery {
	cl.t.Helper()
	var last Delivery
	cl.waitFor(fmt.Sprintf("delivery %d of %s", times, aid), wait, func() bool {
		n := 0
		for _, d := range cl.delivered {
			if d.Manifest.ArtifactID == aid {
				n++
				last = d
			}
		}
		return n >= times
	})
	return last
}

func (cl *cloud) deliveries(aid string) int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	n := 0
	for _, d := range cl.delivered {
		if d.Manifest.ArtifactID == aid {
			n++
		}
	}
	return n
}

// messages returns what arrived for aid, in order.
func (cl *cloud) messages(aid string) []cloudMsg {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	var out []cloudMsg
	for _, m := range cl.msgs {
		if m.aid == aid {
			out = append(out, m)
		}
	}
	return out
}

func checkDelivery(t testing.TB, d Delivery, m Meta, content []byte, chunkSize int) {
	t.Helper()
	sum := sha256.Sum256(d.Content)
	if got := hex.EncodeToString(sum[:]); got != d.Manifest.SHA256 {
		t.Errorf("reassembled sha256 %s, manifest says %s", got, d.Manifest.SHA256)
	}
	if !bytes.Equal(d.Content, content) {
		t.Errorf("reassembled content differs from what was queued (%d vs %d bytes)", len(d.Content), len(content))
	}
	want := (len(content) + chunkSize - 1) / chunkSize
	if d.Manifest.Chunks != want || d.Manifest.Size != int64(len(content)) || d.Manifest.ArtifactID != m.ID ||
		d.Manifest.Kind != m.Kind || d.Manifest.SHA256 != m.SHA256 {
		t.Errorf("manifest %+v does not match meta %+v (want %d chunks)", d.Manifest, m, want)
	}
}

// loadAll reads an artifact's whole content (fails the test when it
// cannot be read).
func loadAll(t *testing.T, o *Outbox, id string) []byte {
	t.Helper()
	rec, r, err := o.load(id)
	if err != nil || rec == nil {
		t.Fatalf("load %s: %v (record %v)", id, err, rec != nil)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	return b
}
