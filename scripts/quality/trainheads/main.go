// Command trainheads trains the proposal net of internal/headnet (where in
// a Patrol frame a small face may be) and writes its weights.
//
//	apt-get install mate-backgrounds python3-skimage   # the photographs, see below
//	go run ./scripts/quality/trainheads -data ../shared/testdata -o /tmp/stage1.bin
//	go run ./scripts/quality/trainheads -data ../shared/testdata -init /tmp/stage1.bin -epochs 8 -lr 0.0005 -o internal/headnet/model.bin
//
// The first run trains from scratch (16 epochs of 12,000 tiles, about 15
// minutes on two cores); the second goes on from its weights with a third
// of each epoch's tiles cut around the marks they make on the training
// photographs (hard negatives: the first net marks about 20 places a
// frame there). -eval reports on the held-out split without training;
// -dump writes a sheet of training tiles to look at. (Instead of
// installing the packages, apt-get download and dpkg-deb -x them and
// point -backgrounds at the folders.)
//
// Faces: the GENKI-4K train split (64x64 face crops of people in the wild;
// the crops its README marks as possibly not faces are left out), never
// ORL: ORL's people are the enrolled people and the strangers of the face
// reports. Backgrounds: photographs that Debian packages carry, none of the
// three scenes the reports place faces in (coffee, chelsea, rocket), nor
// any with a person in it (astronaut, camera): the nature photographs of
// mate-backgrounds (GPL-2+, their authors are listed in the package's
// copyright file) and scikit-image's sample images (python3-skimage; see
// its data/README for each image's terms). Every fourth photograph is held
// out, with GENKI-4K's test split, to fix the score threshold and report
// what the net finds; nothing of the test's is used for either.
//
// Each training tile is 64x64 grey pixels of a photograph at a random
// scale, with zero to two GENKI faces pasted in (feathered, with their
// edges carried outwards as a head's context, or in a soft ellipse, so the
// shape of a pasted patch says nothing), relit (gain, gamma, a one-sided
// light), blurred and noised, and as many pasted patches of other
// photographs that are not faces: a pasted rectangle is no face.
package main

import (
	"flag"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg"
	"image/png"
	"log"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/headnet"
)

// Held-out photographs: the reports' scenes, and those with people in them.
var excluded = []string{"coffee", "chelsea", "rocket", "astronaut", "camera"}

func main() {
	data := flag.String("data", "../shared/testdata", "folder holding genki4k/")
	bgs := flag.String("backgrounds", "/usr/share/backgrounds/mate/nature,/usr/lib/python3/dist-packages/skimage/data", "folders of photographs without people (comma-separated)")
	out := flag.String("o", "internal/headnet/model.bin", "where to write the weights")
	epochs := flag.Int("epochs", headnet.DefaultTrainConfig.Epochs, "training epochs")
	perEpoch := flag.Int("tiles", 12000, "tiles an epoch")
	lr := flag.Float64("lr", headnet.DefaultTrainConfig.LearnRate, "peak learning rate")
	dump := flag.String("dump", "", "write a PNG of 48 training tiles here (faces' cells marked) and stop")
	evalOnly := flag.Bool("eval", false, "do not train: report on the held-out split for the weights in -o")
	flag.StringVar(&initFrom, "init", "", "start from these weights and add, to each epoch's tiles, tiles around the marks they make on the training photographs (hard negatives)")
	flag.Parse()
	log.SetFlags(0)
	dumpTo, evalWeights = *dump, *evalOnly
	if err := run(*data, strings.Split(*bgs, ","), *out, *epochs, *perEpoch, *lr); err != nil {
		log.Fatal(err)
	}
}

func run(data string, bgDirs []string, out string, epochs, perEpoch int, lr float64) error {
	suspect, err := os.ReadFile(filepath.Join(data, "genki4k", "no_haar_face_detected.txt"))
	if err != nil {
		return err
	}
	train, err := loadFaces(filepath.Join(data, "genki4k", "train_folder"), string(suspect))
	if err != nil {
		return err
	}
	val, err := loadFaces(filepath.Join(data, "genki4k", "test_folder"), string(suspect))
	if err != nil {
		return err
	}
	var fit, held []*plane
	for _, dir := range bgDirs {
		names, _ := filepath.Glob(filepath.Join(dir, "*"))
		sort.Strings(names)
		for _, n := range names {
			base := strings.ToLower(filepath.Base(n))
			if slices.ContainsFunc(excluded, func(e string) bool { return strings.HasPrefix(base, e) }) {
				continue
			}
			p, err := loadPhoto(n)
			if err != nil {
				continue // not an image
			}
			if (len(fit)+len(held))%4 == 3 {
				held = append(held, p)
			} else {
				fit = append(fit, p)
			}
		}
	}
	if len(fit) < 4 || len(held) < 1 {
		return fmt.Errorf("too few photographs in %v (%d): install mate-backgrounds and python3-skimage", bgDirs, len(fit)+len(held))
	}
	log.Printf("faces: %d train, %d held out (GENKI-4K test split); photographs: %d train, %d held out", len(train), len(val), len(fit), len(held))
	if dumpTo != "" {
		return dumpTiles(dumpTo, rand.New(rand.NewSource(1)), train, fit)
	}
	if evalWeights {
		b, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		net, err := headnet.Decode(b)
		if err != nil {
			return err
		}
		report(net, val, held)
		return nil
	}
	cfg := headnet.DefaultTrainConfig
	cfg.Epochs = epochs
	cfg.LearnRate = lr
	var init *headnet.Net
	var mined []headnet.Tile
	if initFrom != "" {
		b, err := os.ReadFile(initFrom)
		if err != nil {
			return err
		}
		if init, err = headnet.Decode(b); err != nil {
			return err
		}
		mined = mine(init, fit)
		log.Printf("mined %d tiles around the marks of %s on the training photographs", len(mined), initFrom)
	}
	start := time.Now()
	net := headnet.TrainFrom(init, cfg, func(epoch int) []headnet.Tile {
		rng := rand.New(rand.NewSource(int64(1000 + epoch)))
		ts := make([]headnet.Tile, perEpoch)
		for i := range ts {
			if len(mined) > 0 && i%3 == 0 {
				ts[i] = jitter(rng, mined[rng.Intn(len(mined))])
				continue
			}
			ts[i] = makeTile(rng, train, fit)
		}
		return ts
	}, func(epoch int, loss float64) {
		log.Printf("epoch %d loss %.4f (%s)", epoch+1, loss, time.Since(start).Round(time.Second))
	})
	if err := os.WriteFile(out, net.Encode(), 0o644); err != nil {
		return err
	}
	log.Printf("wrote %s (%d weights)", out, net.NumParams())
	report(net, val, held)
	return nil
}

// plane is a grey image, row by row.
type plane struct {
	w, h int
	pix  []float32
}

func (p *plane) at(x, y float64) float32 {
	x = math.Max(0, math.Min(x, float64(p.w-1)))
	y = math.Max(0, math.Min(y, float64(p.h-1)))
	x0, y0 := int(x), int(y)
	x1, y1 := min(x0+1, p.w-1), min(y0+1, p.h-1)
	fx, fy := float32(x-float64(x0)), float32(y-float64(y0))
	a := p.pix[y0*p.w+x0]*(1-fx) + p.pix[y0*p.w+x1]*fx
	b := p.pix[y1*p.w+x0]*(1-fx) + p.pix[y1*p.w+x1]*fx
	return a*(1-fy) + b*fy
}

// half is the image at half its size (2x2 box average).
func (p *plane) half() *plane {
	q := &plane{w: p.w / 2, h: p.h / 2}
	q.pix = make([]float32, q.w*q.h)
	for y := 0; y < q.h; y++ {
		for x := 0; x < q.w; x++ {
			i := 2*y*p.w + 2*x
			q.pix[y*q.w+x] = (p.pix[i] + p.pix[i+1] + p.pix[i+p.w] + p.pix[i+p.w+1]) / 4
		}
	}
	return q
}

// pyramid is an image and its halvings, to sample it at any scale without
// aliasing.
type pyramid []*plane

func newPyramid(p *plane) pyramid {
	py := pyramid{p}
	for p.w >= 16 && p.h >= 16 {
		p = p.half()
		py = append(py, p)
	}
	return py
}

// sample reads the pyramid at (x, y) of level 0 when one output pixel
// spans step pixels of level 0.
func (py pyramid) sample(x, y, step float64) float32 {
	l := 0
	for l+1 < len(py) && step >= 2 {
		step /= 2
		x, y = (x+0.5)/2-0.5, (y+0.5)/2-0.5
		l++
	}
	return py[l].at(x, y)
}

func grey(img image.Image) *plane {
	b := img.Bounds()
	p := &plane{w: b.Dx(), h: b.Dy(), pix: make([]float32, b.Dx()*b.Dy())}
	for y := 0; y < p.h; y++ {
		for x := 0; x < p.w; x++ {
			p.pix[y*p.w+x] = float32(color.GrayModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y)
		}
	}
	return p
}

func decode(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	return img, err
}

func loadFaces(folder, suspect string) ([]pyramid, error) {
	var out []pyramid
	for _, label := range []string{"0", "1"} {
		names, _ := filepath.Glob(filepath.Join(folder, label, "*.jpg"))
		sort.Strings(names)
		for _, n := range names {
			rel := filepath.Join(filepath.Base(folder), label, filepath.Base(n))
			if strings.Contains(suspect, rel) {
				continue
			}
			img, err := decode(n)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
			out = append(out, newPyramid(grey(img)))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no faces in %s", folder)
	}
	return out, nil
}

// loadPhoto reads a photograph as grey, its long side at most 1600 px.
func loadPhoto(path string) (*plane, error) {
	img, err := decode(path)
	if err != nil {
		return nil, err
	}
	p := grey(img)
	for max(p.w, p.h) > 1600 {
		p = p.half()
	}
	if p.w < 64 || p.h < 64 {
		return nil, fmt.Errorf("%s: too small", path)
	}
	return p, nil
}

// faceShare is the share of a GENKI crop's side its face takes, brows to
// chin (the crops are Haar boxes: a little forehead above the brows).
const faceShare = 0.85

const tileSide = 64

// paste modes: how a pasted patch meets the photograph.
const (
	feathered = iota // a feathered square
	carried          // edges carried outwards by a fifth, then feathered
	ellipse          // a soft ellipse
	modes
)

// look is how a pasted patch is lit: v' = 255 * (gain(x) * v/255)^gamma,
// gain rising linearly across it from side to side, plus blur.
type look struct {
	gain0, gain1, gamma float64
	mirror              bool
	blur                float64 // sigma in tile pixels
	mode                int
}

func randomLook(rng *rand.Rand) look {
	l := look{gain0: 0.7 + 0.6*rng.Float64(), gamma: math.Exp((2*rng.Float64() - 1) * 0.35), mirror: rng.Intn(2) == 0, mode: rng.Intn(modes)}
	l.gain1 = l.gain0
	if rng.Float64() < 0.2 { // a strong light from one side
		l.gain0, l.gain1 = 0.3, 1.3
		if rng.Intn(2) == 0 {
			l.gain0, l.gain1 = l.gain1, l.gain0
		}
	}
	if rng.Float64() < 0.25 {
		l.blur = 0.3 + 0.4*rng.Float64()
	}
	return l
}

// paste draws src (a square patch, read through sample at the patch's
// unit coordinates 0..1) onto dst at centre (cx, cy), side s tile pixels.
func paste(dst []float32, cx, cy, s float64, sample func(u, v, step float64) float32, l look) {
	ctx := 0.0
	if l.mode == carried {
		ctx = 0.2
	}
	half := s / 2 * (1 + 2*ctx)
	x0, x1 := int(math.Floor(cx-half)), int(math.Ceil(cx+half))
	y0, y1 := int(math.Floor(cy-half)), int(math.Ceil(cy+half))
	step := 1 / s
	patch := map[[2]int]float32{}
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			if x < 0 || y < 0 || x >= tileSide || y >= tileSide {
				continue
			}
			// unit coordinates in the patch, carried beyond 0..1
			u := (float64(x) + 0.5 - cx) / s
			v := (float64(y) + 0.5 - cy) / s
			if math.Abs(u) > 0.5+ctx || math.Abs(v) > 0.5+ctx {
				continue
			}
			var a float64
			switch l.mode {
			case ellipse:
				r := math.Hypot(u/0.46, v/0.56)
				a = smooth((1.15 - r) / 0.3)
			default:
				e := 0.5 + ctx
				d := math.Min(e-math.Abs(u), e-math.Abs(v)) / (2 * e)
				a = smooth(d / 0.15)
			}
			if a <= 0 {
				continue
			}
			su := math.Max(-0.5, math.Min(0.5, u))
			sv := math.Max(-0.5, math.Min(0.5, v))
			if l.mirror {
				su = -su
			}
			val := float64(sample(su+0.5, sv+0.5, step)) / 255
			g := l.gain0 + (l.gain1-l.gain0)*(su+0.5)
			val = 255 * math.Pow(math.Min(1, math.Max(0, val*g)), l.gamma)
			patch[[2]int{x, y}] = float32(a*val + (1-a)*float64(dst[y*tileSide+x]))
		}
	}
	if l.blur > 0 {
		// blur the pasted region only (3x3 binomial, repeated)
		for k := 0; k < int(math.Ceil(l.blur*2)); k++ {
			next := map[[2]int]float32{}
			for p := range patch {
				var s, n float32
				for dy := -1; dy <= 1; dy++ {
					for dx := -1; dx <= 1; dx++ {
						w := float32((2 - abs(dx)) * (2 - abs(dy)))
						q := [2]int{p[0] + dx, p[1] + dy}
						v, ok := patch[q]
						if !ok {
							if q[0] < 0 || q[1] < 0 || q[0] >= tileSide || q[1] >= tileSide {
								continue
							}
							v = dst[q[1]*tileSide+q[0]]
						}
						s += w * v
						n += w
					}
				}
				next[p] = s / n
			}
			patch = next
		}
	}
	for p, v := range patch {
		dst[p[1]*tileSide+p[0]] = v
	}
}

func smooth(a float64) float64 {
	a = math.Max(0, math.Min(1, a))
	return a * a * (3 - 2*a)
}

func abs(v int) int { return max(v, -v) }

// makeTile draws one training tile.
func makeTile(rng *rand.Rand, faces []pyramid, photos []*plane) headnet.Tile {
	pix := make([]float32, tileSide*tileSide)
	bg := photos[rng.Intn(len(photos))]
	zoom := math.Exp(math.Log(0.5) + rng.Float64()*math.Log(16)) // photo pixels a tile pixel
	zoom = math.Min(zoom, math.Min(float64(bg.w), float64(bg.h))/tileSide)
	bx := rng.Float64() * (float64(bg.w) - zoom*tileSide)
	by := rng.Float64() * (float64(bg.h) - zoom*tileSide)
	bp := newPyramidCached(bg)
	for y := 0; y < tileSide; y++ {
		for x := 0; x < tileSide; x++ {
			pix[y*tileSide+x] = bp.sample(bx+(float64(x)+0.5)*zoom-0.5, by+(float64(y)+0.5)*zoom-0.5, zoom)
		}
	}
	// Patches that are not faces: other photographs, pasted as faces are.
	for k := rng.Intn(3); k > 0; k-- {
		other := newPyramidCached(photos[rng.Intn(len(photos))])
		s := 8 + 28*rng.Float64()
		src := float64(min(other[0].w, other[0].h)) * (0.05 + 0.3*rng.Float64())
		ox := rng.Float64() * (float64(other[0].w) - src)
		oy := rng.Float64() * (float64(other[0].h) - src)
		paste(pix, rng.Float64()*tileSide, rng.Float64()*tileSide, s, func(u, v, step float64) float32 {
			return other.sample(ox+u*src, oy+v*src, step*src)
		}, randomLook(rng))
	}
	ow, oh := headnet.OutSize(tileSide, tileSide)
	t := headnet.Tile{W: tileSide, H: tileSide, Pix: pix, Face: make([]float32, ow*oh), Weight: make([]float32, ow*oh), LogSize: make([]float32, ow*oh)}
	for i := range t.Weight {
		t.Weight[i] = 1
	}
	n := []int{0, 1, 1, 1, 2}[rng.Intn(5)]
	for k := 0; k < n; k++ {
		f := faces[rng.Intn(len(faces))]
		var size float64 // brows to chin, tile pixels
		if rng.Float64() < 0.75 {
			size = math.Exp(math.Log(headnet.MinFace*0.9) + rng.Float64()*math.Log(headnet.MaxFace*1.1/(headnet.MinFace*0.9)))
		} else if rng.Intn(2) == 0 {
			size = 5 + 5*rng.Float64()
		} else {
			size = 30 + 20*rng.Float64()
		}
		side := size / faceShare
		cx := side/2 + rng.Float64()*(tileSide-side)
		cy := side/2 + rng.Float64()*(tileSide-side)
		if side > tileSide {
			cx, cy = tileSide/2, tileSide/2
		}
		paste(pix, cx, cy, side, func(u, v, step float64) float32 {
			return f.sample(u*64-0.5, v*64-0.5, step*64)
		}, randomLook(rng))
		// The face's centre (the nose, a little below the crop's centre).
		fy := cy + 0.05*side
		label(&t, cx, fy, size, ow, oh)
	}
	// Camera: exposure, noise.
	gain := 0.75 + 0.5*rng.Float64()
	noise := 3 * rng.Float64()
	for i, v := range pix {
		v = float32(float64(v)*gain + rng.NormFloat64()*noise)
		pix[i] = (min(255, max(0, v)) - headnet.Mean) / headnet.Scale
	}
	return t
}

// label marks a face of the given size centred at (cx, cy) in the tile's
// output cells: its cell a face when the size is in the net's range, the
// cells around not judged; a face just beside the range is not judged.
func label(t *headnet.Tile, cx, cy, size float64, ow, oh int) {
	in := size >= headnet.MinFace*0.9 && size <= headnet.MaxFace*1.1
	near := size >= headnet.MinFace*0.6 && size <= headnet.MaxFace*1.6
	if !in && !near {
		return
	}
	ci, cj := int(cy/headnet.Stride), int(cx/headnet.Stride)
	for i := max(0, ci-1); i <= min(oh-1, ci+1); i++ {
		for j := max(0, cj-1); j <= min(ow-1, cj+1); j++ {
			c := i*ow + j
			if t.Face[c] == 0 {
				t.Weight[c] = 0
			}
		}
	}
	if in && ci >= 0 && ci < oh && cj >= 0 && cj < ow {
		c := ci*ow + cj
		t.Face[c], t.Weight[c] = 1, 1
		t.LogSize[c] = float32(math.Log(size / headnet.RefFace))
	}
}

var pyramids = map[*plane]pyramid{}

func newPyramidCached(p *plane) pyramid {
	if py, ok := pyramids[p]; ok {
		return py
	}
	py := newPyramid(p)
	pyramids[p] = py
	return py
}

// report measures the net on the held-out split, the way the worker runs
// it: 1280x720 frames of held-out photographs, each with one GENKI-4K test
// face 36 to 144 px high (5 to 20% of the height), and the same
// photographs without it. A face is found when one of the frame's best
// marks (as many as the worker confirms) lies within half its height of
// its centre, its size within a factor of two.
func report(net *headnet.Net, faces []pyramid, photos []*plane) {
	reportUnder(net, faces, photos, "the training's looks", randomLook)
	fmt.Println()
	reportUnder(net, faces, photos, "a hard light from one side (gain 0.3 to 1.3, gamma 1.8, as the face reports relight)", sideLit)
}

// sideLit is the face reports' hard side light (synth.SideLight), from
// either side.
func sideLit(rng *rand.Rand) look {
	l := randomLook(rng)
	l.gain0, l.gain1, l.gamma = 0.3, 1.3, 1.8
	if rng.Intn(2) == 0 {
		l.gain0, l.gain1 = l.gain1, l.gain0
	}
	return l
}

func reportUnder(net *headnet.Net, faces []pyramid, photos []*plane, name string, lit func(*rand.Rand) look) {
	rng := rand.New(rand.NewSource(7))
	sizes := []float64{36, 43, 54, 72, 90, 110, 144}
	thresholds := []float64{0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95}
	const perSize = 60
	top := maxMarks
	found := make([][]int, len(sizes))
	falseMarks := make([]int, len(thresholds))
	frames := 0
	for si, size := range sizes {
		found[si] = make([]int, len(thresholds))
		for k := 0; k < perSize; k++ {
			bg := photos[rng.Intn(len(photos))]
			frame := fill(bg, 1280, 720, rng)
			f := faces[rng.Intn(len(faces))]
			side := size / faceShare
			cx := side + rng.Float64()*(1280-2*side)
			cy := side + rng.Float64()*(720-2*side)
			pasteFrame(frame, cx, cy, side, f, lit(rng))
			fy := cy + 0.05*side
			marks := framesMarks(net, frame)
			for ti, t := range thresholds {
				for _, m := range best(marks, t, top) {
					if math.Hypot(m.x-cx, m.y-fy) <= size/2 && m.size > size/2 && m.size < size*2 {
						found[si][ti]++
						break
					}
				}
			}
			if si == 0 { // the photograph alone
				empty := fill(bg, 1280, 720, rand.New(rand.NewSource(int64(k))))
				frames++
				ms := framesMarks(net, empty)
				for ti, t := range thresholds {
					falseMarks[ti] += len(best(ms, t, top))
				}
			}
		}
	}
	fmt.Printf("held-out split, faces lit by %s: GENKI-4K test faces in held-out photographs, %d frames a size; found among the %d best marks\n\n| score from |", name, perSize, top)
	for _, s := range sizes {
		fmt.Printf(" %.0f px (%.0f%%) |", s, 100*s/720)
	}
	fmt.Printf(" marks confirmed a frame without a face |\n|---|")
	for range sizes {
		fmt.Printf("---|")
	}
	fmt.Printf("---|\n")
	for ti, t := range thresholds {
		fmt.Printf("| %.2f |", t)
		for si := range sizes {
			fmt.Printf(" %.0f%% |", 100*float64(found[si][ti])/perSize)
		}
		fmt.Printf(" %.2f |\n", float64(falseMarks[ti])/float64(frames))
	}
}

// best keeps the marks from minScore, best first, none whose centre lies
// in a better one's box, at most n: as facenet.Propose does.
func best(ms []frameMark, minScore float64, n int) []frameMark {
	sorted := slices.Clone(ms)
	sort.SliceStable(sorted, func(a, b int) bool { return sorted[a].score > sorted[b].score })
	var keep []frameMark
	for _, m := range sorted {
		if m.score < minScore || len(keep) == n {
			break
		}
		if !slices.ContainsFunc(keep, func(k frameMark) bool {
			return math.Abs(k.x-m.x) < k.size/2 && math.Abs(k.y-m.y) < k.size/2 || math.Abs(k.x-m.x) < m.size/2 && math.Abs(k.y-m.y) < m.size/2
		}) {
			keep = append(keep, m)
		}
	}
	return keep
}

// frameMark is a mark in frame pixels.
type frameMark struct {
	x, y, size, score float64
}

// framesMarks runs the net on a 1280x720 grey frame at every level, lifted
// as the worker lifts it (headnet.Lift). Mining hard negatives (mine) does
// not lift: the shipped weights were trained that way, and the commands
// above must still reproduce them.
func framesMarks(net *headnet.Net, frame *plane) []frameMark {
	var out []frameMark
	py := newPyramid(frame)
	for _, s := range headnet.Levels {
		rw, rh, iw, ih := headnet.InputSize(frame.w, frame.h, s)
		in := make([]float32, iw*ih)
		step := float64(frame.w) / float64(rw)
		for y := 0; y < ih; y++ {
			for x := 0; x < iw; x++ {
				v := float32(headnet.Mean)
				if x < rw && y < rh {
					v = float32(headnet.Lifted(float64(py.sample((float64(x)+0.5)*step-0.5, (float64(y)+0.5)*step-0.5, step))))
				}
				in[y*iw+x] = (v - headnet.Mean) / headnet.Scale
			}
		}
		ow, oh := headnet.OutSize(iw, ih)
		for _, m := range headnet.Marks(net.Forward(in, iw, ih), ow, oh, 0.05) {
			out = append(out, frameMark{m.X * step, m.Y * step, m.Size * step, m.Score})
		}
	}
	return out
}

// fill is a random 1280x720 view of a photograph (scaled to cover it).
func fill(p *plane, w, h int, rng *rand.Rand) *plane {
	py := newPyramidCached(p)
	zoom := math.Min(float64(p.w)/float64(w), float64(p.h)/float64(h)) * (0.5 + 0.5*rng.Float64())
	ox := rng.Float64() * (float64(p.w) - zoom*float64(w))
	oy := rng.Float64() * (float64(p.h) - zoom*float64(h))
	out := &plane{w: w, h: h, pix: make([]float32, w*h)}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			out.pix[y*w+x] = py.sample(ox+(float64(x)+0.5)*zoom-0.5, oy+(float64(y)+0.5)*zoom-0.5, zoom)
		}
	}
	return out
}

// pasteFrame pastes a face into a frame through a tile-sized window.
func pasteFrame(frame *plane, cx, cy, side float64, f pyramid, l look) {
	half := int(side*0.7) + 2
	x0, y0 := int(cx)-half, int(cy)-half
	buf := make([]float32, tileSide*tileSide)
	// paste works on tileSide x tileSide: cut the frame into such windows
	for wy := y0; wy < y0+2*half; wy += tileSide {
		for wx := x0; wx < x0+2*half; wx += tileSide {
			for y := 0; y < tileSide; y++ {
				for x := 0; x < tileSide; x++ {
					fx, fy := min(max(wx+x, 0), frame.w-1), min(max(wy+y, 0), frame.h-1)
					buf[y*tileSide+x] = frame.pix[fy*frame.w+fx]
				}
			}
			paste(buf, cx-float64(wx), cy-float64(wy), side, func(u, v, step float64) float32 {
				return f.sample(u*64-0.5, v*64-0.5, step*64)
			}, l)
			for y := 0; y < tileSide; y++ {
				for x := 0; x < tileSide; x++ {
					if fx, fy := wx+x, wy+y; fx >= 0 && fy >= 0 && fx < frame.w && fy < frame.h {
						frame.pix[fy*frame.w+fx] = buf[y*tileSide+x]
					}
				}
			}
		}
	}
}

var (
	dumpTo      string
	evalWeights bool
	initFrom    string
)

// mine runs net on views of the training photographs (no faces in them)
// as the worker ran it before the lift (headnet.Lift), and returns a tile
// around each mark it makes there from a score of 0.3: negatives where
// the net is wrong.
func mine(net *headnet.Net, photos []*plane) []headnet.Tile {
	rng := rand.New(rand.NewSource(99))
	var out []headnet.Tile
	for _, p := range photos {
		for v := 0; v < 16; v++ {
			view := fill(p, 1280, 720, rng)
			py := newPyramid(view)
			for _, s := range headnet.Levels {
				rw, rh, iw, ih := headnet.InputSize(view.w, view.h, s)
				level := &plane{w: iw, h: ih, pix: make([]float32, iw*ih)}
				step := float64(view.w) / float64(rw)
				for y := 0; y < ih; y++ {
					for x := 0; x < iw; x++ {
						v := float32(headnet.Mean)
						if x < rw && y < rh {
							v = py.sample((float64(x)+0.5)*step-0.5, (float64(y)+0.5)*step-0.5, step)
						}
						level.pix[y*iw+x] = v
					}
				}
				in := make([]float32, iw*ih)
				for i, v := range level.pix {
					in[i] = (v - headnet.Mean) / headnet.Scale
				}
				ow, oh := headnet.OutSize(iw, ih)
				for _, m := range headnet.Marks(net.Forward(in, iw, ih), ow, oh, 0.3) {
					out = append(out, cut(level, m.X, m.Y))
				}
			}
		}
	}
	return out
}

// cut is the tile of a level image centred near (x, y), raw grey values
// in Pix (jitter normalises), every cell judged and none a face.
func cut(level *plane, x, y float64) headnet.Tile {
	ow, oh := headnet.OutSize(tileSide, tileSide)
	t := headnet.Tile{W: tileSide, H: tileSide, Pix: make([]float32, tileSide*tileSide), Face: make([]float32, ow*oh), Weight: make([]float32, ow*oh), LogSize: make([]float32, ow*oh)}
	x0 := min(max(int(x)-tileSide/2, 0), max(0, level.w-tileSide))
	y0 := min(max(int(y)-tileSide/2, 0), max(0, level.h-tileSide))
	for yy := 0; yy < tileSide; yy++ {
		for xx := 0; xx < tileSide; xx++ {
			sx, sy := min(x0+xx, level.w-1), min(y0+yy, level.h-1)
			t.Pix[yy*tileSide+xx] = level.pix[sy*level.w+sx]
		}
	}
	for i := range t.Weight {
		t.Weight[i] = 1
	}
	return t
}

// jitter is a mined tile, mirrored or not, under the camera's exposure and
// noise as makeTile draws them, normalised.
func jitter(rng *rand.Rand, m headnet.Tile) headnet.Tile {
	t := m
	t.Pix = make([]float32, len(m.Pix))
	mirror := rng.Intn(2) == 0
	gain := 0.75 + 0.5*rng.Float64()
	noise := 3 * rng.Float64()
	for y := 0; y < tileSide; y++ {
		for x := 0; x < tileSide; x++ {
			sx := x
			if mirror {
				sx = tileSide - 1 - x
			}
			v := float32(float64(m.Pix[y*tileSide+sx])*gain + rng.NormFloat64()*noise)
			t.Pix[y*tileSide+x] = (min(255, max(0, v)) - headnet.Mean) / headnet.Scale
		}
	}
	return t
}

// dumpTiles writes 48 tiles, 8 a row, each face's cell outlined in white.
func dumpTiles(path string, rng *rand.Rand, faces []pyramid, photos []*plane) error {
	const n, row = 48, 8
	img := image.NewGray(image.Rect(0, 0, row*(tileSide+2), n/row*(tileSide+2)))
	for k := 0; k < n; k++ {
		t := makeTile(rng, faces, photos)
		ox, oy := k%row*(tileSide+2), k/row*(tileSide+2)
		for y := 0; y < tileSide; y++ {
			for x := 0; x < tileSide; x++ {
				v := t.Pix[y*tileSide+x]*headnet.Scale + headnet.Mean
				img.SetGray(ox+x, oy+y, color.Gray{Y: uint8(min(255, max(0, v)))})
			}
		}
		ow, _ := headnet.OutSize(tileSide, tileSide)
		for c, f := range t.Face {
			if f == 0 {
				continue
			}
			cx, cy := ox+c%ow*headnet.Stride, oy+c/ow*headnet.Stride
			for i := 0; i < headnet.Stride; i++ {
				img.SetGray(cx+i, cy, color.Gray{Y: 255})
				img.SetGray(cx+i, cy+headnet.Stride-1, color.Gray{Y: 255})
				img.SetGray(cx, cy+i, color.Gray{Y: 255})
				img.SetGray(cx+headnet.Stride-1, cy+i, color.Gray{Y: 255})
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return png.Encode(f, img)
}

// maxMarks is how many marks a frame the worker confirms (facenet's
// maxProposals).
var maxMarks = 2

func init() {
	flag.IntVar(&maxMarks, "top", maxMarks, "marks a frame the report counts (as many as the worker confirms)")
}
