// Command genmodel learns the template package's background model from
// GENKI-4K face crops (people who are not in any evaluation set) and writes
// it as Go source.
//
// What is learnt, per code map (LBP(8,1), LBP(8,2), LBP(8,1) on DoG): the
// mean and the top feat.K principal directions of the square-rooted 59-bin
// cell histograms, pooled over every cell of every crop, and one int8
// quantisation scale (127 over the 99.9th percentile of |projected value|).
// No identity labels are used (GENKI has none) and nothing is position
// dependent, so the framing of GENKI's tight Haar crops does not leak into
// the model.
//
// It also picks the cohort: the canonical vectors of the 64 most frontal
// GENKI crops (by the pose in labels.txt), written to cohort.bin. The
// gallery compares every probe with them as with people who are never
// enrolled, so that a household of one still has somebody to be compared
// with.
//
// Run from facerec/template (go generate does that):
//
//	go run ./internal/genmodel -genki ../../../shared/testdata/genki4k -o model_gen.go
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"image"
	"image/draw"
	_ "image/jpeg"
	"log"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/aibo-privacy/aibo-privacyd/facerec/template/internal/feat"
)

func main() {
	genki := flag.String("genki", "../../../shared/testdata/genki4k", "GENKI-4K folder (train_folder/, test_folder/)")
	out := flag.String("o", "model_gen.go", "output Go file")
	cohortOut := flag.String("cohort", "cohort.bin", "output file for the cohort's canonical vectors")
	cohortN := flag.Int("cohort-size", 64, "number of cohort faces")
	flag.Parse()

	files, err := listGenki(*genki)
	if err != nil {
		log.Fatal(err)
	}
	if len(files) < 500 {
		log.Fatalf("only %d GENKI crops found under %s", len(files), *genki)
	}
	hist := make([]float32, feat.Maps*feat.Cells*feat.Bins)
	var sums [feat.Maps][feat.Bins]float64
	var covs [feat.Maps][feat.Bins][feat.Bins]float64
	n := 0
	var all [][]float32 // kept for the quantisation scale
	for _, f := range files {
		g, err := loadGrey(f)
		if err != nil {
			log.Fatalf("%s: %v", f, err)
		}
		codes, err := feat.Extract(g)
		if err != nil {
			log.Fatalf("%s: %v", f, err)
		}
		codes.Pool(feat.Variants[0], hist)
		all = append(all, append([]float32(nil), hist...))
		for m := 0; m < feat.Maps; m++ {
			for c := 0; c < feat.Cells; c++ {
				h := hist[(m*feat.Cells+c)*feat.Bins : (m*feat.Cells+c+1)*feat.Bins]
				for i, a := range h {
					sums[m][i] += float64(a)
					if a == 0 {
						continue
					}
					for j := 0; j <= i; j++ {
						covs[m][i][j] += float64(a) * float64(h[j])
					}
				}
			}
		}
		n++
	}
	var model feat.Model
	cnt := float64(n * feat.Cells)
	var explained [feat.Maps]float64
	for m := 0; m < feat.Maps; m++ {
		var mean [feat.Bins]float64
		for i := range mean {
			mean[i] = sums[m][i] / cnt
			model.Mean[m][i] = float32(mean[i])
		}
		C := make([][]float64, feat.Bins)
		for i := range C {
			C[i] = make([]float64, feat.Bins)
		}
		for i := 0; i < feat.Bins; i++ {
			for j := 0; j <= i; j++ {
				v := covs[m][i][j]/cnt - mean[i]*mean[j]
				C[i][j], C[j][i] = v, v
			}
		}
		ev, vecs := jacobi(C)
		idx := make([]int, feat.Bins)
		for i := range idx {
			idx[i] = i
		}
		sort.Slice(idx, func(a, b int) bool { return ev[idx[a]] > ev[idx[b]] })
		var tot, kept float64
		for i, ii := range idx {
			tot += ev[ii]
			if i < feat.K {
				kept += ev[ii]
			}
		}
		explained[m] = kept / tot
		for k := 0; k < feat.K; k++ {
			// sign convention: largest-magnitude entry positive, so the
			// output does not flip between runs
			col := idx[k]
			best := 0.0
			for i := 0; i < feat.Bins; i++ {
				if math.Abs(vecs[i][col]) > math.Abs(best) {
					best = vecs[i][col]
				}
			}
			s := 1.0
			if best < 0 {
				s = -1
			}
			for i := 0; i < feat.Bins; i++ {
				model.Basis[m][k][i] = float32(s * vecs[i][col])
			}
		}
	}
	// quantisation scale from the distribution of projected values
	model.Scale = 1
	var vals []float64
	for _, h := range all {
		projectFloat(&model, h, func(v float32) { vals = append(vals, math.Abs(float64(v))) })
	}
	sort.Float64s(vals)
	p999 := vals[int(0.999*float64(len(vals)))]
	model.Scale = float32(127 / p999)

	cohort, err := pickCohort(*genki, files, *cohortN)
	if err != nil {
		log.Fatal(err)
	}
	proj := model.Prepare()
	blob := make([]byte, 0, len(cohort)*feat.Dims)
	vec := make([]int8, feat.Dims)
	for _, f := range cohort {
		g, err := loadGrey(f)
		if err != nil {
			log.Fatal(err)
		}
		codes, err := feat.Extract(g)
		if err != nil {
			log.Fatal(err)
		}
		codes.Pool(feat.Variants[0], hist)
		proj.Project(hist, vec)
		for _, v := range vec {
			blob = append(blob, byte(v))
		}
	}
	if err := os.WriteFile(*cohortOut, blob, 0o644); err != nil {
		log.Fatal(err)
	}

	src := render(&model, n, explained, p999, cohort, *genki)
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("learnt from %d GENKI crops (%d cell histograms per map); variance kept %.3f %.3f %.3f; scale %.1f; wrote %s and %s (%d faces)",
		n, n*feat.Cells, explained[0], explained[1], explained[2], model.Scale, *out, *cohortOut, len(cohort))
}

// pickCohort returns the n most frontal crops (smallest largest absolute
// yaw, pitch or roll in labels.txt) among files, in file order.
func pickCohort(dir string, files []string, n int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "labels.txt"))
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	type cand struct {
		file string
		pose float64
		ord  int
	}
	var cs []cand
	for i, f := range files {
		var num int
		if _, err := fmt.Sscanf(filepath.Base(f), "file%d.jpg", &num); err != nil || num < 1 || num > len(lines) {
			return nil, fmt.Errorf("%s: no label line", f)
		}
		var label int
		var yaw, pitch, roll float64
		if _, err := fmt.Sscan(lines[num-1], &label, &yaw, &pitch, &roll); err != nil {
			return nil, fmt.Errorf("labels.txt line %d: %v", num, err)
		}
		cs = append(cs, cand{f, max(math.Abs(yaw), math.Abs(pitch), math.Abs(roll)), i})
	}
	sort.SliceStable(cs, func(a, b int) bool { return cs[a].pose < cs[b].pose })
	if n > len(cs) {
		n = len(cs)
	}
	cs = cs[:n]
	sort.Slice(cs, func(a, b int) bool { return cs[a].ord < cs[b].ord })
	out := make([]string, n)
	for i, c := range cs {
		out[i] = c.file
	}
	return out, nil
}

// projectFloat calls f for every projected (unquantised) coordinate.
func projectFloat(m *feat.Model, hist []float32, f func(float32)) {
	for mp := 0; mp < feat.Maps; mp++ {
		for c := 0; c < feat.Cells; c++ {
			h := hist[(mp*feat.Cells+c)*feat.Bins : (mp*feat.Cells+c+1)*feat.Bins]
			for k := 0; k < feat.K; k++ {
				var s float32
				for i, v := range h {
					s += m.Basis[mp][k][i] * (v - m.Mean[mp][i])
				}
				f(s)
			}
		}
	}
}

// listGenki returns the crops of both splits, minus the ones OpenCV's Haar
// cascade found no face in (about half of those are not faces).
func listGenki(dir string) ([]string, error) {
	skip := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(dir, "no_haar_face_detected.txt")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			skip[filepath.ToSlash(l)] = true
		}
	}
	var out []string
	for _, sub := range []string{"train_folder/0", "train_folder/1", "test_folder/0", "test_folder/1"} {
		m, err := filepath.Glob(filepath.Join(dir, filepath.FromSlash(sub), "*.jpg"))
		if err != nil {
			return nil, err
		}
		sort.Strings(m)
		for _, f := range m {
			if !skip[sub+"/"+filepath.Base(f)] {
				out = append(out, f)
			}
		}
	}
	return out, nil
}

func loadGrey(path string) (*image.Gray, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	im, _, err := image.Decode(bufio.NewReader(f))
	if err != nil {
		return nil, err
	}
	g := image.NewGray(im.Bounds())
	draw.Draw(g, g.Bounds(), im, im.Bounds().Min, draw.Src)
	return g, nil
}

func render(m *feat.Model, n int, explained [feat.Maps]float64, p999 float64, cohort []string, dir string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by go run ./internal/genmodel; DO NOT EDIT.\n\n")
	fmt.Fprintf(&b, "package template\n\n")
	fmt.Fprintf(&b, "import \"github.com/aibo-privacy/aibo-privacyd/facerec/template/internal/feat\"\n\n")
	fmt.Fprintf(&b, "// model is the background projection learnt from %d GENKI-4K face crops\n", n)
	fmt.Fprintf(&b, "// (\"http://mplab.ucsd.edu, The MPLab GENKI-4K Dataset.\"), none of them\n")
	fmt.Fprintf(&b, "// an ORL person: per code map, the mean and top %d principal directions of\n", feat.K)
	fmt.Fprintf(&b, "// the square-rooted cell histograms (variance kept: %.3f, %.3f, %.3f), and\n", explained[0], explained[1], explained[2])
	fmt.Fprintf(&b, "// the int8 scale 127/%.4f (99.9th percentile of |projected value|).\n", p999)
	fmt.Fprintf(&b, "var model = feat.Model{\n")
	fmt.Fprintf(&b, "Scale: %s,\n", fl(m.Scale))
	fmt.Fprintf(&b, "Mean: [feat.Maps][feat.Bins]float32{\n")
	for mp := 0; mp < feat.Maps; mp++ {
		fmt.Fprintf(&b, "{%s},\n", row(m.Mean[mp][:]))
	}
	fmt.Fprintf(&b, "},\n")
	fmt.Fprintf(&b, "Basis: [feat.Maps][feat.K][feat.Bins]float32{\n")
	for mp := 0; mp < feat.Maps; mp++ {
		fmt.Fprintf(&b, "{\n")
		for k := 0; k < feat.K; k++ {
			fmt.Fprintf(&b, "{%s},\n", row(m.Basis[mp][k][:]))
		}
		fmt.Fprintf(&b, "},\n")
	}
	fmt.Fprintf(&b, "},\n}\n\n")
	fmt.Fprintf(&b, "// cohortFiles are the GENKI-4K crops whose canonical vectors are in\n")
	fmt.Fprintf(&b, "// cohort.bin: the %d most frontal ones by labels.txt pose.\n", len(cohort))
	fmt.Fprintf(&b, "var cohortFiles = []string{\n")
	for _, f := range cohort {
		rel, err := filepath.Rel(dir, f)
		if err != nil {
			rel = filepath.Base(f)
		}
		fmt.Fprintf(&b, "%q,\n", filepath.ToSlash(rel))
	}
	fmt.Fprintf(&b, "}\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		log.Fatalf("generated source does not parse: %v", err)
	}
	return src
}

func row(v []float32) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fl(x)
	}
	return strings.Join(s, ", ")
}

func fl(x float32) string { return fmt.Sprintf("%.6g", x) }

// jacobi diagonalises a symmetric matrix: eigenvalues and eigenvectors
// (columns of the second result).
func jacobi(A [][]float64) ([]float64, [][]float64) {
	n := len(A)
	a := make([][]float64, n)
	v := make([][]float64, n)
	for i := range a {
		a[i] = append([]float64(nil), A[i]...)
		v[i] = make([]float64, n)
		v[i][i] = 1
	}
	for sweep := 0; sweep < 100; sweep++ {
		var off, diag float64
		for p := 0; p < n; p++ {
			diag += a[p][p] * a[p][p]
			for q := p + 1; q < n; q++ {
				off += a[p][q] * a[p][q]
			}
		}
		if off <= 1e-30*diag {
			break
		}
		for p := 0; p < n; p++ {
			for q := p + 1; q < n; q++ {
				if a[p][q] == 0 {
					continue
				}
				theta := (a[q][q] - a[p][p]) / (2 * a[p][q])
				t := 1 / (math.Abs(theta) + math.Sqrt(theta*theta+1))
				if theta < 0 {
					t = -t
				}
				c := 1 / math.Sqrt(t*t+1)
				s := t * c
				for k := 0; k < n; k++ {
					akp, akq := a[k][p], a[k][q]
					a[k][p], a[k][q] = c*akp-s*akq, s*akp+c*akq
				}
				for k := 0; k < n; k++ {
					apk, aqk := a[p][k], a[q][k]
					a[p][k], a[q][k] = c*apk-s*aqk, s*apk+c*aqk
				}
				for k := 0; k < n; k++ {
					vkp, vkq := v[k][p], v[k][q]
					v[k][p], v[k][q] = c*vkp-s*vkq, s*vkp+c*vkq
				}
			}
		}
	}
	ev := make([]float64, n)
	for i := range ev {
		ev[i] = a[i][i]
	}
	return ev, v
}
