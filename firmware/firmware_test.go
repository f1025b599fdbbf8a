package firmware

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

const kid = "fw-2026"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t      *testing.T
	data   string // data_dir
	dir    string // data_dir/firmware
	st     *store.Store
	m      *Manager
	priv   ed25519.PrivateKey
	pub    ed25519.PublicKey
	clock  *clock
	tune   func(*Config)
	mu     sync.Mutex
	staged []Manifest
	reject [][2]string
}

func newFixture(t *testing.T, tune func(*Config)) *fixture {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	f := &fixture{t: t, data: data, dir: filepath.Join(data, "firmware"), pub: pub, priv: priv,
		clock: &clock{t: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}, tune: tune}
	f.open()
	t.Cleanup(func() { f.st.Close() })
	return f
}

// open opens the store and a Manager on it (again, for a restart).
func (f *fixture) open() {
	f.t.Helper()
	st, err := store.Open(filepath.Join(f.data, "state.db"))
	if err != nil {
		f.t.Fatal(err)
	}
	f.st = st
	cfg := Config{
		Dir:       f.dir,
		Installed: "1.0.0",
		Keys:      map[string]ed25519.PublicKey{kid: f.pub},
		Now:       f.clock.Now,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnStaged: func(m Manifest) {
			f.mu.Lock()
			f.staged = append(f.staged, m)
			f.mu.Unlock()
		},
		OnRejected: func(v, r string) {
			f.mu.Lock()
			f.reject = append(f.reject, [2]string{v, r})
			f.mu.Unlock()
		},
	}
	if f.tune != nil {
		f.tune(&cfg)
	}
	m, err := New(st, cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.m = m
}

// restart closes the store and opens store and Manager again, as a
// daemon restart would.
func (f *fixture) restart() {
	f.t.Helper()
	if err := f.st.Close(); err != nil {
		f.t.Fatal(err)
	}
	f.open()
}

func (f *fixture) callbacks() ([]Manifest, [][2]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Manifest(nil), f.staged...), append([][2]string(nil), f.reject...)
}

func signedPayload(t *testing.T, priv ed25519.PrivateKey, keyID string, man any) []byte {
	t.Helper()
	raw, err := json.Marshal(man)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := json.Marshal(map[string]string{
		"kid":      keyID,
		"manifest": base64.StdEncoding.EncodeToString(raw),
		"sig":      base64.StdEncoding.EncodeToString(ed25519.Sign(priv, raw)),
	})
	return p
}

func (f *fixture) offerPayload(p []byte) (Manifest, error) {
	f.t.Helper()
	var man Manifest
	var oerr error
	err := f.st.Update(func(tx *bolt.Tx) error {
		man, oerr = f.m.Offer(tx, f.clock.Now(), p)
		return oerr // a refused command rolls back, as the dispatcher does
	})
	if oerr != nil {
		return man, oerr
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return man, nil
}

func (f *fixture) offer(man Manifest) (Manifest, error) {
	f.t.Helper()
	return f.offerPayload(signedPayload(f.t, f.priv, kid, man))
}

func (f *fixture) mustOffer(man Manifest) {
	f.t.Helper()
	if _, err := f.offer(man); err != nil {
		f.t.Fatalf("offer %s: %v", man.Version, err)
	}
}

func (f *fixture) status() Status {
	f.t.Helper()
	var s Status
	err := f.st.View(func(tx *bolt.Tx) error {
		var err error
		s, err = f.m.Status(tx)
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f *fixture) auditTypes() []string {
	f.t.Helper()
	var out []string
	err := f.st.View(func(tx *bolt.Tx) error {
		recs, err := audit.Newest(tx, 1000)
		for i := len(recs) - 1; i >= 0; i-- {
			out = append(out, recs[i].Type)
		}
		if rep := audit.Verify(tx); !rep.OK {
			f.t.Errorf("audit chain: %+v", rep)
		}
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// chunkAll sends chunks in the given order; it fails on any error except
// on the last one, whose results it returns.
func (f *fixture) chunkAll(version string, chunks [][]byte, order []int) (*Manifest, error) {
	f.t.Helper()
	var staged *Manifest
	var err error
	for i, n := range order {
		staged, err = f.m.Chunk(version, n, chunks[n])
		if err != nil && i != len(order)-1 {
			f.t.Fatalf("chunk %d: %v", n, err)
		}
	}
	return staged, err
}

func image(size int, seed byte) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7) ^ seed ^ byte(i>>9)
	}
	return b
}

func manifestFor(version string, img []byte, chunk int) Manifest {
	sum := sha256.Sum256(img)
	return Manifest{Version: version, Size: int64(len(img)), SHA256: hex.EncodeToString(sum[:]),
		Chunks: (len(img) + chunk - 1) / chunk, PolicyVersion: "2026-12"}
}

func split(img []byte, chunk int) [][]byte {
	var out [][]byte
	for off := 0; off < len(img); off += chunk {
		out = append(out, img[off:min(off+chunk, len(img))])
	}
	return out
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func (f *fixture) downloadFiles() []os.DirEntry {
	f.t.Helper()
	ents, err := os.ReadDir(filepath.Join(f.dir, downloadDir))
	if err != nil {
		f.t.Fatal(err)
	}
	return ents
}

func (f *fixture) downloadBytes() int64 {
	f.t.Helper()
	var n int64
	for _, e := range f.downloadFiles() {
		fi, err := e.Info()
		if err != nil {
			f.t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

func (f *fixture) assertNothingStaged() {
	f.t.Helper()
	if s := f.status(); s.Staged != "" {
		f.t.Errorf("staged %q, want nothing", s.Staged)
	}
	if _, err := os.Stat(filepath.Join(f.dir, StagedFile)); !errors.Is(err, os.ErrNotExist) {
		f.t.Errorf("%s exists (err %v)", StagedFile, err)
	}
	if staged, _ := f.callbacks(); len(staged) != 0 {
		f.t.Errorf("OnStaged called: %+v", staged)
	}
}

func (f *fixture) assertStagedFile(name string, want []byte) {
	f.t.Helper()
	got, err := os.ReadFile(filepath.Join(f.dir, name))
	if err != nil {
		f.t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		f.t.Errorf("%s: %d bytes, not the image (%d bytes)", name, len(got), len(want))
	}
}

func asRejection(t *testing.T, err error, reason string) *Rejection {
	t.Helper()
	var r *Rejection
	if !errors.As(err, &r) {
		t.Fatalf("got %v, want a %s rejection", err, reason)
	}
	if r.Reason != reason {
		t.Fatalf("rejection reason %q (%v), want %q", r.Reason, r, reason)
	}
	return r
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestValidOfferIsStaged(t *testing.T) {
	f := newFixture(t, nil)
	img := image(10*1024+300, 1)
	man := manifestFor("1.2.3", img, 1024)
	got, err := f.offer(man)
	if err != nil {
		t.Fatal(err)
	}
	if got != man {
		t.Fatalf("offer returned %+v, want %+v", got, man)
	}
	if d := f.status().Download; d == nil || d.Version != "1.2.3" || d.Chunks != 11 || d.Received != 0 {
		t.Fatalf("download after offer: %+v", d)
	}
	chunks := split(img, 1024)
	staged, err := f.chunkAll("1.2.3", chunks, seq(len(chunks)))
	if err != nil {
		t.Fatal(err)
	}
	if staged == nil || *staged != man {
		t.Fatalf("last chunk returned %+v, want the manifest", staged)
	}
	f.assertStagedFile(StagedFile, img)
	s := f.status()
	if s.Version != "1.0.0" || s.Staged != "1.2.3" || s.Highest != "1.2.3" || s.Download != nil || s.Fallback != "" {
		t.Fatalf("status %+v", s)
	}
	if cb, rj := f.callbacks(); len(cb) != 1 || cb[0] != man || len(rj) != 0 {
		t.Fatalf("callbacks staged=%+v rejected=%v", cb, rj)
	}
	if n := len(f.downloadFiles()); n != 0 {
		t.Fatalf("%d files left in the download dir", n)
	}
	types := f.auditTypes()
	if !contains(types, "firmware_offered") || !contains(types, "firmware_staged") {
		t.Fatalf("audit %v", types)
	}
	// The same chunks again: no download any more, nothing changes.
	if _, err := f.m.Chunk("1.2.3", 0, chunks[0]); !errors.Is(err, ErrNoDownload) {
		t.Fatalf("chunk after staging: %v, want ErrNoDownload", err)
	}
}

func TestOutOfOrderAndDuplicates(t *testing.T) {
	f := newFixture(t, nil)
	img := image(7*2048+5, 2)
	man := manifestFor("2.0.0-rc.1", img, 2048)
	f.mustOffer(man)
	chunks := split(img, 2048)
	// The last chunk first (the chunk size is inferred from it), duplicates
	// in between.
	order := []int{7, 3, 3, 0, 7, 6, 1, 2, 0, 5, 4}
	staged, err := f.chunkAll("2.0.0-rc.1", chunks, order)
	if err != nil || staged == nil {
		t.Fatalf("staged %v, err %v", staged, err)
	}
	f.assertStagedFile(StagedFile, img)
}

func TestSingleChunkImage(t *testing.T) {
	f := newFixture(t, nil)
	img := image(100, 3) // smaller than MinChunk: allowed as the only chunk
	f.mustOffer(manifestFor("1.0.1", img, 1024))
	if staged, err := f.m.Chunk("1.0.1", 0, img); err != nil || staged == nil {
		t.Fatalf("staged %v, err %v", staged, err)
	}
	f.assertStagedFile(StagedFile, img)
}

func TestBadSignatureIsRejected(t *testing.T) {
	f := newFixture(t, nil)
	img := image(4096, 4)
	man := manifestFor("1.1.0", img, 1024)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	raw, _ := json.Marshal(man)
	tampered := bytes.Replace(raw, []byte(`"size":4096`), []byte(`"size":4097`), 1)

	cases := map[string][]byte{
		"other key, same kid": signedPayload(t, other, kid, man),
		"unknown kid":         signedPayload(t, f.priv, "nobody", man),
		"empty kid":           signedPayload(t, f.priv, "", man),
		"tampered manifest": func() []byte {
			p, _ := json.Marshal(map[string]string{"kid": kid, "manifest": base64.StdEncoding.EncodeToString(tampered),
				"sig": base64.StdEncoding.EncodeToString(ed25519.Sign(f.priv, raw))})
			return p
		}(),
		"short signature": func() []byte {
			p, _ := json.Marshal(map[string]string{"kid": kid, "manifest": base64.StdEncoding.EncodeToString(raw),
				"sig": base64.StdEncoding.EncodeToString([]byte("short"))})
			return p
		}(),
	}
	for name, p := range cases {
		_, err := f.offerPayload(p)
		r := asRejection(t, err, ReasonSignature)
		if r.Version != "1.1.0" {
			t.Errorf("%s: rejection version %q", name, r.Version)
		}
	}
	if d := f.status().Download; d != nil {
		t.Fatalf("download recorded after bad signatures: %+v", d)
	}
	for n, c := range split(img, 1024) {
		if _, err := f.m.Chunk("1.1.0", n, c); !errors.Is(err, ErrNoDownload) {
			t.Fatalf("chunk %d: %v, want ErrNoDownload", n, err)
		}
	}
	f.assertNothingStaged()
	if n := len(f.downloadFiles()); n != 0 {
		t.Fatalf("%d download files", n)
	}
}

func TestNoKeysRefusesEverything(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Keys = nil })
	_, err := f.offer(manifestFor("9.0.0", image(2048, 5), 1024))
	asRejection(t, err, ReasonSignature)
}

func TestMalformedOfferIsBadRequest(t *testing.T) {
	f := newFixture(t, nil)
	good := manifestFor("1.1.0", image(2048, 6), 1024)
	signed := func(v any) []byte { return signedPayload(t, f.priv, kid, v) }
	cases := map[string][]byte{
		"not json":            []byte("{"),
		"no manifest":         []byte(`{"kid":"fw-2026","sig":"AAAA"}`),
		"manifest not base64": []byte(`{"kid":"fw-2026","manifest":"%%%","sig":"AAAA"}`),
		"sig not base64":      []byte(`{"kid":"fw-2026","manifest":"e30=","sig":"%%%"}`),
		"version not semver":  signed(map[string]any{"version": "1.2", "size": 2048, "sha256": good.SHA256, "chunks": 2}),
		"bad sha256":          signed(map[string]any{"version": "1.2.0", "size": 2048, "sha256": "abc", "chunks": 2}),
		"manifest not object": signed([]int{1, 2}),
		"material without policy version": signed(map[string]any{"version": "1.2.0", "size": 2048, "sha256": good.SHA256,
			"chunks": 2, "material_policy_change": true}),
	}
	for name, p := range cases {
		_, err := f.offerPayload(p)
		var r *Rejection
		if !errors.Is(err, ErrBadOffer) || errors.As(err, &r) {
			t.Errorf("%s: got %v, want ErrBadOffer", name, err)
		}
	}
	if d := f.status().Download; d != nil {
		t.Fatalf("download recorded: %+v", d)
	}
}

func TestRollbackIsRefused(t *testing.T) {
	f := newFixture(t, nil)
	for _, v := range []string{"1.0.0", "0.9.9", "1.0.0-rc.1", "1.0.0+other-build"} {
		_, err := f.offer(manifestFor(v, image(2048, 7), 1024))
		asRejection(t, err, ReasonRollback)
	}
	// Stage 1.2.0; then 1.1.0 (above the installed one but not above the
	// one staged) and 1.2.0 again are rollbacks.
	img := image(3000, 8)
	f.mustOffer(manifestFor("1.2.0", img, 1024))
	if _, err := f.chunkAll("1.2.0", split(img, 1024), seq(3)); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.1.0", "1.2.0", "1.2.0-beta"} {
		_, err := f.offer(manifestFor(v, image(2048, 9), 1024))
		asRejection(t, err, ReasonRollback)
	}
	// The mark is durable: after a restart, still refused; 1.2.1 is fine.
	f.restart()
	_, err := f.offer(manifestFor("1.1.5", image(2048, 9), 1024))
	asRejection(t, err, ReasonRollback)
	f.mustOffer(manifestFor("1.2.1", image(2048, 9), 1024))
	if s := f.status(); s.Staged != "1.2.0" || s.Highest != "1.2.0" {
		t.Fatalf("status %+v", s)
	}
}

func TestInstalledRaisesTheMark(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Installed = "3.0.0" })
	if h := f.status().Highest; h != "3.0.0" {
		t.Fatalf("highest %q", h)
	}
	// A later start with an older installed version (a reflash) keeps it.
	f.tune = func(c *Config) { c.Installed = "1.0.0" }
	f.restart()
	_, err := f.offer(manifestFor("2.0.0", image(2048, 1), 1024))
	asRejection(t, err, ReasonRollback)
	if h := f.status().Highest; h != "3.0.0" {
		t.Fatalf("highest %q", h)
	}
}

func TestWrongDigestIsRejected(t *testing.T) {
	f := newFixture(t, nil)
	img := image(5000, 10)
	man := manifestFor("1.3.0", img, 1024)
	f.mustOffer(man)
	bad := image(5000, 11) // same size, other bytes
	_, err := f.chunkAll("1.3.0", split(bad, 1024), seq(5))
	asRejection(t, err, ReasonDigest)
	f.assertNothingStaged()
	if _, rj := f.callbacks(); len(rj) != 1 || rj[0] != [2]string{"1.3.0", ReasonDigest} {
		t.Fatalf("OnRejected %v", rj)
	}
	if n := len(f.downloadFiles()); n != 0 {
		t.Fatalf("%d download files left", n)
	}
	if !contains(f.auditTypes(), "firmware_rejected") {
		t.Fatal("rejection not audited")
	}
	if s := f.status(); s.Download != nil || s.Highest != "1.0.0" {
		t.Fatalf("status %+v", s)
	}
	// The right chunks now arrive: ignored, no accepted offer any more.
	if _, err := f.m.Chunk("1.3.0", 0, img[:1024]); !errors.Is(err, ErrNoDownload) {
		t.Fatalf("chunk after rejection: %v", err)
	}
	// A new offer of the same version (it was never staged) starts over.
	f.mustOffer(man)
	if _, err := f.chunkAll("1.3.0", split(img, 1024), seq(5)); err != nil {
		t.Fatal(err)
	}
	f.assertStagedFile(StagedFile, img)
}

func TestWrongSize(t *testing.T) {
	t.Run("extra chunk beyond the manifest is refused", func(t *testing.T) {
		f := newFixture(t, nil)
		img := image(4096, 12)
		f.mustOffer(manifestFor("1.4.0", img, 1024))
		chunks := split(img, 1024)
		f.chunkAll("1.4.0", chunks, []int{0, 1})
		before := f.downloadBytes()
		for _, n := range []int{4, 5, 1000} {
			if _, err := f.m.Chunk("1.4.0", n, make([]byte, 1024)); !errors.Is(err, ErrChunkRange) {
				t.Fatalf("chunk %d: %v, want ErrChunkRange", n, err)
			}
		}
		if after := f.downloadBytes(); after != before {
			t.Fatalf("download grew from %d to %d bytes on refused chunks", before, after)
		}
		if staged, err := f.chunkAll("1.4.0", chunks, []int{2, 3}); err != nil || staged == nil {
			t.Fatalf("staged %v err %v", staged, err)
		}
		f.assertStagedFile(StagedFile, img)
	})
	t.Run("last chunk short: total below the manifest", func(t *testing.T) {
		f := newFixture(t, nil)
		img := image(4000, 13)
		f.mustOffer(manifestFor("1.4.0", img, 1024))
		chunks := split(img, 1024)
		f.chunkAll("1.4.0", chunks, []int{0, 1, 2})
		_, err := f.m.Chunk("1.4.0", 3, chunks[3][:100])
		asRejection(t, err, ReasonSize)
		f.assertNothingStaged()
		if n := len(f.downloadFiles()); n != 0 {
			t.Fatalf("%d download files left", n)
		}
		if _, rj := f.callbacks(); len(rj) != 1 || rj[0][1] != ReasonSize {
			t.Fatalf("OnRejected %v", rj)
		}
	})
	t.Run("image larger than the manifest", func(t *testing.T) {
		f := newFixture(t, nil)
		img := image(4000, 14)
		man := manifestFor("1.4.0", img[:3500], 1024) // 4 chunks, last 428 bytes
		f.mustOffer(man)
		_, err := f.chunkAll("1.4.0", split(img, 1024), seq(4)) // last one has 928 bytes
		asRejection(t, err, ReasonSize)
		f.assertNothingStaged()
	})
	t.Run("chunks of different sizes", func(t *testing.T) {
		f := newFixture(t, nil)
		img := image(6000, 15)
		f.mustOffer(manifestFor("1.4.0", img, 2048)) // 3 chunks
		if _, err := f.m.Chunk("1.4.0", 0, img[:2048]); err != nil {
			t.Fatal(err)
		}
		_, err := f.m.Chunk("1.4.0", 1, img[2048:2048+1500])
		asRejection(t, err, ReasonSize)
		f.assertNothingStaged()
	})
	t.Run("chunk over the maximum", func(t *testing.T) {
		f := newFixture(t, nil)
		img := image(3*MaxChunk, 16)
		f.mustOffer(manifestFor("1.4.0", img, MaxChunk)) // 3 chunks; 2 of 1.5*MaxChunk would fit the sum
		_, err := f.m.Chunk("1.4.0", 0, img[:MaxChunk+1])
		asRejection(t, err, ReasonSize)
		if n := f.downloadBytes(); n != 0 {
			t.Fatalf("%d bytes written for a refused chunk", n)
		}
	})
	t.Run("impossible manifests", func(t *testing.T) {
		f := newFixture(t, nil)
		sum := manifestFor("1.5.0", image(10, 0), 1).SHA256
		for name, m := range map[string]Manifest{
			"zero size":          {Size: 0, Chunks: 1},
			"negative size":      {Size: -5, Chunks: 1},
			"over the maximum":   {Size: MaxImageSize + 1, Chunks: (MaxImageSize + MaxChunk) / MaxChunk},
			"zero chunks":        {Size: 4096, Chunks: 0},
			"chunks too small":   {Size: 4096, Chunks: 8},
			"one chunk too big":  {Size: MaxChunk + 1, Chunks: 1},
			"chunks too big":     {Size: 10 * MaxChunk, Chunks: 9},
			"more chunks than B": {Size: 10, Chunks: 11},
		} {
			m.Version, m.SHA256 = "1.5.0", sum
			_, err := f.offer(m)
			var r *Rejection
			if !errors.As(err, &r) || r.Reason != ReasonSize {
				t.Errorf("%s: got %v, want a size rejection", name, err)
			}
		}
		if d := f.status().Download; d != nil {
			t.Fatalf("download recorded: %+v", d)
		}
	})
}

func TestOfferIdempotentAndReplaced(t *testing.T) {
	f := newFixture(t, nil)
	imgA := image(4096, 17)
	manA := manifestFor("1.5.0", imgA, 1024)
	f.mustOffer(manA)
	f.chunkAll("1.5.0", split(imgA, 1024), []int{0, 2})
	// The same offer again (another command id): nothing restarts.
	got, err := f.offer(manA)
	if err != nil || got != manA {
		t.Fatalf("re-offer: %+v %v", got, err)
	}
	if d := f.status().Download; d == nil || d.Received != 2 {
		t.Fatalf("download after re-offer: %+v", d)
	}
	oldFiles := f.downloadFiles()
	if len(oldFiles) != 1 {
		t.Fatalf("%d download files", len(oldFiles))
	}
	// A higher offer replaces it; the old file goes.
	imgB := image(3000, 18)
	manB := manifestFor("1.6.0", imgB, 1024)
	f.mustOffer(manB)
	if d := f.status().Download; d == nil || d.Version != "1.6.0" || d.Received != 0 {
		t.Fatalf("download after replacement: %+v", d)
	}
	if _, err := os.Stat(filepath.Join(f.dir, downloadDir, oldFiles[0].Name())); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old download file still there: %v", err)
	}
	if _, err := f.m.Chunk("1.5.0", 1, imgA[1024:2048]); !errors.Is(err, ErrNoDownload) {
		t.Fatalf("chunk of the replaced version: %v", err)
	}
	if _, err := f.chunkAll("1.6.0", split(imgB, 1024), []int{2, 1, 0}); err != nil {
		t.Fatal(err)
	}
	f.assertStagedFile(StagedFile, imgB)
}

func TestRefusedOfferLeavesDownloadAlone(t *testing.T) {
	f := newFixture(t, nil)
	img := image(4096, 19)
	f.mustOffer(manifestFor("1.5.0", img, 1024))
	f.chunkAll("1.5.0", split(img, 1024), []int{0})
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	_, err := f.offerPayload(signedPayload(t, other, kid, manifestFor("9.9.9", image(2048, 0), 1024)))
	asRejection(t, err, ReasonSignature)
	if d := f.status().Download; d == nil || d.Version != "1.5.0" || d.Received != 1 {
		t.Fatalf("download after a refused offer: %+v", d)
	}
}

func TestRestartMidDownloadResumes(t *testing.T) {
	f := newFixture(t, nil)
	img := image(9*1024+1, 20)
	man := manifestFor("1.7.0", img, 1024)
	f.mustOffer(man)
	chunks := split(img, 1024)
	f.chunkAll("1.7.0", chunks, []int{9, 0, 4, 5})
	f.restart()
	if d := f.status().Download; d == nil || d.Received != 4 || d.Bytes != 3*1024+1 {
		t.Fatalf("download after restart: %+v", d)
	}
	staged, err := f.chunkAll("1.7.0", chunks, []int{0, 9, 1, 2, 3, 6, 7, 8})
	if err != nil || staged == nil {
		t.Fatalf("staged %v, err %v", staged, err)
	}
	f.assertStagedFile(StagedFile, img)
}

func TestCrashDuringStagingIsFinishedAtStart(t *testing.T) {
	var crash bool
	f := newFixture(t, nil)
	img := image(3*1024, 21)
	man := manifestFor("1.8.0", img, 1024)
	man.MaterialPolicyChange = true
	f.mustOffer(man)
	// The process "dies" after the renames, before the commit.
	f.m.testHook = func() error { crash = true; return errors.New("power cut") }
	if _, err := f.chunkAll("1.8.0", split(img, 1024), seq(3)); err == nil || !crash {
		t.Fatalf("err %v crash %v", err, crash)
	}
	if s := f.status(); s.Staged != "" || s.Download == nil {
		t.Fatalf("status after the crash: %+v", s)
	}
	var paused string
	f.tune = func(c *Config) {
		c.StagedTx = func(tx *bolt.Tx, now time.Time, m Manifest) error { paused = m.PolicyVersion; return nil }
	}
	f.restart()
	if s := f.status(); s.Staged != "1.8.0" || s.Download != nil || s.Highest != "1.8.0" || !s.MaterialPolicyChange {
		t.Fatalf("status after restart: %+v", s)
	}
	if paused != "2026-12" {
		t.Fatalf("StagedTx not run at recovery (%q)", paused)
	}
	f.assertStagedFile(StagedFile, img)
	// OnStaged is delivered once Run starts.
	if cb, _ := f.callbacks(); len(cb) != 0 {
		t.Fatalf("OnStaged before Run: %v", cb)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.m.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if cb, _ := f.callbacks(); len(cb) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("OnStaged not called by Run")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestIdleDownloadAbandoned(t *testing.T) {
	f := newFixture(t, nil) // default timeout: 10 minutes
	img := image(4096, 22)
	f.mustOffer(manifestFor("1.9.0", img, 1024))
	chunks := split(img, 1024)
	f.chunkAll("1.9.0", chunks, []int{1})
	f.clock.Advance(9 * time.Minute)
	f.m.sweep()
	f.chunkAll("1.9.0", chunks, []int{1}) // a duplicate still counts as activity
	f.clock.Advance(9 * time.Minute)
	f.m.sweep()
	if d := f.status().Download; d == nil {
		t.Fatal("download abandoned while active")
	}
	f.clock.Advance(2 * time.Minute)
	f.m.sweep()
	if d := f.status().Download; d != nil {
		t.Fatalf("download still there after 11 idle minutes: %+v", d)
	}
	if n := len(f.downloadFiles()); n != 0 {
		t.Fatalf("%d download files left", n)
	}
	if !contains(f.auditTypes(), "firmware_abandoned") {
		t.Fatal("abandonment not audited")
	}
	if _, err := f.m.Chunk("1.9.0", 0, chunks[0]); !errors.Is(err, ErrNoDownload) {
		t.Fatalf("chunk after abandonment: %v", err)
	}
	if _, rj := f.callbacks(); len(rj) != 0 {
		t.Fatalf("abandonment reported as rejection: %v", rj)
	}
	f.assertNothingStaged()
}

func TestIdleDownloadAbandonedByRun(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.DownloadTimeout = 150 * time.Millisecond; c.Now = time.Now })
	img := image(4096, 23)
	f.mustOffer(manifestFor("1.9.1", img, 1024))
	f.chunkAll("1.9.1", split(img, 1024), []int{0, 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.m.Run(ctx)
	// The file is removed just after the record's commit: wait for both.
	deadline := time.Now().Add(5 * time.Second)
	for f.status().Download != nil || len(f.downloadFiles()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("idle download not abandoned by Run: %+v, %d files", f.status().Download, len(f.downloadFiles()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRestartRestartsTheIdleClock(t *testing.T) {
	f := newFixture(t, nil)
	img := image(4096, 24)
	f.mustOffer(manifestFor("1.9.2", img, 1024))
	f.chunkAll("1.9.2", split(img, 1024), []int{0})
	f.clock.Advance(time.Hour) // powered off for an hour
	f.restart()
	f.m.sweep()
	if f.status().Download == nil {
		t.Fatal("download abandoned at once after a restart")
	}
	f.clock.Advance(11 * time.Minute)
	f.m.sweep()
	if f.status().Download != nil {
		t.Fatal("download not abandoned 11 minutes after the restart")
	}
}

func TestPreviousStagedKeptAsFallback(t *testing.T) {
	f := newFixture(t, nil)
	img1, img2, img3 := image(2500, 25), image(3500, 26), image(1500, 27)
	for _, s := range []struct {
		v   string
		img []byte
	}{{"1.1.0", img1}, {"1.2.0", img2}} {
		f.mustOffer(manifestFor(s.v, s.img, 1024))
		if _, err := f.chunkAll(s.v, split(s.img, 1024), seq((len(s.img)+1023)/1024)); err != nil {
			t.Fatal(err)
		}
	}
	f.assertStagedFile(StagedFile, img2)
	f.assertStagedFile(FallbackFile, img1)
	if s := f.status(); s.Staged != "1.2.0" || s.Fallback != "1.1.0" {
		t.Fatalf("status %+v", s)
	}
	// A rejected download leaves both slots alone.
	f.mustOffer(manifestFor("1.3.0", img3, 1024))
	_, err := f.chunkAll("1.3.0", split(image(1500, 99), 1024), seq(2))
	asRejection(t, err, ReasonDigest)
	f.assertStagedFile(StagedFile, img2)
	f.assertStagedFile(FallbackFile, img1)
	// The next staging moves 1.2.0 to the fallback slot.
	f.mustOffer(manifestFor("1.3.0", img3, 1024))
	if _, err := f.chunkAll("1.3.0", split(img3, 1024), seq(2)); err != nil {
		t.Fatal(err)
	}
	f.assertStagedFile(StagedFile, img3)
	f.assertStagedFile(FallbackFile, img2)
	if s := f.status(); s.Staged != "1.3.0" || s.Fallback != "1.2.0" {
		t.Fatalf("status %+v", s)
	}
}

func TestDiskUseBounded(t *testing.T) {
	f := newFixture(t, nil)
	img := image(20*1024+17, 28)
	man := manifestFor("2.1.0", img, 1024)
	f.mustOffer(man)
	chunks := split(img, 1024)
	bound := man.Size + MaxChunk
	order := []int{20, 3, 3, 11, 0, 19, 19, 7}
	for _, n := range order {
		if _, err := f.m.Chunk("2.1.0", n, chunks[n]); err != nil {
			t.Fatal(err)
		}
		if got := f.downloadBytes(); got > man.Size || got > bound {
			t.Fatalf("download files hold %d bytes, manifest size %d", got, man.Size)
		}
	}
	// Refused chunks (beyond the manifest, oversized) write nothing.
	before := f.downloadBytes()
	f.m.Chunk("2.1.0", 21, make([]byte, 1024))
	f.m.Chunk("2.1.0", 1<<30, make([]byte, 1024))
	if got := f.downloadBytes(); got != before {
		t.Fatalf("refused chunks changed the files: %d -> %d", before, got)
	}
	// A replacing offer removes the old file: one download on disk at a time.
	img2 := image(8*1024, 29)
	f.mustOffer(manifestFor("2.2.0", img2, 1024))
	f.m.Chunk("2.2.0", 7, img2[7*1024:])
	if got := f.downloadBytes(); got != 8*1024 {
		t.Fatalf("download files hold %d bytes after replacement, want %d", got, 8*1024)
	}
	if n := len(f.downloadFiles()); n != 1 {
		t.Fatalf("%d download files, want 1", n)
	}
}

func TestStrayFilesSweptAtStart(t *testing.T) {
	f := newFixture(t, nil)
	img := image(4096, 30)
	f.mustOffer(manifestFor("2.3.0", img, 1024))
	f.chunkAll("2.3.0", split(img, 1024), []int{0})
	stray := filepath.Join(f.dir, downloadDir, "2.2.0-0000.part")
	tmp := filepath.Join(f.dir, ".tmp-staged.img-123")
	for _, p := range []string{stray, tmp} {
		if err := os.WriteFile(p, []byte("left over"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f.restart()
	for _, p := range []string{stray, tmp} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not swept: %v", filepath.Base(p), err)
		}
	}
	if n := len(f.downloadFiles()); n != 1 {
		t.Fatalf("%d download files, want the one in progress", n)
	}
}

func TestMaterialPolicyChangePausesWithTheStaging(t *testing.T) {
	pol := policy.New("US-CA", nil, nil)
	f := newFixture(t, func(c *Config) {
		c.StagedTx = func(tx *bolt.Tx, now time.Time, m Manifest) error {
			if !m.MaterialPolicyChange {
				return nil
			}
			_, err := pol.PauseFor(tx, now, m.PolicyVersion)
			return err
		}
	})
	now := f.clock.Now()
	err := f.st.Update(func(tx *bolt.Tx) error {
		if _, err := pol.AcceptPolicy(tx, now, "2026-11"); err != nil {
			return err
		}
		_, err := pol.SetFeatures(tx, now, map[policy.Feature]bool{policy.AutoPhoto: true, policy.Patrol: true})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	img := image(2048, 31)
	man := manifestFor("3.0.0", img, 1024)
	man.MaterialPolicyChange, man.PolicyVersion = true, "2026-12"
	f.mustOffer(man)
	readPolicy := func() policy.State {
		var s policy.State
		if err := f.st.View(func(tx *bolt.Tx) error { s, err = pol.Read(tx); return err }); err != nil {
			t.Fatal(err)
		}
		return s
	}
	f.chunkAll("3.0.0", split(img, 1024), []int{0})
	if s := readPolicy(); s.PausedForPolicy != "" {
		t.Fatalf("paused before staging: %+v", s)
	}
	if _, err := f.chunkAll("3.0.0", split(img, 1024), []int{1}); err != nil {
		t.Fatal(err)
	}
	s := readPolicy()
	if s.PausedForPolicy != "2026-12" || pol.Allows(s, policy.AutoPhoto) || pol.Allows(s, policy.Patrol) {
		t.Fatalf("not paused after staging: %+v", s)
	}
	if types := f.auditTypes(); !contains(types, "paused_for_policy") {
		t.Fatalf("pause not audited: %v", types)
	}
	if err := f.st.Update(func(tx *bolt.Tx) error { _, err := pol.AcceptPolicy(tx, now, "2026-12"); return err }); err != nil {
		t.Fatal(err)
	}
	if s := readPolicy(); s.PausedForPolicy != "" || !pol.Allows(s, policy.AutoPhoto) {
		t.Fatalf("accept_policy did not lift the pause: %+v", s)
	}
}

func TestStagingHookErrorStagesNothing(t *testing.T) {
	fail := true
	f := newFixture(t, func(c *Config) {
		c.StagedTx = func(*bolt.Tx, time.Time, Manifest) error {
			if fail {
				return errors.New("policy store broken")
			}
			return nil
		}
	})
	img := image(2048, 32)
	f.mustOffer(manifestFor("3.1.0", img, 1024))
	if _, err := f.chunkAll("3.1.0", split(img, 1024), seq(2)); err == nil {
		t.Fatal("staging succeeded although the hook failed")
	}
	f.assertNothingStaged()
	// The next duplicate retries.
	fail = false
	if staged, err := f.m.Chunk("3.1.0", 0, img[:1024]); err != nil || staged == nil {
		t.Fatalf("retry: staged %v err %v", staged, err)
	}
	f.assertStagedFile(StagedFile, img)
}

func TestHandleChunkMessageTopics(t *testing.T) {
	f := newFixture(t, nil)
	img := image(2048, 33)
	f.mustOffer(manifestFor("3.2.0", img, 1024))
	for _, topic := range []string{
		"aibo/dev/firmware/3.2.0/chunk/-1",
		"aibo/dev/firmware/3.2.0/chunk/01",
		"aibo/dev/firmware/3.2.0/chunk/x",
		"aibo/dev/firmware/3.2.0/part/0",
		"chunk/0",
		"aibo/dev/firmware/9.9.9/chunk/0",
	} {
		f.m.HandleChunkMessage(topic, img[:1024])
	}
	if d := f.status().Download; d == nil || d.Received != 0 {
		t.Fatalf("bad topics stored something: %+v", d)
	}
	f.m.HandleChunkMessage("aibo/dev/firmware/3.2.0/chunk/1", img[1024:])
	f.m.HandleChunkMessage("aibo/dev/firmware/3.2.0/chunk/0", img[:1024])
	if cb, _ := f.callbacks(); len(cb) != 1 || cb[0].Version != "3.2.0" {
		t.Fatalf("OnStaged %v", cb)
	}
	if f.m.ChunkTopic() != "firmware/#" {
		t.Fatal(f.m.ChunkTopic())
	}
}

func TestBuildMetadataVersionMatchesTopic(t *testing.T) {
	f := newFixture(t, nil)
	img := image(1500, 34)
	f.mustOffer(manifestFor("3.3.0+20261122", img, 1024))
	// '+' cannot appear in an MQTT topic name: chunks come on .../3.3.0/...
	f.m.HandleChunkMessage("aibo/dev/firmware/3.3.0/chunk/0", img[:1024])
	f.m.HandleChunkMessage("aibo/dev/firmware/3.3.0/chunk/1", img[1024:])
	if s := f.status(); s.Staged != "3.3.0+20261122" {
		t.Fatalf("status %+v", s)
	}
}

func TestChunkBounds(t *testing.T) {
	for _, c := range []struct {
		size   int64
		chunks int
		lo, hi int64
		ok     bool
	}{
		{100, 1, 100, 100, true},
		{MaxChunk, 1, MaxChunk, MaxChunk, true},
		{MaxChunk + 1, 1, 0, 0, false},
		{100000, 2, 50000, 99999, true},
		{4096, 4, 1024, 1365, true},
		{4096, 5, 1024, 1023, false},
		{2 * MaxChunk, 2, MaxChunk, MaxChunk, true},
		{2*MaxChunk + 1, 2, 0, 0, false},
		{10, 0, 0, 0, false},
	} {
		lo, hi, ok := chunkBounds(c.size, c.chunks)
		if ok != c.ok || (ok && (lo != c.lo || hi != c.hi)) {
			t.Errorf("chunkBounds(%d, %d) = %d, %d, %v; want %d, %d, %v", c.size, c.chunks, lo, hi, ok, c.lo, c.hi, c.ok)
		}
	}
}

func TestRecordRejection(t *testing.T) {
	f := newFixture(t, nil)
	err := f.st.Update(func(tx *bolt.Tx) error {
		return RecordRejection(tx, f.clock.Now(), &Rejection{Version: "1.0.0", Reason: ReasonRollback})
	})
	if err != nil {
		t.Fatal(err)
	}
	if !contains(f.auditTypes(), "firmware_rejected") {
		t.Fatal("not audited")
	}
}
