package template

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
)

// Calibration is what Calibrate derives from enrollment templates.
type Calibration struct {
	// Reference is the median distance from a person's sample to the
	// nearest other person: how far apart two different people typically
	// are, in the camera and crop these templates came from.
	Reference float64
	// Threshold is the midpoint between the lowest and second-lowest
	// impostor score at Reference: 1 in 100 enrollment impostors (for
	// 100 samples) would be accepted.
	Threshold float64
	// Impostor are the impostor scores at Reference, ascending.
	Impostor []float64
}

// ErrCalibration is returned for too little enrollment data to calibrate
// on (fewer than 3 people or 2 impostor probes).
var ErrCalibration = errors.New("template: calibration needs samples of at least 3 people")

// Calibrate fixes the decision constants from enrollment templates only
// (samples by subject): each person's samples are probed against a
// gallery of everybody else (impostor probes); Reference is the median of
// their distances to the nearest other person, and Threshold the midpoint
// of the two lowest impostor scores at that Reference. It is the rule that
// produced the shipped Threshold and Reference; the quality reports
// recompute it and compare.
func Calibrate(samples map[string][]Template) (Calibration, error) {
	ids := make([]string, 0, len(samples))
	for id := range samples {
		ids = append(ids, id)
	}
	if len(ids) < 3 {
		return Calibration{}, ErrCalibration
	}
	sort.Strings(ids)
	var matches []Match
	for _, out := range ids {
		g := NewGallery()
		for _, id := range ids {
			if id == out {
				continue
			}
			compact := make([]Template, 0, len(samples[id]))
			for _, t := range samples[id] {
				c, err := Compact(t)
				if err != nil {
					return Calibration{}, fmt.Errorf("%s: %w", id, err)
				}
				compact = append(compact, c)
			}
			if err := g.Enroll(id, compact); err != nil {
				return Calibration{}, fmt.Errorf("%s: %w", id, err)
			}
		}
		for _, t := range samples[out] {
			m, err := g.Match(t)
			if err != nil {
				return Calibration{}, fmt.Errorf("%s: %w", out, err)
			}
			matches = append(matches, m)
		}
	}
	if len(matches) < 2 {
		return Calibration{}, ErrCalibration
	}
	dist := make([]float64, len(matches))
	for i, m := range matches {
		dist[i] = m.Distance
	}
	slices.Sort(dist)
	c := Calibration{Reference: dist[len(dist)/2]}
	for _, m := range matches {
		c.Impostor = append(c.Impostor, m.ScoreAt(c.Reference))
	}
	slices.Sort(c.Impostor)
	c.Threshold = (c.Impostor[0] + c.Impostor[1]) / 2
	if math.IsInf(c.Threshold, 0) || math.IsNaN(c.Threshold) {
		return Calibration{}, ErrCalibration
	}
	return c, nil
}
