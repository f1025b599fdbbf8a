// Command facequality measures facerec/template on the ORL face database
// with the open-set protocol of TARGETS.md and prints a markdown report.
//
//	go run ./scripts/facequality -data ../shared/testdata
//
// Protocol: people s1..s20 are enrolled with their images 1-5 and probed
// with images 6-10 (100 genuine probes); s21..s40 are strangers, all ten
// images each (200 stranger probes). A genuine probe is correct when the
// gallery names the right person and accepts; a stranger is accepted when
// the gallery names anybody.
//
// The threshold is not tuned here. The tool first recomputes it from the
// enrollment images alone (template.Calibrate inside s1..s20 images 1-5,
// see chooseThreshold) and warns when the shipped template.Threshold or
// Reference is looser than that; the test images are scored only after, at
// the shipped values. The
// curve (correct at <=5%, <=1%, 0% strangers accepted) uses thresholds
// read off the test scores, for comparison with the anchors only.
//
// Timing: template.Compute per crop, and Gallery.Identify against 100
// people x 5 samples (ORL and GENKI-4K crops), one goroutine.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"image"
	"image/draw"
	_ "image/jpeg"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/facerec/template"
)

type img struct {
	s, i int // ORL subject 1..40, image 1..10
}

func (k img) String() string { return fmt.Sprintf("s%d/%d", k.s, k.i) }

func main() {
	data := flag.String("data", "../shared/testdata", "folder holding orl_faces/ (and genki4k/ for timing)")
	verbose := flag.Bool("v", false, "list the hardest genuine and stranger probes")
	flag.Parse()
	log.SetFlags(0)

	faces := map[img]*image.Gray{}
	for s := 1; s <= 40; s++ {
		for i := 1; i <= 10; i++ {
			g, err := readPGM(filepath.Join(*data, "orl_faces", fmt.Sprintf("s%d", s), fmt.Sprintf("%d.pgm", i)))
			if err != nil {
				log.Fatal(err)
			}
			faces[img{s, i}] = g
		}
	}
	tmpl := map[img]template.Template{}
	var computeTimes []time.Duration
	for _, k := range sortedKeys(faces) {
		t0 := time.Now()
		t, err := template.Compute(faces[k])
		computeTimes = append(computeTimes, time.Since(t0))
		if err != nil {
			log.Fatalf("%v: %v", k, err)
		}
		tmpl[k] = t
	}

	// 1. threshold from enrollment data only
	enroll := map[img]template.Template{}
	for s := 1; s <= 20; s++ {
		for i := 1; i <= 5; i++ {
			enroll[img{s, i}] = tmpl[img{s, i}]
		}
	}
	sel := chooseThreshold(enroll)

	// 2. the test, at the shipped threshold
	main := runProtocol(tmpl, rng(1, 20), rng(1, 5), rng(6, 10), rng(21, 40))
	swap := runProtocol(tmpl, rng(21, 40), rng(6, 10), rng(1, 5), rng(1, 20))

	// households: fewer people to normalise against
	var homes []household
	for _, k := range []int{1, 2, 3, 5, 10} {
		homes = append(homes, runHouseholds(tmpl, k, 20))
	}

	// 3. timing
	for rep := 0; rep < 2; rep++ { // two more rounds for the timing
		for _, k := range sortedKeys(faces) {
			t0 := time.Now()
			if _, err := template.Compute(faces[k]); err != nil {
				log.Fatal(err)
			}
			computeTimes = append(computeTimes, time.Since(t0))
		}
	}
	identifyTimes := timeIdentify(*data, tmpl)
	ct, it := median(computeTimes), median(identifyTimes)
	load := "unknown"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}

	fmt.Printf("## facerec/template on ORL (format version %d)\n\n", template.Version)
	fmt.Printf("Enrolled s1..s20 with images 1-5 (%d templates, stored compact), probes: images 6-10 of the enrolled (%d genuine), all images of s21..s40 (%d strangers).\n\n",
		100, main.nGenuine, main.nStranger)
	fmt.Printf("| what | this package | OpenCV LBPH (anchor) | Fisherfaces (anchor) | target |\n")
	fmt.Printf("| --- | --- | --- | --- | --- |\n")
	fmt.Printf("| rank-1 accuracy | %s | 95%% | 96%% | |\n", pct(main.rank1, main.nGenuine))
	fmt.Printf("| correct at shipped threshold %.3f | **%s** | | | >= 95%% |\n", template.Threshold, pct(main.correctAt, main.nGenuine))
	fmt.Printf("| strangers accepted at shipped threshold | **%s** (%d/%d) | | | <= 1%% |\n", pct(main.acceptedAt, main.nStranger), main.acceptedAt, main.nStranger)
	for _, far := range []float64{0.05, 0.01, 0} {
		anch := map[float64][2]string{0.05: {"83%", "75%"}, 0.01: {"81%", "67%"}, 0: {"", ""}}[far]
		fmt.Printf("| correct at <= %g%% strangers accepted (threshold read off the test) | %s | %s | %s | |\n",
			far*100, pct(main.correctAtFAR(far), main.nGenuine), anch[0], anch[1])
	}
	fmt.Printf("\n")
	fmt.Printf("How the threshold was chosen (before scoring any test image): leave-one-out on the enrollment images only (s1..s20, images 1-5). ")
	fmt.Printf("Genuine: each of the 100 images probed against the gallery without it (%d of 100 named the right person). ", sel.looRight)
	fmt.Printf("Impostor: each person's 5 images probed against the other 19 people (100 probes). ")
	fmt.Printf("Rule (template.Calibrate): Reference is the median distance of those probes to the nearest other person (%.2f on these raw crops); Threshold the midpoint between the lowest (%.4f) and second-lowest (%.4f) impostor score at that Reference, i.e. 1 in 100 enrollment impostors accepted: %.4f. ", sel.ref, sel.imp[0], sel.imp[1], sel.rule)
	fmt.Printf("Each shipped value (Threshold %.3f, Reference %.1f) is the smaller of this rule's and the same rule's on the enrollment templates made by the worker's pipeline (scripts/facequality/pipeline), the crops the device really sees; at those values %d of 100 leave-one-out genuine probes here are accepted.\n\n", template.Threshold, template.Reference, sel.genuineBelow(template.Threshold))
	if sel.rule < template.Threshold || sel.ref < template.Reference {
		fmt.Printf("**WARNING: the rule gives Threshold %.4f and Reference %.2f, below the shipped %.3f and %.1f: the shipped values accept more enrollment impostors than 1 in 100 here.**\n\n", sel.rule, sel.ref, template.Threshold, template.Reference)
	}
	fmt.Printf("Stricter rule for comparison, not shipped: below the lowest impostor score (0 of 100): %s correct, %s strangers accepted on the test.\n\n",
		pct(main.correctBelow(sel.imp[0]), main.nGenuine), pct(main.acceptedBelow(sel.imp[0]), main.nStranger))

	fmt.Printf("Robustness check, same code and shipped threshold, roles swapped (enrolled s21..s40 with images 6-10, probes images 1-5; strangers s1..s20): ")
	fmt.Printf("rank-1 %s, correct %s, strangers accepted %s (%d/%d); correct at <= 1%% / 0%% read off the test: %s / %s.\n\n",
		pct(swap.rank1, swap.nGenuine), pct(swap.correctAt, swap.nGenuine), pct(swap.acceptedAt, swap.nStranger), swap.acceptedAt, swap.nStranger,
		pct(swap.correctAtFAR(0.01), swap.nGenuine), pct(swap.correctAtFAR(0), swap.nGenuine))

	fmt.Printf("Smaller households (same shipped threshold; %d random draws of k people among s1..s20, enrolled with images 1-5; their images 6-10 as genuine probes, all of s21..s40 as strangers). ", homes[0].draws)
	fmt.Printf("The score compares each probe with the other enrolled people and with the 64 GENKI-4K cohort faces, both capped at Reference; with few people enrolled only the cohort is left, and it is framed differently from ORL (tight face crops, no hair), which the cap keeps from flattering strangers:\n\n")
	fmt.Printf("| people enrolled | correct | strangers accepted |\n| --- | --- | --- |\n")
	for _, h := range homes {
		fmt.Printf("| %d | %s | %s |\n", h.k, pct(h.correct, h.genuine), pct(h.accepted, h.strangers))
	}
	fmt.Printf("\n")

	fmt.Printf("| timing (one goroutine; %s, %d CPUs, load average %s) | median | fastest |\n| --- | --- | --- |\n", runtime.GOARCH, runtime.NumCPU(), load)
	fmt.Printf("| template.Compute, one 92x112 crop (%d runs) | %s | %s |\n", len(computeTimes), ms(ct), ms(slices.Min(computeTimes)))
	fmt.Printf("| Gallery.Identify against 100 people x 5 samples (+64 cohort faces; %d runs) | %s | %s |\n", len(identifyTimes), ms(it), ms(slices.Min(identifyTimes)))
	fmt.Printf("| template + identify | %s | |\n\n", ms(ct+it))
	fmt.Printf("Template size: probe %d bytes (%d vectors), stored sample %d bytes.\n",
		len(tmpl[img{1, 1}]), tmpl[img{1, 1}].Vectors(), len(mustCompact(tmpl[img{1, 1}])))

	if *verbose {
		fmt.Printf("\nHardest genuine probes (score, named):\n")
		sort.Slice(main.genuine, func(a, b int) bool { return main.genuine[a].score > main.genuine[b].score })
		for _, r := range main.genuine[:10] {
			fmt.Printf("- %v: %.4f -> %s\n", r.k, r.score, r.named)
		}
		fmt.Printf("\nClosest strangers:\n")
		sort.Slice(main.stranger, func(a, b int) bool { return main.stranger[a].score < main.stranger[b].score })
		for _, r := range main.stranger[:10] {
			fmt.Printf("- %v: %.4f -> %s\n", r.k, r.score, r.named)
		}
	}
}

type selection struct {
	genuine  []float64 // leave-one-out genuine scores (+Inf when misnamed)
	imp      []float64 // leave-one-person-out impostor scores, sorted
	looRight int
	rule     float64 // template.Calibrate's Threshold
	ref      float64 // and Reference
}

func (s selection) genuineBelow(t float64) int {
	n := 0
	for _, g := range s.genuine {
		if g < t {
			n++
		}
	}
	return n
}

// chooseThreshold sees the enrollment templates only.
func chooseThreshold(enroll map[img]template.Template) selection {
	people := map[int][]img{}
	for k := range enroll {
		people[k.s] = append(people[k.s], k)
	}
	var sel selection
	build := func(skipImg img, skipPerson int) *template.Gallery {
		g := template.NewGallery()
		for s, ks := range people {
			if s == skipPerson {
				continue
			}
			var samples []template.Template
			for _, k := range ks {
				if k != skipImg {
					samples = append(samples, mustCompact(enroll[k]))
				}
			}
			if err := g.Enroll(name(s), samples); err != nil {
				log.Fatal(err)
			}
		}
		return g
	}
	for _, k := range sortedKeys(enroll) {
		m, err := build(k, 0).Match(enroll[k])
		if err != nil {
			log.Fatal(err)
		}
		if m.SubjectID == name(k.s) {
			sel.looRight++
			sel.genuine = append(sel.genuine, m.Score)
		} else {
			sel.genuine = append(sel.genuine, math.Inf(1))
		}
	}
	bySubject := map[string][]template.Template{}
	for k, t := range enroll {
		bySubject[name(k.s)] = append(bySubject[name(k.s)], t)
	}
	cal, err := template.Calibrate(bySubject)
	if err != nil {
		log.Fatal(err)
	}
	sel.imp, sel.rule, sel.ref = cal.Impostor, cal.Threshold, cal.Reference
	return sel
}

type probe struct {
	k     img
	named string
	right bool
	score float64
}

type result struct {
	genuine, stranger   []probe
	nGenuine, nStranger int
	rank1, correctAt    int
	acceptedAt          int
}

func runProtocol(tmpl map[img]template.Template, enrolled, enrollImgs, testImgs, strangers []int) *result {
	g := template.NewGallery()
	for _, s := range enrolled {
		var samples []template.Template
		for _, i := range enrollImgs {
			samples = append(samples, mustCompact(tmpl[img{s, i}]))
		}
		if err := g.Enroll(name(s), samples); err != nil {
			log.Fatal(err)
		}
	}
	r := &result{}
	for _, s := range enrolled {
		for _, i := range testImgs {
			k := img{s, i}
			m, err := g.Match(tmpl[k])
			if err != nil {
				log.Fatal(err)
			}
			p := probe{k, m.SubjectID, m.SubjectID == name(s), m.Score}
			r.genuine = append(r.genuine, p)
			if p.right {
				r.rank1++
			}
			if id, _, ok := g.Identify(tmpl[k]); ok && id == name(s) {
				r.correctAt++
			}
		}
	}
	for _, s := range strangers {
		for i := 1; i <= 10; i++ {
			k := img{s, i}
			m, err := g.Match(tmpl[k])
			if err != nil {
				log.Fatal(err)
			}
			r.stranger = append(r.stranger, probe{k, m.SubjectID, false, m.Score})
			if _, _, ok := g.Identify(tmpl[k]); ok {
				r.acceptedAt++
			}
		}
	}
	r.nGenuine, r.nStranger = len(r.genuine), len(r.stranger)
	return r
}

type household struct {
	k, draws                              int
	genuine, correct, strangers, accepted int
}

// runHouseholds enrols draws random sets of k people from s1..s20.
func runHouseholds(tmpl map[img]template.Template, k, draws int) household {
	h := household{k: k, draws: draws}
	r := rand.New(rand.NewPCG(uint64(k), 1))
	for d := 0; d < draws; d++ {
		people := r.Perm(20)[:k]
		for i := range people {
			people[i]++
		}
		res := runProtocol(tmpl, people, rng(1, 5), rng(6, 10), rng(21, 40))
		h.genuine += res.nGenuine
		h.correct += res.correctAt
		h.strangers += res.nStranger
		h.accepted += res.acceptedAt
	}
	return h
}

func (r *result) correctBelow(t float64) int {
	n := 0
	for _, p := range r.genuine {
		if p.right && p.score < t {
			n++
		}
	}
	return n
}

func (r *result) acceptedBelow(t float64) int {
	n := 0
	for _, p := range r.stranger {
		if p.score < t {
			n++
		}
	}
	return n
}

// correctAtFAR: the most genuine probes correct with a threshold that
// accepts at most far of the strangers.
func (r *result) correctAtFAR(far float64) int {
	var sc []float64
	for _, p := range r.stranger {
		sc = append(sc, p.score)
	}
	sort.Float64s(sc)
	k := int(math.Floor(far*float64(len(sc)) + 1e-9)) // strangers that may pass
	t := math.Inf(1)
	if k < len(sc) {
		t = sc[k] // strictly below the (k+1)-th: at most k pass
	}
	return r.correctBelow(t)
}

// timeIdentify builds a gallery of 100 people x 5 samples (the 80 ORL
// half-sets s1..s40 x images 1-5 / 6-10, plus 20 people made of GENKI-4K
// crops, or more ORL reuse when GENKI is absent) and times Identify on the
// 400 ORL probes, three times over.
func timeIdentify(data string, tmpl map[img]template.Template) []time.Duration {
	var pool []template.Template
	for _, half := range [][]int{rng(1, 5), rng(6, 10)} {
		for s := 1; s <= 40; s++ {
			for _, i := range half {
				pool = append(pool, tmpl[img{s, i}])
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(data, "genki4k", "test_folder", "*", "*.jpg"))
	sort.Strings(files)
	for _, f := range files {
		if len(pool) >= 500 {
			break
		}
		g, err := readJPEGGrey(f)
		if err != nil {
			continue
		}
		t, err := template.Compute(g)
		if err != nil {
			continue
		}
		pool = append(pool, t)
	}
	for i := 0; len(pool) < 500; i++ {
		pool = append(pool, pool[i])
	}
	g := template.NewGallery()
	for p := 0; p < 100; p++ {
		var samples []template.Template
		for _, t := range pool[p*5 : p*5+5] {
			samples = append(samples, mustCompact(t))
		}
		if err := g.Enroll(fmt.Sprintf("p%03d", p), samples); err != nil {
			log.Fatal(err)
		}
	}
	var times []time.Duration
	for rep := 0; rep < 3; rep++ {
		for _, k := range sortedKeys(tmpl) {
			t0 := time.Now()
			g.Identify(tmpl[k])
			times = append(times, time.Since(t0))
		}
	}
	return times
}

func mustCompact(t template.Template) template.Template {
	c, err := template.Compact(t)
	if err != nil {
		log.Fatal(err)
	}
	return c
}

func name(s int) string { return "s" + strconv.Itoa(s) }

func rng(a, b int) []int {
	var r []int
	for i := a; i <= b; i++ {
		r = append(r, i)
	}
	return r
}

func sortedKeys[V any](m map[img]V) []img {
	var ks []img
	for k := range m {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b img) int {
		if a.s != b.s {
			return a.s - b.s
		}
		return a.i - b.i
	})
	return ks
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func pct(n, of int) string { return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d.Microseconds())/1000) }

// readPGM reads a binary (P5) 8-bit PGM.
func readPGM(path string) (*image.Gray, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var fields []string
	for len(fields) < 4 {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("%s: header: %w", path, err)
		}
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields = append(fields, strings.Fields(line)...)
	}
	w, err1 := strconv.Atoi(fields[1])
	h, err2 := strconv.Atoi(fields[2])
	mx, err3 := strconv.Atoi(fields[3])
	if fields[0] != "P5" || err1 != nil || err2 != nil || err3 != nil || w <= 0 || h <= 0 || w > 1<<14 || h > 1<<14 || mx != 255 {
		return nil, fmt.Errorf("%s: not an 8-bit P5 PGM", path)
	}
	g := image.NewGray(image.Rect(0, 0, w, h))
	if _, err := io.ReadFull(r, g.Pix); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return g, nil
}

func readJPEGGrey(path string) (*image.Gray, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	im, _, err := image.Decode(f)
	if err != nil {
		return nil, err
	}
	g := image.NewGray(im.Bounds())
	draw.Draw(g, g.Bounds(), im, im.Bounds().Min, draw.Src)
	return g, nil
}
