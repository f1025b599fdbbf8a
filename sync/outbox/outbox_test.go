package outbox

import (
	"bytes"
	"context"
	"errors"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/internal/fsx"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

func TestDeliverManifestThenChunksAndDeleteOnAck(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	o := e.open(nil)
	cl := newCloud(t, b)
	l, _ := startLink(t, b)

	small := randBytes(700)                // inline, one chunk
	large := randBytes(InlineMax + 5*1024) // file, 21 chunks of 1 KiB
	ms := enqueue(t, o, policy.KindSighting, small)
	ml, err := o.Enqueue(context.Background(), Artifact{
		Kind: policy.KindPhoto, ContentType: "image/jpeg", SubjectID: "s-42",
		Attrs: map[string]any{"score": 0.75, "day": "2026-03-01"}, Content: large,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(contentFiles(t, e.dir)) != 1 {
		t.Fatalf("want exactly the large artifact's file, have %v", contentFiles(t, e.dir))
	}
	runOutbox(t, o, l)

	ds := cl.waitDelivered(ms.ID, 1)
	dl := cl.waitDelivered(ml.ID, 1)
	checkDelivery(t, ds, ms, small, 1024)
	checkDelivery(t, dl, ml, large, 1024)
	if dl.Manifest.SubjectID != "s-42" || dl.Manifest.ContentType != "image/jpeg" || dl.Manifest.Attrs["day"] != "2026-03-01" || dl.Manifest.Attrs["score"] != 0.75 {
		t.Errorf("manifest fields: %+v", dl.Manifest)
	}
	if ds.Manifest.SubjectID != "" || ds.Manifest.Attrs == nil {
		t.Errorf("manifest without subject: %+v", ds.Manifest)
	}
	if _, err := time.Parse(time.RFC3339, dl.Manifest.CreatedAt); err != nil {
		t.Errorf("created_at %q: %v", dl.Manifest.CreatedAt, err)
	}
	// Order: the small one was queued first; each manifest precedes its chunks, chunks in order.
	msgs := cl.messages(ml.ID)
	if msgs[0].part != "meta" {
		t.Fatalf("first message %+v, want the manifest", msgs[0])
	}
	for i, m := range msgs[1:] {
		if m.part != "chunk" || m.n != i || m.size > 1024 {
			t.Fatalf("message %d: %+v", i+1, m)
		}
	}
	if n, _ := o.Summary(); n != 2 {
		t.Fatalf("before acks: %d pending, want 2 (a publish is finished only at the ack)", n)
	}

	cl.sendAck(ms.ID, `{"ok":true}`)
	cl.sendAck(ml.ID, `{"ok": true}`)
	e.waitAcked(ms.ID, ml.ID)
	if n, by := o.Summary(); n != 0 || by != 0 {
		t.Fatalf("after acks: %d pending, %d bytes", n, by)
	}
	if a, c := e.records(t); a != 0 || c != 0 {
		t.Fatalf("after acks: %d records, %d inline contents remain", a, c)
	}
	if f := contentFiles(t, e.dir); len(f) != 0 {
		t.Fatalf("after acks: files remain: %v", f)
	}
	e.mu.Lock()
	if e.acked[0].Size == 0 || e.acked[0].Attempts != 1 {
		t.Errorf("OnAcked meta %+v", e.acked[0])
	}
	e.mu.Unlock()
	if strings.Contains(e.logs.String(), string(small[:16])) {
		t.Error("content in logs")
	}
}

func TestResendSameIDWithoutAck(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	o := e.open(func(c *Config) { c.AckTimeout = time.Second })
	cl := newCloud(t, b)
	l, _ := startLink(t, b)
	content := randBytes(3000)
	m := enqueue(t, o, policy.KindInventory, content)
	start := time.Now()
	runOutbox(t, o, l)

	cl.waitDelivered(m.ID, 1)
	first := time.Since(start)
	d := cl.waitDelivered(m.ID, 2)
	if gap := time.Since(start) - first; gap < 900*time.Millisecond {
		t.Errorf("resent after %v, want about AckTimeout (1s)", gap)
	}
	checkDelivery(t, d, m, content, 1024)
	cl.sendAck(m.ID, `{"ok":true}`)
	e.waitAcked(m.ID)
	if n, _ := o.Summary(); n != 0 {
		t.Fatalf("%d pending after ack", n)
	}
}

// TestResendsBackOff: an artifact the cloud does not ack is sent again
// after AckTimeout, then after twice as long: a cloud that is behind is
// not sent the same bytes over and over while it catches up.
func TestResendsBackOff(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	const ackTimeout = 500 * time.Millisecond
	o := e.open(func(c *Config) { c.AckTimeout = ackTimeout })
	cl := newCloud(t, b)
	l, _ := startLink(t, b)
	m := enqueue(t, o, policy.KindInventory, randBytes(3000))
	runOutbox(t, o, l)
	var at []time.Time
	for n := 1; n <= 3; n++ {
		cl.waitDelivered(m.ID, n)
		at = append(at, time.Now())
	}
	if gap := at[1].Sub(at[0]); gap < ackTimeout*9/10 {
		t.Fatalf("first resend %s after the send, want at least the ack timeout %s", gap, ackTimeout)
	}
	if gap := at[2].Sub(at[1]); gap < 2*ackTimeout*9/10 {
		t.Fatalf("second resend %s after the first, want at least twice the ack timeout", gap)
	}
	cl.sendAck(m.ID, `{"ok":true}`)
	e.waitAcked(m.ID)
}

func TestResendAfterRestart(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	cl := newCloud(t, b)
	o := e.open(func(c *Config) { c.AckTimeout = time.Hour })
	l, stopLink := startLink(t, b)
	small, large := randBytes(100), randBytes(40_000)
	m1 := enqueue(t, o, policy.KindSighting, small)
	m2 := enqueue(t, o, policy.KindPhoto, large)
	stop := runOutbox(t, o, l)
	cl.waitDelivered(m1.ID, 1)
	cl.waitDelivered(m2.ID, 1)
	stop()
	stopLink()
	e.closeStore()

	// Power comes back: new store handle, new outbox, new link.
	e.openStore()
	o2 := e.open(func(c *Config) { c.AckTimeout = time.Hour })
	if got := o2.List(); len(got) != 2 || got[0].ID != m1.ID || got[1].ID != m2.ID {
		t.Fatalf("after restart: %+v", got)
	}
	l2, _ := startLink(t, b)
	runOutbox(t, o2, l2)
	d1 := cl.waitDelivered(m1.ID, 2) // resent long before the hour-long ack timeout
	d2 := cl.waitDelivered(m2.ID, 2)
	checkDelivery(t, d1, m1, small, 1024)
	checkDelivery(t, d2, m2, large, 1024)
	cl.sendAck(m1.ID, `{"ok":true}`)
	cl.sendAck(m2.ID, `{"ok":true}`)
	e.waitAcked(m1.ID, m2.ID)
	if a, c := e.records(t); a != 0 || c != 0 || len(contentFiles(t, e.dir)) != 0 {
		t.Fatalf("after acks: %d records, %d contents, files %v", a, c, contentFiles(t, e.dir))
	}
}

func TestBrokerDownThenBackNothingLost(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	o := e.open(func(c *Config) { c.AckTimeout = time.Second })
	cl := newCloud(t, b)
	cl.autoAck(`{"ok":true}`)
	l, _ := startLink(t, b)

	want := map[string][]byte{}
	var ids []string
	add := func(n int) {
		for range n {
			c := randBytes(500 + len(ids)*997%30_000)
			m := enqueue(t, o, policy.KindSighting, c)
			want[m.ID] = c
			ids = append(ids, m.ID)
		}
	}
	add(10)
	runOutbox(t, o, l)
	cl.waitDelivered(ids[0], 1)
	b.Stop() // mid-stream
	add(10)  // queued while the link is down
	time.Sleep(700 * time.Millisecond)
	b.Restart(t)
	e.waitAcked(ids...)
	if n, by := o.Summary(); n != 0 || by != 0 {
		t.Fatalf("%d pending (%d bytes) after everything was acked", n, by)
	}
	for _, id := range ids {
		cl.mu.Lock()
		var got []byte
		for _, d := range cl.delivered {
			if d.Manifest.ArtifactID == id {
				got = d.Content
			}
		}
		cl.mu.Unlock()
		if !bytes.Equal(got, want[id]) {
			t.Errorf("artifact %s: delivered content differs", id)
		}
	}
	e.mu.Lock()
	if len(e.dropped) != 0 {
		t.Errorf("dropped: %v", e.dropped)
	}
	e.mu.Unlock()
	if !strings.Contains(e.logs.String(), "publish failed; will retry") {
		t.Error("no publish failed while the broker was down: the test did not exercise the outage")
	}
}

func TestGateFlipsMidArtifact(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	var victim atomic.Value
	victim.Store("")
	var calls atomic.Int32
	o := e.open(func(c *Config) {
		c.MaySend = func(m Meta) policy.Verdict {
			if m.ID != victim.Load().(string) || calls.Add(1) <= 3 { // manifest, chunk 0, chunk 1
				return policy.Send
			}
			return policy.Refuse // then consent is gone
		}
	})
	cl := newCloud(t, b)
	cl.autoAck(`{"ok":true}`)
	l, _ := startLink(t, b)
	m := enqueue(t, o, policy.KindFaceTemplate, randBytes(10*1024))
	victim.Store(m.ID)
	runOutbox(t, o, l)

	if r := e.waitDropped(m.ID); r != ReasonGate {
		t.Fatalf("drop reason %q", r)
	}
	// A later artifact goes through; the broker keeps order, so anything
	// more of the victim would have arrived before it.
	other := enqueue(t, o, policy.KindSighting, randBytes(100))
	cl.waitDelivered(other.ID, 1)
	e.waitAcked(other.ID)
	msgs := cl.messages(m.ID)
	if len(msgs) != 3 || msgs[0].part != "meta" || msgs[2].part != "chunk" || msgs[2].n != 1 {
		t.Fatalf("victim messages: %+v", msgs)
	}
	if got := calls.Load(); got != 4 {
		t.Errorf("gate asked %d times for the victim, want 4", got)
	}
	if a, c := e.records(t); a != 0 || c != 0 || len(contentFiles(t, e.dir)) != 0 {
		t.Fatalf("victim not erased: %d records, %d contents, files %v", a, c, contentFiles(t, e.dir))
	}
}

func TestDropWhileSending(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	var victim atomic.Value
	victim.Store("")
	atChunk2 := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	o := e.open(func(c *Config) {
		c.MaySend = func(m Meta) policy.Verdict {
			if m.ID == victim.Load().(string) && calls.Add(1) == 4 { // before chunk 2
				close(atChunk2)
				<-release
			}
			return policy.Send
		}
	})
	cl := newCloud(t, b)
	cl.autoAck(`{"ok":true}`)
	l, _ := startLink(t, b)
	m := enqueue(t, o, policy.KindPhoto, randBytes(30*1024))
	victim.Store(m.ID)
	keep := enqueue(t, o, policy.KindPhoto, randBytes(20*1024))
	runOutbox(t, o, l)

	<-atChunk2
	dropped := make(chan []Meta, 1)
	go func() {
		got, err := o.Drop(func(x Meta) bool { return x.ID == m.ID }, "photo deselected")
		if err != nil {
			t.Error(err)
		}
		dropped <- got
	}()
	// Drop has committed and marked the artifact gone once it leaves List.
	deadline := time.Now().Add(wait)
	for slices.ContainsFunc(o.List(), func(x Meta) bool { return x.ID == m.ID }) {
		if time.Now().After(deadline) {
			t.Fatal("Drop did not remove the artifact")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-dropped:
		t.Fatal("Drop returned while a publish of the artifact was still being decided")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	got := <-dropped
	if len(got) != 1 || got[0].ID != m.ID {
		t.Fatalf("Drop returned %+v", got)
	}
	if r := e.waitDropped(m.ID); r != "photo deselected" {
		t.Fatalf("reason %q", r)
	}
	d := cl.waitDelivered(keep.ID, 1)
	if d.Manifest.Chunks != 20 {
		t.Fatalf("kept artifact: %+v", d.Manifest)
	}
	e.waitAcked(keep.ID)
	msgs := cl.messages(m.ID)
	if len(msgs) != 3 { // meta, chunk 0, chunk 1
		t.Fatalf("dropped artifact: %d messages published, want 3: %+v", len(msgs), msgs)
	}
	if cl.deliveries(m.ID) != 0 {
		t.Fatal("dropped artifact delivered")
	}
	if a, c := e.records(t); a != 0 || c != 0 || len(contentFiles(t, e.dir)) != 0 {
		t.Fatalf("left behind: %d records, %d contents, files %v", a, c, contentFiles(t, e.dir))
	}
}

func TestQueueFull(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	o := e.open(func(c *Config) { c.MaxQueueBytes = 50_000 })
	a1 := enqueue(t, o, policy.KindPhoto, randBytes(20_000))
	a2 := enqueue(t, o, policy.KindPhoto, randBytes(20_000))
	_, err := o.Enqueue(context.Background(), Artifact{Kind: policy.KindPhoto, Content: randBytes(20_000)})
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third enqueue: %v, want ErrQueueFull", err)
	}
	_, err = o.Enqueue(context.Background(), Artifact{Kind: policy.KindPhoto, Content: randBytes(60_000)})
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("too large: %v, want ErrQueueFull", err)
	}
	if got := o.List(); len(got) != 2 || got[0].ID != a1.ID || got[1].ID != a2.ID {
		t.Fatalf("queue after refusals: %+v", got)
	}
	if f := contentFiles(t, e.dir); len(f) != 2 {
		t.Fatalf("files after refusals: %v", f)
	}
	// Same through EnqueueTx.
	p, err := o.Prepare(Artifact{Kind: policy.KindPhoto, Content: randBytes(20_000)})
	if err != nil {
		t.Fatal(err)
	}
	err = e.st.Update(func(tx *bolt.Tx) error { _, err := o.EnqueueTx(tx, p); return err })
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("EnqueueTx: %v, want ErrQueueFull", err)
	}
	p.Discard()

	cl := newCloud(t, b)
	cl.autoAck(`{"ok":true}`)
	l, _ := startLink(t, b)
	runOutbox(t, o, l)
	e.waitAcked(a1.ID, a2.ID)
	a3 := enqueue(t, o, policy.KindPhoto, randBytes(45_000))
	e.waitAcked(a3.ID)
	// An operator sees the refusals and the uploads.
	st := o.Stats()
	if st[StatRefusedFull][policy.KindPhoto] != 3 || st[StatAcked][policy.KindPhoto] != 3 || st[StatResent][policy.KindPhoto] != 0 {
		t.Errorf("stats %v, want 3 refused_full, 3 acked, no resend", st)
	}
}

func TestNackRetriesThenDrops(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	o := e.open(func(c *Config) {
		c.MaxNacks = 3
		c.RetryMin = 200 * time.Millisecond
		c.RetryMax = 400 * time.Millisecond
		c.AckTimeout = time.Hour // resends here come from the nacks alone
	})
	cl := newCloud(t, b)
	l, _ := startLink(t, b)
	bad := enqueue(t, o, policy.KindUsage, randBytes(2000))
	flaky := enqueue(t, o, policy.KindSighting, randBytes(2000))
	var mu sync.Mutex
	var badTimes []time.Time
	cl.setAck(func(d Delivery) []byte {
		switch d.Manifest.ArtifactID {
		case bad.ID:
			mu.Lock()
			badTimes = append(badTimes, time.Now())
			mu.Unlock()
			return []byte(`{"ok":false,"reason":"sha256 mismatch (test)"}`)
		case flaky.ID:
			if d.Seq == 1 {
				return []byte(`{"ok":false,"reason":"storage busy"}`)
			}
			return []byte(`{"ok":true}`)
		}
		return nil
	})
	runOutbox(t, o, l)
	e.waitAcked(flaky.ID)
	if r := e.waitDropped(bad.ID); r != ReasonNackLimit {
		t.Fatalf("reason %q", r)
	}
	if n := cl.deliveries(bad.ID); n != 3 {
		t.Fatalf("rejected artifact sent %d times, want MaxNacks=3", n)
	}
	if n := cl.deliveries(flaky.ID); n != 2 {
		t.Fatalf("flaky artifact sent %d times, want 2", n)
	}
	mu.Lock()
	for i := 1; i < len(badTimes); i++ {
		if gap := badTimes[i].Sub(badTimes[i-1]); gap < 100*time.Millisecond {
			t.Errorf("resend %d came %v after the nack, want backoff >= RetryMin/2", i, gap)
		}
	}
	mu.Unlock()
	e.mu.Lock()
	if m := e.acked[0]; m.Nacks != 1 || m.Attempts != 2 {
		t.Errorf("flaky meta %+v, want 1 nack, 2 attempts", m)
	}
	e.mu.Unlock()
	if !strings.Contains(e.logs.String(), "sha256 mismatch (test)") {
		t.Error("nack reason not logged")
	}
	if a, _ := e.records(t); a != 0 {
		t.Fatalf("%d records remain", a)
	}
	st := o.Stats()
	for _, c := range []struct {
		name string
		kind policy.Kind
		want uint64
	}{
		{StatSent, policy.KindUsage, 3}, {StatResent, policy.KindUsage, 2}, {StatNacked, policy.KindUsage, 3},
		{StatSent, policy.KindSighting, 2}, {StatResent, policy.KindSighting, 1}, {StatNacked, policy.KindSighting, 1}, {StatAcked, policy.KindSighting, 1},
	} {
		if got := st[c.name][c.kind]; got != c.want {
			t.Errorf("stats %s %s = %d, want %d (%v)", c.name, c.kind, got, c.want, st)
		}
	}
}

func TestNackCountSurvivesRestart(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	mod := func(c *Config) {
		c.MaxNacks = 2
		c.RetryMin = time.Hour // no resend before the restart
		c.AckTimeout = time.Hour
	}
	o := e.open(mod)
	cl := newCloud(t, b)
	cl.autoAck(`{"ok":false,"reason":"no"}`)
	l, stopLink := startLink(t, b)
	m := enqueue(t, o, policy.KindSighting, randBytes(100))
	stop := runOutbox(t, o, l)
	cl.waitDelivered(m.ID, 1)
	deadline := time.Now().Add(wait)
	for o.List()[0].Nacks != 1 {
		if time.Now().After(deadline) {
			t.Fatal("nack not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	stopLink()
	e.closeStore()
	e.openStore()
	o2 := e.open(mod)
	if got := o2.List(); len(got) != 1 || got[0].Nacks != 1 || got[0].Attempts != 1 {
		t.Fatalf("after restart: %+v", got)
	}
	l2, _ := startLink(t, b)
	runOutbox(t, o2, l2)
	if r := e.waitDropped(m.ID); r != ReasonNackLimit {
		t.Fatalf("reason %q", r)
	}
}

func TestMalformedAndUnknownAcksIgnored(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	o := e.open(func(c *Config) { c.AckTimeout = time.Hour })
	cl := newCloud(t, b)
	l, _ := startLink(t, b)
	m := enqueue(t, o, policy.KindSighting, randBytes(1500))
	runOutbox(t, o, l)
	cl.waitDelivered(m.ID, 1)

	for _, p := range []string{"", "not json", `{"ok":"true"}`, `{}`, `[]`, `null`, `{"ok":1}`, `{"reason":"x"}`,
		`{"ok":true` + strings.Repeat(" ", 8<<10) + `}`, strings.Repeat("[", 100_000)} {
		cl.sendAck(m.ID, p)
	}
	cl.sendAck("00000000000000000000000000000000", `{"ok":true}`)
	cl.sendAck("unknown", `{"ok":false,"reason":"?"}`)
	cl.publish(topic("artifacts/bad id!/ack"), []byte(`{"ok":true}`))
	cl.publish(topic("artifacts/"+m.ID+"/x/ack"), []byte(`{"ok":true}`))

	// Still queued, still working: a new artifact goes out and is acked.
	m2 := enqueue(t, o, policy.KindSighting, randBytes(100))
	cl.waitDelivered(m2.ID, 1)
	cl.sendAck(m2.ID, `{"ok":true}`)
	e.waitAcked(m2.ID)
	if got := o.List(); len(got) != 1 || got[0].ID != m.ID {
		t.Fatalf("queue: %+v", got)
	}
	cl.sendAck(m.ID, `{"ok":true}`)
	e.waitAcked(m.ID)
	if !strings.Contains(e.logs.String(), "malformed ack ignored") || !strings.Contains(e.logs.String(), "oversized ack ignored") {
		t.Error("malformed acks not logged")
	}
}

func TestReconcileAtOpen(t *testing.T) {
	e := newEnv(t)
	o := e.open(nil)
	keep := enqueue(t, o, policy.KindPhoto, randBytes(30_000))
	lost := enqueue(t, o, policy.KindPhoto, randBytes(30_000))
	inline := enqueue(t, o, policy.KindSighting, randBytes(100))
	files := contentFiles(t, e.dir)
	if len(files) != 2 {
		t.Fatalf("files %v", files)
	}
	for _, f := range files {
		if strings.HasPrefix(f, lost.ID) {
			os.Remove(filepath.Join(e.dir, f))
		}
	}
	orphan := filepath.Join(e.dir, "feedfacefeedfacefeedfacefeedface.0123456789ab"+fileExt)
	temp := filepath.Join(e.dir, fsx.TempPrefix+"x.art-123")
	for _, p := range []string{orphan, temp} {
		if err := os.WriteFile(p, []byte("leftover"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.closeStore()
	e.openStore()
	o2 := e.open(nil)
	if r := e.waitDropped(lost.ID); r != ReasonContentMissing {
		t.Fatalf("reason %q", r)
	}
	got := o2.List()
	if len(got) != 2 || got[0].ID != keep.ID || got[1].ID != inline.ID {
		t.Fatalf("after reconcile: %+v", got)
	}
	for _, p := range []string{orphan, temp} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s not removed: %v", filepath.Base(p), err)
		}
	}
	if f := contentFiles(t, e.dir); len(f) != 1 || !strings.HasPrefix(f[0], keep.ID) {
		t.Fatalf("files after reconcile: %v", f)
	}
	if n, by := o2.Summary(); n != 2 || by != 30_100 {
		t.Fatalf("summary %d %d", n, by)
	}
	// The byte counter was rebuilt too: exactly the room left is accepted.
	o3 := e.open(func(c *Config) { c.MaxQueueBytes = 30_200 })
	if _, err := o3.Enqueue(context.Background(), Artifact{Kind: policy.KindSighting, Content: randBytes(101)}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := o3.Enqueue(context.Background(), Artifact{Kind: policy.KindSighting, Content: randBytes(100)}); err != nil {
		t.Fatalf("up to the limit: %v", err)
	}
}

func TestContentSealedAtRest(t *testing.T) {
	e := newEnv(t)
	o := e.open(nil)
	small := append([]byte("PLAINTEXT-SMALL-"), randBytes(2000)...)
	large := append([]byte("PLAINTEXT-LARGE-"), randBytes(200_000)...)
	enqueue(t, o, policy.KindFaceTemplate, small)
	enqueue(t, o, policy.KindPhoto, large)
	st, err := os.Stat(e.dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v %v", st.Mode(), err)
	}
	var blobs [][]byte
	for _, f := range contentFiles(t, e.dir) {
		fi, _ := os.Stat(filepath.Join(e.dir, f))
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, fi.Mode())
		}
		data, err := os.ReadFile(filepath.Join(e.dir, f))
		if err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, data)
	}
	e.closeStore()
	db, err := os.ReadFile(e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	blobs = append(blobs, db)
	for _, blob := range blobs {
		for _, pt := range [][]byte{small, large} {
			for _, probe := range [][]byte{pt[:16], pt[100:132], pt[len(pt)-32:]} {
				if bytes.Contains(blob, probe) {
					t.Fatalf("plaintext found at rest")
				}
			}
		}
	}
	e.openStore()
}

func TestEnqueueTxCommitsWithTheCallersTransaction(t *testing.T) {
	e := newEnv(t)
	o := e.open(nil)
	other := []byte("test-other")
	p, err := o.Prepare(Artifact{Kind: policy.KindPhoto, Content: randBytes(50_000)})
	if err != nil {
		t.Fatal(err)
	}
	// Rolled back: nothing queued, file discarded.
	boom := errors.New("boom")
	err = e.st.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucket(other); err != nil {
			return err
		}
		if _, err := o.EnqueueTx(tx, p); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	p.Discard()
	if n, _ := o.Summary(); n != 0 || len(contentFiles(t, e.dir)) != 0 {
		t.Fatalf("after rollback: %d queued, files %v", n, contentFiles(t, e.dir))
	}
	// Committed: queued with the caller's write.
	p, err = o.Prepare(Artifact{ID: "photo-1", Kind: policy.KindPhoto, Content: randBytes(50_000)})
	if err != nil {
		t.Fatal(err)
	}
	err = e.st.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucket(other); err != nil {
			return err
		}
		_, err := o.EnqueueTx(tx, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Discard() // no-op once committed
	if got := o.List(); len(got) != 1 || got[0].ID != "photo-1" || len(contentFiles(t, e.dir)) != 1 {
		t.Fatalf("after commit: %+v, files %v", got, contentFiles(t, e.dir))
	}
	// A duplicate id is refused and does not touch the queued file.
	if _, err := o.Enqueue(context.Background(), Artifact{ID: "photo-1", Kind: policy.KindPhoto, Content: randBytes(50_000)}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate: %v", err)
	}
	if c := loadAll(t, o, "photo-1"); len(c) != 50_000 {
		t.Fatalf("queued artifact damaged by the duplicate: %d bytes", len(c))
	}
	if len(contentFiles(t, e.dir)) != 1 {
		t.Fatalf("files %v", contentFiles(t, e.dir))
	}
}

func TestConcurrentEnqueueGroupCommit(t *testing.T) {
	e := newEnv(t)
	o := e.open(nil)
	var wg sync.WaitGroup
	const n = 200
	for i := range n {
		wg.Go(func() {
			size := 1024
			if i%10 == 0 {
				size = 20_000
			}
			if _, err := o.Enqueue(context.Background(), Artifact{Kind: policy.KindUsage, Content: randBytes(size)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	count, by := o.Summary()
	if count != n || by != 180*1024+20*20_000 {
		t.Fatalf("summary %d %d", count, by)
	}
	list := o.List()
	e.closeStore()
	e.openStore()
	o2 := e.open(nil)
	list2 := o2.List()
	if len(list2) != n {
		t.Fatalf("after reopen %d", len(list2))
	}
	for i := range list {
		if list[i].ID != list2[i].ID {
			t.Fatalf("order differs at %d", i)
		}
	}
	k := o2.ByKind()[policy.KindUsage]
	if k.Count != n || k.Bytes != by || k.OldestAgeSeconds < 0 {
		t.Fatalf("ByKind %+v", k)
	}
}

func TestEnqueueValidation(t *testing.T) {
	e := newEnv(t)
	o := e.open(nil)
	for _, a := range []Artifact{
		{Kind: "selfie", Content: []byte("x")},
		{Kind: policy.KindPhoto},
		{ID: "a/b", Kind: policy.KindPhoto, Content: []byte("x")},
		{ID: "a+", Kind: policy.KindPhoto, Content: []byte("x")},
		{Kind: policy.KindUsage, SubjectID: "s1", Content: []byte("x")},
		{Kind: policy.KindPhoto, Attrs: map[string]any{"f": func() {}}, Content: []byte("x")},
	} {
		if _, err := o.Enqueue(context.Background(), a); err == nil {
			t.Errorf("accepted %+v", a)
		}
	}
	if n, _ := o.Summary(); n != 0 {
		t.Fatal("something queued")
	}
	for _, c := range []Config{{Dir: e.dir, DataKeys: e.data}, {Dir: e.dir, DeviceKey: e.devKey}, {Dir: e.dir, DeviceKey: e.devKey, DataKeys: e.data, ChunkSize: 512},
		{Dir: e.dir, DeviceKey: e.devKey, DataKeys: e.data, ChunkSize: 200_000}} {
		if _, err := Open(e.st, c); err == nil {
			t.Errorf("Open accepted %+v", c)
		}
	}
}

func TestAckTopicParsing(t *testing.T) {
	for topic, want := range map[string]string{
		"aibo/d/artifacts/abc/ack":   "abc",
		"aibo/d/artifacts/a_b-9/ack": "a_b-9",
		"aibo/d/artifacts//ack":      "",
		"aibo/d/artifacts/a/b/ack":   "",
		"aibo/d/other/abc/ack":       "",
		"aibo/d/xartifacts/abc/ack":  "",
		"aibo/d/artifacts/abc/meta":  "",
		"ack":                        "",
	} {
		got, ok := ackID(topic)
		if (want == "") == ok || (ok && got != want) {
			t.Errorf("ackID(%q) = %q, %v", topic, got, ok)
		}
	}
}

func TestGateHoldKeepsTheArtifactUntilItMaySend(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	var open atomic.Bool
	o := e.open(func(c *Config) {
		c.MaySend = func(m Meta) policy.Verdict {
			if open.Load() {
				return policy.Send
			}
			return policy.Hold
		}
	})
	cl := newCloud(t, b)
	cl.autoAck(`{"ok":true}`)
	l, _ := startLink(t, b)
	m := enqueue(t, o, policy.KindPhoto, randBytes(2048))
	runOutbox(t, o, l)
	time.Sleep(700 * time.Millisecond)
	if msgs := cl.messages(m.ID); len(msgs) != 0 {
		t.Fatalf("%d messages published while held", len(msgs))
	}
	if n, _ := o.Summary(); n != 1 {
		t.Fatalf("held artifact not queued: %d", n)
	}
	open.Store(true)
	e.waitAcked(m.ID)
	e.mu.Lock()
	_, dropped := e.dropped[m.ID]
	e.mu.Unlock()
	if dropped {
		t.Fatal("a held artifact was dropped")
	}
}

// DropTx drops in the caller's transaction: a rollback keeps every
// artifact, a commit followed by the returned function leaves nothing
// (record, inline content or file) of the dropped ones and keeps the rest.
func TestDropTxFollowsTheCallersTransaction(t *testing.T) {
	e := newEnv(t)
	o := e.open(nil)
	big := enqueue(t, o, policy.KindPhoto, randBytes(64*1024)) // in a file
	small := enqueue(t, o, policy.KindSighting, []byte(`{"confidence":0.9}`))
	keep := enqueue(t, o, policy.KindPhoto, randBytes(1024))
	drop := func(m Meta) bool { return m.ID == big.ID || m.ID == small.ID }
	filesBefore := len(contentFiles(t, e.dir))
	if filesBefore == 0 {
		t.Fatal("the 64 KiB artifact has no content file")
	}

	failed := errors.New("the command failed later")
	err := e.st.Update(func(tx *bolt.Tx) error {
		if _, err := o.DropTx(tx, drop, "consent_revoked"); err != nil {
			return err
		}
		return failed
	})
	if !errors.Is(err, failed) || len(o.List()) != 3 {
		t.Fatalf("after a rollback: %v, %d queued", err, len(o.List()))
	}
	if a, _ := e.records(t); a != 3 {
		t.Fatalf("%d records after a rollback, want 3", a)
	}

	var after func()
	err = e.st.Update(func(tx *bolt.Tx) (err error) { after, err = o.DropTx(tx, drop, "consent_revoked"); return })
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := e.records(t); a != 1 {
		t.Fatalf("%d records after the commit, want 1", a)
	}
	after()
	if got := o.List(); len(got) != 1 || got[0].ID != keep.ID {
		t.Fatalf("queued after the drop: %+v", got)
	}
	if r := e.waitDropped(small.ID); r != "consent_revoked" {
		t.Fatalf("reason %q", r)
	}
	e.waitDropped(big.ID)
	if files := contentFiles(t, e.dir); len(files) != filesBefore-1 {
		t.Fatalf("content files %v after dropping the 64 KiB artifact, want %d", files, filesBefore-1)
	}
}
