package facerec

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

// frameAnalyzer stands in for the vision worker: a frame's bytes are a
// list of "faces" separated by '|', each face's template the bytes
// themselves. Recognition below matches templates by their first byte (the
// "person"); the rest is noise that differs per frame.
type frameAnalyzer struct{}

// analysed counts the frames handed to any frameAnalyzer.
var analysed atomic.Int64

func (frameAnalyzer) Faces(ctx context.Context, img []byte) ([]Face, error) {
	analysed.Add(1)
	if bytes.HasPrefix(img, []byte("~")) {
		return nil, nil // a person too far for Patrol's search
	}
	var out []Face
	for _, f := range bytes.Split(img, []byte("|")) {
		switch {
		case len(f) > 0 && f[0] == '?':
			out = append(out, Face{}) // found, but not described
		case len(f) > 0:
			out = append(out, Face{Template: f})
		}
	}
	return out, nil
}

// farAnalyzer stands in for the enrollment search: it also finds the
// faces of frames marked '~' (a person where the robot stands), which
// Patrol's search (frameAnalyzer) does not reach.
type farAnalyzer struct{}

func (farAnalyzer) Faces(ctx context.Context, img []byte) ([]Face, error) {
	return frameAnalyzer{}.Faces(ctx, bytes.TrimPrefix(img, []byte("~")))
}

type firstByte struct{}

func (firstByte) Model() string { return "first-byte-v1" }

func (firstByte) Build(g map[string][][]byte) (Matcher, error) { return firstByteMatcher(g), nil }

type firstByteMatcher map[string][][]byte

func (g firstByteMatcher) Identify(probe []byte) (string, float64, bool) {
	if len(probe) == 0 {
		return "", 0, false
	}
	for subject, samples := range g {
		for _, s := range samples {
			if s[0] == probe[0] {
				return subject, 0.9, true
			}
		}
	}
	return "", 0, false
}

type rig struct {
	t        *testing.T
	st       *store.Store
	pol      *policy.Policy
	svc      *Service
	cfg      Config
	dir      string
	mu       sync.Mutex
	now      time.Time
	enrolled []string
	failed   []string
	seen     []string
	cancel   context.CancelFunc
	done     chan struct{}
}

func newRig(t *testing.T) *rig {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := keys.OpenKeyring(filepath.Join(dir, "people.keys"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ring.Close() })
	r := &rig{t: t, st: st, pol: policy.New("US-CA", []string{"US-IL"}, ring), dir: filepath.Join(dir, "frames"),
		now: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
	r.cfg = Config{
		FramesDir: r.dir, Samples: 3, EnrollTimeout: time.Minute, SightingInterval: 10 * time.Minute, EnrollAnalyzer: farAnalyzer{},
		Now: r.clock, Logger: slog.New(slog.DiscardHandler),
		OnEnrolled:     func(s string) { r.mu.Lock(); r.enrolled = append(r.enrolled, s); r.mu.Unlock() },
		OnEnrollFailed: func(s, why string, _ Progress) { r.mu.Lock(); r.failed = append(r.failed, s+":"+why); r.mu.Unlock() },
		SightingTx: func(tx *bolt.Tx, s string, slot uint32, at time.Time, c float64) error {
			r.mu.Lock()
			r.seen = append(r.seen, s)
			r.mu.Unlock()
			return nil
		},
	}
	st.Update(func(tx *bolt.Tx) error {
		r.pol.AcceptPolicy(tx, r.now, "v1")
		_, err := r.pol.SetFeatures(tx, r.now, map[policy.Feature]bool{policy.Patrol: true})
		return err
	})
	r.run()
	t.Cleanup(func() { r.cancel(); <-r.done; st.Close() })
	return r
}

// run starts a new Service over the rig's store, as the daemon does at
// every start.
func (r *rig) run() {
	r.svc = New(r.st, r.pol, frameAnalyzer{}, firstByte{}, r.cfg)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func() { r.svc.Run(ctx); close(r.done) }()
}

// restart stops the service and starts a new one: what was only in memory
// is gone.
func (r *rig) restart() {
	r.cancel()
	<-r.done
	r.run()
}

func (r *rig) cancelEnrollment(subject string) error {
	var closeWindow func()
	err := r.st.Update(func(tx *bolt.Tx) (err error) { closeWindow, err = r.svc.CancelEnrollment(tx, subject); return })
	if err == nil {
		closeWindow()
	}
	return err
}

// list reads one of the callback logs under the lock.
func (r *rig) list(l *[]string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), *l...)
}

func (r *rig) clock() time.Time { r.mu.Lock(); defer r.mu.Unlock(); return r.now }

func (r *rig) advance(d time.Duration) { r.mu.Lock(); r.now = r.now.Add(d); r.mu.Unlock() }

func (r *rig) consent(subject string) {
	err := r.st.Update(func(tx *bolt.Tx) error {
		_, _, err := r.pol.GrantConsent(tx, r.now, policy.Grant{SubjectID: subject, DisplayName: "Person " + subject, GrantedBy: "self", Scopes: []string{"face_recognition"}})
		return err
	})
	if err != nil {
		r.t.Fatal(err)
	}
}

// revoke withdraws every scope of subject, as the daemon records it.
func (r *rig) revoke(tx *bolt.Tx, subject string) error {
	revoked, kept, err := r.pol.Withdrawal(tx, subject, nil)
	if err != nil {
		return err
	}
	return r.pol.RecordWithdrawalTx(tx, r.now, subject, revoked, kept)
}

func (r *rig) start(subject string) error {
	var open func()
	err := r.st.Update(func(tx *bolt.Tx) (err error) { open, err = r.svc.StartEnrollment(tx, r.clock(), subject); return })
	if err == nil {
		open()
	}
	return err
}

var frameSeq int

// frame drops a frame and waits until the service has taken it.
func (r *rig) frame(faces ...string) {
	r.t.Helper()
	os.MkdirAll(r.dir, 0o755)
	frameSeq++
	name := filepath.Join(r.dir, "f"+strconv.Itoa(frameSeq)+".jpg")
	var body []byte
	for i, f := range faces {
		if i > 0 {
			body = append(body, '|')
		}
		body = append(body, []byte(f+"-noise-"+strconv.Itoa(frameSeq))...)
	}
	before := r.svc.handled.Load()
	os.WriteFile(name+".part", body, 0o644)
	os.Rename(name+".part", name)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(name); os.IsNotExist(err) && r.svc.handled.Load() > before {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	r.t.Fatal("frame not handled within 2 s")
}

func (r *rig) facesBucket() map[string]string {
	out := map[string]string{}
	r.st.View(func(tx *bolt.Tx) error {
		return tx.Bucket(store.BucketFaces).ForEach(func(k, v []byte) error { out[string(k)] = string(v); return nil })
	})
	return out
}

// TestEnrollmentSkipsAFaceWithoutDescriptor: a face the worker found but
// could not describe (it reports the box for blurring, no descriptor) is
// no sample.
func TestEnrollmentSkipsAFaceWithoutDescriptor(t *testing.T) {
	r := newRig(t)
	r.consent("ana")
	if err := r.start("ana"); err != nil {
		t.Fatal(err)
	}
	r.frame("A")
	r.frame("A")
	r.frame("?")
	if len(r.list(&r.enrolled)) != 0 {
		t.Fatal("a face without a descriptor counted as a sample")
	}
	r.frame("A")
	if len(r.list(&r.enrolled)) != 1 {
		t.Fatalf("enrolled %v", r.list(&r.enrolled))
	}
}

func TestP6_EnrollmentNeedsConsentAndUsesOneFaceFrames(t *testing.T) {
	r := newRig(t)
	if err := r.start("ana"); err != policy.ErrConsentRequired {
		t.Fatalf("enrollment without consent: %v", err)
	}
	r.consent("ana")
	if err := r.start("ana"); err != nil {
		t.Fatal(err)
	}
	r.consent("ben")
	if err := r.start("ben"); err != ErrBusy {
		t.Fatalf("second enrollment while one is open: %v", err)
	}
	r.frame("A")
	r.frame("A", "B") // two faces: not a sample
	r.frame()         // no face
	r.frame("A")
	if len(r.list(&r.enrolled)) != 0 {
		t.Fatal("enrolled before enough samples")
	}
	r.frame("A")
	if len(r.list(&r.enrolled)) != 1 || r.list(&r.enrolled)[0] != "ana" {
		t.Fatalf("enrolled %v", r.list(&r.enrolled))
	}
	if _, ok := r.facesBucket()["tpl/ana"]; !ok {
		t.Fatal("templates not stored")
	}
	// Templates are sealed: no sample bytes in the database file.
	raw, _ := os.ReadFile(r.st.Path())
	if bytes.Contains(raw, []byte("A-noise-")) {
		t.Fatal("template stored in the clear")
	}
}

func TestP7_StrangersLeaveNothingAndSightingsAreRateLimited(t *testing.T) {
	r := newRig(t)
	r.consent("ana")
	r.start("ana")
	r.frame("A")
	r.frame("A")
	r.frame("A")
	// The frame that completed the enrollment was recognised right away.
	if len(r.list(&r.seen)) != 1 {
		t.Fatalf("sightings after enrollment %v", r.list(&r.seen))
	}
	r.advance(11 * time.Minute)
	before := r.facesBucket()
	r.frame("Z") // a stranger
	r.frame("Z", "Y")
	if after := r.facesBucket(); len(after) != len(before) {
		t.Fatalf("a stranger left %d records", len(after)-len(before))
	}
	if len(r.list(&r.seen)) != 1 {
		t.Fatalf("stranger sighted: %v", r.list(&r.seen))
	}
	r.frame("A")
	r.frame("A") // within the interval
	if len(r.list(&r.seen)) != 2 {
		t.Fatalf("sightings %v, want one per interval", r.list(&r.seen))
	}
	r.advance(11 * time.Minute)
	r.frame("Z", "A")
	if len(r.list(&r.seen)) != 3 {
		t.Fatalf("sightings %v after the interval", r.list(&r.seen))
	}
}

func TestP5_EraseErasesTemplatesAndSightingsAndStopsRecognition(t *testing.T) {
	r := newRig(t)
	r.consent("ana")
	r.start("ana")
	r.frame("A")
	r.frame("A")
	r.frame("A")
	var f Forgotten
	r.st.Update(func(tx *bolt.Tx) (err error) {
		f, _, err = r.svc.EraseTx(tx, "ana", What{Templates: true, Sightings: true})
		if err != nil {
			return err
		}
		return r.revoke(tx, "ana")
	})
	r.svc.Forgot("ana")
	if f.Templates != 1 || f.Sightings != 1 { // the enrollment frame's sighting
		t.Fatalf("forgot %+v", f)
	}
	if left := r.facesBucket(); len(left) != 0 {
		t.Fatalf("left behind: %d records", len(left))
	}
	r.advance(time.Hour)
	r.frame("A")
	if len(r.list(&r.seen)) != 1 {
		t.Fatalf("recognised after forgetting: %v", r.list(&r.seen))
	}
}

func TestEnrollmentTimesOutAndCancelKeepsNothing(t *testing.T) {
	r := newRig(t)
	r.consent("ana")
	r.start("ana")
	r.frame("A")
	if err := r.cancelEnrollment("ana"); err != nil {
		t.Fatal(err)
	}
	if err := r.cancelEnrollment("ana"); err != ErrNoEnrollment {
		t.Fatalf("second cancel: %v", err)
	}
	r.frame("A")
	r.frame("A")
	if len(r.facesBucket()) != 0 || len(r.list(&r.enrolled)) != 0 {
		t.Fatal("cancelled enrollment kept something")
	}
	r.start("ana")
	r.advance(2 * time.Minute)
	deadline := time.Now().Add(2 * time.Second)
	for len(r.list(&r.failed)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(r.list(&r.failed)) != 1 || r.list(&r.failed)[0] != "ana:timeout" {
		t.Fatalf("failures %v", r.list(&r.failed))
	}
}

// A restart in the middle of an enrollment does not close it silently:
// the window reopens with the deadline the app was given and the
// enrollment completes from frames seen after the restart. Past that
// deadline it fails as timed out, and the app is told.
func TestEnrollmentWindowSurvivesARestart(t *testing.T) {
	r := newRig(t)
	r.consent("ana")
	if err := r.start("ana"); err != nil {
		t.Fatal(err)
	}
	r.frame("A")
	r.restart()
	waitFor(t, func() bool { return (r.svc.enrollingSubject() != "") })
	for range 3 {
		r.frame("A")
	}
	if got := r.list(&r.enrolled); len(got) != 1 || got[0] != "ana" {
		t.Fatalf("enrolled %v after a restart mid-enrollment", got)
	}
	if _, open := r.facesBucket()[string(openWindowKey)]; open {
		t.Fatal("the window's record outlived the enrollment")
	}

	r.consent("ben")
	if err := r.start("ben"); err != nil {
		t.Fatal(err)
	}
	r.cancel()
	<-r.done
	r.advance(2 * time.Minute) // the robot was off past the deadline
	r.run()
	waitFor(t, func() bool { return len(r.list(&r.failed)) == 1 })
	if got := r.list(&r.failed); got[0] != "ben:timeout" || (r.svc.enrollingSubject() != "") {
		t.Fatalf("failures %v, still enrolling %v", got, (r.svc.enrollingSubject() != ""))
	}
	if _, open := r.facesBucket()[string(openWindowKey)]; open {
		t.Fatal("an expired window's record was kept")
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 2 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConsentWithdrawnDuringEnrollmentKeepsNothing(t *testing.T) {
	r := newRig(t)
	r.consent("ana")
	r.start("ana")
	r.frame("A")
	r.frame("A")
	r.st.Update(func(tx *bolt.Tx) error { return r.revoke(tx, "ana") })
	r.frame("A")
	if len(r.facesBucket()) != 0 {
		t.Fatal("templates kept after consent was withdrawn")
	}
	if len(r.list(&r.failed)) != 1 || r.list(&r.failed)[0] != "ana:consent_required" {
		t.Fatalf("failures %v", r.list(&r.failed))
	}
}

func TestFramesAreDeletedUnreadWhenNothingNeedsThem(t *testing.T) {
	r := newRig(t)
	r.st.Update(func(tx *bolt.Tx) error {
		_, err := r.pol.SetFeatures(tx, r.now, map[policy.Feature]bool{policy.Patrol: false})
		return err
	})
	r.frame("A") // fails the test unless deleted within 2 s
}

// TestEnrollmentFramesGetTheEnrollmentSearch (issue 19): a person enrols
// from where the robot stands. While a window is open, frames go to the
// enrollment search, which finds faces Patrol's does not reach; without a
// window they go to Patrol's.
func TestEnrollmentFramesGetTheEnrollmentSearch(t *testing.T) {
	r := newRig(t)
	r.consent("ana")
	if err := r.start("ana"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r.frame("~A")
	}
	if got := r.list(&r.enrolled); len(got) != 1 || got[0] != "ana" {
		t.Fatalf("enrolled %v after three frames of ana at a distance", got)
	}
	r.advance(time.Hour) // past the sighting interval
	before := len(r.list(&r.seen))
	r.frame("~A")
	if len(r.list(&r.seen)) != before {
		t.Fatal("a Patrol frame was searched as far as an enrollment frame")
	}
	r.frame("A")
	if len(r.list(&r.seen)) != before+1 {
		t.Fatal("ana not sighted in a Patrol frame")
	}
}
