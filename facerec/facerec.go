// Package facerec owns what the robot knows of people's faces: enrollment
// windows, templates sealed with each person's own key, Patrol recognition
// and sightings, and forgetting. It only ever keeps data of people whose
// consent the policy confirms at the moment of use; a face that matches no
// consenting person leaves nothing behind (no crop, no template, no log
// line). It is pure Go: detection and template extraction happen in the
// vision worker, which hands back templates only.
package facerec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/spool"
)

// Face is one face the vision worker found in a frame: a template (the
// descriptor of its aligned chip, made by Model) and where it is. The chip
// never leaves the worker. Template is nil for a face the worker found but
// could not describe: it matches nobody.
type Face struct {
	Template []byte
	Box      image.Rectangle // where the face is, in the image's pixels
	Model    string          // what made Template (see Recognizer.Model)
}

// Analyzer finds faces in an image (the vision worker).
type Analyzer interface {
	Faces(ctx context.Context, image []byte) ([]Face, error)
}

// Recognizer builds a matcher over the enrolled people's samples.
type Recognizer interface {
	// Model names what made the samples it matches: templates stored
	// under another model cannot be used and must be enrolled again.
	Model() string
	Build(gallery map[string][][]byte) (Matcher, error)
}

// Matcher identifies a probe template among the people it was built on.
type Matcher interface {
	// Identify returns the subject whose samples best match probe, with a
	// confidence in [0, 1]; ok only when the match clears the shipped
	// threshold.
	Identify(probe []byte) (subject string, confidence float64, ok bool)
}

// Refusals of enrollment commands.
var (
	ErrBusy         = errors.New("another enrollment is open")
	ErrNoEnrollment = errors.New("no enrollment is open for this subject")
)

// Config tunes the service.
type Config struct {
	FramesDir        string
	Samples          int
	EnrollTimeout    time.Duration
	SightingInterval time.Duration
	MaxFileBytes     int64
	Now              func() time.Time
	Logger           *slog.Logger
	// AnalyzeTimeout bounds the worker's answer for one frame (default 5 s).
	AnalyzeTimeout time.Duration
	// Ready says whether the Analyzer can be asked now; an error (the
	// worker cannot start) leaves frames in the spool unread, each until
	// it is MaxFrameAge old, then deletes it unread. Nil: always.
	Ready func() error
	// MaxFrameAge is how long a frame may wait to be analysed (contract
	// v3, section 2: 10 s); default 10 s.
	MaxFrameAge time.Duration
	// OnFrame is told each frame's outcome (one of FrameOutcomes) once the
	// frame is gone from the spool.
	OnFrame func(outcome string)
	// EnrollAnalyzer analyses the frames that arrive while an enrollment
	// window is open: a search that looks further than Patrol's, so a
	// person enrols from where the robot stands. Nil: the Analyzer.
	EnrollAnalyzer Analyzer

	// EnrolledTx runs inside the transaction that stores a new enrollment
	// (the caller may queue a cloud backup of the templates there, sealed
	// by the face key in faceSlot); OnEnrolled after it committed.
	EnrolledTx func(tx *bolt.Tx, subjectID string, faceSlot uint32, samples [][]byte) error
	OnEnrolled func(subjectID string)
	// EnrollFailedTx runs inside the transaction that forgets an
	// enrollment window closed without one, with what its frames showed;
	// OnEnrollFailed after it committed.
	EnrollFailedTx func(tx *bolt.Tx, subjectID, reason string, p Progress) error
	OnEnrollFailed func(subjectID, reason string, p Progress)
	// SightingTx runs inside the transaction that records a sighting (the
	// caller queues the artifact there, sealed by the face key in
	// faceSlot, so both commit together); OnSighting after it committed.
	SightingTx func(tx *bolt.Tx, subjectID string, faceSlot uint32, at time.Time, confidence float64) error
	OnSighting func(subjectID string)
}

// Service runs enrollment and Patrol on the frames spool.
type Service struct {
	cfg Config
	st  *store.Store
	pol *policy.Policy
	an  Analyzer
	rec Recognizer

	mu       sync.Mutex
	window   *window              // the one open enrollment, if any
	lastSeen map[string]time.Time // per subject, for the sighting interval
	// matcher is built over the decrypted templates of the people who may
	// be recognised, at a recognition generation (policy.RecognitionGen)
	// and an epoch (bumped by every invalidate): it is used only while
	// both still hold, so a build that raced an erasure is never used.
	matcher *builtMatcher
	epoch   uint64

	handled atomic.Int64 // frames fully handled (tests wait on it)
}

type builtMatcher struct {
	m          Matcher // nil: nobody may be recognised
	gen, epoch uint64
}

type window struct {
	subject  string
	deadline time.Time
	samples  [][]byte
	Progress
	stalled int // frames since the last sample
}

// Progress is what an open enrollment window has seen: counts only.
type Progress struct {
	Samples      int `json:"samples"`       // taken
	Frames       int `json:"frames"`        // analysed while it was open
	NoFace       int `json:"no_face"`       // frames without a face
	SeveralFaces int `json:"several_faces"` // frames with more than one face
	Undescribed  int `json:"undescribed"`   // one face the worker found but could not describe
}

// Enrollment is the open enrollment window as a technician sees it.
type Enrollment struct {
	SubjectID     string    `json:"subject_id"`
	SamplesNeeded int       `json:"samples_needed"`
	Deadline      time.Time `json:"deadline"`
	Progress
}

// Frame outcomes (Config.OnFrame, the aibo_frames_total metric). A frame
// has one: while an enrollment window is open, the enrollment's.
const (
	FrameUnused           = "unused"            // nothing to look for: deleted unread
	FrameExpired          = "expired"           // not analysed within MaxFrameAge (images could not be judged): deleted unread
	FrameNotAnalysed      = "not_analysed"      // read, but the analysis failed (undecodable, the worker crashed or timed out)
	FrameNoFace           = "no_face"           // no face in it
	FrameSeveralFaces     = "several_faces"     // enrollment: more than one face, no sample taken
	FrameUndescribed      = "undescribed"       // enrollment: one face the worker could not describe
	FrameEnrollmentSample = "enrollment_sample" // enrollment: a sample taken
	FrameSighting         = "sighting"          // Patrol: an enrolled, consenting person seen and recorded
	FrameSeenRecently     = "seen_recently"     // Patrol: a person recognised again within sighting_interval, nothing recorded
	FrameStranger         = "stranger"          // Patrol: faces, none of them anyone's who may be recognised; nothing kept
)

// FrameOutcomes lists every frame outcome.
var FrameOutcomes = []string{FrameUnused, FrameExpired, FrameNotAnalysed, FrameNoFace, FrameSeveralFaces,
	FrameUndescribed, FrameEnrollmentSample, FrameSighting, FrameSeenRecently, FrameStranger}

// stallEvery: an enrollment window that has taken no sample in this many
// frames says so in the log (and again every as many more).
const stallEvery = 10

// New builds the service.
func New(st *store.Store, pol *policy.Policy, an Analyzer, rec Recognizer, cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AnalyzeTimeout <= 0 {
		cfg.AnalyzeTimeout = 5 * time.Second
	}
	if cfg.MaxFileBytes <= 0 {
		cfg.MaxFileBytes = 32 << 20
	}
	if cfg.MaxFrameAge <= 0 {
		cfg.MaxFrameAge = 10 * time.Second
	}
	return &Service{cfg: cfg, st: st, pol: pol, an: an, rec: rec, lastSeen: map[string]time.Time{}}
}

// Run reopens an enrollment window a restart interrupted, then watches the
// frames spool and closes enrollments that time out.
func (s *Service) Run(ctx context.Context) error {
	if err := s.resume(); err != nil {
		return fmt.Errorf("facerec: resume enrollment: %w", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.expire()
			}
		}
	})
	w := &spool.Watcher{Dir: s.cfg.FramesDir, Owned: spool.Image, Handle: func(name string) { s.frame(ctx, name) }, Logger: s.cfg.Logger}
	return w.Run(ctx)
}

// StartEnrollment checks, inside the command's transaction, that subject
// may be enrolled now, and returns the function that opens the window once
// that transaction commits.
func (s *Service) StartEnrollment(tx *bolt.Tx, now time.Time, subjectID string) (open func(), err error) {
	if err := s.pol.MayRecognize(tx, policy.Patrol, subjectID); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.window != nil && s.window.subject != subjectID && now.Before(s.window.deadline) {
		return nil, ErrBusy
	}
	if _, err := audit.Append(tx, now, "enrollment_started", subjectID, nil); err != nil {
		return nil, err
	}
	deadline := now.Add(s.cfg.EnrollTimeout)
	if err := putOpenWindow(tx, openWindow{SubjectID: subjectID, Deadline: deadline}); err != nil {
		return nil, err
	}
	return func() {
		s.mu.Lock()
		s.window = &window{subject: subjectID, deadline: deadline}
		s.mu.Unlock()
	}, nil
}

// CancelEnrollment checks, inside the command's transaction, that the
// subject's window is open and returns the function that closes it once
// that transaction commits. Nothing of the window is kept.
func (s *Service) CancelEnrollment(tx *bolt.Tx, subjectID string) (closeWindow func(), err error) {
	s.mu.Lock()
	open := s.window != nil && s.window.subject == subjectID
	s.mu.Unlock()
	if !open {
		return nil, ErrNoEnrollment
	}
	if err := clearOpenWindow(tx, subjectID); err != nil {
		return nil, err
	}
	return func() {
		s.mu.Lock()
		if s.window != nil && s.window.subject == subjectID {
			s.window = nil
		}
		s.mu.Unlock()
	}, nil
}

// closeWindow closes subject's window, if it is still the open one, and
// reports the enrollment failed for why.
func (s *Service) closeWindow(subject, why string) {
	s.mu.Lock()
	w := s.window
	open := w != nil && w.subject == subject
	if open {
		s.window = nil
	}
	s.mu.Unlock()
	if open {
		s.closed(subject, why, w.Progress)
	}
}

func (s *Service) expire() {
	s.mu.Lock()
	w := s.window
	if w == nil || s.cfg.Now().Before(w.deadline) {
		s.mu.Unlock()
		return
	}
	s.window = nil
	s.mu.Unlock()
	s.closed(w.subject, "timeout", w.Progress)
}

// closed forgets the durable record of subject's window and tells the app
// the enrollment failed for reason, with what its frames showed.
func (s *Service) closed(subject, reason string, p Progress) {
	err := s.st.Update(func(tx *bolt.Tx) error {
		if err := clearOpenWindow(tx, subject); err != nil || s.cfg.EnrollFailedTx == nil {
			return err
		}
		return s.cfg.EnrollFailedTx(tx, subject, reason, p)
	})
	if err != nil {
		s.cfg.Logger.Error("enrollment window record not cleared", "subject_id", subject, "err", err)
	}
	s.cfg.Logger.Info("enrollment failed", "subject_id", subject, "reason", reason, "samples", p.Samples,
		"frames", p.Frames, "no_face", p.NoFace, "several_faces", p.SeveralFaces, "undescribed", p.Undescribed)
	if s.cfg.OnEnrollFailed != nil {
		s.cfg.OnEnrollFailed(subject, reason, p)
	}
}

// Enrollment returns the open enrollment window and its progress; false
// when none is open.
func (s *Service) Enrollment() (Enrollment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.enrollmentLocked()
}

func (s *Service) enrollmentLocked() (Enrollment, bool) {
	if s.window == nil {
		return Enrollment{}, false
	}
	return Enrollment{SubjectID: s.window.subject, SamplesNeeded: s.cfg.Samples, Deadline: s.window.deadline, Progress: s.window.Progress}, true
}

// openWindow is the durable record of the open enrollment window: who and
// until when, never a sample (samples live in memory, and a restart
// starts collecting them again).
type openWindow struct {
	SubjectID string    `json:"subject_id"`
	Deadline  time.Time `json:"deadline"`
}

var openWindowKey = []byte("enrolling")

func putOpenWindow(tx *bolt.Tx, w openWindow) error {
	raw, err := json.Marshal(w)
	if err != nil {
		return err
	}
	return tx.Bucket(store.BucketFaces).Put(openWindowKey, raw)
}

// clearOpenWindow removes the record if it is subject's.
func clearOpenWindow(tx *bolt.Tx, subject string) error {
	b := tx.Bucket(store.BucketFaces)
	var w openWindow
	if raw := b.Get(openWindowKey); raw == nil || (json.Unmarshal(raw, &w) == nil && w.SubjectID != subject) {
		return nil
	}
	return b.Delete(openWindowKey)
}

// resume reopens the window a restart interrupted, with the deadline the
// app was given; past that deadline the enrollment fails as timed out.
func (s *Service) resume() error {
	var w openWindow
	found := false
	err := s.st.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(store.BucketFaces).Get(openWindowKey)
		if raw == nil {
			return nil
		}
		found = true
		return json.Unmarshal(raw, &w)
	})
	if err != nil || !found {
		return err
	}
	if !s.cfg.Now().Before(w.Deadline) {
		s.closed(w.SubjectID, "timeout", Progress{})
		return nil
	}
	s.mu.Lock()
	if s.window == nil {
		s.window = &window{subject: w.SubjectID, deadline: w.Deadline}
	}
	s.mu.Unlock()
	s.cfg.Logger.Info("enrollment window reopened after a restart", "subject_id", w.SubjectID, "deadline", w.Deadline)
	return nil
}

// frame reads one frame, deletes it at once, and hands it to whoever needs
// it. Frames are never stored. While the analyzer cannot be asked (the
// worker cannot start), a frame stays unread in the spool until it is
// MaxFrameAge old, then goes unread.
func (s *Service) frame(ctx context.Context, name string) {
	defer s.handled.Add(1)
	path := filepath.Join(s.cfg.FramesDir, name)
	enrolling, patrol := false, false
	var refused error
	subject := s.enrollingSubject()
	_ = s.st.View(func(tx *bolt.Tx) error {
		if subject != "" {
			refused = s.pol.MayRecognize(tx, policy.Patrol, subject)
			enrolling = refused == nil
		}
		patrol = s.pol.MayRecognizeAnyone(tx, policy.Patrol) == nil
		return nil
	})
	if refused != nil {
		// The window's subject may no longer be enrolled (consent
		// withdrawn, patrol off, a prohibited region, a policy pause): it
		// closes now, having computed and kept nothing more.
		s.closeWindow(subject, reason(refused))
	}
	if patrol && !enrolling {
		// Nobody enrolled may be recognised: there is nothing to look for,
		// so no stranger's face is even described.
		if m, _, err := s.loadMatcher(); err != nil || m == nil {
			patrol = false
		}
	}
	outcome := FrameUnused
	var data []byte
	if enrolling || patrol {
		if err := s.ready(); err != nil {
			if age := frameAge(path); age < s.cfg.MaxFrameAge {
				return // it waits, unread, for the worker or its age
			}
			outcome = FrameExpired
		} else {
			data, _ = spool.ReadRegular(path, nil, s.cfg.MaxFileBytes)
			outcome = FrameNotAnalysed
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.cfg.Logger.Error("frame remove", "err", err)
	}
	if data != nil {
		outcome = s.analyse(ctx, data, enrolling, patrol)
	}
	if s.cfg.OnFrame != nil {
		s.cfg.OnFrame(outcome)
	}
}

func (s *Service) ready() error {
	if s.cfg.Ready == nil {
		return nil
	}
	return s.cfg.Ready()
}

// frameAge is how long a frame has been in the spool, by the kernel's
// change time (set when the camera renamed it in).
func frameAge(path string) time.Duration {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return 0
	}
	return time.Since(time.Unix(st.Ctim.Unix()))
}

// analyse finds the frame's faces and hands them on: one face to an open
// enrollment, every face to Patrol. It returns the frame's outcome.
func (s *Service) analyse(ctx context.Context, data []byte, enrolling, patrol bool) string {
	t0 := time.Now()
	an := s.an
	if enrolling && s.cfg.EnrollAnalyzer != nil {
		an = s.cfg.EnrollAnalyzer
	}
	actx, cancel := context.WithTimeout(ctx, s.cfg.AnalyzeTimeout)
	faces, err := an.Faces(actx, data)
	cancel()
	if err != nil {
		s.cfg.Logger.Warn("frame not analysed", "err", err)
		return FrameNotAnalysed
	}
	// The enrollment first: the frame that completes it is recognised.
	outcome := FrameNoFace
	if enrolling {
		outcome = s.enrollFrame(faces)
	}
	if patrol {
		if o := s.patrol(faces); !enrolling {
			outcome = o
		}
	}
	// Counts only: never a template, never who a stranger might be.
	s.cfg.Logger.Debug("frame analysed", "outcome", outcome, "faces", len(faces), "took", time.Since(t0))
	return outcome
}

// patrol matches every face of a frame and says what came of them.
func (s *Service) patrol(faces []Face) string {
	outcome := FrameNoFace
	if len(faces) > 0 {
		outcome = FrameStranger
	}
	for _, f := range faces {
		switch s.recognise(f.Template) {
		case FrameSighting:
			outcome = FrameSighting
		case FrameSeenRecently:
			if outcome != FrameSighting {
				outcome = FrameSeenRecently
			}
		}
	}
	return outcome
}

// enrollFrame counts a frame against the open window and takes its face
// as a sample when it shows exactly one that could be described. A window
// that takes no sample in stallEvery frames says why in the log.
func (s *Service) enrollFrame(faces []Face) string {
	outcome := FrameEnrollmentSample
	switch {
	case len(faces) == 0:
		outcome = FrameNoFace
	case len(faces) > 1:
		outcome = FrameSeveralFaces
	case faces[0].Template == nil:
		outcome = FrameUndescribed
	}
	s.mu.Lock()
	w := s.window
	if w == nil {
		s.mu.Unlock()
		return outcome
	}
	w.Frames++
	switch outcome {
	case FrameNoFace:
		w.NoFace++
	case FrameSeveralFaces:
		w.SeveralFaces++
	case FrameUndescribed:
		w.Undescribed++
	}
	stalled := false
	if outcome == FrameEnrollmentSample {
		w.stalled = 0
	} else {
		w.stalled++
		stalled = w.stalled%stallEvery == 0
	}
	p, subject := w.Progress, w.subject
	s.mu.Unlock()
	if stalled {
		s.cfg.Logger.Info("enrollment not progressing: frames show no usable face", "subject_id", subject,
			"samples", p.Samples, "samples_needed", s.cfg.Samples, "frames", p.Frames, "no_face", p.NoFace,
			"several_faces", p.SeveralFaces, "undescribed", p.Undescribed)
	}
	if outcome == FrameEnrollmentSample {
		s.sample(faces[0].Template)
	}
	return outcome
}

func (s *Service) enrollingSubject() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.window == nil {
		return ""
	}
	return s.window.subject
}

// sample adds a template to the open window and completes the enrollment
// when it has enough.
func (s *Service) sample(tpl []byte) {
	s.mu.Lock()
	w := s.window
	if w == nil {
		s.mu.Unlock()
		return
	}
	w.samples = append(w.samples, append([]byte(nil), tpl...))
	w.Samples = len(w.samples)
	if len(w.samples) < s.cfg.Samples {
		s.mu.Unlock()
		return
	}
	s.window = nil
	s.mu.Unlock()
	now := s.cfg.Now()
	err := s.st.Update(func(tx *bolt.Tx) error {
		if err := s.pol.MayRecognize(tx, policy.Patrol, w.subject); err != nil {
			return err // consent withdrawn meanwhile: keep nothing
		}
		slot, err := s.saveTemplates(tx, w.subject, w.samples)
		if err != nil {
			return err
		}
		if s.cfg.EnrolledTx != nil {
			if err := s.cfg.EnrolledTx(tx, w.subject, slot, w.samples); err != nil {
				return err
			}
		}
		if err := clearOpenWindow(tx, w.subject); err != nil {
			return err
		}
		_, err = audit.Append(tx, now, "enrollment_completed", w.subject, map[string]string{"samples": strconv.Itoa(len(w.samples))})
		return err
	})
	s.invalidate()
	if err != nil {
		s.cfg.Logger.Warn("enrollment not kept", "subject_id", w.subject, "err", err)
		s.closed(w.subject, reason(err), w.Progress)
		return
	}
	if s.cfg.OnEnrolled != nil {
		s.cfg.OnEnrolled(w.subject)
	}
}

func reason(err error) string {
	switch {
	case errors.Is(err, policy.ErrConsentRequired):
		return "consent_required"
	case errors.Is(err, policy.ErrRegionProhibited):
		return "region_prohibited"
	case errors.Is(err, policy.ErrPolicyNotAccepted):
		return "policy_not_accepted"
	case errors.Is(err, policy.ErrFeatureDisabled):
		return "feature_disabled"
	}
	return "internal"
}

// recognise matches one face against the enrolled, consenting people and
// records a sighting at most once per interval per person. A face that
// matches nobody is dropped here, with nothing written or logged. It
// returns FrameSighting, FrameSeenRecently or FrameStranger.
func (s *Service) recognise(probe []byte) string {
	m, _, err := s.loadMatcher()
	if err != nil || m == nil {
		return FrameStranger
	}
	subject, confidence, ok := m.Identify(probe)
	if !ok {
		return FrameStranger
	}
	now := s.cfg.Now()
	s.mu.Lock()
	if last, seen := s.lastSeen[subject]; seen && s.cfg.SightingInterval > 0 && now.Sub(last) < s.cfg.SightingInterval {
		s.mu.Unlock()
		return FrameSeenRecently
	}
	s.lastSeen[subject] = now
	s.mu.Unlock()
	err = s.st.Update(func(tx *bolt.Tx) error {
		if err := s.pol.MayRecognize(tx, policy.Patrol, subject); err != nil {
			return err
		}
		slot, err := s.recordSighting(tx, subject, now, confidence)
		if err != nil {
			return err
		}
		if s.cfg.SightingTx != nil {
			return s.cfg.SightingTx(tx, subject, slot, now, confidence)
		}
		return nil
	})
	if err != nil {
		s.cfg.Logger.Debug("sighting not recorded", "subject_id", subject, "err", err)
		return FrameStranger
	}
	if s.cfg.OnSighting != nil {
		s.cfg.OnSighting(subject)
	}
	return FrameSighting
}
