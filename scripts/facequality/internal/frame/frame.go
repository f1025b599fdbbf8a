// Package frame builds the camera frames and runs the vision worker for
// the face quality reports (scripts/facequality and its cohort generator):
// a face image tripled into a 1280x720 JPEG frame, and the worker itself
// (cmd/aibo-vision, built for the run) answering Faces requests over its
// real protocol. Used by scripts only; it reads ../shared/testdata.
package frame

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	_ "image/png"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/capture/score/synth"
	"github.com/aibo-privacy/aibo-privacyd/facerec/descriptor"
	"github.com/aibo-privacy/aibo-privacyd/internal/pgm"
	"github.com/aibo-privacy/aibo-privacyd/vision"
)

// Size of the robot's frames.
const W, H = 1280, 720

// Context says what surrounds the pasted face.
type Context string

const (
	// Replicate carries the face image's edge pixels 120 px outwards, as a
	// scene continues around a head (ORL images end at the hair and ears).
	Replicate Context = "replicate"
	// Flat puts the face on uniform grey, a hard edge inside the head.
	Flat Context = "flat"
)

// Frame pastes face, tripled, into a 1280x720 frame at (540, 200) and
// returns the JPEG (quality 90) and the face's place.
func Frame(face image.Image, ctx Context) ([]byte, image.Rectangle, error) {
	b := face.Bounds()
	w, h := b.Dx()*3, b.Dy()*3
	if w+540 > W || h+200 > H {
		return nil, image.Rectangle{}, fmt.Errorf("frame: face of %dx%d does not fit tripled", b.Dx(), b.Dy())
	}
	rgba := image.NewRGBA(b)
	draw.Draw(rgba, b, face, b.Min, draw.Src)
	im := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(im, im.Bounds(), image.NewUniform(color.Gray{Y: 70}), image.Point{}, draw.Src)
	x0, y0 := 540, 200
	m := 0
	if ctx == Replicate {
		m = 120
	}
	for y := max(-m, -y0); y < min(h+m, H-y0); y++ {
		for x := max(-m, -x0); x < min(w+m, W-x0); x++ {
			yy, xx := min(max(y, 0), h-1), min(max(x, 0), w-1)
			s := rgba.PixOffset(b.Min.X+xx/3, b.Min.Y+yy/3)
			i := im.PixOffset(x0+x, y0+y)
			copy(im.Pix[i:i+4], rgba.Pix[s:s+4])
			im.Pix[i+3] = 255
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, im, &jpeg.Options{Quality: 90}); err != nil {
		return nil, image.Rectangle{}, err
	}
	return buf.Bytes(), image.Rect(x0, y0, x0+w, y0+h), nil
}

// Worker is a running vision worker, built from this checkout.
type Worker struct {
	*vision.Client
	dir string
}

// StartWorker builds cmd/aibo-vision (from the module root, the current
// directory) and starts it with the face nets in models, on one OpenCV
// thread.
func StartWorker(models string) (*Worker, error) {
	abs, err := filepath.Abs(models)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "facequality")
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "aibo-vision")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/aibo-vision").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("build the worker: %v\n%s", err, out)
	}
	c := vision.NewClient(vision.Config{
		Path:           bin,
		Args:           []string{"-face-models", abs, "-threads", "1"},
		RequestTimeout: time.Minute,
		IdleTimeout:    -1,
		Stderr:         os.Stderr,
	})
	if _, err := c.Ping(context.Background()); err != nil {
		c.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	return &Worker{Client: c, dir: dir}, nil
}

// Close stops the worker and removes its binary.
func (w *Worker) Close() {
	w.Client.Close()
	os.RemoveAll(w.dir)
}

// FaceAt asks the worker for the faces of a frame and returns the
// descriptor of the one whose centre lies in want, nearest its centre (nil
// when none has a descriptor there), and the model the worker names.
func (w *Worker) FaceAt(ctx context.Context, jpg []byte, want image.Rectangle, thorough bool) ([]byte, string, error) {
	return w.faceAt(ctx, vision.Faces{Image: jpg, Thorough: thorough}, want)
}

// EnrolAt is FaceAt for a frame of an open enrollment window, searched as
// the daemon asks for one (the enrollment search: Patrol's passes, the
// frame at 0.75 and the 160 px pass, on the frame alone).
func (w *Worker) EnrolAt(ctx context.Context, jpg []byte, want image.Rectangle) ([]byte, string, error) {
	return w.faceAt(ctx, vision.Faces{Image: jpg, Enrollment: true}, want)
}

func (w *Worker) faceAt(ctx context.Context, req vision.Faces, want image.Rectangle) ([]byte, string, error) {
	r, err := w.Faces(ctx, req)
	if err != nil {
		return nil, "", err
	}
	c := image.Pt((want.Min.X+want.Max.X)/2, (want.Min.Y+want.Max.Y)/2)
	var best []byte
	bestD := math.Inf(1)
	for _, f := range r.Faces {
		fc := image.Pt(f.X+f.W/2, f.Y+f.H/2)
		if !fc.In(want) || f.Template == nil {
			continue
		}
		if d := math.Hypot(float64(fc.X-c.X), float64(fc.Y-c.Y)); d < bestD {
			best, bestD = f.Template, d
		}
	}
	return best, r.Model, nil
}

// EnrolFar enrols face as from where the robot stands: placed at a random
// 10-20% of the frame's height in one of scenes (seeded by seed), five
// frames of 1-2 px jitter, searched as enrollment frames are; the
// descriptor of the first frame in which the worker found the face (nil
// when none did). scripts/facequality/distance -enrol far does the same.
func EnrolFar(w *Worker, scenes []*image.RGBA, face image.Image, seed uint64) []byte {
	rnd := rand.New(rand.NewPCG(19, seed))
	h := int((0.10 + 0.10*rnd.Float64()) * H)
	p := synth.Place(scenes[rnd.IntN(len(scenes))], face, h, rnd)
	jpgs, at := p.Frames(5, rnd)
	for k := range jpgs {
		d, _, err := w.EnrolAt(context.Background(), jpgs[k], at[k].Inset(-at[k].Dx()/2))
		if err != nil {
			log.Fatal(err)
		}
		if d != nil {
			return d
		}
	}
	return nil
}

// Scenes loads the shared scenes without people (coffee, cat, rocket),
// each filled to a 1280x720 frame.
func Scenes(data string, load func(string) (image.Image, error)) ([]*image.RGBA, error) {
	var out []*image.RGBA
	for _, s := range []string{"coffee.png", "chelsea.png", "rocket.jpg"} {
		img, err := load(filepath.Join(data, "scenes", s))
		if err != nil {
			return nil, err
		}
		out = append(out, synth.Fill(img, W, H))
	}
	return out, nil
}

// LoadImage reads a PGM (the ORL faces), JPEG or PNG file.
func LoadImage(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if filepath.Ext(path) == ".pgm" {
		return pgm.Decode(f)
	}
	img, _, err := image.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}

// Calibrate runs descriptor.CalibrateWith on the protocol's enrollment
// images (s1..s20, images 1-5) against the shipped cohort: desc gives the
// encoded descriptor of image i of person s, nil when the worker found no
// face; relit, when not nil, the descriptors of the same image as a
// strong side light shows it (impostor probes only; nil when none).
func Calibrate(desc func(s, i int) []byte, relit func(s, i int) [][]byte) (descriptor.Calibration, error) {
	enroll, probes, err := Gather(desc, relit)
	if err != nil {
		return descriptor.Calibration{}, err
	}
	cohort, err := descriptor.Cohort()
	if err != nil {
		return descriptor.Calibration{}, err
	}
	return descriptor.CalibrateWith(enroll, probes, cohort)
}

// Gather decodes what Calibrate calibrates on: the samples and the
// impostor probes by person.
func Gather(desc func(s, i int) []byte, relit func(s, i int) [][]byte) (enroll, probes map[string][]descriptor.Vector, err error) {
	enroll, probes = map[string][]descriptor.Vector{}, map[string][]descriptor.Vector{}
	for s := 1; s <= 20; s++ {
		for i := 1; i <= 5; i++ {
			d := desc(s, i)
			if d == nil {
				continue
			}
			v, err := descriptor.Decode(d)
			if err != nil {
				return nil, nil, err
			}
			enroll[fmt.Sprint(s)] = append(enroll[fmt.Sprint(s)], v)
			if relit == nil {
				continue
			}
			for _, r := range relit(s, i) {
				v, err := descriptor.Decode(r)
				if err != nil {
					return nil, nil, err
				}
				probes[fmt.Sprint(s)] = append(probes[fmt.Sprint(s)], v)
			}
		}
	}
	return enroll, probes, nil
}

// ORL loads image i of ORL person s from the shared test data.
func ORL(data string, s, i int) (image.Image, error) {
	return LoadImage(filepath.Join(data, "orl_faces", fmt.Sprintf("s%d", s), fmt.Sprintf("%d.pgm", i)))
}

// ShippedGallery enrols g's people (encoded descriptors by person) in a
// gallery deciding by the shipped rule against the shipped cohort, as
// facerec.Descriptors.Build does, but whose Match shows the distances. A
// person without a sample that decodes is left out.
func ShippedGallery(g map[string][][]byte) (*descriptor.Gallery, error) {
	gal, err := descriptor.NewGallery(descriptor.Shipped, nil)
	if err != nil {
		return nil, err
	}
	for id, samples := range g {
		if err := gal.EnrollEncoded(id, samples); err != nil && !errors.Is(err, descriptor.ErrNoSamples) {
			return nil, err
		}
	}
	return gal, nil
}

// Split is what TwoFold found.
type Split struct {
	Splits                       int
	RatioMin, RatioMax           float64 // the rule's Ratio on a half
	CohortMin, CohortMax         float64
	Impostors, ImpostorsAccepted int // the other half's impostor trials, and those accepted at all three constants
	Genuine, GenuineAccepted     int
}

// TwoFold checks the rule on people it never saw: the enrollment people
// are split in two halves at random, splits times; the rule
// (descriptor.CalibrateWith) fixes the constants on each half, and the
// other half's impostor and genuine trials are decided with them.
func TwoFold(enroll, probes map[string][]descriptor.Vector, splits int) (Split, error) {
	cohort, err := descriptor.Cohort()
	if err != nil {
		return Split{}, err
	}
	ids := make([]string, 0, len(enroll))
	for id := range enroll {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	half := func(keep []string) (e, p map[string][]descriptor.Vector) {
		e, p = map[string][]descriptor.Vector{}, map[string][]descriptor.Vector{}
		for _, id := range keep {
			e[id], p[id] = enroll[id], probes[id]
		}
		return e, p
	}
	out := Split{Splits: splits, RatioMin: math.Inf(1), CohortMin: math.Inf(1)}
	for k := range splits {
		perm := rand.New(rand.NewPCG(uint64(k+1), 3)).Perm(len(ids))
		var a, b []string
		for j, p := range perm {
			if j < len(ids)/2 {
				a = append(a, ids[p])
			} else {
				b = append(b, ids[p])
			}
		}
		var cals [2]descriptor.Calibration
		for h, people := range [][]string{a, b} {
			e, p := half(people)
			if cals[h], err = descriptor.CalibrateWith(e, p, cohort); err != nil {
				return out, err
			}
		}
		for h := range cals {
			fixed, tested := cals[h].Params, cals[1-h]
			out.RatioMin, out.RatioMax = math.Min(out.RatioMin, fixed.Ratio), math.Max(out.RatioMax, fixed.Ratio)
			out.CohortMin, out.CohortMax = math.Min(out.CohortMin, fixed.Cohort), math.Max(out.CohortMax, fixed.Cohort)
			for _, m := range tested.Impostor {
				out.Impostors++
				if m.AcceptedWith(fixed) {
					out.ImpostorsAccepted++
				}
			}
			out.Genuine += len(tested.Genuine)
			out.GenuineAccepted += tested.GenuineAccepted(fixed)
		}
	}
	return out, nil
}

// SideLit is the face under a strong light from each side in turn
// (synth.SideLight, and its mirror image: the light from the left).
func SideLit(face image.Image) []image.Image {
	b := face.Bounds()
	mirror := image.NewGray(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			mirror.Set(b.Dx()-1-x, y, face.At(b.Min.X+x, b.Min.Y+y))
		}
	}
	lit := synth.SideLight(mirror)
	back := image.NewGray(lit.Rect)
	for y := 0; y < lit.Rect.Dy(); y++ {
		for x := 0; x < lit.Rect.Dx(); x++ {
			back.Pix[y*back.Stride+lit.Rect.Dx()-1-x] = lit.Pix[y*lit.Stride+x]
		}
	}
	return []image.Image{synth.SideLight(face), back}
}
