package template

import (
	"errors"
	"math"
	"testing"
)

func seeds(f *testing.F) (probe, small Template) {
	probe = face(f, "s2-1")
	small = compact(f, face(f, "s7-1"))
	return probe, small
}

// FuzzUnmarshal feeds arbitrary bytes to everything that parses a template.
func FuzzUnmarshal(f *testing.F) {
	probe, small := seeds(f)
	f.Add([]byte(probe))
	f.Add([]byte(small))
	f.Add([]byte{})
	f.Add([]byte("FT\x01\x01"))
	f.Add([]byte(small[:len(small)-1]))
	g := NewGallery()
	if err := g.Enroll("s7", []Template{small}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tm := Template(b)
		err := tm.Validate()
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
			t.Fatalf("Validate error %v is neither ErrCorrupt nor ErrVersion", err)
		}
		_, merr := g.Match(tm)
		if (merr == nil) != (err == nil) {
			t.Fatalf("Validate %v but Match %v", err, merr)
		}
		c, cerr := Compact(tm)
		if err != nil {
			if cerr == nil || tm.Vectors() != 0 {
				t.Fatal("invalid template compacted or counted")
			}
			return
		}
		if cerr != nil || c.Vectors() != 1 {
			t.Fatalf("valid template: Compact %v, %d vectors", cerr, c.Vectors())
		}
		if d, err := Distance(tm, tm); err != nil || d != 0 {
			t.Fatalf("Distance(t, t) = %v, %v", d, err)
		}
		if d, err := Distance(tm, c); err != nil || d != 0 {
			t.Fatalf("Distance(t, Compact(t)) = %v, %v", d, err)
		}
	})
}

// FuzzDistance compares two arbitrary byte strings.
func FuzzDistance(f *testing.F) {
	probe, small := seeds(f)
	f.Add([]byte(probe), []byte(small))
	f.Add([]byte(small), []byte(small))
	f.Add([]byte(small), []byte{'F', 'T', 1})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		d1, err1 := Distance(a, b)
		d2, err2 := Distance(b, a)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("asymmetric errors: %v / %v", err1, err2)
		}
		if err1 != nil {
			return
		}
		if d1 != d2 || d1 < 0 || math.IsNaN(d1) || math.IsInf(d1, 0) {
			t.Fatalf("Distance %v / %v", d1, d2)
		}
	})
}
