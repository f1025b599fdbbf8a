package firmware

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
	"github.com/aibo-privacy/aibo-privacyd/sync/link"
)

// needs records OnNeed calls.
type needs struct {
	mu    sync.Mutex
	calls [][]int
	vers  []string
	ch    chan []int
}

func (n *needs) hook(c *Config) {
	n.ch = make(chan []int, 16)
	c.OnNeed = func(version string, chunks []int) {
		n.mu.Lock()
		n.calls = append(n.calls, chunks)
		n.vers = append(n.vers, version)
		n.mu.Unlock()
		select {
		case n.ch <- chunks:
		default:
		}
	}
}

func (n *needs) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.calls)
}

func (n *needs) last() (string, []int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.calls) == 0 {
		return "", nil
	}
	return n.vers[len(n.vers)-1], n.calls[len(n.calls)-1]
}

// withSums is a manifest with chunk_sha256, as scripts/sign-firmware makes.
type withSums struct {
	Manifest
	ChunkSHA256 []string `json:"chunk_sha256"`
}

func manifestWithSums(version string, img []byte, chunk int) withSums {
	m := withSums{Manifest: manifestFor(version, img, chunk)}
	for _, c := range split(img, chunk) {
		s := sha256.Sum256(c)
		m.ChunkSHA256 = append(m.ChunkSHA256, hex.EncodeToString(s[:]))
	}
	return m
}

func (f *fixture) offerAny(man any) error {
	f.t.Helper()
	_, err := f.offerPayload(signedPayload(f.t, f.priv, kid, man))
	return err
}

// TestFirmwareNeedNamesTheMissingChunksWhenIdle: after NeedAfter without a
// chunk the missing chunk numbers are asked for, ascending; asked again
// after another NeedAfter of silence, not before; a chunk restarts the
// clock (contract v2, section 8).
func TestFirmwareNeedNamesTheMissingChunksWhenIdle(t *testing.T) {
	var n needs
	f := newFixture(t, n.hook)
	img := image(10*1024, 41)
	f.mustOffer(manifestFor("2.1.0", img, 1024))
	chunks := split(img, 1024)
	f.chunkAll("2.1.0", chunks, []int{7, 0, 2, 5})

	f.clock.Advance(29 * time.Second)
	f.m.sweep()
	if n.count() != 0 {
		t.Fatalf("asked after 29 s: %v", n.calls)
	}
	f.clock.Advance(2 * time.Second)
	f.m.sweep()
	if v, got := n.last(); v != "2.1.0" || !reflect.DeepEqual(got, []int{1, 3, 4, 6, 8, 9}) {
		t.Fatalf("firmware_need %q %v, want 2.1.0 [1 3 4 6 8 9]", v, got)
	}
	f.m.sweep()
	f.clock.Advance(20 * time.Second)
	f.m.sweep()
	if n.count() != 1 {
		t.Fatalf("asked %d times within 30 s of the last ask", n.count())
	}
	f.clock.Advance(11 * time.Second)
	f.m.sweep()
	if n.count() != 2 {
		t.Fatalf("not asked again after another 30 s of silence (%d asks)", n.count())
	}
	f.chunkAll("2.1.0", chunks, []int{1, 3})
	f.clock.Advance(25 * time.Second)
	f.m.sweep()
	if n.count() != 2 {
		t.Fatal("asked 25 s after a chunk")
	}
	f.clock.Advance(6 * time.Second)
	f.m.sweep()
	if _, got := n.last(); !reflect.DeepEqual(got, []int{4, 6, 8, 9}) {
		t.Fatalf("after chunks 1 and 3 arrived: %v", got)
	}
	f.chunkAll("2.1.0", chunks, []int{4, 6, 8, 9})
	f.clock.Advance(time.Minute)
	f.m.sweep()
	if n.count() != 3 {
		t.Fatalf("asked after the image was staged (%d asks)", n.count())
	}
}

// TestFirmwareNeedOnConnect: LinkUp asks once NeedDelay has passed, and
// not at all when no download is unfinished.
func TestFirmwareNeedOnConnect(t *testing.T) {
	var n needs
	f := newFixture(t, func(c *Config) { n.hook(c); c.NeedDelay = 5 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	f.m.LinkUp()
	time.Sleep(100 * time.Millisecond)
	if n.count() != 0 {
		t.Fatalf("asked with no download: %v", n.calls)
	}
	img := image(3*1024, 42)
	f.mustOffer(manifestFor("2.2.0-rc.1", img, 1024))
	f.chunkAll("2.2.0-rc.1", split(img, 1024), []int{1})
	for range 2 { // every connect
		f.m.LinkUp()
		select {
		case got := <-n.ch:
			if !reflect.DeepEqual(got, []int{0, 2}) {
				t.Fatalf("firmware_need %v, want [0 2]", got)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no firmware_need after LinkUp")
		}
	}
}

// TestFirmwareNeedIsBounded: at most MaxNeed numbers, the lowest first.
func TestFirmwareNeedIsBounded(t *testing.T) {
	f := newFixture(t, nil)
	img := image(1500*1024, 43)
	f.mustOffer(manifestFor("2.3.0", img, 1024))
	chunks := split(img, 1024)
	f.chunkAll("2.3.0", chunks, []int{0, 1, 2, 500, 1499})
	v, got, ok, err := f.m.Need()
	if err != nil || !ok || v != "2.3.0" {
		t.Fatalf("Need: %q %v %v", v, ok, err)
	}
	if len(got) != MaxNeed || got[0] != 3 || slices.Contains(got, 500) || got[MaxNeed-1] != MaxNeed+3 || !slices.IsSorted(got) {
		t.Fatalf("Need gave %d numbers from %d to %d", len(got), got[0], got[len(got)-1])
	}
}

// TestBadChunkIsDroppedAndAskedForAgain (issue 12 item 7): with
// chunk_sha256 a garbage first copy of the wrong length, or a wrong copy of
// the right length, is dropped; the download goes on, the chunk is asked
// for again, and the right copy stages the image.
func TestBadChunkIsDroppedAndAskedForAgain(t *testing.T) {
	var n needs
	f := newFixture(t, n.hook)
	img := image(5*1024+100, 44)
	man := manifestWithSums("2.4.0", img, 1024)
	if err := f.offerAny(man); err != nil {
		t.Fatal(err)
	}
	chunks := split(img, 1024)
	// A first copy of the wrong length would fix the chunk size wrongly.
	if _, err := f.m.Chunk("2.4.0", 0, make([]byte, 1500)); !errors.Is(err, ErrBadChunk) {
		t.Fatalf("garbage chunk 0: %v, want ErrBadChunk", err)
	}
	bad := bytes.Clone(chunks[2])
	bad[10] ^= 1
	if _, err := f.m.Chunk("2.4.0", 2, bad); !errors.Is(err, ErrBadChunk) {
		t.Fatalf("flipped chunk 2: %v, want ErrBadChunk", err)
	}
	f.m.HandleChunkMessage("aibo/dev/firmware/2.4.0/chunk/5", []byte("short"))
	f.chunkAll("2.4.0", chunks, []int{1, 3, 4})
	if d := f.status().Download; d == nil || d.Received != 3 || d.Bytes != 3*1024 {
		t.Fatalf("download after bad chunks: %+v", d)
	}
	if got := f.downloadBytes(); got > man.Size {
		t.Fatalf("download file %d bytes", got)
	}
	f.clock.Advance(31 * time.Second)
	f.m.sweep()
	if _, got := n.last(); !reflect.DeepEqual(got, []int{0, 2, 5}) {
		t.Fatalf("firmware_need %v, want [0 2 5]", got)
	}
	staged, err := f.chunkAll("2.4.0", chunks, []int{5, 2, 0})
	if err != nil || staged == nil {
		t.Fatalf("staged %v, err %v", staged, err)
	}
	f.assertStagedFile(StagedFile, img)
	if _, rj := f.callbacks(); len(rj) != 0 {
		t.Fatalf("rejections: %v", rj)
	}
}

// TestBadChunkFloodDoesNotKeepADownloadAlive: dropped chunks are not
// activity, so garbage cannot hold a download open past its timeout.
func TestBadChunkFloodDoesNotKeepADownloadAlive(t *testing.T) {
	f := newFixture(t, nil)
	img := image(4096, 45)
	if err := f.offerAny(manifestWithSums("2.5.0", img, 1024)); err != nil {
		t.Fatal(err)
	}
	for range 11 {
		f.clock.Advance(time.Minute)
		f.m.Chunk("2.5.0", 0, make([]byte, 1024))
		f.m.sweep()
	}
	if f.status().Download != nil {
		t.Fatal("garbage kept the download alive")
	}
}

func TestChunkSumsMustMatchTheManifest(t *testing.T) {
	f := newFixture(t, nil)
	img := image(4096, 46)
	for name, edit := range map[string]func(*withSums){
		"one missing": func(m *withSums) { m.ChunkSHA256 = m.ChunkSHA256[1:] },
		"one extra":   func(m *withSums) { m.ChunkSHA256 = append(m.ChunkSHA256, m.ChunkSHA256[0]) },
		"not hex":     func(m *withSums) { m.ChunkSHA256[1] = strings.Repeat("z", 64) },
		"short":       func(m *withSums) { m.ChunkSHA256[1] = "abcd" },
	} {
		m := manifestWithSums("2.6.0", img, 1024)
		edit(&m)
		if err := f.offerAny(m); !errors.Is(err, ErrBadOffer) {
			t.Errorf("%s: %v, want ErrBadOffer", name, err)
		}
	}
	if f.status().Download != nil {
		t.Fatal("a download was recorded")
	}
}

// TestSlashInPreReleaseStagesAndStaysInItsDirectory (issue 12 item 9): a
// signed pre-release with "/" can be finished (its chunks arrive on more
// topic levels), and a version never becomes a path: nothing but the
// staged image and its offer is left in the data directory.
func TestSlashInPreReleaseStagesAndStaysInItsDirectory(t *testing.T) {
	for _, v := range []string{"2.7.0-feature/x.1", "2.7.0-a/b/c-d.4"} {
		t.Run(v, func(t *testing.T) {
			f := newFixture(t, nil)
			img := image(2500, 47)
			f.mustOffer(manifestFor(v, img, 1024))
			chunks := split(img, 1024)
			for i, c := range chunks {
				f.m.HandleChunkMessage("aibo/dev/firmware/"+v+"/chunk/"+strconv.Itoa(i), c)
			}
			if s := f.status(); s.Staged != v {
				t.Fatalf("status %+v, want %q staged", s, v)
			}
			f.assertStagedFile(StagedFile, img)
			var files []string
			filepath.WalkDir(f.data, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					rel, _ := filepath.Rel(f.data, p)
					files = append(files, rel)
				}
				return nil
			})
			for _, p := range files {
				if !slices.Contains([]string{"state.db", "firmware/" + StagedFile, "firmware/" + StagedOfferFile}, p) {
					t.Errorf("unexpected file %s", p)
				}
			}
		})
	}
	f := newFixture(t, nil)
	for _, v := range []string{"2.8.0-a#b", "2.8.0-a//b", "2.8.0-a/", "2.8.0-a\x00b", "2.8.0-caf\u00e9"} {
		if _, err := f.offer(manifestFor(v, image(100, 1), 1024)); !errors.Is(err, ErrBadOffer) {
			t.Errorf("version %q: %v, want ErrBadOffer (its chunks could never arrive)", v, err)
		}
	}
}

// TestStagedOfferLetsTheUpdaterVerifyTheImage (issue 12 item 5): the
// signed manifest and signature lie beside the staged image, and beside
// the fallback after the next staging, each verifying its own image.
func TestStagedOfferLetsTheUpdaterVerifyTheImage(t *testing.T) {
	f := newFixture(t, nil)
	img1, img2 := image(2500, 48), image(3000, 49)
	for _, s := range []struct {
		v   string
		img []byte
	}{{"3.0.0", img1}, {"3.1.0", img2}} {
		if err := f.offerAny(manifestWithSums(s.v, s.img, 1024)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.chunkAll(s.v, split(s.img, 1024), seq((len(s.img)+1023)/1024)); err != nil {
			t.Fatal(err)
		}
	}
	verify := func(offerFile, imageFile, version string) {
		t.Helper()
		raw, err := os.ReadFile(filepath.Join(f.dir, offerFile))
		if err != nil {
			t.Fatal(err)
		}
		var o struct{ KID, Manifest, Sig string }
		if err := json.Unmarshal(raw, &o); err != nil || o.KID != kid {
			t.Fatalf("%s: %s (%v)", offerFile, raw, err)
		}
		man, _ := base64.StdEncoding.DecodeString(o.Manifest)
		sig, _ := base64.StdEncoding.DecodeString(o.Sig)
		if !ed25519.Verify(f.pub, man, sig) {
			t.Fatalf("%s: signature does not verify", offerFile)
		}
		var m withSums
		if err := json.Unmarshal(man, &m); err != nil || m.Version != version {
			t.Fatalf("%s: manifest %s", offerFile, man)
		}
		b, _ := os.ReadFile(filepath.Join(f.dir, imageFile))
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != m.SHA256 {
			t.Fatalf("%s does not match %s", imageFile, offerFile)
		}
	}
	verify(StagedOfferFile, StagedFile, "3.1.0")
	verify(FallbackOfferFile, FallbackFile, "3.0.0")
}

// TestCrashBeforeTheOfferFileIsWrittenIsFinished: a crash after the image
// renames but before staged.offer.json is finished at start-up with it.
func TestCrashBeforeTheOfferFileIsWrittenIsFinished(t *testing.T) {
	f := newFixture(t, nil)
	img := image(2048, 50)
	f.mustOffer(manifestFor("3.2.0", img, 1024))
	f.m.testHook = func() error { return errors.New("power cut") }
	if _, err := f.chunkAll("3.2.0", split(img, 1024), seq(2)); err == nil {
		t.Fatal("staging succeeded through the hook")
	}
	os.Remove(filepath.Join(f.dir, StagedOfferFile)) // not yet durable when power went
	f.m.testHook = nil
	f.restart()
	if s := f.status(); s.Staged != "3.2.0" {
		t.Fatalf("status %+v", s)
	}
	if _, err := os.Stat(filepath.Join(f.dir, StagedOfferFile)); err != nil {
		t.Fatalf("offer file: %v", err)
	}
}

// TestFirmwareNeedThroughMosquitto: a download missing chunks, the link
// connects, firmware_need names them, the cloud sends just those (on topic
// levels a "/" in the pre-release adds) and the image is staged.
func TestFirmwareNeedThroughMosquitto(t *testing.T) {
	const dev = "aibo-fw-need"
	const version = "5.0.0-rc/2"
	broker := testbroker.Start(t)
	var n needs
	f := newFixture(t, n.hook) // NeedDelay: the default, as the daemon runs
	staged := make(chan Manifest, 1)
	prev := f.m.cfg.OnStaged
	f.m.cfg.OnStaged = func(m Manifest) { prev(m); staged <- m }

	img := image(20*1024+5, 51)
	if err := f.offerAny(manifestWithSums(version, img, 1024)); err != nil {
		t.Fatal(err)
	}
	chunks := split(img, 1024)
	f.chunkAll(version, chunks, []int{0, 3, 4, 10, 20})

	l, err := link.New(link.Config{DeviceID: dev, Broker: broker.URL, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond},
		func(context.Context, []byte) []byte { return nil })
	if err != nil {
		t.Fatal(err)
	}
	l.Subscribe(f.m.ChunkTopic(), f.m.HandleChunkMessage)
	l.OnConnectionChange(func(up bool) {
		if up {
			f.m.LinkUp()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 2)
	go func() { runDone <- l.Run(ctx) }()
	go func() { runDone <- f.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			<-runDone
		}
	})
	var need []int
	select {
	case need = <-n.ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no firmware_need after connecting")
	}
	want := []int{}
	for i := range chunks {
		if !slices.Contains([]int{0, 3, 4, 10, 20}, i) {
			want = append(want, i)
		}
	}
	if !reflect.DeepEqual(need, want) {
		t.Fatalf("firmware_need %v, want %v", need, want)
	}
	cloud := broker.Client(t)
	for _, i := range need {
		cloud.Publish(t, "aibo/"+dev+"/firmware/"+version+"/chunk/"+strconv.Itoa(i), chunks[i], false)
	}
	select {
	case m := <-staged:
		if m.Version != version {
			t.Fatalf("staged %+v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("not staged; status %+v", f.status())
	}
	f.assertStagedFile(StagedFile, img)
}

// TestChunkTopicsWithDotsTurnedToSlashes: RabbitMQ's MQTT plugin maps
// topics onto AMQP routing keys and can deliver "5.0.0-rc/2" as
// "5/0/0-rc/2"; those chunks still belong to the download.
func TestChunkTopicsWithDotsTurnedToSlashes(t *testing.T) {
	f := newFixture(t, nil)
	img := image(2500, 52)
	f.mustOffer(manifestFor("5.1.0-rc.2+b7", img, 1024))
	for i, c := range split(img, 1024) {
		f.m.HandleChunkMessage("aibo/dev/firmware/5/1/0-rc/2/chunk/"+strconv.Itoa(i), c)
	}
	if s := f.status(); s.Staged != "5.1.0-rc.2+b7" {
		t.Fatalf("status %+v", s)
	}
}
