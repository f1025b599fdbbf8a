package pgm

import (
	"bytes"
	"os"
	"testing"
)

func TestDecode(t *testing.T) {
	b, err := os.ReadFile("../../testdata/faces/orl-s2-1.pgm")
	if err != nil {
		t.Fatal(err)
	}
	g, err := Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if g.Rect.Dx() != 92 || g.Rect.Dy() != 112 || !bytes.Equal(g.Pix, b[len(b)-92*112:]) {
		t.Fatalf("decoded %v", g.Rect)
	}
	for name, in := range map[string]string{
		"empty":     "",
		"P2":        "P2 2 2 255\n1 2 3 4",
		"maxval":    "P5 2 2 65535\n\x00\x01\x02\x03\x04\x05\x06\x07",
		"huge":      "P5 100000 100000 255\n",
		"negative":  "P5 -2 2 255\n1234",
		"truncated": "P5 4 4 255\n0123",
		"garbage":   "P5 a b c\n",
	} {
		if _, err := Decode(bytes.NewReader([]byte(in))); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	g, err = Decode(bytes.NewReader([]byte("P5\n# comment\n2 # more\n1\n255\nab")))
	if err != nil || g.Rect.Dx() != 2 || g.Rect.Dy() != 1 || string(g.Pix) != "ab" {
		t.Fatalf("comments: %v %v", g, err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("P5 2 1 255\nab"))
	f.Add([]byte("P5\n#c\n3 3\n255\n012345678"))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := Decode(bytes.NewReader(b))
		if err == nil && len(g.Pix) != g.Rect.Dx()*g.Rect.Dy() {
			t.Fatal("inconsistent image")
		}
	})
}
