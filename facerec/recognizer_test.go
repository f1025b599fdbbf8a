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
		b, err := descriptor.Encode(v[:])
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
