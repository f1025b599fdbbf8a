package main

import (
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// muteProxy sits between the daemon and the real Mosquitto. While muted it
// swallows what the daemon sends (its publishes get no PUBACK, as on a
// link that only works one way) and still delivers what the broker sends.
type muteProxy struct {
	ln    net.Listener
	to    string
	muted atomic.Bool
	wg    sync.WaitGroup
}

func startMuteProxy(t *testing.T, brokerURL string) *muteProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &muteProxy{ln: ln, to: strings.TrimPrefix(brokerURL, "tcp://")}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.to)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(c, up); c.Close() }()
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 && !p.muted.Load() {
						up.Write(buf[:n])
					}
					if err != nil {
						up.Close()
						return
					}
				}
			}()
		}
	})
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *muteProxy) url() string { return "tcp://" + p.ln.Addr().String() }

var eventIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// Contract v2: every event carries an event_id, the same on every resend,
// so the cloud can drop the repeats at-least-once delivery allows. An
// erase request whose publish got no PUBACK before a power cut is sent
// again after the restart with the id it was committed with.
func TestP10_EventsCarryAnIDTheSameOnEveryResend(t *testing.T) {
	b := testbroker.Start(t)
	p := startMuteProxy(t, b.URL)
	r := newRig(t, b, "")
	cfg, err := os.ReadFile(r.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.config, []byte(strings.Replace(string(cfg), b.URL, p.url(), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	a := newApp(t, b, r.deviceID)
	r.start()
	enableAutoPhoto(a)
	r.drop("one.jpg", mustRead(t, "../../testdata/photos/genki-smile-file1564.jpg"))
	r.waitSpoolEmpty(2 * time.Second)
	a.must("sel-1", "select_photos", map[string]any{})
	done := eventOf(t, a, "selection_done")

	// The link starts working one way only; the owner erases the photos.
	p.muted.Store(true)
	cmd, _ := json.Marshal(map[string]any{"id": "del-1", "type": "delete_data", "issued_at": time.Now().UTC().Format(time.RFC3339),
		"payload": map[string]any{"categories": []string{"photos"}}})
	a.c.Publish(t, a.topic("cmd"), cmd, false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := r.ctl("queue", "--json")
		var q struct {
			EventsPending int `json:"events_pending"`
		}
		if json.Unmarshal([]byte(out), &q) == nil && q.EventsPending == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the erase request never waited for the broker: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // its publish is on the wire, unanswered
	r.kill()

	// What the store kept for the resend.
	db, err := bolt.Open(filepath.Join(r.dataDir, "state.db"), 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var kept map[string]any
	db.View(func(tx *bolt.Tx) error {
		_, v := tx.Bucket(store.BucketEvents).Cursor().First()
		return json.Unmarshal(v, &kept)
	})
	db.Close()
	if kept["type"] != "erase_request" || !eventIDPattern.MatchString(kept["event_id"].(string)) {
		t.Fatalf("pending event %v, want an erase_request with an event_id", kept)
	}

	p.muted.Store(false)
	r.start()
	resent := eventOf(t, a, "erase_request")
	if resent["event_id"] != kept["event_id"] {
		t.Fatalf("resent with event_id %v, committed with %v", resent["event_id"], kept["event_id"])
	}
	r.stop()

	ids := map[string]string{}
	for _, m := range a.events.All() {
		var ev map[string]any
		if err := json.Unmarshal(m.Payload, &ev); err != nil {
			t.Fatal(err)
		}
		id, _ := ev["event_id"].(string)
		if !eventIDPattern.MatchString(id) {
			t.Errorf("event without an event_id: %s", m.Payload)
		}
		if prev, seen := ids[id]; seen && !(ev["type"] == "erase_request" && prev == "erase_request") {
			t.Errorf("event_id %s on two different events", id)
		}
		ids[id] = ev["type"].(string)
	}
	if ids[done["event_id"].(string)] != "selection_done" {
		t.Errorf("selection_done %v", done)
	}
}
