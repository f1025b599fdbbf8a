package powerloss

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// The power-loss suite (make powerloss). For each crash point N it runs the
// scenario below with the daemon's data_dir on LazyFS, loses power before
// the N-th write, sync or name operation (every unsynced byte gone), starts
// the daemon again on what the disk kept, lets it recover, stops it and
// checks the invariants of issue 15 on the files:
//
//   - bbolt's own check finds nothing;
//   - no day admits more than 30 photos;
//   - every spool file is counted exactly once;
//   - every admitted photo is in exactly one place: undecided (a record
//     and its sealed file), queued (an outbox record and its content),
//     deleted or uploaded; no record without its file, no file without
//     its record, no artifact twice;
//   - no keyring slot holds a key nobody's record refers to (a forgotten
//     person's key is not recoverable);
//   - the audit chain verifies;
//   - a staged firmware image is the one its manifest signs, and its
//     signed offer lies beside it.
//
// POWERLOSS_POINTS: how many crash points (default 80, spread over the
// scenario's boundaries); "all" for every boundary.

var binDir string

// faceModels is build/models, where make setup converts the face nets.
var faceModels string

func TestMain(m *testing.M) {
	if path := os.Getenv(bboltClientEnv); path != "" {
		if err := bboltClient(path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "aibo-powerloss-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The daemon and, beside it, its vision worker: photos wait in the
	// spool while images cannot be judged, so the scenario needs one.
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/aibo-privacyd", "./cmd/aibo-vision")
	build.Dir = "../.." // the daemon's own module
	out, err := build.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	binDir = dir
	if faceModels, err = filepath.Abs("../../build/models"); err == nil {
		_, err = os.Stat(filepath.Join(faceModels, "SHA256SUMS"))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "face models: %v\nrun make setup: it converts the face nets into build/models\n", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// run is one crash point: one device, one scenario, one power cut.
type run struct {
	t        *testing.T
	broker   *testbroker.Broker
	dir      string
	backing  string // the disk: what survives
	mnt      string // LazyFS over it: what the daemon sees
	spool    string
	socket   string
	config   string
	fwPriv   ed25519.PrivateKey
	dropped  int
	cmd      *exec.Cmd
	exited   chan struct{}
	logs     bytes.Buffer
	logMu    sync.Mutex
	step     string
	crashOp  string
	crashMu  sync.Mutex
	fwImage  []byte
	deviceID string
}

func newRun(t *testing.T, b *testbroker.Broker, n int) *run {
	dir, err := os.MkdirTemp("", "pl")
	if err != nil {
		t.Fatal(err)
	}
	r := &run{t: t, broker: b, dir: dir, backing: filepath.Join(dir, "disk"), mnt: filepath.Join(dir, "mnt"),
		spool: filepath.Join(dir, "spool"), socket: filepath.Join(dir, "diag.sock"), config: filepath.Join(dir, "config.yaml"),
		deviceID: "pl-" + strconv.Itoa(n)}
	for _, d := range []string{r.backing, r.mnt, r.spool + "/photos", r.spool + "/frames"} {
		os.MkdirAll(d, 0o700)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	r.fwPriv = priv
	r.fwImage = make([]byte, 3000)
	rand.Read(r.fwImage)
	return r
}

func (r *run) writeConfig(dataDir string) {
	pub := r.fwPriv.Public().(ed25519.PublicKey)
	cfg := fmt.Sprintf(`device_id: %s
data_dir: %s
spool_dir: %s
timezone: UTC
region: US-CA
log_level: info
mqtt:
  broker: %s
  ack_timeout: 2s
  chunk_size: 1024
photos:
  keep_per_day: 3
  min_score: 0
firmware:
  version: 1.0.0
  keys:
    fw: %s
diag:
  socket: %s
vision:
  face_models_dir: %s
`, r.deviceID, dataDir, r.spool, r.broker.URL, base64.StdEncoding.EncodeToString(pub), r.socket, faceModels)
	os.WriteFile(r.config, []byte(cfg), 0o600)
}

func (r *run) start(dataDir string) {
	r.writeConfig(dataDir)
	r.cmd = exec.Command(filepath.Join(binDir, "aibo-privacyd"), "-config", r.config)
	r.cmd.Stdout = &lockedWriter{r: r}
	r.cmd.Stderr = &lockedWriter{r: r}
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.exited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(r.cmd, r.exited)
}

type lockedWriter struct{ r *run }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.r.logMu.Lock()
	defer w.r.logMu.Unlock()
	return w.r.logs.Write(p)
}

func (r *run) dead() bool {
	select {
	case <-r.exited:
		return true
	default:
		return false
	}
}

func (r *run) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Signal(syscall.SIGKILL)
		<-r.exited
	}
}

func (r *run) stop() {
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(15 * time.Second):
		r.kill()
	}
}

func (r *run) status() map[string]any {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", r.socket)
	}}}
	resp, err := c.Get("http://diag/v1/status")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return m
}

// until polls ok until it holds, the daemon dies or d passes.
func (r *run) until(d time.Duration, ok func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if r.dead() {
			return false
		}
		if ok() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// scenario plays intake, selection, outbox, keyring and firmware staging.
// It stops early when the daemon is gone (power lost).
func (r *run) scenario(app *testbroker.Client) {
	p := "aibo/" + r.deviceID + "/"
	results := app.Subscribe(r.t, p+"cmd/result")
	events := app.Subscribe(r.t, p+"events")
	metas := app.Subscribe(r.t, p+"artifacts/+/meta")
	send := func(id, typ string, payload any) bool {
		raw, _ := json.Marshal(map[string]any{"id": id, "type": typ, "payload": payload})
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) && !r.dead() {
			app.Publish(r.t, p+"cmd", raw, false)
			if r.until(500*time.Millisecond, func() bool {
				for _, m := range results.All() {
					if strings.Contains(string(m.Payload), `"id":"`+id+`"`) {
						return true
					}
				}
				return false
			}) {
				return true
			}
		}
		return false
	}
	steps := []struct {
		name string
		do   func() bool
	}{
		{"start", func() bool { return r.until(10*time.Second, func() bool { return r.status() != nil }) }},
		{"policy", func() bool {
			return send("a1", "accept_policy", map[string]any{"version": "v1"}) &&
				send("f1", "set_features", map[string]any{"auto_photo": true})
		}},
		{"keyring", func() bool {
			return send("g1", "grant_consent", map[string]any{"subject_id": "p1", "display_name": "Kim", "minor": false,
				"granted_by": "self", "scopes": []string{"face_recognition"}})
		}},
		{"intake", func() bool {
			jpgs, _ := filepath.Glob("../../testdata/photos/*.jpg")
			// Three large scenes first: their uploads are over 16 KiB, so the
			// outbox keeps them in files of their own (smaller ones stay
			// inline in state.db).
			jpgs = append([]string{"../../testdata/photos/rocket.jpg", "../../testdata/score/astronaut.jpg",
				"../../testdata/score/coffee.jpg"}, jpgs...)
			for i := range 6 {
				b, _ := os.ReadFile(jpgs[i%len(jpgs)])
				name := filepath.Join(r.spool, "photos", "p"+strconv.Itoa(i)+".jpg")
				os.WriteFile(name+".part", b, 0o644)
				os.Rename(name+".part", name)
				r.dropped++
			}
			return r.until(10*time.Second, func() bool {
				e, _ := os.ReadDir(filepath.Join(r.spool, "photos"))
				return len(e) == 0
			})
		}},
		{"selection", func() bool {
			return send("s1", "select_photos", map[string]any{}) && r.until(10*time.Second, func() bool {
				for _, m := range events.All() {
					if strings.Contains(string(m.Payload), "selection_done") {
						return true
					}
				}
				return false
			})
		}},
		{"outbox", func() bool {
			ok := r.until(10*time.Second, func() bool { return len(metas.All()) > 0 })
			if !ok {
				return false
			}
			var m struct {
				ArtifactID string `json:"artifact_id"`
			}
			json.Unmarshal(metas.All()[0].Payload, &m)
			app.Publish(r.t, p+"artifacts/"+m.ArtifactID+"/ack", []byte(`{"ok":true}`), false)
			return r.until(5*time.Second, func() bool {
				s := r.status()
				pt, _ := s["photos_today"].(map[string]any)
				u, _ := pt["uploaded"].(float64)
				return u >= 1
			})
		}},
		{"forget", func() bool { return send("r1", "revoke_consent", map[string]any{"subject_id": "p1"}) }},
		{"firmware", func() bool {
			sum := sha256.Sum256(r.fwImage)
			man, _ := json.Marshal(map[string]any{"version": "1.1.0-rc/1", "size": len(r.fwImage), "sha256": hex.EncodeToString(sum[:]),
				"chunks": 3, "policy_version": "v1", "material_policy_change": false})
			if !send("fw1", "firmware_offer", map[string]any{"kid": "fw", "manifest": base64.StdEncoding.EncodeToString(man),
				"sig": base64.StdEncoding.EncodeToString(ed25519.Sign(r.fwPriv, man))}) {
				return false
			}
			for n := range 3 {
				app.Publish(r.t, p+"firmware/1.1.0-rc/1/chunk/"+strconv.Itoa(n), r.fwImage[n*1024:min((n+1)*1024, len(r.fwImage))], false)
			}
			return r.until(10*time.Second, func() bool {
				for _, m := range events.All() {
					if strings.Contains(string(m.Payload), "firmware_staged") {
						return true
					}
				}
				return false
			})
		}},
	}
	for _, s := range steps {
		r.crashMu.Lock()
		r.step = s.name
		r.crashMu.Unlock()
		if !s.do() {
			return
		}
	}
	r.crashMu.Lock()
	r.step = "done"
	r.crashMu.Unlock()
}

// outcome of one crash point.
type outcome struct {
	point      int64
	step, op   string
	violations []string
}

// crashAt runs the scenario with power lost before boundary n (0: never)
// and returns the boundaries seen and the outcome.
func crashAt(t *testing.T, b *testbroker.Broker, n int64) (int64, outcome) {
	return crashAndTamper(t, b, n, nil)
}

// crashAndTamper is crashAt with tamper run on the disk before the checks
// (to prove the checks find what they look for).
func crashAndTamper(t *testing.T, b *testbroker.Broker, n int64, tamper func(r *run)) (int64, outcome) {
	r := newRun(t, b, int(n))
	defer os.RemoveAll(r.dir)
	out := outcome{point: n}
	lz, err := Mount(r.backing, r.mnt, n, func(op string) {
		r.crashMu.Lock()
		r.crashOp = op
		r.crashMu.Unlock()
		go r.kill() // power is gone: the daemon with it
	})
	if err != nil {
		t.Skipf("cannot mount LazyFS (needs root and /dev/fuse): %v", err)
	}
	r.start(r.mnt)
	app := b.Client(t)
	r.scenario(app)
	_ = app
	if !lz.Crashed() {
		r.stop()
	} else {
		r.kill()
	}
	ops := lz.Ops()
	lz.Unmount()
	r.crashMu.Lock()
	out.step, out.op = r.step, r.crashOp
	r.crashMu.Unlock()

	// Power is back: the daemon recovers on what the disk kept.
	r.start(r.backing)
	r.until(10*time.Second, func() bool { return r.status() != nil })
	r.until(10*time.Second, func() bool {
		e, _ := os.ReadDir(filepath.Join(r.spool, "photos"))
		return len(e) == 0
	})
	time.Sleep(300 * time.Millisecond)
	if r.dead() {
		out.violations = append(out.violations, "daemon did not start after the cut: "+lastLines(r.logs.String(), 3))
		return ops, out
	}
	r.stop()
	if tamper != nil {
		tamper(r)
	}
	out.violations = append(out.violations, r.check()...)
	if len(out.violations) > 0 {
		t.Logf("crash point %d (%s, %s): daemon logs:\n%s", n, out.step, out.op, lastLines(r.logs.String(), 40))
	}
	return ops, out
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// check verifies the invariants on the disk after recovery.
func (r *run) check() (bad []string) {
	fail := func(f string, a ...any) { bad = append(bad, fmt.Sprintf(f, a...)) }
	db, err := bolt.Open(filepath.Join(r.backing, "state.db"), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		fail("state.db: %v", err)
		return
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			fail("bbolt check: %v", err)
		}
		if rep := audit.Verify(tx); !rep.OK {
			fail("audit chain: %+v", rep)
		}
		// Days: the cap, each spool file once, each admitted photo once.
		records := map[string]bool{}
		tx.Bucket(store.BucketPhotos).ForEach(func(k, _ []byte) error { records[string(k)] = true; return nil })
		queued, queuedIDs := 0, map[string]bool{}
		ob := tx.Bucket(store.BucketOutbox)
		arts, content, byKind := ob.Bucket([]byte("artifacts")), ob.Bucket([]byte("content")), ob.Bucket([]byte("by_kind"))
		c := byKind.Cursor()
		for k, _ := c.Seek([]byte("photo\x00")); k != nil && bytes.HasPrefix(k, []byte("photo\x00")); k, _ = c.Next() {
			queued++
		}
		files := map[string]bool{}
		ents, _ := os.ReadDir(filepath.Join(r.backing, "outbox"))
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".art") {
				files[e.Name()] = true
			}
		}
		arts.ForEach(func(k, v []byte) error {
			queuedIDs[string(k)] = true
			var rec struct {
				V      int    `json:"v"`
				Inline bool   `json:"inline"`
				File   string `json:"file"`
			}
			json.Unmarshal(v, &rec)
			switch {
			case rec.V != 1: // sealed whole for a person: content checked by count below
			case rec.Inline && content.Get(k) == nil:
				fail("queued artifact %s: inline content missing", k)
			case !rec.Inline && !files[rec.File]:
				fail("queued artifact %s: content file %s missing", k, rec.File)
			}
			return nil
		})
		for f := range files {
			if aid, _, _ := strings.Cut(f, "."); !queuedIDs[aid] {
				fail("outbox file %s belongs to no queued artifact", f)
			}
		}
		vault := map[string]bool{}
		ents, _ = os.ReadDir(filepath.Join(r.backing, "photos"))
		for _, e := range ents {
			if id, ok := strings.CutSuffix(e.Name(), ".photo"); ok {
				vault[id] = true
			}
		}
		for id := range records {
			if !vault[id] {
				fail("photo record %s has no sealed file", id)
			}
		}
		for id := range vault {
			if !records[id] {
				fail("sealed photo file %s has no record", id)
			}
		}
		decided, admitted, accounted := 0, 0, len(records)+queued
		tx.Bucket(store.BucketDays).ForEach(func(k, v []byte) error {
			var d struct{ Admitted, Refused, OverCap, Invalid, Uploaded, Deleted int }
			json.Unmarshal(v, &d)
			var dj struct {
				OverCap int `json:"over_cap"`
			}
			json.Unmarshal(v, &dj)
			d.OverCap = dj.OverCap
			if d.Admitted > 30 {
				fail("day %s admitted %d photos", k, d.Admitted)
			}
			decided += d.Admitted + d.Refused + d.OverCap + d.Invalid
			admitted += d.Admitted
			accounted += d.Uploaded + d.Deleted
			return nil
		})
		if decided != r.dropped {
			fail("%d spool files dropped, %d decided", r.dropped, decided)
		}
		if admitted != accounted {
			fail("%d admitted, %d accounted for (%d undecided, %d queued, the rest uploaded or deleted)", admitted, accounted, len(records), queued)
		}
		// Keyring: no key nobody refers to.
		used := map[uint32]bool{}
		tx.Bucket(store.BucketSubjects).ForEach(func(k, v []byte) error {
			if !bytes.HasPrefix(k, []byte("person/")) {
				return nil
			}
			var ps struct {
				IdentitySlot uint32  `json:"identity_slot"`
				FaceSlot     *uint32 `json:"face_slot"`
			}
			json.Unmarshal(v, &ps)
			used[ps.IdentitySlot] = true
			if ps.FaceSlot != nil {
				used[*ps.FaceSlot] = true
			}
			return nil
		})
		ring, _ := os.ReadFile(filepath.Join(r.backing, "people.keys"))
		for i := 0; i+keys.Size <= len(ring); i += keys.Size {
			if !bytes.Equal(ring[i:i+keys.Size], make([]byte, keys.Size)) && !used[uint32(i/keys.Size)] {
				fail("keyring slot %d holds a key no record refers to", i/keys.Size)
			}
		}
		// The data keyring (photos, artifacts that are not person-linked):
		// no key of something deleted is left either.
		dataUsed := map[uint32]bool{}
		tx.Bucket(store.BucketPhotos).ForEach(func(k, v []byte) error {
			var p struct {
				Slot *uint32 `json:"slot"`
			}
			if json.Unmarshal(v, &p) == nil && p.Slot != nil {
				dataUsed[*p.Slot] = true
			}
			return nil
		})
		arts.ForEach(func(k, v []byte) error {
			var a struct {
				DataSlot *uint32 `json:"data_slot"`
			}
			if json.Unmarshal(v, &a) == nil && a.DataSlot != nil {
				dataUsed[*a.DataSlot] = true
			}
			return nil
		})
		data, _ := os.ReadFile(filepath.Join(r.backing, "data.keys"))
		for i := 0; i+keys.Size <= len(data); i += keys.Size {
			if !bytes.Equal(data[i:i+keys.Size], make([]byte, keys.Size)) && !dataUsed[uint32(i/keys.Size)] {
				fail("data keyring slot %d holds a key no photo or artifact refers to", i/keys.Size)
			}
		}
		// Firmware: what is staged is what was signed, with its offer.
		var staged struct {
			Manifest struct {
				Version string `json:"version"`
				SHA256  string `json:"sha256"`
			} `json:"manifest"`
		}
		if raw := tx.Bucket(store.BucketFirmware).Get([]byte("staged")); raw != nil {
			json.Unmarshal(raw, &staged)
			img, err := os.ReadFile(filepath.Join(r.backing, "firmware", "staged.img"))
			sum := sha256.Sum256(img)
			if err != nil || hex.EncodeToString(sum[:]) != staged.Manifest.SHA256 {
				fail("staged firmware %s: image missing or not the signed one (%v)", staged.Manifest.Version, err)
			}
			if _, err := os.Stat(filepath.Join(r.backing, "firmware", "staged.offer.json")); err != nil {
				fail("staged firmware %s: signed offer missing: %v", staged.Manifest.Version, err)
			}
		}
		return nil
	})
	return bad
}

// TestTheChecksFindViolations: a disk tampered with after a clean run (a
// forgotten key left in the keyring, an orphan outbox file, a sealed photo
// lost, a spool file counted twice) fails the checks.
func TestTheChecksFindViolations(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for FUSE")
	}
	b := testbroker.Start(t)
	_, o := crashAndTamper(t, b, 0, func(r *run) {
		for _, ring := range []string{"people.keys", "data.keys"} {
			f, _ := os.OpenFile(filepath.Join(r.backing, ring), os.O_WRONLY|os.O_APPEND, 0)
			f.Write(bytes.Repeat([]byte{7}, keys.Size))
			f.Close()
		}
		os.WriteFile(filepath.Join(r.backing, "outbox", "aorphan.x.art"), []byte("x"), 0o600)
		r.dropped++
	})
	want := []string{"keyring slot", "data keyring slot", "belongs to no queued artifact", "spool files dropped"}
	for _, w := range want {
		if !strings.Contains(strings.Join(o.violations, "\n"), w) {
			t.Errorf("tampering not found (%q): %v", w, o.violations)
		}
	}
}

func TestPowerLoss(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for FUSE")
	}
	b := testbroker.Start(t)
	total, first := crashAt(t, b, 0)
	if len(first.violations) > 0 {
		t.Fatalf("without a power cut: %v", first.violations)
	}
	if first.step != "done" {
		t.Fatalf("the scenario did not finish without a power cut (stopped at %s)", first.step)
	}
	want := 80
	if v := os.Getenv("POWERLOSS_POINTS"); v == "all" {
		want = int(total)
	} else if n, err := strconv.Atoi(v); err == nil && n > 0 {
		want = n
	}
	stride := max(1, total/int64(want))
	t.Logf("scenario: %d write, sync and name boundaries; crashing at every %d", total, stride)
	var outs []outcome
	for n := int64(1); n <= total; n += stride {
		_, o := crashAt(t, b, n)
		outs = append(outs, o)
		if len(o.violations) > 0 {
			t.Errorf("power lost before boundary %d (%s, during %s): %s", n, o.op, o.step, strings.Join(o.violations, "; "))
		}
	}
	// Report: crash points by scenario step and by what was being written.
	bySteps, byFile := map[string]int{}, map[string]int{}
	violations := 0
	for _, o := range outs {
		bySteps[o.step]++
		byFile[fileClass(o.op)]++
		violations += len(o.violations)
	}
	t.Logf("crash points tried: %d; violations: %d", len(outs), violations)
	t.Logf("by scenario step: %s", sorted(bySteps))
	t.Logf("by what the cut interrupted: %s", sorted(byFile))
}

func fileClass(op string) string {
	f := strings.Fields(op)
	if len(f) < 2 {
		return "none"
	}
	kind, path := f[0], f[1]
	switch {
	case strings.HasPrefix(path, "state.db"):
		return kind + " state.db"
	case strings.HasPrefix(path, "people.keys"):
		return kind + " people.keys"
	case strings.HasPrefix(path, "data.keys"):
		return kind + " data.keys"
	case strings.HasPrefix(path, "photos/"):
		return kind + " photos/"
	case strings.HasPrefix(path, "outbox/"):
		return kind + " outbox/"
	case strings.HasPrefix(path, "firmware/"):
		return kind + " firmware/"
	}
	return kind + " other"
}

func sorted(m map[string]int) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var b strings.Builder
	for _, k := range ks {
		fmt.Fprintf(&b, "%s=%d ", k, m[k])
	}
	return b.String()
}
