package weights

import (
	"encoding/json"
	"math"
	"math/rand"
	"testing"
)

func photo(smile, sharp float64) map[string]float64 {
	return map[string]float64{Faces: 1, FaceSize: 0.8, Placement: 0.9, Smile: smile, EyesOpen: 0.8,
		Sharpness: sharp, Noise: 0.9, Exposure: 0.9, TimeOfDay: 1}
}

// TestLearnMovesRankingTowardFeedback: an owner who favourites smiling
// photos and deletes unsmiling ones, even sharp ones, ends up with a
// held-out smiling-but-softer photo ranked above a sharp unsmiling one.
func TestLearnMovesRankingTowardFeedback(t *testing.T) {
	smiling, sharp := photo(0.95, 0.45), photo(0.05, 0.8) // held out: never given feedback
	w := Defaults()
	before := w.Logit(smiling) - w.Logit(sharp)
	if before >= 0 {
		t.Fatalf("test premise: defaults should prefer the sharp photo (gap %.3f)", before)
	}
	rng := rand.New(rand.NewSource(1))
	gap := before
	for i := 0; i < 30; i++ {
		j := func() float64 { return 0.1 * rng.Float64() }
		w = Learn(w, photo(0.85+j(), 0.4+j()), SignalFavorite)
		w = Learn(w, photo(0.1+j(), 0.75+j()), SignalDeleted)
		g := w.Logit(smiling) - w.Logit(sharp)
		if g < gap-1e-9 {
			t.Fatalf("step %d moved the pair against the feedback: %.4f -> %.4f", i, gap, g)
		}
		gap = g
	}
	if gap <= 0 {
		t.Fatalf("after 60 pieces of feedback the smiling photo still ranks below: gap %.3f -> %.3f", before, gap)
	}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
}

// The mirror case: deleting smiling photos teaches the opposite.
func TestLearnOtherDirection(t *testing.T) {
	a, b := photo(0.9, 0.7), photo(0.2, 0.7)
	w := Defaults()
	before := w.Logit(a) - w.Logit(b)
	for i := 0; i < 10; i++ {
		w = Learn(w, photo(0.95, 0.6), SignalDeleted)
		w = Learn(w, photo(0.1, 0.6), SignalShared)
	}
	if after := w.Logit(a) - w.Logit(b); after >= before {
		t.Fatalf("gap %.3f -> %.3f, want smaller", before, after)
	}
}

func TestLearnLeavesInputAlone(t *testing.T) {
	w := Defaults()
	orig := w.Clone()
	n := Learn(w, photo(1, 1), SignalDeleted)
	if w.W[Smile] != orig.W[Smile] || w.Bias != orig.Bias || w.Updates != 0 {
		t.Fatal("Learn modified its argument")
	}
	if n.Updates != 1 {
		t.Fatalf("updates %d", n.Updates)
	}
	if u := Learn(w, photo(1, 1), "meh"); u.Updates != 0 || u.W[Smile] != w.W[Smile] {
		t.Fatal("unknown signal changed the weights")
	}
}

// However much one-sided feedback arrives, the weights stay finite,
// bounded and pulled back toward the defaults.
func TestLearnBounded(t *testing.T) {
	w := Defaults()
	for i := 0; i < 5000; i++ {
		w = Learn(w, photo(1, 1), SignalDeleted)
	}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	for k, v := range w.W {
		if math.Abs(v) > maxWeight {
			t.Fatalf("%s = %v", k, v)
		}
	}
	if s := w.Score(photo(1, 1)); s > 0.5 {
		t.Fatalf("after 5000 deletions the photo still scores %.3f", s)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	w := Learn(Defaults(), photo(0.5, 0.5), SignalFavorite)
	data, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	b := photo(0.3, 0.6)
	if back.Score(b) != w.Score(b) || back.Updates != 1 {
		t.Fatal("round trip changed the weights")
	}
	if _, err := Parse([]byte(`{"bias": 1e300}`)); err == nil {
		t.Fatal("absurd bias accepted")
	}
	if _, err := Parse([]byte(`{`)); err == nil {
		t.Fatal("bad JSON accepted")
	}
}

func TestScoreRangeAndClamping(t *testing.T) {
	w := Defaults()
	for _, b := range []map[string]float64{nil, {}, photo(1, 1), {Faces: math.NaN(), Sharpness: math.Inf(1), Exposure: -3}} {
		s := w.Score(b)
		if !(s > 0 && s < 1) {
			t.Fatalf("score %v for %v", s, b)
		}
	}
	if w.Score(map[string]float64{Sharpness: 5}) != w.Score(map[string]float64{Sharpness: 1}) {
		t.Fatal("features not clamped to [0,1]")
	}
	c := w.Contributions(photo(1, 0.5))
	if c[Sharpness] != w.W[Sharpness]*0.5 {
		t.Fatalf("contributions %v", c)
	}
}
