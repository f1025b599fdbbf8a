package template

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aibo-privacy/aibo-privacyd/internal/pgm"
)

// The committed faces (testdata/faces, see testdata/NOTICE): ORL subjects
// s2, s7 and s12 with images 1-4, and s30 with images 1 and 6 as a
// stranger.
var people = []string{"s2", "s7", "s12"}

func loadFace(t testing.TB, name string) *image.Gray {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "testdata", "faces", "orl-"+name+".pgm"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := pgm.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return g
}

var (
	cacheMu sync.Mutex
	cache   = map[string]Template{}
)

// face returns the probe template of a committed face ("s2-1").
func face(t testing.TB, name string) Template {
	t.Helper()
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if tm, ok := cache[name]; ok {
		return tm
	}
	tm, err := Compute(loadFace(t, name))
	if err != nil {
		t.Fatal(err)
	}
	cache[name] = tm
	return tm
}

func compact(t testing.TB, tm Template) Template {
	t.Helper()
	c, err := Compact(tm)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enrolled is a gallery of people with images 1-3.
func enrolled(t testing.TB) *Gallery {
	t.Helper()
	g := NewGallery()
	for _, p := range people {
		var samples []Template
		for i := 1; i <= 3; i++ {
			samples = append(samples, compact(t, face(t, fmt.Sprintf("%s-%d", p, i))))
		}
		if err := g.Enroll(p, samples); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

func dist(t testing.TB, a, b Template) float64 {
	t.Helper()
	d, err := Distance(a, b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSamePersonCloserThanDifferentPerson(t *testing.T) {
	for _, p := range people {
		for i := 1; i <= 4; i++ {
			probe := face(t, fmt.Sprintf("%s-%d", p, i))
			same, other := math.Inf(1), math.Inf(1)
			for _, q := range people {
				for j := 1; j <= 4; j++ {
					if q == p && j == i {
						continue
					}
					d := dist(t, probe, compact(t, face(t, fmt.Sprintf("%s-%d", q, j))))
					if q == p {
						same = min(same, d)
					} else {
						other = min(other, d)
					}
				}
			}
			if !(same < other) {
				t.Errorf("%s-%d: nearest same-person distance %.2f, nearest other-person %.2f", p, i, same, other)
			}
		}
	}
}

func TestIdentifyNamesEnrolledPerson(t *testing.T) {
	g := enrolled(t)
	for _, p := range people {
		id, score, ok := g.Identify(face(t, p+"-4"))
		if !ok || id != p {
			t.Errorf("%s-4: got %q score %.3f ok %v", p, id, score, ok)
		}
		if score < 0 || score >= Threshold {
			t.Errorf("%s-4: accepted with score %.3f outside [0, %v)", p, score, Threshold)
		}
	}
}

func TestIdentifyRejectsStranger(t *testing.T) {
	g := enrolled(t)
	for _, name := range []string{"s30-1", "s30-6"} {
		id, score, ok := g.Identify(face(t, name))
		if ok || id != "" {
			t.Errorf("stranger %s: got %q score %.3f ok %v", name, id, score, ok)
		}
		m, err := g.Match(face(t, name))
		if err != nil {
			t.Fatal(err)
		}
		if m.Accepted || m.SubjectID == "" || m.Score < Threshold {
			t.Errorf("stranger %s: match %+v", name, m)
		}
	}
}

func TestCorruptTemplatesAreErrors(t *testing.T) {
	good := face(t, "s2-1")
	small := compact(t, good)
	bad := map[string][]byte{
		"nil":   nil,
		"empty": {},
		"magic": append([]byte("XX"), good[2:]...),
	}
	for _, n := range []int{1, 7, 8, 11, 12, 100, len(small) - 1, len(small) + 1, len(good) - 1} {
		bad[fmt.Sprintf("first %d bytes", n)] = good[:n]
	}
	for _, off := range []int{3, 4, 6, 9, len(small) / 2, len(good) - 2} {
		b := bytes.Clone(good)
		b[off] ^= 0x10
		bad[fmt.Sprintf("byte %d flipped", off)] = b
	}
	bad["trailing byte"] = append(bytes.Clone(small), 0)
	bad["random"] = func() []byte {
		b := make([]byte, len(small))
		r := rand.New(rand.NewPCG(1, 2))
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		copy(b, small[:8]) // a valid-looking header, wrong checksum
		return b
	}()
	g := enrolled(t)
	for name, b := range bad {
		tm := Template(b)
		if err := tm.Validate(); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Validate = %v, want ErrCorrupt", name, err)
		}
		if _, err := Distance(tm, good); err == nil {
			t.Errorf("%s: Distance(bad, good) without error", name)
		}
		if _, err := Distance(good, tm); err == nil {
			t.Errorf("%s: Distance(good, bad) without error", name)
		}
		if _, err := Compact(tm); err == nil {
			t.Errorf("%s: Compact without error", name)
		}
		if err := g.Enroll("x", []Template{small, tm}); err == nil {
			t.Errorf("%s: Enroll without error", name)
		}
		if id, _, ok := g.Identify(tm); ok || id != "" {
			t.Errorf("%s: Identify = %q, %v", name, id, ok)
		}
		if _, err := g.Match(tm); err == nil {
			t.Errorf("%s: Match without error", name)
		}
		if tm.Vectors() != 0 {
			t.Errorf("%s: Vectors = %d", name, tm.Vectors())
		}
	}
	if g.Len() != len(people) {
		t.Errorf("failed enrollments changed the gallery: %d subjects", g.Len())
	}
}

func TestVersionMismatchIsAnError(t *testing.T) {
	for _, v := range []byte{0, Version + 1, 255} {
		b := bytes.Clone(face(t, "s7-1"))
		b[2] = v
		sealCRC(b) // a well-formed template, only of another version
		err := Template(b).Validate()
		if !errors.Is(err, ErrVersion) {
			t.Errorf("version %d: Validate = %v, want ErrVersion", v, err)
		}
		if _, err := Distance(b, face(t, "s7-1")); !errors.Is(err, ErrVersion) {
			t.Errorf("version %d: Distance error %v, want ErrVersion", v, err)
		}
		if err := NewGallery().Enroll("x", []Template{b}); !errors.Is(err, ErrVersion) {
			t.Errorf("version %d: Enroll error %v, want ErrVersion", v, err)
		}
	}
}

func TestTemplateShape(t *testing.T) {
	p := face(t, "s12-2")
	if p.Vectors() != MaxVectors || len(p) != headerLen+MaxVectors*Dims+crcLen {
		t.Fatalf("probe template: %d vectors, %d bytes", p.Vectors(), len(p))
	}
	c := compact(t, p)
	if c.Vectors() != 1 || len(c) != headerLen+Dims+crcLen || len(c) > 2048 {
		t.Fatalf("compact template: %d vectors, %d bytes", c.Vectors(), len(c))
	}
	if d := dist(t, p, c); d != 0 {
		t.Errorf("Distance(probe, its compact form) = %v", d)
	}
	if d := dist(t, c, c); d != 0 {
		t.Errorf("Distance(t, t) = %v", d)
	}
	o := face(t, "s2-3")
	if a, b := dist(t, p, o), dist(t, o, p); a != b || a <= 0 {
		t.Errorf("Distance not symmetric or not positive: %v %v", a, b)
	}
	cc, err := Compact(c)
	if err != nil || !bytes.Equal(cc, c) {
		t.Errorf("Compact(compact) changed the template: %v", err)
	}
}

func TestComputeInputs(t *testing.T) {
	if _, err := Compute(nil); !errors.Is(err, ErrImage) {
		t.Errorf("nil: %v", err)
	}
	for _, r := range []image.Rectangle{
		image.Rect(0, 0, 0, 0), image.Rect(0, 0, 31, 64), image.Rect(0, 0, 64, 31), image.Rect(0, 0, 4097, 64),
	} {
		if _, err := Compute(image.NewGray(r)); !errors.Is(err, ErrImage) {
			t.Errorf("%v: %v", r, err)
		}
	}
	// a Gray whose Pix is shorter than its bounds claim
	broken := &image.Gray{Pix: make([]byte, 10), Stride: 92, Rect: image.Rect(0, 0, 92, 112)}
	if _, err := Compute(broken); !errors.Is(err, ErrImage) {
		t.Errorf("short Pix: %v", err)
	}
	// flat and tiny images are valid input
	for _, r := range []image.Rectangle{image.Rect(0, 0, 32, 32), image.Rect(0, 0, 640, 480)} {
		if _, err := Compute(image.NewGray(r)); err != nil {
			t.Errorf("%v: %v", r, err)
		}
	}
	// a sub-image with a non-zero origin is the same face as a copy of it
	g := loadFace(t, "s7-2")
	big := image.NewGray(image.Rect(-5, 10, 120, 140))
	for y := 0; y < 112; y++ {
		copy(big.Pix[(y+7)*big.Stride+9:], g.Pix[y*g.Stride:y*g.Stride+92])
	}
	sub := big.SubImage(image.Rect(4, 17, 96, 129)).(*image.Gray)
	a, err := Compute(sub)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, face(t, "s7-2")) {
		t.Error("sub-image with offset bounds gave another template than the plain image")
	}
}

func TestComputeToleratesResizeAndShift(t *testing.T) {
	g := loadFace(t, "s2-2")
	// twice the size (nearest neighbour), and the crop moved by 3 pixels
	up := image.NewGray(image.Rect(0, 0, 184, 224))
	for y := 0; y < 224; y++ {
		for x := 0; x < 184; x++ {
			up.Pix[y*up.Stride+x] = g.Pix[(y/2)*g.Stride+x/2]
		}
	}
	shifted := image.NewGray(image.Rect(0, 0, 92, 112))
	for y := 0; y < 112; y++ {
		for x := 0; x < 92; x++ {
			shifted.Pix[y*92+x] = g.Pix[min(111, y+3)*g.Stride+min(91, x+3)]
		}
	}
	ref := compact(t, face(t, "s2-2"))
	other := math.Inf(1)
	for _, p := range people[1:] {
		for i := 1; i <= 4; i++ {
			other = min(other, dist(t, face(t, fmt.Sprintf("%s-%d", p, i)), ref))
		}
	}
	for name, im := range map[string]*image.Gray{"2x": up, "shifted 3px": shifted} {
		tm, err := Compute(im)
		if err != nil {
			t.Fatal(err)
		}
		if d := dist(t, tm, ref); d >= other/2 {
			t.Errorf("%s: distance to the original %.2f, nearest other person %.2f", name, d, other)
		}
	}
}

func TestGalleryLifecycle(t *testing.T) {
	g := NewGallery()
	if id, _, ok := g.Identify(face(t, "s2-4")); ok || id != "" {
		t.Fatalf("empty gallery identified %q", id)
	}
	m, err := g.Match(face(t, "s2-4"))
	if err != nil || m.SubjectID != "" || !math.IsInf(m.Score, 1) {
		t.Fatalf("empty gallery: %+v %v", m, err)
	}
	if err := g.Enroll("", []Template{compact(t, face(t, "s2-1"))}); !errors.Is(err, ErrNoSamples) {
		t.Errorf("empty ID: %v", err)
	}
	if err := g.Enroll("a", nil); !errors.Is(err, ErrNoSamples) {
		t.Errorf("no samples: %v", err)
	}
	g = enrolled(t)
	// full probe templates are accepted as samples too
	if err := g.Enroll("s2", []Template{face(t, "s2-1"), face(t, "s2-2"), face(t, "s2-3")}); err != nil {
		t.Fatal(err)
	}
	if g.Len() != 3 {
		t.Fatalf("re-enrolling s2 changed the count: %d", g.Len())
	}
	if id, _, ok := g.Identify(face(t, "s2-4")); !ok || id != "s2" {
		t.Errorf("after re-enrollment: %q %v", id, ok)
	}
	g.Remove("s2")
	g.Remove("nobody")
	if g.Len() != 2 {
		t.Fatalf("after Remove: %d subjects", g.Len())
	}
	if id, _, _ := g.Identify(face(t, "s2-4")); id == "s2" {
		t.Error("removed subject still identified")
	}
	// a gallery of one still decides: the cohort is the reference
	one := NewGallery()
	if err := one.Enroll("s7", []Template{compact(t, face(t, "s7-1")), compact(t, face(t, "s7-2")), compact(t, face(t, "s7-3"))}); err != nil {
		t.Fatal(err)
	}
	m, err = one.Match(face(t, "s7-4"))
	if err != nil || m.SubjectID != "s7" || m.RunnerUp != "" || math.IsInf(m.RunnerDistance, 1) || !m.Accepted {
		t.Errorf("gallery of one: %+v %v", m, err)
	}
}

// The two-stage search must give the exhaustive answer on these faces.
func TestMatchAgreesWithExhaustiveSearch(t *testing.T) {
	g := enrolled(t)
	names := []string{"s2-4", "s7-4", "s12-4", "s30-1", "s30-6", "s2-1"}
	for _, name := range names {
		p := face(t, name)
		m, err := g.Match(p)
		if err != nil {
			t.Fatal(err)
		}
		// exhaustive: every probe vector against every sample and cohort face
		pv, _ := parse(p)
		all := func(vecs []int8) int32 {
			best := int32(math.MaxInt32)
			for o := 0; o < len(pv); o += Dims {
				best = min(best, minDist(vecs, pv[o:o+Dims]))
			}
			return best
		}
		type e struct {
			id string
			d  int32
		}
		var es []e
		for _, s := range g.subjects {
			es = append(es, e{s.id, all(s.vecs)})
		}
		bestI := 0
		for i := range es {
			if es[i].d < es[bestI].d {
				bestI = i
			}
		}
		run := int32(math.MaxInt32)
		for i := range es {
			if i != bestI {
				run = min(run, es[i].d)
			}
		}
		for c := 0; c < len(cohort); c += Dims {
			run = min(run, all(cohort[c:c+Dims]))
		}
		if es[bestI].id != m.SubjectID || toUnits(es[bestI].d) != m.Distance || toUnits(run) != m.RunnerDistance {
			t.Errorf("%s: two-stage %s %.3f/%.3f, exhaustive %s %.3f/%.3f", name, m.SubjectID, m.Distance, m.RunnerDistance,
				es[bestI].id, toUnits(es[bestI].d), toUnits(run))
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	g := enrolled(t)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				g.Identify(face(t, "s7-4"))
				if _, err := g.Match(face(t, "s30-1")); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 10; i++ {
			if err := g.Enroll("tmp", []Template{compact(t, face(t, "s30-6"))}); err != nil {
				t.Error(err)
			}
			g.Remove("tmp")
		}
	}()
	wg.Wait()
	if id, _, ok := g.Identify(face(t, "s12-4")); !ok || id != "s12" {
		t.Errorf("after concurrent use: %q %v", id, ok)
	}
}

func TestShippedModel(t *testing.T) {
	if model.Scale <= 0 || len(cohort) != len(cohortFiles)*Dims || len(cohortFiles) < 16 {
		t.Fatalf("model scale %v, cohort %d bytes for %d files", model.Scale, len(cohort), len(cohortFiles))
	}
	if Threshold <= 0 || Threshold >= 1 {
		t.Fatalf("Threshold %v", Threshold)
	}
}

// Promise P7 (strangers are nobody): with a single person enrolled there
// is nobody else in the gallery to compare with, and a stranger must still
// not be taken for that person.
func TestP7_StrangerIsNotTakenForTheOnlyPersonEnrolled(t *testing.T) {
	for _, p := range people {
		g := NewGallery()
		var samples []Template
		for i := 1; i <= 3; i++ {
			samples = append(samples, compact(t, face(t, fmt.Sprintf("%s-%d", p, i))))
		}
		if err := g.Enroll(p, samples); err != nil {
			t.Fatal(err)
		}
		probes := []string{"s30-1", "s30-6"}
		for _, q := range people {
			if q != p {
				for i := 1; i <= 4; i++ {
					probes = append(probes, fmt.Sprintf("%s-%d", q, i))
				}
			}
		}
		for _, name := range probes {
			m, err := g.Match(face(t, name))
			if err != nil {
				t.Fatal(err)
			}
			if m.Accepted {
				t.Errorf("only %s enrolled: stranger %s accepted (score %.3f, distance %.1f, runner-up %.1f, spread %.1f)",
					p, name, m.Score, m.Distance, m.RunnerDistance, m.Spread)
			}
		}
	}
}

func TestCalibrateLetsOnlyTheLowestEnrollmentImpostorThrough(t *testing.T) {
	samples := map[string][]Template{}
	for _, p := range people {
		for i := 1; i <= 4; i++ {
			samples[p] = append(samples[p], face(t, fmt.Sprintf("%s-%d", p, i)))
		}
	}
	c, err := Calibrate(samples)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Impostor) != 12 || c.Reference <= 0 || math.IsInf(c.Threshold, 0) {
		t.Fatalf("calibration %+v", c)
	}
	below := 0
	for _, s := range c.Impostor {
		if s < c.Threshold {
			below++
		}
	}
	if below != 1 {
		t.Fatalf("%d of %d impostor scores below the calibrated threshold %.3f, want exactly the lowest", below, len(c.Impostor), c.Threshold)
	}

	delete(samples, "s12")
	if _, err := Calibrate(samples); !errors.Is(err, ErrCalibration) {
		t.Fatalf("two people: %v, want ErrCalibration", err)
	}
	samples["s12"] = []Template{Template("not a template")}
	if _, err := Calibrate(samples); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt sample: %v, want ErrCorrupt", err)
	}
}
