package outbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/internal/fsx"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// stream writes content through a Stream in uneven pieces, as the vision
// worker's answer arrives, and prepares it as a photo.
func stream(t *testing.T, o *Outbox, content []byte) *Prepared {
	t.Helper()
	s, err := o.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	for rest, step := content, 1; len(rest) > 0; step = (step*7 + 1) % (100 << 10) {
		n := min(len(rest), step+1)
		if _, err := s.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	p, err := o.Prepare(Artifact{Kind: policy.KindPhoto, ContentType: "image/jpeg", Stream: s})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func enqueuePrepared(t *testing.T, e *env, o *Outbox, p *Prepared) Meta {
	t.Helper()
	var m Meta
	if err := e.st.Update(func(tx *bolt.Tx) (err error) { m, err = o.EnqueueTx(tx, p); return }); err != nil {
		t.Fatal(err)
	}
	return m
}

// Issue 22: a photo of several MiB (12 megapixels) is streamed into the
// queue and out to the cloud a segment and a chunk at a time; what
// arrives is what was written, with the manifest's checksum.
func TestAStreamedPhotoArrivesWhole(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	o := e.open(func(c *Config) { c.ChunkSize = 100 << 10 }) // chunks and segments out of step
	cl := newCloud(t, b)
	l, _ := startLink(t, b)
	content := randBytes(5<<20 + 12345)
	m := enqueuePrepared(t, e, o, stream(t, o, content))
	if files := contentFiles(t, e.dir); len(files) != 1 {
		t.Fatalf("content files %v", files)
	}
	runOutbox(t, o, l)
	d := cl.waitDelivered(m.ID, 1)
	checkDelivery(t, d, m, content, 100<<10)
	cl.sendAck(m.ID, `{"ok":true}`)
	e.waitAcked(m.ID)
	if files := contentFiles(t, e.dir); len(files) != 0 {
		t.Fatalf("after the ack: files %v", files)
	}
}

// Each segment is sealed with its place and whether it ends the content:
// segments swapped, or the file cut at a segment's end, do not read back
// (the artifact is dropped as content_missing, never published wrong).
func TestStreamedSegmentsCannotBeReorderedOrCut(t *testing.T) {
	for _, damage := range []string{"swap", "cut"} {
		t.Run(damage, func(t *testing.T) {
			e := newEnv(t)
			o := e.open(nil)
			content := randBytes(3*segmentSize + 100)
			m := enqueuePrepared(t, e, o, stream(t, o, content))
			if got := loadAll(t, o, m.ID); string(got) != string(content) {
				t.Fatal("content does not read back before any damage")
			}
			path := filepath.Join(e.dir, contentFiles(t, e.dir)[0])
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			seg := segmentSize + segmentOverhead
			switch damage {
			case "swap":
				a := append([]byte(nil), raw[:seg]...)
				copy(raw[:seg], raw[seg:2*seg])
				copy(raw[seg:2*seg], a)
			case "cut":
				raw = raw[:3*seg]
			}
			if err := os.WriteFile(path, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			_, r, err := o.load(m.ID)
			if err == nil {
				buf := make([]byte, 1<<20)
				for err == nil {
					_, err = r.Read(buf)
				}
				r.Close()
			}
			if !errors.Is(err, errUnreadable) {
				t.Fatalf("damaged content read: %v", err)
			}
		})
	}
}

// A stream is refused once it outgrows the queue, and one that is never
// prepared leaves no file: Discard removes it, and a crash leaves a
// temporary file that the next Open removes.
func TestStreamsAreBoundedAndLeaveNothingBehind(t *testing.T) {
	e := newEnv(t)
	o := e.open(func(c *Config) { c.MaxQueueBytes = 1 << 20 })
	s, err := o.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(make([]byte, 1<<20+1)); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("over the queue: %v", err)
	}
	if _, err := o.Prepare(Artifact{Kind: policy.KindPhoto, Stream: s}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("prepare after the refusal: %v", err)
	}
	s.Discard()
	crashed, err := o.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	crashed.Write(randBytes(200 << 10))
	entries, _ := os.ReadDir(e.dir)
	if len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), fsx.TempPrefix) {
		t.Fatalf("while writing: %v", entries)
	}
	e.open(nil) // the next start
	if entries, _ := os.ReadDir(e.dir); len(entries) != 0 {
		t.Fatalf("after a restart: %v left", entries)
	}
	// An empty stream is no artifact.
	empty, _ := o.NewStream()
	if _, err := o.Prepare(Artifact{Kind: policy.KindPhoto, Stream: empty}); err == nil {
		t.Fatal("an empty stream was prepared")
	}
	empty.Discard()
	if _, err := o.Enqueue(context.Background(), Artifact{Kind: policy.KindPhoto, Content: []byte("x"), Stream: empty}); err == nil {
		t.Fatal("content and a stream both accepted")
	}
}
