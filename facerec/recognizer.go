package facerec

import (
	"math"

	"github.com/aibo-privacy/aibo-privacyd/facerec/template"
)

// Templates is the Recognizer of facerec/template: LBP templates with a
// cohort-normalised decision at the shipped threshold.
type Templates struct{}

// Model names the LBP templates of facerec/template.
func (Templates) Model() string { return legacyModel }

// Build enrolls every subject's samples in a fresh gallery. A subject whose
// samples do not parse is left out (and so never matched).
func (Templates) Build(g map[string][][]byte) (Matcher, error) {
	gal := template.NewGallery()
	for subject, samples := range g {
		ts := make([]template.Template, len(samples))
		for i, s := range samples {
			ts[i] = template.Template(s)
		}
		_ = gal.Enroll(subject, ts)
	}
	return templateMatcher{gal}, nil
}

type templateMatcher struct{ g *template.Gallery }

// Identify maps the normalised score (accepted below template.Threshold) to
// a confidence in [0, 1].
func (m templateMatcher) Identify(probe []byte) (string, float64, bool) {
	subject, score, ok := m.g.Identify(template.Template(probe))
	if !ok {
		return "", 0, false
	}
	return subject, math.Max(0, math.Min(1, 1-score)), true
}

// Compact keeps only what a stored sample needs (a probe carries shifted
// variants too).
func (Templates) Compact(sample []byte) ([]byte, error) {
	c, err := template.Compact(template.Template(sample))
	return []byte(c), err
}
