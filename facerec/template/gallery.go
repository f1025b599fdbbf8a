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

// Threshold and Reference are the shipped decision constants: a probe is
// accepted as its nearest subject only when Match.Score < Threshold, and
// Reference (in Distance units) caps the two distances the score is
// normalised by (see Match.Score).
//
// Both were fixed on enrollment data only, before any test image was
// scored, by Calibrate: ORL people s1..s20, images 1-5, each person's
// images probed against the other 19 people. The rule was run on two sets
// of templates of those images: ORL's raw crops (scripts/facequality:
// Reference 25.50, Threshold 0.8370) and the crops the device makes, each
// image in a 1280x720 JPEG frame, detected, eye-aligned and cropped by the
// worker (scripts/facequality/pipeline: 26.48, 0.8681). Each shipped value
// is the smaller, i.e. stricter, of the two, rounded down.
const (
	Threshold = 0.837
	Reference = 25.5
)

// candidates is how many subjects, ranked by their canonical-vector
// distance, get the full comparison with every probe variant.
const candidates = 4

// Gallery holds the enrolled subjects' samples in memory and identifies
// probes against them. It is safe for concurrent use.
type Gallery struct {
	mu       sync.RWMutex
	subjects []*subject // sorted by id, for deterministic ties
	stale    bool       // spreads need recomputing (after Enroll or Remove)
}

type subject struct {
	id   string
	vecs []int8 // canonical vectors of the samples, len = samples*Dims
	// spread is how close this subject's own samples come to other faces
	// (enrolled or cohort): the median over its samples of the distance to
	// the nearest other face, in squared int8 units. A subject who looks
	// like somebody else has a small spread and gets judged more strictly.
	spread float64
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
	g.stale = true
	return nil
}

// freshen recomputes the spreads if an Enroll or Remove made them stale.
// It costs one distance per pair of samples: about 0.3 s for 100 subjects
// of 5 samples, a few ms for a household, paid once by the first Match
// after a change (so enrolling many subjects in a row pays it once).
func (g *Gallery) freshen() {
	g.mu.RLock()
	stale := g.stale
	g.mu.RUnlock()
	if !stale {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.stale {
		return
	}
	for _, s := range g.subjects {
		var nearest []int32
		for o := 0; o+Dims <= len(s.vecs); o += Dims {
			v := s.vecs[o : o+Dims]
			d := minDist(cohort, v)
			for _, t := range g.subjects {
				if t != s {
					d = min(d, minDist(t.vecs, v))
				}
			}
			nearest = append(nearest, d)
		}
		slices.Sort(nearest)
		s.spread = float64(nearest[len(nearest)/2])
	}
	g.stale = false
}

// Remove forgets subjectID (no-op if unknown).
func (g *Gallery) Remove(subjectID string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := len(g.subjects)
	g.subjects = slices.DeleteFunc(g.subjects, func(s *subject) bool { return s.id == subjectID })
	if len(g.subjects) != n {
		g.stale = true
	}
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
	RunnerUp       string  // nearest other subject ("" when it is a cohort face)
	RunnerDistance float64 // distance to the nearest other face, enrolled or cohort
	// Spread is SubjectID's own spread: the median, over its enrolled
	// samples, of the distance to the nearest other face.
	Spread float64
	// Score is Distance / sqrt(min(RunnerDistance, Reference) *
	// min(Spread, Reference)): small when the probe is clearly closer to
	// SubjectID than to anybody else, and SubjectID is not somebody other
	// faces often come close to. The cap keeps a small household honest:
	// with one or two people enrolled the nearest other face is mostly a
	// cohort face, framed unlike the worker's crops and so far from
	// everything, which would make any face look close to the enrolled
	// person by comparison. +Inf for an empty gallery.
	Score    float64
	Accepted bool // Score < Threshold
}

// ScoreAt is the match's score with reference as the cap (Score is
// ScoreAt(Reference)); Calibrate uses it to try other references.
func (m Match) ScoreAt(reference float64) float64 {
	if m.SubjectID == "" {
		return math.Inf(1)
	}
	den := math.Sqrt(math.Min(m.RunnerDistance, reference) * math.Min(m.Spread, reference))
	switch {
	case den > 0:
		return m.Distance / den
	case m.Distance == 0:
		return 1 // identical to another face too: undecidable
	default:
		return math.Inf(1)
	}
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

// Match compares probe with every enrolled subject and with the cohort.
//
// Each subject's distance is the smallest squared distance between one of
// its samples and the probe. Every subject, and every cohort face, is first
// ranked by the probe's canonical vector alone; the best few (candidates)
// are then compared with all of the probe's displaced and scaled variants,
// which absorbs a few pixels of misalignment or a few percent of scale
// between enrollment and probe crops.
//
// The decision is score-normalised: the nearest subject's distance divided
// by the distance to the nearest other face, enrolled or cohort. A stranger
// tends to be about as far from everybody (score near 1), an enrolled
// person much closer to themselves than to anybody else, whatever the
// lighting or camera does to absolute distances. The cohort (64 GENKI-4K
// faces shipped with the package, never enrolled) guarantees there is
// always somebody else to compare with, also in a household of one.
func (g *Gallery) Match(probe Template) (Match, error) {
	pv, err := parse(probe)
	if err != nil {
		return Match{}, err
	}
	g.freshen()
	g.mu.RLock()
	defer g.mu.RUnlock()
	m := Match{RunnerDistance: math.Inf(1), Score: math.Inf(1)}
	n := len(g.subjects)
	if n == 0 {
		return m, nil
	}
	type cand struct {
		i int // subject index, or n+c for cohort face c
		d int32
	}
	vecs := func(i int) []int8 {
		if i < n {
			return g.subjects[i].vecs
		}
		c := i - n
		return cohort[c*Dims : (c+1)*Dims]
	}
	// stage 1: canonical vector against every sample and cohort face;
	// only the best few need exact distances, so a face is given up as soon
	// as it is certainly farther than the current k-th best
	total := n + len(cohort)/Dims
	k := min(candidates, total)
	ds := make([]cand, total)
	base := pv[:Dims]
	var top [candidates]int32 // k best distances so far, ascending
	for i := range top {
		top[i] = math.MaxInt32
	}
	for i := range ds {
		d := minDistBound(vecs(i), base, top[k-1])
		ds[i] = cand{i, d}
		if d < top[k-1] {
			j := k - 1
			for ; j > 0 && top[j-1] > d; j-- {
				top[j] = top[j-1]
			}
			top[j] = d
		}
	}
	// stage 2: every probe variant against the best few
	byDist := func(a, b cand) int { return cmp.Compare(a.d, b.d) }
	slices.SortStableFunc(ds, byDist)
	refine := func(c *cand) {
		v := vecs(c.i)
		for o := Dims; o+Dims <= len(pv); o += Dims {
			if d := minDist(v, pv[o:o+Dims]); d < c.d {
				c.d = d
			}
		}
	}
	for j := 0; j < k; j++ {
		refine(&ds[j])
	}
	// the rest keep their stage-1 value, at least the k-th best: never
	// below a candidate's refined distance
	slices.SortStableFunc(ds[:k], byDist)
	best, run := -1, -1
	for j, c := range ds {
		if best < 0 && c.i < n {
			best = j
		} else if run < 0 {
			run = j
		}
		if best >= 0 && run >= 0 {
			break
		}
	}
	if best >= k {
		// every candidate was a cohort face: the nearest subject's stage-1
		// value may be a partial sum, so measure it properly
		ds[best].d = minDist(vecs(ds[best].i), base)
		refine(&ds[best])
	}
	b := ds[best]
	m.SubjectID = g.subjects[b.i].id
	m.Distance = toUnits(b.d)
	r := ds[run] // the cohort guarantees a runner-up
	if r.i < n {
		m.RunnerUp = g.subjects[r.i].id
	}
	m.RunnerDistance = toUnits(r.d)
	m.Spread = toUnits(int32(g.subjects[b.i].spread))
	m.Score = m.ScoreAt(Reference)
	m.Accepted = m.Score < Threshold
	return m, nil
}
