// Package weights turns a photo's feature breakdown into a score and learns
// the owner's preferences from feedback. It is pure Go and imports no
// OpenCV: the daemon uses it to rescore photos with the learned weights and
// to update them on photo_feedback, while the features themselves are
// measured in the vision worker (capture/score).
//
// The model is a logistic regression: score = sigmoid(Bias + sum_k W[k] *
// breakdown[k]), every feature in [0, 1]. Learning is one gradient step of
// the logistic loss per feedback, with an L2 pull toward the defaults, so a
// few clicks nudge the ranking and many clicks cannot run away with it.
package weights

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
)

// Feature names: the keys of a breakdown. Each value is in [0, 1], higher
// is better.
const (
	Faces     = "faces"       // at least one face confirmed
	FaceSize  = "face_size"   // the main face is large enough to matter
	Placement = "placement"   // faces inside the frame, not cut, well composed
	Smile     = "smile"       // probability that the faces smile
	EyesOpen  = "eyes_open"   // probability that their eyes are open
	Sharpness = "sharpness"   // detail on the faces (else the whole frame), noise discounted
	Noise     = "noise"       // 1 = clean, 0 = heavy sensor noise
	Exposure  = "exposure"    // brightness near the middle, little clipping
	TimeOfDay = "time_of_day" // daylight hours rather than the dead of night
)

// Features lists every feature, in a stable order for tables.
var Features = []string{Faces, FaceSize, Placement, Smile, EyesOpen, Sharpness, Noise, Exposure, TimeOfDay}

// Weights is the scoring model. It is stored as JSON (in bbolt by the
// daemon); a feature missing from W weighs nothing.
type Weights struct {
	Bias float64            `json:"bias"`
	W    map[string]float64 `json:"w"`
	// Updates counts the feedback learned so far; the step size shrinks
	// with it.
	Updates int `json:"updates"`
}

// Defaults are the hand-set weights every device starts with. They are
// chosen so that a good photo with people always beats a photo without
// people, and a clean photo beats its blurred, dark, overexposed, noisy and
// cut copies (scripts/quality checks both).
func Defaults() Weights {
	return Weights{
		Bias: -6.6,
		W: map[string]float64{
			Faces:     1.0,
			FaceSize:  0.6,
			Placement: 1.0,
			Smile:     0.8,
			EyesOpen:  0.4,
			Sharpness: 2.4,
			Noise:     2.0,
			Exposure:  2.4,
			TimeOfDay: 0.3,
		},
	}
}

// Clone returns a deep copy.
func (w Weights) Clone() Weights {
	c := w
	c.W = make(map[string]float64, len(w.W))
	for k, v := range w.W {
		c.W[k] = v
	}
	return c
}

// Logit is Bias + sum of W[k]*breakdown[k]. Features are clamped to [0, 1]
// and non-finite values count as 0.
func (w Weights) Logit(breakdown map[string]float64) float64 {
	s := w.Bias
	for _, k := range w.keys() { // a fixed order: the same sum every time
		s += w.W[k] * clamp01(breakdown[k])
	}
	return s
}

// keys returns the weighted features in sorted order.
func (w Weights) keys() []string {
	keys := make([]string, 0, len(w.W))
	for k := range w.W {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Score is the photo's score in (0, 1).
func (w Weights) Score(breakdown map[string]float64) float64 {
	return sigmoid(w.Logit(breakdown))
}

// Contributions returns W[k]*breakdown[k] for every weighted feature: what
// each feature added to the logit. Useful to explain a score.
func (w Weights) Contributions(breakdown map[string]float64) map[string]float64 {
	c := make(map[string]float64, len(w.W))
	for k, wk := range w.W {
		c[k] = wk * clamp01(breakdown[k])
	}
	return c
}

// Validate rejects weights that are not finite or absurdly large (a
// corrupted record).
func (w Weights) Validate() error {
	check := func(name string, v float64) error {
		if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > maxWeight {
			return fmt.Errorf("weights: %s = %v out of range", name, v)
		}
		return nil
	}
	if err := check("bias", w.Bias); err != nil {
		return err
	}
	for _, k := range w.keys() {
		if err := check(k, w.W[k]); err != nil {
			return err
		}
	}
	return nil
}

// Parse reads weights stored as JSON and validates them.
func Parse(data []byte) (Weights, error) {
	var w Weights
	if err := json.Unmarshal(data, &w); err != nil {
		return Weights{}, fmt.Errorf("weights: %w", err)
	}
	if w.W == nil {
		w.W = map[string]float64{}
	}
	return w, w.Validate()
}

// Feedback signals (contract section 5, photo_feedback).
const (
	SignalFavorite = "favorite"
	SignalShared   = "shared"
	SignalDeleted  = "deleted"
)

// Learning constants.
const (
	// LearnRate is the first step size; step t uses LearnRate/sqrt(1+t/20).
	LearnRate = 0.5
	// Pull is the L2 strength pulling each weight back toward its default.
	Pull = 0.02
	// maxWeight bounds every weight and the bias.
	maxWeight = 20
)

// Learn returns w after one piece of feedback on a photo with this
// breakdown: "favorite" and "shared" say the owner liked it (target 1,
// shared counts a little less), "deleted" says not (target 0). An unknown
// signal returns w unchanged. w itself is not modified.
func Learn(w Weights, breakdown map[string]float64, signal string) Weights {
	var target, strength float64
	switch signal {
	case SignalFavorite:
		target, strength = 1, 1
	case SignalShared:
		target, strength = 1, 0.7
	case SignalDeleted:
		target, strength = 0, 1
	default:
		return w
	}
	def := Defaults()
	out := w.Clone()
	eta := LearnRate * strength / math.Sqrt(1+float64(w.Updates)/20)
	g := sigmoid(w.Logit(breakdown)) - target
	out.Bias = bound(w.Bias - eta*(g+Pull*(w.Bias-def.Bias)))
	keys := map[string]bool{}
	for k := range w.W {
		keys[k] = true
	}
	for k := range def.W {
		keys[k] = true
	}
	for k := range keys {
		wk := w.W[k]
		out.W[k] = bound(wk - eta*(g*clamp01(breakdown[k])+Pull*(wk-def.W[k])))
	}
	out.Updates = w.Updates + 1
	return out
}

func bound(v float64) float64 { return math.Max(-maxWeight, math.Min(maxWeight, v)) }

func clamp01(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0
	}
	return math.Min(v, 1)
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
