package capture

import (
	"math"
	"math/bits"
	"sort"
	"time"
)

// Candidate is one undecided photo as the selection sees it: its score
// under the owner's learned weights, when it was taken and its perceptual
// hash.
type Candidate struct {
	PhotoID string
	TakenAt time.Time
	Score   float64
	PHash   uint64
}

// Selection tunables.
const (
	// NearDuplicateBits: perceptual hashes this close (of 64 bits) show the
	// same moment; only the better photo of such a pair can be kept.
	NearDuplicateBits = 10
	// spreadWindow and spreadPenalty make the picks cover the day: a photo
	// taken close to one already picked is worth up to 30% less.
	spreadWindow  = 30 * time.Minute
	spreadPenalty = 0.3
)

// NearDuplicate reports whether two perceptual hashes show the same scene.
func NearDuplicate(a, b uint64) bool { return bits.OnesCount64(a^b) <= NearDuplicateBits }

// Select picks at most keep candidates, each scoring at least minScore, no
// two near-duplicates, preferring photos spread over the day. It returns the
// picked ids (best first) and every other id: those are deleted.
func Select(cands []Candidate, keep int, minScore float64) (kept, deleted []string) {
	pool := append([]Candidate(nil), cands...)
	sort.SliceStable(pool, func(i, j int) bool { return pool[i].Score > pool[j].Score })
	var picked []Candidate
	used := make([]bool, len(pool))
	for len(picked) < keep {
		best, bestValue := -1, math.Inf(-1)
		for i, c := range pool {
			if used[i] || c.Score < minScore || duplicateOfAny(c, picked) {
				continue
			}
			v := c.Score * (1 - spreadPenalty*closeness(c, picked))
			if v > bestValue {
				best, bestValue = i, v
			}
		}
		if best < 0 {
			break
		}
		used[best] = true
		picked = append(picked, pool[best])
	}
	for _, c := range picked {
		kept = append(kept, c.PhotoID)
	}
	for i, c := range pool {
		if !used[i] {
			deleted = append(deleted, c.PhotoID)
		}
	}
	return kept, deleted
}

func duplicateOfAny(c Candidate, picked []Candidate) bool {
	for _, p := range picked {
		if NearDuplicate(c.PHash, p.PHash) {
			return true
		}
	}
	return false
}

// closeness is 1 for a photo taken at the same moment as a picked one and
// falls to 0 over spreadWindow.
func closeness(c Candidate, picked []Candidate) float64 {
	m := 0.0
	for _, p := range picked {
		d := c.TakenAt.Sub(p.TakenAt)
		if d < 0 {
			d = -d
		}
		if d < spreadWindow {
			m = math.Max(m, 1-float64(d)/float64(spreadWindow))
		}
	}
	return m
}
