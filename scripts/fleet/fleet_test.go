package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
)

// TestADayOnOneBrokerLosesNothing plays the fleet's day (make
// test-cluster plays it on the cluster, with faults) on three robots and
// the test Mosquitto: every artifact arrives whole and is acked, every
// withdrawal is answered and its erase request delivered, and the robots'
// meters saw what the cloud received.
func TestADayOnOneBrokerLosesNothing(t *testing.T) {
	b := testbroker.Start(t)
	s := settings{KeepAlive: 30 * time.Second, ChunkSize: 64 << 10, AckTimeout: 30 * time.Second, MaxQueue: 64 << 20}
	f, err := newFleet(fleetOptions{dir: t.TempDir(), prefix: "t", n: 3, broker: b.URL, cloudURL: b.URL, cloudClients: 2, s: s,
		log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	f.start()
	if err := f.waitConnected(f.robots, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := f.playDay(context.Background(), f.robots, 6*time.Second, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.drain(f.robots, 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	o, err := f.check(f.robots, 1)
	if err != nil {
		t.Fatal(err)
	}
	if o.ByKind["photo"] != 30 || o.Arrived+o.Withdrawn != o.Queued || o.Queued != 30+60 {
		t.Fatalf("outcome %+v: want 30 photos and 60 sightings, each arrived or erased by the withdrawal", o)
	}
	kinds, wire := meters(f.robots)
	recv, _ := f.cloud.tallies()
	if kinds["out artifact meta"].Msgs < recv["artifact meta"].Msgs || kinds["out artifact chunk"].Msgs < recv["artifact chunk"].Msgs {
		t.Fatalf("the robots' meters counted %+v, fewer than the cloud received %+v", kinds, recv)
	}
	if wire[0] < recv["artifact chunk"].Bytes {
		t.Fatalf("the robots wrote %d bytes, less than the %d bytes of chunks the cloud received", wire[0], recv["artifact chunk"].Bytes)
	}
}

// TestTheMeterReadsMQTTFraming: the meter names every packet of a byte
// stream however it is cut into reads, and counts each whole.
func TestTheMeterReadsMQTTFraming(t *testing.T) {
	m := newMeter("r1")
	publish := func(topic string, payload []byte) []byte {
		body := append([]byte{byte(len(topic) >> 8), byte(len(topic))}, topic...)
		body = append(body, 0, 1) // packet id
		body = append(body, payload...)
		return append(append([]byte{0x32}, remaining(len(body))...), body...)
	}
	var stream []byte
	stream = append(stream, 0x10, 0x0e, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 2, 'i', 'd') // CONNECT
	stream = append(stream, publish("aibo/r1/artifacts/a1/chunk/0", make([]byte, 200))...)     // two length bytes
	stream = append(stream, publish("aibo/r1/state", []byte("{}"))...)
	stream = append(stream, 0xc0, 0x00)             // PINGREQ
	stream = append(stream, 0x40, 0x02, 0x00, 0x07) // PUBACK
	f := &framer{m: m, dir: dirOut}
	for i := 0; i < len(stream); i += 3 { // reads of three bytes at most
		f.feed(stream[i:min(i+3, len(stream))])
	}
	got := m.snapshot()
	want := map[string]tally{
		"out CONNECT":        {1, 16},
		"out artifact chunk": {1, int64(len(publish("aibo/r1/artifacts/a1/chunk/0", make([]byte, 200))))},
		"out state":          {1, int64(len(publish("aibo/r1/state", []byte("{}"))))},
		"out PINGREQ":        {1, 2},
		"out PUBACK":         {1, 4},
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %+v, want %+v", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("kinds %v", got)
	}
}

func remaining(n int) []byte {
	var b []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// TestTheCloudTellsACorruptCopy: a copy whose bytes, manifest hash or
// size differ from what the robot queued is corrupt, never an arrival.
func TestTheCloudTellsACorruptCopy(t *testing.T) {
	l := newLedger()
	content := camera("r1", 0)
	sum := sha256.Sum256(content)
	h := hex.EncodeToString(sum[:])
	l.queued("r1", outbox.Meta{ID: "a1", Kind: policy.KindPhoto, Size: int64(len(content)), SHA256: h})
	bad := append([]byte(nil), content...)
	bad[1000] ^= 1
	if v := l.arrive("r1", "a1", h, int64(len(content)), bad); v != arrivedCorrupt {
		t.Fatalf("a flipped bit: verdict %d", v)
	}
	if v := l.arrive("r1", "a1", h, int64(len(content)), content[:len(content)-1]); v != arrivedCorrupt {
		t.Fatalf("a short copy: verdict %d", v)
	}
	if v := l.arrive("r1", "a1", h, int64(len(content)), content); v != arrivedFirst {
		t.Fatalf("the right bytes: verdict %d", v)
	}
	if v := l.arrive("r1", "a1", h, int64(len(content)), content); v != arrivedAgain {
		t.Fatalf("a resend: verdict %d", v)
	}
	if v := l.arrive("r1", "a2", h, int64(len(content)), content); v != arrivedUnknown {
		t.Fatalf("an id nobody queued: verdict %d", v)
	}
	if o := l.outcome(nil); o.Arrived != 1 || o.Corrupt != 2 || o.Missing != 0 {
		t.Fatalf("outcome %+v", o)
	}
}
