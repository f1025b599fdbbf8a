package firmware

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
	"github.com/aibo-privacy/aibo-privacyd/sync/link"
)

// TestChunksThroughMosquitto runs the chunk path end to end: a real broker,
// the daemon's MQTT link subscribed to ChunkTopic feeding
// HandleChunkMessage, and a test client playing the cloud that publishes
// the chunks out of order with duplicates (plus a chunk beyond the manifest
// and chunks of a version never offered).
func TestChunksThroughMosquitto(t *testing.T) {
	const dev = "aibo-fw-1"
	broker := testbroker.Start(t)
	f := newFixture(t, nil)

	staged := make(chan Manifest, 1)
	prev := f.m.cfg.OnStaged
	f.m.cfg.OnStaged = func(m Manifest) { prev(m); staged <- m }

	l, err := link.New(link.Config{DeviceID: dev, Broker: broker.URL, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond},
		func(context.Context, []byte) []byte { return nil })
	if err != nil {
		t.Fatal(err)
	}
	// Probe messages (version 0.0.0) tell the test the subscription is live.
	var probed atomic.Bool
	l.Subscribe(f.m.ChunkTopic(), func(topic string, payload []byte) {
		// RabbitMQ may deliver the dots of a level as slashes.
		if strings.Contains(topic, "/firmware/0.0.0/") || strings.Contains(topic, "/firmware/0/0/0/") {
			probed.Store(true)
		}
		f.m.HandleChunkMessage(topic, payload)
	})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 2)
	go func() { runDone <- l.Run(ctx) }()
	go func() { runDone <- f.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-runDone; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	})

	cloud := broker.Client(t)
	prefix := "aibo/" + dev + "/firmware/"
	deadline := time.Now().Add(10 * time.Second)
	for !probed.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("chunk subscription never became live\n%s", broker.Logs())
		}
		cloud.Publish(t, prefix+"0.0.0/chunk/0", []byte("probe"), false)
		time.Sleep(20 * time.Millisecond)
	}

	img := image(40*1024+123, 40)
	man := manifestFor("4.0.0", img, 1024)
	f.mustOffer(man)
	chunks := split(img, 1024)

	order := rand.New(rand.NewPCG(1, 2)).Perm(len(chunks))
	order = append(order, order[:12]...) // duplicates
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	// Hold one chunk back to check the state before the last one arrives.
	last := order[len(order)-1]
	var rest []int
	for _, n := range order {
		if n != last {
			rest = append(rest, n)
		}
	}
	cloud.Publish(t, prefix+"4.0.0/chunk/"+strconv.Itoa(len(chunks)), make([]byte, 1024), false) // beyond the manifest
	cloud.Publish(t, prefix+"3.9.9/chunk/0", chunks[0], false)                                   // never offered
	for _, n := range rest {
		cloud.Publish(t, prefix+"4.0.0/chunk/"+strconv.Itoa(n), chunks[n], false)
	}
	want := len(chunks) - 1
	deadline = time.Now().Add(10 * time.Second)
	for {
		d := f.status().Download
		if d == nil {
			t.Fatal("download gone before the last chunk")
		}
		if d.Received == want {
			if f.status().Staged != "" {
				t.Fatal("staged before the last chunk")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d chunks", d.Received, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := f.downloadBytes(); got > man.Size {
		t.Fatalf("download file holds %d bytes, manifest size %d", got, man.Size)
	}
	cloud.Publish(t, prefix+"4.0.0/chunk/"+strconv.Itoa(last), chunks[last], false)
	select {
	case m := <-staged:
		if m != man {
			t.Fatalf("staged %+v, want %+v", m, man)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("image not staged")
	}
	f.assertStagedFile(StagedFile, img)
	if s := f.status(); s.Staged != "4.0.0" || s.Download != nil {
		t.Fatalf("status %+v", s)
	}
	// Late duplicates after staging are ignored.
	cloud.Publish(t, prefix+"4.0.0/chunk/0", chunks[0], false)
	if _, rj := f.callbacks(); len(rj) != 0 {
		t.Fatalf("rejections: %v", rj)
	}
}
