package template

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
)

// Threshold is the shipped decision threshold on the normalised distance
// (see Gallery.Match): a probe is accepted as its nearest subject only when
// its distance to that subject is below Threshold times its distance to the
// nearest other enrolled subject.
//
// It was fixed on enrollment data only, before any test image was scored:
// ORL people s1..s20, images 1-5, leave-one-out (each of the 100 images
// probed against the gallery without it: genuine scores; each person's 5
// images probed against the other 19 people: 100 impostor scores); the
// threshold is the midpoint between the lowest and second-lowest impostor
// score, i.e. where 1 in 100 enrollment impostors would be accepted.
// scripts/facequality recomputes it and reports the ORL test figures at
// this value.
const Threshold = 0.85

// candidates is how many subjects, ranked by their canonical-vector
// distance, get the full comparison with every probe variant.
const candidates = 4

// Gallery holds the enrolled subjects' samples in memory and identifies
// probes against them. It is safe for concurrent use.
type Gallery struct {
	mu       sync.RWMutex
	subjects []*subject // sorted by id, for deterministic ties
}

type subject struct {
	id   string
	vecs []int8 // canonical vectors of the samples, len = samples*Dims
}

// NewGallery returns an empty gallery.
func NewGallery() *Gallery { return &Gallery{} }

// ErrNoSamples is returned by Enroll for an empty subject ID or no samples.
var ErrNoSamples = errors.New("template: enrollment needs a subject ID and at least one sample")

// Enroll sets subjectID's samples, replacing any it had. Only each sample's
// canonical vector is kept (probe variants do the alignment search). It
// fails, changing nothing, if any sample is not a valid template.
func (g *Gallery) Enroll(subjectID string, samples []Template) error {
	if subjectID == "" || len(samples) == 0 {
		return ErrNoSamples
	}
	s := &subject{id: subjectID, vecs: make([]int8, 0, len(samples)*Dims)}
	for i, t := range samples {
		v, err := parse(t)
		if err != nil {
			return fmt.Errorf("sample %d: %w", i, err)
		}
		s.vecs = append(s.vecs, v[:Dims]...)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	i, found := slices.BinarySearchFunc(g.subjects, subjectID, func(s *subject, id string) int {
		return strings.Compare(s.id, id)
	})
	if found {
		g.subjects[i] = s
	} else {
		g.subjects = slices.Insert(g.subjects, i, s)
	}
	return nil
}

// Remove forgets subjectID (no-op if unknown).
func (g *Gallery) Remove(subjectID string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.subjects = slices.DeleteFunc(g.subjects, func(s *subject) bool { return s.id == subjectID })
}

// Len is the number of enrolled subjects.
func (g *Gallery) Len() int {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.subjects)
}

// Match is the full outcome of comparing a probe with the gallery.
type Match struct {
	SubjectID      string  // nearest subject ("" if the gallery is empty)
	Distance       float64 // Distance to SubjectID's nearest sample
	RunnerUp       string  // nearest other subject ("" if none)
	RunnerDistance float64 // Distance to RunnerUp (+Inf if none)
	// Score is Distance/RunnerDistance in [0, 1]: small when the probe is
	// clearly closer to SubjectID than to anybody else. 1 when there is no
	// runner-up to compare with (a gallery of one cannot tell a stranger).
	Score    float64
	Accepted bool // Score < Threshold
}

// Identify returns the enrolled subject the probe belongs to, with its
// normalised distance (Match.Score), and ok true only when that clears the
// shipped Threshold. When ok is false the subject is "" (a face that matches
// nobody names nobody); an invalid probe is never ok.
func (g *Gallery) Identify(probe Template) (subjectID string, distance float64, ok bool) {
	m, err := g.Match(probe)
	if err != nil {
		return "", math.Inf(1), false
	}
	if !m.Accepted {
		return "", m.Score, false
	}
	return m.SubjectID, m.Score, true
}

// Match compares probe with every enrolled subject.
//
// Each subject's distance is the smallest squared distance between one of
// its samples and the probe. Every subject is first ranked by the probe's
// canonical vector alone; the best few (candidates) are then compared with
// all of the probe's displaced and scaled variants, which absorbs a few
// pixels of misalignment or a few percent of scale between enrollment and
// probe crops. The decision is score normalised: the nearest subject's
// distance divided by the next subject's. A stranger tends to be about as
// far from everybody (score near 1), an enrolled person much closer to
// themselves than to anybody else, whatever the lighting or camera does to
// absolute distances.
func (g *Gallery) Match(probe Template) (Match, error) {
	pv, err := parse(probe)
	if err != nil {
		return Match{}, err
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	m := Match{RunnerDistance: math.Inf(1), Score: 1}
	n := len(g.subjects)
	if n == 0 {
		return m, nil
	}
	type cand struct {
		i int
		d int32
	}
	// stage 1: canonical vector against every sample
	ds := make([]cand, n)
	base := pv[:Dims]
	for i, s := range g.subjects {
		ds[i] = cand{i, minDist(s.vecs, base)}
	}
	// stage 2: every probe variant against the best few subjects
	k := min(candidates, n)
	byDist := func(a, b cand) int { return cmp.Compare(a.d, b.d) }
	slices.SortStableFunc(ds, byDist)
	for j := 0; j < k; j++ {
		s := g.subjects[ds[j].i]
		for o := Dims; o+Dims <= len(pv); o += Dims {
			if d := minDist(s.vecs, pv[o:o+Dims]); d < ds[j].d {
				ds[j].d = d
			}
		}
	}
	// subjects beyond the candidates keep their stage-1 distance, an upper
	// bound that is already larger than the candidates' in practice
	slices.SortStableFunc(ds[:k], byDist)
	best := ds[0]
	m.SubjectID = g.subjects[best.i].id
	m.Distance = toUnits(best.d)
	if n > 1 {
		run := ds[1]
		for _, c := range ds[k:] {
			if c.d < run.d {
				run = c
			}
		}
		m.RunnerUp = g.subjects[run.i].id
		m.RunnerDistance = toUnits(run.d)
		if run.d > 0 {
			m.Score = float64(best.d) / float64(run.d)
		}
	}
	m.Accepted = m.Score < Threshold
	return m, nil
}
