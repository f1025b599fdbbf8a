// Command distance reports issue 19's table: family recognised in Patrol
// frames at the distances a robot dog sees them from, and strangers never
// taken for family, through the real vision worker (cmd/aibo-vision, built
// for the run) over its protocol and facerec's recognizer at its shipped
// constants, as the daemon decides.
//
//	go run ./scripts/facequality/distance -data ../shared/testdata
//
// Frames: each ORL image, with some head around it (its edges carried
// outwards by a fifth of its size), placed at a random position in one of
// the shared scenes without people (coffee, cat, rocket; 1280x720), scaled
// so its face (brows to chin, 0.8 of the image's height) is the given share
// of the frame's height: 20%, 10%, 6% and 5% are about 1, 2, 3 and 3.5 m
// from a 720p camera with a 70 degree vertical field. A visit is 5 frames
// of the person standing still while the camera jitters by 1-2 px between
// frames, sent one by one as Patrol sends them (Faces, not thorough).
//
// Protocol: people s1..s20 enrolled with images 1-5 (-enrol close: each
// tripled in a frame and searched as an enrollment frame, as
// scripts/facequality; -enrol far: placed at 10-20%
// of the height in a scene, as the robot sees a person from where it
// stands, searched as the worker searches an enrollment frame, each
// image's first frame of 5 in which the worker found the face); a genuine visit for each of their images 6-10 (100 visits), a
// stranger visit for each image of s21..s40 (200). A visit is recognised
// when a frame is accepted as its person; a stranger visit is taken for
// family when any frame is accepted as anyone. A second table says what
// a rule the daemon does not have would give: a visit recognised, or
// taken, only when two of its frames are accepted as the same person.
//
// -light side relights every probe (not the enrollment images) with a
// strong one-sided light: a gain from 0.3 on the left to 1.3 on the right,
// then gamma 1.8 (frame.SideLight).
//
// -v lists, frame by frame, what became of each genuine visit not
// recognised and each stranger's visit taken: the face not found, or the
// decision's distances and the constants they failed (where side light's
// cost lies: finding the face, or deciding on it).
//
// -calibrate runs descriptor.Calibrate on the enrollment images placed at
// each size (found by a thorough search, a frame each), to see whether
// small faces would need other constants; it decides nothing.
package main

import (
	"context"
	"flag"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"log"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/capture/score/synth"
	"github.com/aibo-privacy/aibo-privacyd/facerec"
	"github.com/aibo-privacy/aibo-privacyd/facerec/descriptor"
	"github.com/aibo-privacy/aibo-privacyd/internal/facenet"
	"github.com/aibo-privacy/aibo-privacyd/internal/paths"
	"github.com/aibo-privacy/aibo-privacyd/scripts/facequality/internal/frame"
	"github.com/aibo-privacy/aibo-privacyd/vision"
)

func main() {
	data := flag.String("data", "../shared/testdata", "the shared test data")
	models := flag.String("models", paths.FaceModels(), "the converted face nets (make setup: build/models)")
	heightsFlag := flag.String("heights", "0.20,0.10,0.06,0.05", "face heights, as shares of the frame's height")
	enrolFlag := flag.String("enrol", "close", "close (tripled, as scripts/facequality) or far (10-20% of the height, in scenes)")
	light := flag.String("light", "even", "even, or side: every probe relit from one side (gain 0.3 to 1.3, gamma 1.8)")
	thorough := flag.Bool("thorough", false, "search each frame thoroughly, as a photo about to leave is (not as Patrol does): how descriptors of small faces behave once found")
	perVisit := flag.Int("frames", 5, "frames a visit (1: each probe image judged on one frame)")
	verbose := flag.Bool("v", false, "list each genuine visit not recognised and each stranger's visit taken, frame by frame: the face not found, or the decision's distances and the constants it failed")
	draws := flag.Int("draws", 1, "placements of each visit: every visit is made this many times, each draw with other scenes, places and jitter (the first is the one the README reports), so a share is measured on more visits of the same images")
	calibrate := flag.Bool("calibrate", false, "also run descriptor.Calibrate on the enrollment images placed at each size")
	flag.Parse()
	log.SetFlags(0)
	if *draws < 1 {
		log.Fatalf("-draws %d: at least 1", *draws)
	}

	var heights []float64
	for _, s := range strings.Split(*heightsFlag, ",") {
		h, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || h <= 0 || h > 0.4 {
			log.Fatalf("-heights: %q", s)
		}
		heights = append(heights, h)
	}
	scenes, err := frame.Scenes(*data, frame.LoadImage)
	if err != nil {
		log.Fatal(err)
	}
	w, err := frame.StartWorker(*models)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	orl := func(s, i int) image.Image {
		img, err := frame.ORL(*data, s, i)
		if err != nil {
			log.Fatal(err)
		}
		return img
	}
	probe := func(s, i int) image.Image {
		if *light == "side" {
			return synth.SideLight(orl(s, i))
		}
		return orl(s, i)
	}

	reach := facenet.Patrol
	if *thorough {
		reach = facenet.Thorough
	}
	// Enrollment.
	g := map[string][][]byte{}
	missing := 0
	for s := 1; s <= 20; s++ {
		for i := 1; i <= 5; i++ {
			var d []byte
			switch *enrolFlag {
			case "close":
				jpg, want, err := frame.Frame(orl(s, i), frame.Replicate)
				if err != nil {
					log.Fatal(err)
				}
				if d, _, err = w.EnrolAt(context.Background(), jpg, want); err != nil {
					log.Fatal(err)
				}
			case "far":
				d = frame.EnrolFar(w, scenes, orl(s, i), uint64(s*10+i))
			default:
				log.Fatalf("-enrol %q", *enrolFlag)
			}
			if d == nil {
				missing++
				continue
			}
			g[fmt.Sprint(s)] = append(g[fmt.Sprint(s)], d)
		}
	}
	m, err := facerec.Descriptors{}.Build(g)
	if err != nil {
		log.Fatal(err)
	}
	why := explainer(g)

	type row struct {
		h                            float64
		visits, recognised, confused int
		strangers, taken             int
		recognised2, taken2          int // with two frames agreeing
		explained                    []string
		frames, found                int
		times                        []time.Duration
		cal                          string
	}
	var rows []row
	for _, hs := range heights {
		faceH := int(math.Round(hs * frame.H))
		r := row{h: hs}
		rnd := rand.New(rand.NewPCG(19, uint64(faceH)))
		// frames says, for -v, what became of the visit's face in each
		// frame.
		var frames []string
		// accepted counts, by person, the frames of a visit accepted as
		// them.
		visit := func(s, i int) (accepted map[string]int) {
			p := synth.Place(scenes[rnd.IntN(len(scenes))], probe(s, i), faceH, rnd)
			jpgs, at := p.Frames(*perVisit, rnd)
			accepted = map[string]int{}
			frames = frames[:0]
			for k := range jpgs {
				f := faceAt(w, jpgs[k], at[k], reach)
				if *verbose {
					frames = append(frames, why(f.template))
				}
				r.times = append(r.times, f.took)
				r.frames++
				if f.template != nil {
					r.found++
				}
				// Every face of the frame is decided on, as Patrol does
				// (a person counted once a frame).
				seen := map[string]bool{}
				for _, t := range f.all {
					if id, _, ok := m.Identify(t); ok && !seen[id] {
						seen[id] = true
						accepted[id]++
					}
				}
			}
			return accepted
		}
		for range *draws {
			for s := 1; s <= 20; s++ {
				for i := 6; i <= 10; i++ {
					acc := visit(s, i)
					r.visits++
					if acc[fmt.Sprint(s)] > 0 {
						r.recognised++
					} else if *verbose {
						r.explained = append(r.explained, fmt.Sprintf("- %.0f%%, s%d/%d not recognised: %s", 100*hs, s, i, strings.Join(frames, "; ")))
					}
					if acc[fmt.Sprint(s)] >= 2 {
						r.recognised2++
					}
					if len(acc) > 1 || (len(acc) == 1 && acc[fmt.Sprint(s)] == 0) {
						r.confused++
					}
				}
			}
			for s := 21; s <= 40; s++ {
				for i := 1; i <= 10; i++ {
					r.strangers++
					acc := visit(s, i)
					if len(acc) > 0 {
						r.taken++
						if *verbose {
							r.explained = append(r.explained, fmt.Sprintf("- %.0f%%, stranger s%d/%d taken for %v: %s", 100*hs, s, i, acc, strings.Join(frames, "; ")))
						}
					}
					for _, n := range acc {
						if n >= 2 {
							r.taken2++
							break
						}
					}
				}
			}
		}
		if *calibrate {
			cal, err := frame.Calibrate(func(s, i int) []byte {
				p := synth.Place(scenes[rnd.IntN(len(scenes))], orl(s, i), faceH, rnd)
				jpgs, at := p.Frames(1, rnd)
				return faceAt(w, jpgs[0], at[0], facenet.Thorough).template
			}, nil)
			if err != nil {
				r.cal = err.Error()
			} else {
				r.cal = fmt.Sprintf("Threshold %.2f, Ratio %.2f, Cohort %.2f (%d of %d leave-one-out genuine trials accepted at them, %d at the shipped Far)",
					cal.Params.Threshold, cal.Params.Ratio, cal.Params.Cohort, cal.GenuineAccepted(cal.Params), len(cal.Genuine), cal.GenuineAccepted(descriptor.Shipped.Far))
			}
		}
		rows = append(rows, r)
		log.Printf("%.0f%% done", 100*hs)
	}

	search := "Patrol frames (Faces, not thorough)"
	if *thorough {
		search = "thorough search (as for a photo about to leave, not Patrol)"
	}
	near := 0
	for _, samples := range g {
		if descriptor.SmallestFacePx(samples) >= descriptor.Shipped.NearFacePx {
			near++
		}
	}
	fmt.Printf("## Distance: ORL in scenes through the vision worker (%s; %d frames a visit; %d placement draw(s); enrollment %s, %d of 100 images without a face, %d of %d people judged by the rule's Near; light %s)\n\n", search, *perVisit, *draws, *enrolFlag, missing, near, len(g), *light)
	fmt.Printf("| face height | about | visits recognised | taken for another enrolled person | strangers' visits taken for family | frames with the face found | worker round trip p50 / p95 |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		slices.Sort(r.times)
		p := func(q float64) float64 { return float64(r.times[int(q*float64(len(r.times)-1))].Microseconds()) / 1000 }
		fmt.Printf("| %.0f%% (%d px) | %.1f m | %s (%d/%d) | %d | %s (%d/%d) | %s | %.1f / %.1f ms |\n", 100*r.h, int(math.Round(r.h*frame.H)), 0.2/r.h,
			pct(r.recognised, r.visits), r.recognised, r.visits, r.confused, pct(r.taken, r.strangers), r.taken, r.strangers, pct(r.found, r.frames), p(0.5), p(0.95))
	}
	fmt.Printf("\nIf a sighting needed two frames of a visit accepted as the same person (the daemon records one on a single frame):\n\n| face height | visits recognised | strangers' visits taken for family |\n| --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Printf("| %.0f%% | %s (%d/%d) | %s (%d/%d) |\n", 100*r.h, pct(r.recognised2, r.visits), r.recognised2, r.visits, pct(r.taken2, r.strangers), r.taken2, r.strangers)
	}
	if *verbose {
		fmt.Printf("\nVisits not recognised and strangers' visits taken, frame by frame (the placed face's nearest person, d1, d1/d2 and d1/c(P) against the shipped constants):\n\n")
		for _, r := range rows {
			for _, e := range r.explained {
				fmt.Println(e)
			}
		}
	}
	if *calibrate {
		sh := descriptor.Shipped.Far
		fmt.Printf("\ndescriptor.Calibrate on the enrollment images (s1..s20, 1-5) placed at each size, thorough search (shipped Far: Threshold %.2f, Ratio %.2f, Cohort %.2f):\n\n", sh.Threshold, sh.Ratio, sh.Cohort)
		for _, r := range rows {
			fmt.Printf("- %.0f%%: %s\n", 100*r.h, r.cal)
		}
	}
}

type found struct {
	template []byte   // of the face at the wanted place, nil when not found
	all      [][]byte // every descriptor of the frame
	took     time.Duration
}

// faceAt sends one frame to the worker and picks the face whose centre
// lies in want (grown by half its size), nearest its centre.
func faceAt(w *frame.Worker, jpg []byte, want image.Rectangle, reach facenet.Reach) found {
	t0 := time.Now()
	r, err := w.Faces(context.Background(), vision.Faces{Image: jpg, Thorough: reach == facenet.Thorough, Enrollment: reach == facenet.Enrol})
	took := time.Since(t0)
	if err != nil {
		log.Fatal(err)
	}
	if r.Model != descriptor.Model {
		log.Fatalf("the worker makes %q descriptors, the recognizer decides on %q", r.Model, descriptor.Model)
	}
	out := found{took: took}
	near := want.Inset(-want.Dx() / 2)
	c := want.Min.Add(want.Max).Div(2)
	best := math.Inf(1)
	for _, f := range r.Faces {
		if f.Template == nil {
			continue
		}
		out.all = append(out.all, f.Template)
		fc := image.Pt(f.X+f.W/2, f.Y+f.H/2)
		if d := math.Hypot(float64(fc.X-c.X), float64(fc.Y-c.Y)); fc.In(near) && d < best {
			out.template, best = f.Template, d
		}
	}
	return out
}

// explainer returns what the decision made of a placed face's template
// (nil: not found), against the gallery of g by the shipped rule.
func explainer(g map[string][][]byte) func(template []byte) string {
	gal, err := frame.ShippedGallery(g)
	if err != nil {
		log.Fatal(err)
	}
	return func(template []byte) string {
		if template == nil {
			return "not found"
		}
		v, err := descriptor.Decode(template)
		if err != nil {
			return err.Error()
		}
		m := gal.Match(&v)
		sh := m.Params
		var failed []string
		if m.Distance >= sh.Threshold {
			failed = append(failed, "Threshold")
		}
		if m.Distance >= sh.Ratio*m.RunnerDistance {
			failed = append(failed, "Ratio")
		}
		if m.Distance >= sh.Cohort*m.CohortDist {
			failed = append(failed, "Cohort")
		}
		verdict := "accepted"
		if len(failed) > 0 {
			verdict = "over " + strings.Join(failed, ", ")
		}
		return fmt.Sprintf("s%s %.3f / %.3f / %.3f, %s", m.SubjectID, m.Distance, m.Distance/m.RunnerDistance, m.Distance/m.CohortDist, verdict)
	}
}

func pct(a, b int) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(a)/float64(b))
}
