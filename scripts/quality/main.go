// Command quality measures the photo scorer on the shared test data and
// prints a markdown report:
//
//		go run ./scripts/quality -data ../shared/testdata
//
//	  - best-shot: labelled sets built by construction (a face pasted onto a
//	    scene at a known place, then blurred, darkened, overexposed, made
//	    noisy, cut by the frame's edge; plus the scene without people). The
//	    clean photo must beat each of its copies, and no photo without people
//	    may beat a good photo with people.
//	  - smile: balanced accuracy of the smile network on the GENKI-4K test
//	    split (the network never saw it; see scripts/quality/trainsmile).
//	  - speed: per-photo scoring time at 1280x720, one OpenCV thread, next to
//	    the JPEG decode time of the same photos.
//
// It is not part of `go test`: the data lives beside the repository, not in
// it.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/capture/score"
	"github.com/aibo-privacy/aibo-privacyd/capture/score/smile"
	"github.com/aibo-privacy/aibo-privacyd/capture/score/weights"
	"github.com/aibo-privacy/aibo-privacyd/internal/facenet"
	"github.com/aibo-privacy/aibo-privacyd/internal/paths"
)

func main() {
	data := flag.String("data", "../shared/testdata", "the shared test data folder")
	verbose := flag.Bool("v", false, "print every photo's breakdown")
	dump := flag.String("dump", "", "write the generated photos to this folder")
	skipSmile := flag.Bool("skip-smile", false, "skip the GENKI-4K evaluation")
	faceModels := flag.String("face-models", paths.FaceModels(), "the converted face nets (make setup: build/models)")
	flag.Parse()
	runtime.LockOSThread()
	score.SetThreads(1)
	if err := run(*data, *faceModels, *verbose, *dump, *skipSmile); err != nil {
		log.Fatal(err)
	}
}

func run(data, faceModels string, verbose bool, dump string, skipSmile bool) error {
	s, err := score.New(score.Options{FaceModels: faceModels})
	if err != nil {
		return err
	}
	defer s.Close()
	sets, err := buildSets(data)
	if err != nil {
		return err
	}
	if dump != "" {
		if err := os.MkdirAll(dump, 0o755); err != nil {
			return err
		}
	}
	type scored struct {
		variant string
		res     score.Result
	}
	var (
		pairs, pairWins int
		setWins         int
		perVariant      = map[string][2]int{} // wins, total
		worstClean      = 2.0
		bestEmpty       = -1.0
		scoreTimes      []time.Duration
		decodeTimes     []time.Duration
		failures        []string
	)
	for _, set := range sets {
		var results []scored
		for _, v := range set.variants {
			if dump != "" {
				os.WriteFile(filepath.Join(dump, set.name+"-"+v.name+".jpg"), v.jpeg, 0o644)
			}
			t0 := time.Now()
			img, err := score.Decode(v.jpeg, 0)
			if err != nil {
				return fmt.Errorf("%s/%s: %w", set.name, v.name, err)
			}
			t1 := time.Now()
			res, err := s.ScoreMat(img, v.takenAt)
			t2 := time.Now()
			img.Close()
			if err != nil {
				return fmt.Errorf("%s/%s: %w", set.name, v.name, err)
			}
			decodeTimes = append(decodeTimes, t1.Sub(t0))
			scoreTimes = append(scoreTimes, t2.Sub(t1))
			results = append(results, scored{v.name, res})
		}
		clean := results[0].res.Score
		best := true
		for _, r := range results[1:] {
			pairs++
			w := perVariant[r.variant]
			w[1]++
			if clean > r.res.Score {
				pairWins++
				w[0]++
			} else {
				best = false
				failures = append(failures, fmt.Sprintf("%s: %s %.3f >= clean %.3f", set.name, r.variant, r.res.Score, clean))
			}
			perVariant[r.variant] = w
			if r.variant == "no-people" {
				bestEmpty = max(bestEmpty, r.res.Score)
			}
		}
		worstClean = min(worstClean, clean)
		if best {
			setWins++
		}
		if verbose {
			fmt.Printf("\n%s\n\n| variant | score | faces | %s |\n|---|---|---|%s\n", set.name,
				strings.Join(weights.Features, " | "), strings.Repeat("---|", len(weights.Features)))
			for _, r := range results {
				fmt.Printf("| %s | %.3f | %d |", r.variant, r.res.Score, len(r.res.Faces))
				for _, f := range weights.Features {
					fmt.Printf(" %.2f |", r.res.Breakdown[f])
				}
				fmt.Printf(" cand=%.0f σ=%.1f sharp=%.3f luma=%.0f face=%.0f\n", r.res.Measures["candidates"], r.res.Measures["noise_sigma"], r.res.Measures["sharp_raw"], r.res.Measures["luma_mean"], r.res.Measures["face_luma"])
				for _, f := range r.res.Faces {
					fmt.Printf("    face %v smile %.2f eyes %.2f sharp %.2f\n", f.Box, f.Smile, f.EyesOpen, f.Sharpness)
				}
			}
		}
	}

	fmt.Println("## Best shot")
	fmt.Println()
	fmt.Printf("%d sets of 1280x720 JPEG photos (%d faces x %d scenes; on the last scene the faces are small, 6-10%% of the frame's height), default weights.\n\n", len(sets), len(sets)/len(scenes), len(scenes))
	fmt.Println("| check | result | aim |")
	fmt.Println("| --- | --- | --- |")
	fmt.Printf("| clean beats its copy, all pairs | %d / %d (%.1f%%) | ≥ 95%% |\n", pairWins, pairs, 100*float64(pairWins)/float64(pairs))
	fmt.Printf("| clean is the best of its set | %d / %d | every set (anchor: a careful composite, 16 of 18) |\n", setWins, len(sets))
	names := make([]string, 0, len(perVariant))
	for n := range perVariant {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		w := perVariant[n]
		fmt.Printf("| clean beats %s | %d / %d | |\n", n, w[0], w[1])
	}
	verdict := "yes"
	if bestEmpty >= worstClean {
		verdict = "NO"
	}
	fmt.Printf("| every photo without people below every clean photo with people | %s (best empty %.3f, worst clean %.3f) | yes |\n", verdict, bestEmpty, worstClean)
	if len(failures) > 0 {
		fmt.Println()
		fmt.Println("Pairs lost:")
		for _, f := range failures {
			fmt.Println("-", f)
		}
	}

	fmt.Println()
	fmt.Println("## Speed (this run, one OpenCV thread, 1280x720 JPEG)")
	fmt.Println()
	fmt.Println("| step | p50 | p99 |")
	fmt.Println("| --- | --- | --- |")
	fmt.Printf("| decode (OpenCV imdecode, header checked by Go) | %s | %s |\n", pct(decodeTimes, 0.5), pct(decodeTimes, 0.99))
	fmt.Printf("| score (faces, smile, eyes, sharpness, noise, exposure, hash) | %s | %s |\n", pct(scoreTimes, 0.5), pct(scoreTimes, 0.99))
	fmt.Printf("| score / decode at p50 | %.1fx | |\n", ms(pct0(scoreTimes, 0.5))/ms(pct0(decodeTimes, 0.5)))
	fmt.Println()
	fmt.Println("Aim: score p50 ≤ 60 ms and ≤ 10x decode (anchor: the careful composite took 209 ms).")

	if !skipSmile {
		acc, n, err := genkiAccuracy(filepath.Join(data, "genki4k", "test_folder"))
		if err != nil {
			return err
		}
		fmt.Println()
		fmt.Println("## Smile (GENKI-4K test split)")
		fmt.Println()
		fmt.Println("| model | balanced accuracy | aim |")
		fmt.Println("| --- | --- | --- |")
		fmt.Printf("| capture/score/smile CNN, %d crops | %.1f%% (smile %.1f%%, neutral %.1f%%) | ≥ 90%% |\n", n, 100*acc.balanced(), 100*acc.recall(1), 100*acc.recall(0))
		expr, en, err := expressionAccuracy(filepath.Join(data, "genki4k", "test_folder"), faceModels)
		if err != nil {
			return err
		}
		fmt.Printf("| face-api expression net (internal/facenet), P(happy) > 0.5 on the crop, %d crops: not used, it does not beat the CNN | %.1f%% (smile %.1f%%, neutral %.1f%%) | |\n", en, 100*expr.balanced(), 100*expr.recall(1), 100*expr.recall(0))
		fmt.Println("| anchor: uniform-LBP 8x8 + logistic regression | 86.9% | |")
		fmt.Println("| anchor: Haar smile cascade | 73-78.5% | |")
	}
	return nil
}

func pct0(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func pct(d []time.Duration, p float64) string { return fmt.Sprintf("%.1f ms", ms(pct0(d, p))) }

type confusion struct{ hit, n [2]float64 }

func (c confusion) recall(k int) float64 { return c.hit[k] / c.n[k] }
func (c confusion) balanced() float64    { return (c.recall(0) + c.recall(1)) / 2 }

// expressionAccuracy is genkiAccuracy for face-api's expression net: the
// colour crop resampled to 112x112, smiling when P(happy) > 0.5.
func expressionAccuracy(folder, faceModels string) (confusion, int, error) {
	e, err := facenet.LoadExpressions(faceModels)
	if err != nil {
		return confusion{}, 0, err
	}
	defer e.Close()
	var c confusion
	total := 0
	for k, label := range []string{"0", "1"} {
		files, err := filepath.Glob(filepath.Join(folder, label, "*.jpg"))
		if err != nil {
			return c, 0, err
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return c, 0, err
			}
			m, err := score.Decode(data, 0)
			if err != nil {
				return c, 0, fmt.Errorf("%s: %w", f, err)
			}
			p, err := e.Expressions(m)
			m.Close()
			if err != nil {
				return c, 0, fmt.Errorf("%s: %w", f, err)
			}
			c.n[k]++
			total++
			if (p[1] > 0.5) == (k == 1) {
				c.hit[k]++
			}
		}
	}
	return c, total, nil
}

func genkiAccuracy(folder string) (confusion, int, error) {
	m, err := smile.Default()
	if err != nil {
		return confusion{}, 0, err
	}
	var c confusion
	total := 0
	for k, label := range []string{"0", "1"} {
		files, err := filepath.Glob(filepath.Join(folder, label, "*.jpg"))
		if err != nil {
			return c, 0, err
		}
		if len(files) == 0 {
			return c, 0, fmt.Errorf("no GENKI-4K crops in %s", filepath.Join(folder, label))
		}
		for _, f := range files {
			crop, err := readGreyCrop(f)
			if err != nil {
				return c, 0, err
			}
			c.n[k]++
			total++
			if (m.Prob(crop) > 0.5) == (k == 1) {
				c.hit[k]++
			}
		}
	}
	return c, total, nil
}
