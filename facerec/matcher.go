package facerec

import (
	"image"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/policy"
)

// loadMatcher returns a matcher over the templates of every person who
// may be recognised now, and the recognition generation it was built at;
// nil when nobody may be. It is built once per generation and epoch: a
// build that an erasure or an enrollment overtook is never used.
func (s *Service) loadMatcher() (Matcher, uint64, error) {
	var gen uint64
	var anyone bool
	if err := s.st.View(func(tx *bolt.Tx) error {
		gen = policy.RecognitionGen(tx)
		anyone = s.pol.MayRecognizeAnyone(tx, policy.Patrol) == nil
		return nil
	}); err != nil {
		return nil, 0, err
	}
	if !anyone {
		return nil, gen, nil
	}
	s.mu.Lock()
	cached, epoch := s.matcher, s.epoch
	s.mu.Unlock()
	if cached != nil && cached.gen == gen && cached.epoch == epoch {
		return cached.m, gen, nil
	}
	var g map[string][][]byte
	err := s.st.View(func(tx *bolt.Tx) (err error) {
		gen = policy.RecognitionGen(tx)
		g, err = s.gallery(tx)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	var m Matcher
	if len(g) > 0 {
		if m, err = s.rec.Build(g); err != nil {
			return nil, 0, err
		}
	}
	s.mu.Lock()
	if s.epoch == epoch { // no invalidate meanwhile
		s.matcher = &builtMatcher{m: m, gen: gen, epoch: epoch}
	}
	s.mu.Unlock()
	return m, gen, nil
}

// ConsentChanged drops the matcher so the next match sees the people whose
// consent covers recognition now.
func (s *Service) ConsentChanged() { s.invalidate() }

// invalidate drops the matcher; the next match rebuilds it.
func (s *Service) invalidate() {
	s.mu.Lock()
	s.matcher = nil
	s.epoch++
	s.mu.Unlock()
}

// Strangers returns the boxes of faces that match no person who may be
// recognised now (all of them when nobody may be): the faces to blur
// before a photo leaves the device. known is set when a recognised
// person's face is left as it is; gen is the recognition generation the
// decision was made at (see policy.Outgoing).
func (s *Service) Strangers(faces []Face) (hide []image.Rectangle, known bool, gen uint64, err error) {
	m, gen, err := s.loadMatcher()
	if err != nil {
		return nil, false, 0, err
	}
	for _, f := range faces {
		if m != nil {
			if _, _, ok := m.Identify(f.Template); ok {
				known = true
				continue
			}
		}
		hide = append(hide, f.Box)
	}
	return hide, known, gen, nil
}

// MayRecognizeAnyone reports whether a face could be recognised now at
// all: when not, faces need no templates (every one is a stranger).
func (s *Service) MayRecognizeAnyone() bool {
	m, _, err := s.loadMatcher()
	return err == nil && m != nil
}

// Forgot clears the in-memory state of subject after an erasure of their
// face data committed: the matcher, their sighting interval and an open
// enrollment window.
func (s *Service) Forgot(subject string) {
	s.mu.Lock()
	s.matcher = nil
	s.epoch++
	delete(s.lastSeen, subject)
	if s.window != nil && s.window.subject == subject {
		s.window = nil
	}
	s.mu.Unlock()
}
