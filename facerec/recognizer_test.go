package facerec

import (
	"testing"

	"github.com/aibo-privacy/aibo-privacyd/facerec/descriptor"
)

// TestDescriptorsRecognizer: the daemon's recognizer decides on descriptors
// of its own model only; an LBP template or corrupt bytes, stored or
// probed, match nobody.
func TestDescriptorsRecognizer(t *testing.T) {
	cohort, err := descriptor.Cohort()
	if err != nil {
		t.Fatal(err)
	}
	enc := func(v descriptor.Vector, shift float32) []byte {
		v[0] += shift
		b, err := descriptor.Encode(v[:], 200)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// A person 0.6 off the first cohort face along one axis.
	person := cohort[0]
	person[1] += 0.6
	lbp := append([]byte("FT\x01\x0b"), make([]byte, 1520)...)
	m, err := Descriptors{}.Build(map[string][][]byte{
		"p":    {enc(person, 0), enc(person, 0.05), lbp},
		"gone": {lbp},
	})
	if err != nil {
		t.Fatal(err)
	}
	if id, conf, ok := m.Identify(enc(person, 0.02)); !ok || id != "p" || conf <= 0.5 || conf > 1 {
		t.Errorf("the person: %q %.2f %v", id, conf, ok)
	}
	for name, probe := range map[string][]byte{"lbp": lbp, "corrupt": []byte("FD\x01\x00junk"), "empty": nil, "cohort face": enc(cohort[0], 0)} {
		if id, _, ok := m.Identify(probe); ok {
			t.Errorf("%s taken for %q", name, id)
		}
	}
	if (Descriptors{}).Model() != descriptor.Model {
		t.Error("model")
	}
}

// TestP7_OneSampleFromAfarMakesThePersonsRuleStrict: the daemon judges a
// person by the stricter constants as soon as one of their stored samples
// was cut from a small face, or from a face whose size was not recorded
// (templates stored before it was); only a person enrolled entirely from
// large faces is judged by the shipped rule's Near. The probe sits between
// the two rules' Ratio.
func TestP7_OneSampleFromAfarMakesThePersonsRuleStrict(t *testing.T) {
	cohort, err := descriptor.Cohort()
	if err != nil {
		t.Fatal(err)
	}
	r := descriptor.Shipped
	if r.Near.Ratio <= r.Far.Ratio {
		t.Fatalf("the shipped rule's Near (%+v) is not looser than its Far (%+v)", r.Near, r.Far)
	}
	enc := func(v descriptor.Vector, facePx int) []byte {
		b, err := descriptor.Encode(v[:], facePx)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Two people 0.5 apart along one axis, each 0.6 off a cohort face.
	p, q := cohort[0], cohort[0]
	p[1] += 0.6
	q[1] += 0.6
	q[2] += 0.5
	// The probe: d1/d2 halfway between Far's Ratio and Near's.
	ratio := (r.Near.Ratio + r.Far.Ratio) / 2
	probe := p
	probe[2] += float32(0.5 * ratio / (1 + ratio))
	large, small := r.NearFacePx, r.NearFacePx-descriptor.FaceStep
	for _, tc := range []struct {
		name    string
		samples [][]byte
		want    bool
	}{
		{"enrolled from large faces", [][]byte{enc(p, large), enc(p, 2*large)}, true},
		{"one sample from a smaller face", [][]byte{enc(p, 2*large), enc(p, small)}, false},
		{"a face of unrecorded size", [][]byte{enc(p, 2*large), enc(p, 0)}, false},
	} {
		m, err := Descriptors{}.Build(map[string][][]byte{"p": tc.samples, "q": {enc(q, large)}})
		if err != nil {
			t.Fatal(err)
		}
		if id, _, ok := m.Identify(enc(probe, large)); ok != tc.want || (ok && id != "p") {
			t.Errorf("%s: identified as %q, %v; want accepted %v", tc.name, id, ok, tc.want)
		}
	}
}
