package facerec

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testlog"
)

// outcomes records each frame's outcome.
type outcomes struct {
	mu  sync.Mutex
	got []string
}

func (o *outcomes) add(s string) { o.mu.Lock(); o.got = append(o.got, s); o.mu.Unlock() }

func (o *outcomes) list() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.got...)
}

// TestEnrollmentThatDoesNotProgressSaysSo (issue 18): a frame with no face
// or two faces was dropped with no log line and no count, and the window
// stayed open until its timeout. Now each frame has an outcome, the
// window's progress is there to read, a window that takes no sample in
// ten frames says so, and the failure says what the frames showed.
func TestEnrollmentThatDoesNotProgressSaysSo(t *testing.T) {
	r := newRig(t)
	var seen outcomes
	var logs testlog.Buffer
	var failed Progress
	r.cfg.OnFrame = seen.add
	r.cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	r.cfg.OnEnrollFailed = func(s, why string, p Progress) {
		r.mu.Lock()
		failed, r.failed = p, append(r.failed, s+":"+why)
		r.mu.Unlock()
	}
	r.restart()
	r.consent("ana")
	if err := r.start("ana"); err != nil {
		t.Fatal(err)
	}
	r.frame("A")
	for range 6 {
		r.frame() // nobody in front of the camera
	}
	for range 4 {
		r.frame("A", "B") // someone else in the picture
	}
	r.frame("?") // a face the worker could not describe
	e, ok := r.svc.Enrollment()
	want := Progress{Samples: 1, Frames: 12, NoFace: 6, SeveralFaces: 4, Undescribed: 1}
	if !ok || e.SubjectID != "ana" || e.Progress != want || e.SamplesNeeded != 3 {
		t.Fatalf("enrollment %+v (open %v), want %+v of 3", e, ok, want)
	}
	got := seen.list()
	for i, w := range []string{FrameEnrollmentSample, FrameNoFace, FrameNoFace} {
		if got[i] != w {
			t.Fatalf("outcomes %v", got)
		}
	}
	if got[7] != FrameSeveralFaces || got[11] != FrameUndescribed {
		t.Fatalf("outcomes %v", got)
	}
	if !strings.Contains(logs.String(), `msg="enrollment not progressing: frames show no usable face" subject_id=ana samples=1 samples_needed=3 frames=11 no_face=6 several_faces=4`) {
		t.Errorf("ten frames without a sample, and no line says so:\n%s", logs.String())
	}
	r.advance(2 * time.Minute)
	deadline := time.Now().Add(2 * time.Second)
	for len(r.list(&r.failed)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	r.mu.Lock()
	got2 := failed
	r.mu.Unlock()
	if got2 != want {
		t.Errorf("the failure reports %+v, want %+v", got2, want)
	}
	if !strings.Contains(logs.String(), `msg="enrollment failed" subject_id=ana reason=timeout samples=1 frames=12 no_face=6 several_faces=4 undescribed=1`) {
		t.Errorf("the failure's log line does not say what the frames showed:\n%s", logs.String())
	}
	if _, open := r.svc.Enrollment(); open {
		t.Error("the window is still open")
	}
}

// TestPatrolFramesCountByOutcome: every frame is counted once, by what
// came of it, and none names who a stranger might be.
func TestPatrolFramesCountByOutcome(t *testing.T) {
	r := newRig(t)
	var seen outcomes
	r.cfg.OnFrame = seen.add
	r.restart()
	r.frame("A") // nobody enrolled: nothing to look for
	r.consent("ana")
	r.start("ana")
	for range 3 {
		r.frame("A")
	}
	r.advance(11 * time.Minute)
	r.frame("A")      // seen
	r.frame("A")      // seen again within the interval
	r.frame("Z")      // a stranger
	r.frame()         // nobody
	r.frame("Z", "A") // a stranger with ana, seen again
	got := seen.list()
	want := []string{FrameUnused, FrameEnrollmentSample, FrameEnrollmentSample, FrameEnrollmentSample,
		FrameSighting, FrameSeenRecently, FrameStranger, FrameNoFace, FrameSeenRecently}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("outcomes\n got  %v\n want %v", got, want)
	}
}

// TestFramesWaitUnreadWhileTheWorkerCannotStart (contract v3, section 2):
// while images cannot be judged a frame stays in the spool unread, is
// analysed if the worker comes back in time, and is deleted unread and
// counted once it is older than MaxFrameAge.
func TestFramesWaitUnreadWhileTheWorkerCannotStart(t *testing.T) {
	r := newRig(t)
	var down atomic.Bool
	var seen outcomes
	down.Store(true)
	r.cfg.Ready = func() error {
		if down.Load() {
			return errors.New("the worker cannot start")
		}
		return nil
	}
	r.cfg.MaxFrameAge = 2500 * time.Millisecond
	r.cfg.OnFrame = seen.add
	r.restart()
	r.consent("ana")
	r.start("ana")
	before := analysed.Load()
	drop := func(name string) string {
		os.MkdirAll(r.dir, 0o755)
		p := filepath.Join(r.dir, name)
		os.WriteFile(p+".part", []byte("A-noise-"+name), 0o644)
		os.Rename(p+".part", p)
		return p
	}
	waited := drop("w1.jpg")
	time.Sleep(500 * time.Millisecond)
	if _, err := os.Stat(waited); err != nil || analysed.Load() != before || len(seen.list()) != 0 {
		t.Fatalf("a frame was taken while images cannot be judged (%v, %d analysed)", err, analysed.Load()-before)
	}
	down.Store(false) // back in time: the next look at the spool analyses it
	gone := func(p string) bool {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := os.Stat(p); os.IsNotExist(err) && len(seen.list()) > 0 {
				return true
			}
			time.Sleep(10 * time.Millisecond)
		}
		return false
	}
	if !gone(waited) || analysed.Load() != before+1 {
		t.Fatalf("the waiting frame was not analysed once the worker was back: %v", seen.list())
	}
	if e, _ := r.svc.Enrollment(); e.Samples != 1 {
		t.Fatalf("the frame that waited gave no sample: %+v", e)
	}
	down.Store(true)
	late := drop("w2.jpg")
	seenBefore := len(seen.list())
	deadline := time.Now().Add(8 * time.Second)
	for len(seen.list()) == seenBefore && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(late); !os.IsNotExist(err) {
		t.Fatal("a frame older than MaxFrameAge is still in the spool")
	}
	if got := seen.list(); got[len(got)-1] != FrameExpired || analysed.Load() != before+1 {
		t.Fatalf("outcomes %v, %d analysed: want the late frame expired unread", got, analysed.Load()-before)
	}
}
