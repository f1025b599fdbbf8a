package descriptor

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func TestEncodeDecode(t *testing.T) {
	v := make([]float32, Dims)
	for i := range v {
		v[i] = float32(i)/100 - 0.5
	}
	b, err := Encode(v, 151)
	if err != nil || len(b) != Size {
		t.Fatalf("Encode: %d bytes, %v", len(b), err)
	}
	if got := FacePx(b); got != 148 {
		t.Errorf("a 151 px face recorded as %d px, want 148", got)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range v {
		if got[i] != v[i] {
			t.Fatalf("value %d: %v, want %v", i, got[i], v[i])
		}
	}
	bad := func(f func([]byte) []byte) []byte { c := append([]byte(nil), b...); return f(c) }
	for name, c := range map[string][]byte{
		"empty":     nil,
		"truncated": b[:Size-1],
		"flipped":   bad(func(c []byte) []byte { c[100] ^= 1; return c }),
		"magic":     bad(func(c []byte) []byte { c[0] = 'X'; return c }),
		"lbp":       []byte("FT\x01\x0bxxxxxxxx"),
	} {
		if _, err := Decode(c); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
	if _, err := Decode(bad(func(c []byte) []byte { c[2] = 9; return c })); !errors.Is(err, ErrVersion) {
		t.Errorf("other version: %v", err)
	}
	v[3] = float32(math.NaN())
	if _, err := Encode(v, 100); err == nil {
		t.Error("a NaN was encoded")
	}
	if _, err := Encode(v[:10], 100); err == nil {
		t.Error("10 values were encoded")
	}
}

func FuzzDecode(f *testing.F) {
	b, _ := Encode(make([]float32, Dims), 200)
	f.Add(b)
	f.Add([]byte("FD\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Decode(b)
		if err != nil {
			return
		}
		for _, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				t.Fatal("a decoded descriptor holds a value that is not finite")
			}
		}
	})
}

func TestShippedCohort(t *testing.T) {
	c, err := Cohort()
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != CohortSize {
		t.Fatalf("%d cohort faces, want %d", len(c), CohortSize)
	}
	// Real faces of different people: none is a copy of another, and they
	// sit at the distances dlib's metric puts between strangers.
	near := math.Inf(1)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			near = math.Min(near, Distance(&c[i], &c[j]))
		}
	}
	if near < 0.05 || near > 0.6 {
		t.Fatalf("nearest two cohort faces %.3f apart", near)
	}
	if _, err := decodeCohort(cohortBlob[:len(cohortBlob)-1]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a cut cohort: %v", err)
	}
}

// at returns a descriptor with x and y in its first two coordinates: the
// tests below place faces on a plane so every distance is known.
func at(x, y float64) Vector {
	var v Vector
	v[0], v[1] = float32(x), float32(y)
	return v
}

// TestEveryTestMustHold: a probe is taken for its nearest person only when
// it is close in absolute terms, clearly closer to them than to any other
// face, and close relative to how near that person's samples come to the
// cohort.
func TestEveryTestMustHold(t *testing.T) {
	p := Params{Threshold: 0.45, Ratio: 0.78, Cohort: 0.81}
	// Cohort faces at x = 3 and far up the y axis; one look-alike at (0.5, 0.5).
	cohort := []Vector{at(3, 0), at(0, 3), at(0.5, 0.5)}
	g, err := NewGallery(Rule{Far: p}, cohort)
	if err != nil {
		t.Fatal(err)
	}
	// P's samples around (-1, 0): nearest cohort face about 1.58 away.
	if err := g.Enroll("P", []Vector{at(-1, 0), at(-1.05, 0), at(-0.95, 0.05)}, 0); err != nil {
		t.Fatal(err)
	}
	// Q's samples around (0.5, 0.2): 0.3 from the look-alike cohort face.
	if err := g.Enroll("Q", []Vector{at(0.5, 0.2), at(0.52, 0.2)}, 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		probe  Vector
		want   string // "" for rejected
		failed string
	}{
		{"P, close", at(-0.9, 0.1), "P", ""},
		{"near P but too far", at(-0.5, -0.1), "", "threshold"},
		{"Q, close", at(0.5, 0.15), "Q", ""},
		// 0.16 from Q, 0.14 from the look-alike: not clearly Q.
		{"between Q and a cohort face", at(0.5, 0.36), "", "ratio"},
	} {
		m := g.Match(&tc.probe)
		got := ""
		if m.Accepted {
			got = m.SubjectID
		}
		if got != tc.want {
			t.Errorf("%s: accepted as %q, want %q (%+v)", tc.name, got, tc.want, m)
		}
	}
	// c(Q) is 0.3 (its samples' distance to the look-alike): a probe 0.25
	// from Q with nothing else near passes threshold and ratio but not the
	// cohort test (0.25 > 0.81 * 0.3).
	g2, _ := NewGallery(Rule{Far: p}, []Vector{at(3, 0), at(0.5, 0.5)})
	g2.Enroll("Q", []Vector{at(0.5, 0.2)}, 0)
	probe := at(0.5, -0.05)
	m := g2.Match(&probe)
	if m.Accepted || m.Distance >= p.Threshold || m.Distance >= p.Ratio*m.RunnerDistance {
		t.Errorf("cohort test: %+v", m)
	}
}

// TestHouseholdOfOne: with one person enrolled the cohort is the
// competition, so a stranger as far from everybody as from the person is
// not taken for them.
func TestHouseholdOfOne(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	cohort, err := Cohort()
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGallery(Shipped, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The person: a face 0.6 from a cohort face, as far as two people
	// are; their samples and probe within 0.1 of it.
	centre := jitter(rnd, cohort[10], 0.6)
	if err := g.Enroll("only", []Vector{jitter(rnd, centre, 0.1), jitter(rnd, centre, 0.1)}, 0); err != nil {
		t.Fatal(err)
	}
	probe := jitter(rnd, centre, 0.1)
	if m := g.Match(&probe); !m.Accepted || m.SubjectID != "only" || m.RunnerID != "" || math.IsInf(m.RunnerDistance, 0) {
		t.Errorf("the person: %+v", m)
	}
	// Strangers: the cohort faces, and faces as far from the person as
	// the person is from their own samples' cohort neighbour.
	for i := 0; i < len(cohort); i += 17 {
		if m := g.Match(&cohort[i]); m.Accepted {
			t.Errorf("cohort face %d (a stranger) taken for the only person enrolled: %+v", i, m)
		}
	}
	for k := 0; k < 50; k++ {
		stranger := jitter(rnd, centre, 0.55)
		if m := g.Match(&stranger); m.Accepted {
			t.Errorf("a stranger 0.55 from the person taken for them: %+v", m)
		}
	}
}

// jitter moves v by a random vector of length r.
func jitter(rnd *rand.Rand, v Vector, r float64) Vector {
	var d [Dims]float64
	var n float64
	for i := range d {
		d[i] = rnd.NormFloat64()
		n += d[i] * d[i]
	}
	for i := range v {
		v[i] += float32(d[i] / math.Sqrt(n) * r)
	}
	return v
}

// TestCalibrate: the constants Calibrate derives reject every enrollment
// impostor trial, on clusters as far apart as real people are.
func TestCalibrate(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	cohort, _ := Cohort()
	samples := map[string][]Vector{}
	for p := 0; p < 8; p++ {
		centre := jitter(rnd, cohort[p*20], 0.45)
		for k := 0; k < 5; k++ {
			samples[string(rune('a'+p))] = append(samples[string(rune('a'+p))], jitter(rnd, centre, 0.15))
		}
	}
	c, err := Calibrate(samples, cohort)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Impostor) != 8*5*8 || len(c.Genuine) != 40 {
		t.Fatalf("%d impostor and %d genuine trials", len(c.Impostor), len(c.Genuine))
	}
	for _, m := range c.Impostor {
		if m.AcceptedWith(Params{Threshold: 10, Ratio: c.Params.Ratio, Cohort: 10}) || m.AcceptedWith(Params{Threshold: 10, Ratio: 10, Cohort: c.Params.Cohort}) {
			t.Fatalf("an enrollment impostor passes the ratio or cohort test alone: %+v with %+v", m, c.Params)
		}
	}
	if n := c.GenuineAccepted(c.Params); n < 36 {
		t.Errorf("%d of 40 genuine trials accepted at %+v", n, c.Params)
	}
	if _, err := Calibrate(map[string][]Vector{"a": samples["a"]}, cohort); !errors.Is(err, ErrCalibration) {
		t.Errorf("one person: %v", err)
	}
}

// TestCalibrateWithRelitProbes: enrollment images as a strong side light
// shows them, probed as impostors, tighten the constants when they come
// closer to other people than the evenly lit ones do, and no such probe
// passes the ratio or cohort test alone; without them CalibrateWith is
// Calibrate.
func TestCalibrateWithRelitProbes(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	cohort, _ := Cohort()
	samples := map[string][]Vector{}
	centres := map[string]Vector{}
	for p := 0; p < 8; p++ {
		id := string(rune('a' + p))
		centres[id] = jitter(rnd, cohort[p*20], 0.45)
		for k := 0; k < 5; k++ {
			samples[id] = append(samples[id], jitter(rnd, centres[id], 0.15))
		}
	}
	plain, err := Calibrate(samples, cohort)
	if err != nil {
		t.Fatal(err)
	}
	same, err := CalibrateWith(samples, nil, cohort)
	if err != nil || same.Params != plain.Params || len(same.Impostor) != len(plain.Impostor) {
		t.Fatalf("without probes: %+v, want %+v (%v)", same.Params, plain.Params, err)
	}
	// Side light pulls each person's face part of the way towards the
	// next person's.
	probes := map[string][]Vector{}
	for p := 0; p < 8; p++ {
		id, next := string(rune('a'+p)), string(rune('a'+(p+1)%8))
		for k := 0; k < 2; k++ {
			var v Vector
			for i := range v {
				v[i] = 0.6*centres[id][i] + 0.4*centres[next][i]
			}
			probes[id] = append(probes[id], jitter(rnd, v, 0.1))
		}
	}
	relit, err := CalibrateWith(samples, probes, cohort)
	if err != nil {
		t.Fatal(err)
	}
	if len(relit.Impostor) != len(plain.Impostor)+8*2*8 || len(relit.Genuine) != len(plain.Genuine) {
		t.Fatalf("%d impostor and %d genuine trials", len(relit.Impostor), len(relit.Genuine))
	}
	if relit.Params.Threshold >= plain.Params.Threshold && relit.Params.Ratio >= plain.Params.Ratio && relit.Params.Cohort >= plain.Params.Cohort {
		t.Errorf("probes closer to other people changed nothing: %+v, without them %+v", relit.Params, plain.Params)
	}
	for _, m := range relit.Impostor {
		if m.AcceptedWith(Params{Threshold: 10, Ratio: relit.Params.Ratio, Cohort: 10}) || m.AcceptedWith(Params{Threshold: 10, Ratio: 10, Cohort: relit.Params.Cohort}) {
			t.Fatalf("an impostor trial passes the ratio or cohort test alone: %+v with %+v", m, relit.Params)
		}
	}
}

// TestStricterKeepsEachConstantsStricterValue: constants that must hold for
// two ways of enrolling take, one by one, the value that accepts less.
func TestStricterKeepsEachConstantsStricterValue(t *testing.T) {
	a, b := Params{Threshold: 0.45, Ratio: 0.76, Cohort: 0.78}, Params{Threshold: 0.46, Ratio: 0.71, Cohort: 0.77}
	want := Params{Threshold: 0.45, Ratio: 0.71, Cohort: 0.77}
	if got := Stricter(a, b); got != want {
		t.Fatalf("Stricter(%+v, %+v) = %+v, want %+v", a, b, got, want)
	}
	if got := Stricter(b, a); got != want {
		t.Fatalf("Stricter is not symmetric: %+v", got)
	}
}

// TestP7_APersonEnrolledFromAfarIsJudgedByTheStricterConstants: a small
// face's descriptor is less certain, so a person with any sample cut from
// a face under NearFacePx, or from a face of unrecorded size (a template
// stored before the size was), is judged by Far; only a person enrolled
// entirely from large faces by Near. A probe that clears Near's ratio but
// not Far's is taken for the first kind of person only.
func TestP7_APersonEnrolledFromAfarIsJudgedByTheStricterConstants(t *testing.T) {
	r := Rule{
		Near:       Params{Threshold: 0.5, Ratio: 0.8, Cohort: 0.9},
		NearFacePx: 100,
		Far:        Params{Threshold: 0.5, Ratio: 0.7, Cohort: 0.9},
	}
	// X at the origin, another person 1 away; the probe 0.43 from X and
	// 0.57 from the other: d1/d2 0.75.
	probe := at(0.43, 0)
	for _, tc := range []struct {
		smallestFacePx int
		want           Params
	}{{0, r.Far}, {4, r.Far}, {99, r.Far}, {100, r.Near}, {1020, r.Near}} {
		g, err := NewGallery(r, []Vector{at(0, 3), at(3, 0)})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Enroll("X", []Vector{at(0, 0)}, tc.smallestFacePx); err != nil {
			t.Fatal(err)
		}
		if err := g.Enroll("other", []Vector{at(1, 0)}, 1020); err != nil {
			t.Fatal(err)
		}
		m := g.Match(&probe)
		if m.SubjectID != "X" || m.Params != tc.want || m.Accepted != (tc.want == r.Near) {
			t.Errorf("X enrolled from %d px faces: %+v, want judged by %+v", tc.smallestFacePx, m, tc.want)
		}
	}
	if Stricter(Shipped.Near, Shipped.Far) != Shipped.Far || Shipped.NearFacePx <= 0 {
		t.Errorf("the shipped rule's Far (%+v) is not, constant by constant, at least as strict as its Near (%+v from %d px)", Shipped.Far, Shipped.Near, Shipped.NearFacePx)
	}
	if got := (Rule{Near: r.Near, Far: r.Far}).For(1020); got != r.Far {
		t.Errorf("a rule without NearFacePx judges large faces by %+v, want Far", got)
	}
}
