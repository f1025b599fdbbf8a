package facerec

import (
	"fmt"
	"math"

	"github.com/aibo-privacy/aibo-privacyd/facerec/descriptor"
)

// Descriptors is the Recognizer of facerec/descriptor: learned 128-D face
// descriptors, several per person, with its cohort-normalised open-set
// decision by the shipped rule (a person's constants follow the smallest
// face they were enrolled from).
type Descriptors struct{}

// Model names the descriptor model the samples must come from.
func (Descriptors) Model() string { return descriptor.Model }

// Build enrolls every subject's samples in a fresh gallery. A sample that
// does not decode (another model's template, corrupt bytes) is left out; a
// subject left without samples is never matched.
func (Descriptors) Build(g map[string][][]byte) (Matcher, error) {
	gal, err := descriptor.NewGallery(descriptor.Shipped, nil)
	if err != nil {
		return nil, fmt.Errorf("facerec: %w", err)
	}
	for subject, samples := range g {
		_ = gal.EnrollEncoded(subject, samples) // ErrNoSamples: nothing usable
	}
	return descriptorMatcher{gal}, nil
}

type descriptorMatcher struct{ g *descriptor.Gallery }

// Identify maps the accepted distance to a confidence in [0, 1]: 1 for an
// identical face, 0 at the threshold the person is judged by.
func (m descriptorMatcher) Identify(probe []byte) (string, float64, bool) {
	v, err := descriptor.Decode(probe)
	if err != nil {
		return "", 0, false
	}
	r := m.g.Match(&v)
	if !r.Accepted {
		return "", 0, false
	}
	return r.SubjectID, math.Max(0, math.Min(1, 1-r.Distance/r.Params.Threshold)), true
}
