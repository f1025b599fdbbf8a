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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/agent/audit"
	"github.com/aibo-privacy/aibo-privacyd/agent/keys"
	"github.com/aibo-privacy/aibo-privacyd/agent/policy"
	"github.com/aibo-privacy/aibo-privacyd/agent/store"
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
	Build(gallery map[string][][]byte) (Matcher, error)
	// Model names the template model the recognizer decides on; samples
	// and probes of another model cannot be compared with it.
	Model() string
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
	ErrBusy        = errors.New("another enrollment is open")
	ErrNoEnrolment = errors.New("no enrollment is open for this subject")
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

	OnEnrolled func(subjectID string)
	// EnrolledTx runs inside the transaction that stores a new enrollment
	// (the caller may queue a cloud backup of the templates there).
	EnrolledTx     func(tx *bolt.Tx, subjectID string, samples [][]byte) error
	OnEnrollFailed func(subjectID, reason string)
	// OnSighting runs inside the transaction that records the sighting
	// (the caller queues the artifact there, so both commit together).
	OnSighting func(tx *bolt.Tx, subjectID string, at time.Time, confidence float64) error
	// AfterSighting runs after that commit.
	AfterSighting func(subjectID string)
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
	matcher  Matcher              // over the decrypted templates of consenting people; nil: rebuild

	handled atomic.Int64 // frames fully handled (tests wait on it)
}

type window struct {
	subject  string
	deadline time.Time
	samples  [][]byte
}

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
	return &Service{cfg: cfg, st: st, pol: pol, an: an, rec: rec, lastSeen: map[string]time.Time{}}
}

// Run reopens an enrollment window a restart interrupted, then watches the
// frames spool and closes enrollments that time out.
func (s *Service) Run(ctx context.Context) error {
	if err := s.resume(); err != nil {
		return fmt.Errorf("facerec: resume enrollment: %w", err)
	}
	go func() {
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
	}()
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
		return nil, ErrNoEnrolment
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

func (s *Service) expire() {
	s.mu.Lock()
	w := s.window
	if w == nil || s.cfg.Now().Before(w.deadline) {
		s.mu.Unlock()
		return
	}
	s.window = nil
	s.mu.Unlock()
	s.closed(w.subject, "timeout")
}

// closed forgets the durable record of subject's window and tells the app
// the enrollment failed for reason.
func (s *Service) closed(subject, reason string) {
	if err := s.st.Update(func(tx *bolt.Tx) error { return clearOpenWindow(tx, subject) }); err != nil {
		s.cfg.Logger.Error("enrollment window record not cleared", "subject_id", subject, "err", err)
	}
	if s.cfg.OnEnrollFailed != nil {
		s.cfg.OnEnrollFailed(subject, reason)
	}
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
		s.closed(w.SubjectID, "timeout")
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
// it. Frames are never stored.
func (s *Service) frame(ctx context.Context, name string) {
	defer s.handled.Add(1)
	path := filepath.Join(s.cfg.FramesDir, name)
	enrolling := s.enrolling()
	patrol := false
	_ = s.st.View(func(tx *bolt.Tx) error {
		st, err := s.pol.Read(tx)
		patrol = err == nil && s.pol.Allows(st, policy.Patrol)
		return nil
	})
	var data []byte
	if enrolling || patrol {
		data, _ = spool.ReadRegular(path, nil, s.cfg.MaxFileBytes)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.cfg.Logger.Error("frame remove", "err", err)
	}
	if data == nil {
		return
	}
	actx, cancel := context.WithTimeout(ctx, s.cfg.AnalyzeTimeout)
	faces, err := s.an.Faces(actx, data)
	cancel()
	if err != nil {
		s.cfg.Logger.Warn("frame not analysed", "err", err)
		return
	}
	if enrolling && len(faces) == 1 && faces[0].Template != nil {
		s.sample(faces[0].Template)
	}
	if patrol {
		for _, f := range faces {
			s.recognise(f.Template)
		}
	}
}

func (s *Service) enrolling() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.window != nil
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
		if err := s.saveTemplates(tx, w.subject, w.samples); err != nil {
			return err
		}
		if s.cfg.EnrolledTx != nil {
			if err := s.cfg.EnrolledTx(tx, w.subject, w.samples); err != nil {
				return err
			}
		}
		if err := clearOpenWindow(tx, w.subject); err != nil {
			return err
		}
		_, err := audit.Append(tx, now, "enrollment_completed", w.subject, map[string]string{"samples": strconv.Itoa(len(w.samples))})
		return err
	})
	s.invalidate()
	if err != nil {
		s.cfg.Logger.Warn("enrollment not kept", "subject_id", w.subject, "err", err)
		s.closed(w.subject, reason(err))
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
// matches nobody is dropped here, with nothing written or logged.
func (s *Service) recognise(probe []byte) {
	m, err := s.loadMatcher()
	if err != nil || m == nil {
		return
	}
	subject, confidence, ok := m.Identify(probe)
	if !ok {
		return
	}
	now := s.cfg.Now()
	s.mu.Lock()
	if last, seen := s.lastSeen[subject]; seen && s.cfg.SightingInterval > 0 && now.Sub(last) < s.cfg.SightingInterval {
		s.mu.Unlock()
		return
	}
	s.lastSeen[subject] = now
	s.mu.Unlock()
	err = s.st.Update(func(tx *bolt.Tx) error {
		if err := s.pol.MayRecognize(tx, policy.Patrol, subject); err != nil {
			return err
		}
		if err := s.recordSighting(tx, subject, now, confidence); err != nil {
			return err
		}
		if s.cfg.OnSighting != nil {
			return s.cfg.OnSighting(tx, subject, now, confidence)
		}
		return nil
	})
	if err != nil {
		s.cfg.Logger.Debug("sighting not recorded", "subject_id", subject, "err", err)
		return
	}
	if s.cfg.AfterSighting != nil {
		s.cfg.AfterSighting(subject)
	}
}

func tplKey(subject string) []byte { return []byte("tpl/" + subject) }

func sightPrefix(subject string) []byte { return []byte("sight/" + subject + "/") }

func (s *Service) saveTemplates(tx *bolt.Tx, subject string, samples [][]byte) error {
	key, err := s.pol.SubjectKey(tx, subject)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(samples)
	if err != nil {
		return err
	}
	sealed, err := keys.Seal(key, raw, tplKey(subject))
	if err != nil {
		return err
	}
	return tx.Bucket(store.BucketFaces).Put(tplKey(subject), sealed)
}

// sighting is the local record of one sighting, sealed with the person's key.
type sighting struct {
	At         time.Time `json:"at"`
	Confidence float64   `json:"confidence"`
}

func (s *Service) recordSighting(tx *bolt.Tx, subject string, at time.Time, confidence float64) error {
	key, err := s.pol.SubjectKey(tx, subject)
	if err != nil {
		return err
	}
	b := tx.Bucket(store.BucketFaces)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	// The key holds only the opaque id and a counter: when a person was
	// seen is sealed with their key like everything else about them.
	k := append(sightPrefix(subject), store.Uint64Key(seq)...)
	raw, _ := json.Marshal(sighting{At: at.UTC(), Confidence: confidence})
	sealed, err := keys.Seal(key, raw, k)
	if err != nil {
		return err
	}
	return b.Put(k, sealed)
}

// loadMatcher returns a matcher over the templates of every enrolled
// person whose consent still covers recognition, decrypting and building it
// once until the next change; nil when nobody is enrolled.
func (s *Service) loadMatcher() (Matcher, error) {
	s.mu.Lock()
	m := s.matcher
	s.mu.Unlock()
	if m != nil {
		return m, nil
	}
	g := map[string][][]byte{}
	err := s.st.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(store.BucketFaces).Cursor()
		prefix := []byte("tpl/")
		for k, v := c.Seek(prefix); k != nil && strings.HasPrefix(string(k), "tpl/"); k, v = c.Next() {
			subject := strings.TrimPrefix(string(k), "tpl/")
			if s.pol.MayRecognize(tx, policy.Patrol, subject) != nil {
				continue
			}
			key, err := s.pol.SubjectKey(tx, subject)
			if err != nil {
				continue
			}
			raw, err := keys.Open(key, v, k)
			if err != nil {
				return fmt.Errorf("templates of %s: %w", subject, err)
			}
			var samples [][]byte
			if err := json.Unmarshal(raw, &samples); err != nil {
				return err
			}
			g[subject] = samples
		}
		return nil
	})
	if err != nil || len(g) == 0 {
		return nil, err
	}
	m, err = s.rec.Build(g)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.matcher = m
	s.mu.Unlock()
	return m, nil
}

// ConsentChanged drops the matcher so the next match sees the people whose
// consent covers recognition now.
func (s *Service) ConsentChanged() { s.invalidate() }

// invalidate drops the matcher; the next match rebuilds it.
func (s *Service) invalidate() {
	s.mu.Lock()
	s.matcher = nil
	s.mu.Unlock()
}

// Strangers returns the boxes of faces that match no enrolled person whose
// consent covers recognition now (all of them when recognition is not
// allowed): the faces to blur before a photo leaves the device.
func (s *Service) Strangers(faces []Face) []image.Rectangle {
	m, err := s.loadMatcher()
	var out []image.Rectangle
	for _, f := range faces {
		if err == nil && m != nil {
			if _, _, ok := m.Identify(f.Template); ok {
				continue
			}
		}
		out = append(out, f.Box)
	}
	return out
}

// Forgotten counts what Forget erased.
type Forgotten struct {
	Templates int `json:"templates"`
	Sightings int `json:"sightings"`
}

// Forget erases, inside tx, everything the device holds of subject's face:
// templates and local sightings. The caller drops queued artifacts and
// destroys the person's key with the consent. After the commit, call
// Forgot so no decrypted copy stays in memory and an open enrollment closes.
func (s *Service) Forget(tx *bolt.Tx, subject string) (Forgotten, error) {
	var f Forgotten
	if err := clearOpenWindow(tx, subject); err != nil {
		return f, err
	}
	b := tx.Bucket(store.BucketFaces)
	if b.Get(tplKey(subject)) != nil {
		if err := b.Delete(tplKey(subject)); err != nil {
			return f, err
		}
		f.Templates = 1
	}
	n, err := s.ForgetSightings(tx, subject)
	f.Sightings = n
	return f, err
}

// Forgot clears the in-memory state of subject after Forget committed.
func (s *Service) Forgot(subject string) {
	s.mu.Lock()
	s.matcher = nil
	delete(s.lastSeen, subject)
	if s.window != nil && s.window.subject == subject {
		s.window = nil
	}
	s.mu.Unlock()
}

// Holding is what the device holds of one person's face data, for the
// inventory: counts and times, never content.
type Holding struct {
	Templates      int       `json:"templates"`
	Sightings      int       `json:"sightings"`
	OldestSighting time.Time `json:"oldest_sighting,omitempty"`
	NewestSighting time.Time `json:"newest_sighting,omitempty"`
}

// Holdings opens each person's sightings with their key to report counts
// and times.
func (s *Service) Holdings(tx *bolt.Tx) (map[string]Holding, error) {
	out := map[string]Holding{}
	err := s.eachSighting(tx, func(subject string, k []byte, sg *sighting) error {
		h := out[subject]
		if sg != nil {
			h.Sightings++
			if h.OldestSighting.IsZero() || sg.At.Before(h.OldestSighting) {
				h.OldestSighting = sg.At
			}
			if sg.At.After(h.NewestSighting) {
				h.NewestSighting = sg.At
			}
		} else {
			h.Templates++
		}
		out[subject] = h
		return nil
	})
	return out, err
}

// PruneSightings erases local sightings older than cutoff.
func (s *Service) PruneSightings(tx *bolt.Tx, cutoff time.Time) (int, error) {
	var old [][]byte
	err := s.eachSighting(tx, func(subject string, k []byte, sg *sighting) error {
		if sg != nil && sg.At.Before(cutoff) {
			old = append(old, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	b := tx.Bucket(store.BucketFaces)
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(old), nil
}

// eachSighting calls fn for every template set (sg nil) and every
// sighting, opened with its person's key. Records of a person whose key is
// gone are unreadable leftovers and are reported as templates of nobody:
// skipped.
func (s *Service) eachSighting(tx *bolt.Tx, fn func(subject string, k []byte, sg *sighting) error) error {
	keyOf := map[string][]byte{}
	return tx.Bucket(store.BucketFaces).ForEach(func(k, v []byte) error {
		key := string(k)
		switch {
		case strings.HasPrefix(key, "tpl/"):
			return fn(strings.TrimPrefix(key, "tpl/"), k, nil)
		case strings.HasPrefix(key, "sight/"):
			subject, _, _ := strings.Cut(strings.TrimPrefix(key, "sight/"), "/")
			pk, ok := keyOf[subject]
			if !ok {
				pk, _ = s.pol.SubjectKey(tx, subject)
				keyOf[subject] = pk
			}
			if pk == nil {
				return nil
			}
			raw, err := keys.Open(pk, v, k)
			if err != nil {
				return nil
			}
			var sg sighting
			if json.Unmarshal(raw, &sg) != nil {
				return nil
			}
			return fn(subject, k, &sg)
		}
		return nil
	})
}

// ForgetSightings erases subject's local sightings, keeping templates.
func (s *Service) ForgetSightings(tx *bolt.Tx, subject string) (int, error) {
	b := tx.Bucket(store.BucketFaces)
	var ks [][]byte
	c := b.Cursor()
	p := sightPrefix(subject)
	for k, _ := c.Seek(p); k != nil && strings.HasPrefix(string(k), string(p)); k, _ = c.Next() {
		ks = append(ks, append([]byte(nil), k...))
	}
	for _, k := range ks {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(ks), nil
}
