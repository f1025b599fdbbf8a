package score

import (
	"image"
	"math"
	"sort"

	"gocv.io/x/gocv"

	"github.com/aibo-privacy/aibo-privacyd/capture/score/smile"
)

// analysis holds one grey frame and what was computed from it, so each
// measurement is made once.
type analysis struct {
	grey   gocv.Mat
	source gocv.Mat // the decoded image (BGR or grey), not owned
	w, h   int

	smallMat     gocv.Mat
	smallScale   float64 // full pixels per small pixel
	sigma        float64
	haveSigma    bool
	candidates   int
	faceSharpRaw float64
}

func newAnalysis(grey gocv.Mat) *analysis {
	return &analysis{grey: grey, w: grey.Cols(), h: grey.Rows(), sigma: -1}
}

func (a *analysis) close() {
	if !a.smallMat.Empty() || a.smallScale != 0 {
		a.smallMat.Close()
	}
}

// small returns the frame downscaled so its short side is detectSide (or
// the frame itself when it is not larger) and the factor back to full-size
// pixels.
func (a *analysis) small() (gocv.Mat, float64) {
	if a.smallScale != 0 {
		return a.smallMat, a.smallScale
	}
	short := min(a.w, a.h)
	if short <= detectSide {
		a.smallMat = a.grey.Clone()
		a.smallScale = 1
		return a.smallMat, 1
	}
	f := float64(short) / detectSide
	a.smallMat = gocv.NewMat()
	gocv.Resize(a.grey, &a.smallMat, image.Pt(int(math.Round(float64(a.w)/f)), int(math.Round(float64(a.h)/f))), 0, 0, gocv.InterpolationArea)
	a.smallScale = f
	return a.smallMat, f
}

// resizedRegion cuts r (clipped to the frame) and resamples it to width w
// (height h, or keeping the aspect ratio when h is 0). Area averaging when
// shrinking, bilinear when growing. An empty Mat when r is empty.
func (a *analysis) resizedRegion(r image.Rectangle, w, h int) gocv.Mat {
	r = r.Intersect(image.Rect(0, 0, a.w, a.h))
	if r.Dx() < 2 || r.Dy() < 2 {
		return gocv.NewMat()
	}
	if h == 0 {
		h = max(1, int(math.Round(float64(r.Dy())*float64(w)/float64(r.Dx()))))
	}
	roi := a.grey.Region(r)
	defer roi.Close()
	out := gocv.NewMat()
	interp := gocv.InterpolationArea
	if w > r.Dx() {
		interp = gocv.InterpolationLinear
	}
	gocv.Resize(roi, &out, image.Pt(w, h), 0, 0, interp)
	return out
}

// faceCrop is the face box resampled to a size x size grey crop for the
// smile network.
func (a *analysis) faceCrop(box image.Rectangle, size int) smile.Crop {
	m := a.resizedRegion(box, size, size)
	defer m.Close()
	if m.Empty() {
		return smile.Crop{}
	}
	b := m.ToBytes()
	c := smile.Crop{W: size, H: size, Pix: make([]float32, size*size)}
	for i, v := range b {
		c.Pix[i] = float32(v)
	}
	return c
}

// noiseSigma estimates the standard deviation of the sensor noise in grey
// levels (Immerkær 1996: the mask below cancels smooth image structure and
// keeps noise), measured only where the image is flat, so edges and
// texture do not pass for noise.
func (a *analysis) noiseSigma() float64 {
	if a.haveSigma {
		return a.sigma
	}
	a.haveSigma = true
	// Bound the work: sensor noise is the same all over the frame, so a
	// central window of at most noiseWindowW x noiseWindowH full-size
	// pixels holds plenty of flat patches.
	win := image.Rect(0, 0, a.w, a.h)
	if a.w > noiseWindowW {
		x0 := (a.w - noiseWindowW) / 2
		win.Min.X, win.Max.X = x0, x0+noiseWindowW
	}
	if a.h > noiseWindowH {
		y0 := (a.h - noiseWindowH) / 2
		win.Min.Y, win.Max.Y = y0, y0+noiseWindowH
	}
	roi := a.grey.Region(win)
	defer roi.Close()
	src := roi.Clone() // continuous
	defer src.Close()
	// The mask [1 -2 1]^T [1 -2 1] is separable.
	k := gocv.NewMatWithSize(1, 3, gocv.MatTypeCV32F)
	defer k.Close()
	for i, v := range []float32{1, -2, 1} {
		k.SetFloatAt(0, i, v)
	}
	resp := gocv.NewMat()
	defer resp.Close()
	gocv.SepFilter2D(src, &resp, gocv.MatTypeCV16S, k, k, image.Pt(-1, -1), 0, gocv.BorderReflect101)
	// Structure: a box-filtered absolute gradient; flat pixels are those
	// below its 30th percentile.
	gx, gy := gocv.NewMat(), gocv.NewMat()
	defer gx.Close()
	defer gy.Close()
	gocv.Sobel(src, &gx, gocv.MatTypeCV16S, 1, 0, 3, 1, 0, gocv.BorderReflect101)
	gocv.Sobel(src, &gy, gocv.MatTypeCV16S, 0, 1, 3, 1, 0, gocv.BorderReflect101)
	ax, ay := gocv.NewMat(), gocv.NewMat()
	defer ax.Close()
	defer ay.Close()
	gocv.ConvertScaleAbs(gx, &ax, 0.25, 0)
	gocv.ConvertScaleAbs(gy, &ay, 0.25, 0)
	gsum := gocv.NewMat()
	defer gsum.Close()
	gocv.AddWeighted(ax, 0.5, ay, 0.5, 0, &gsum)
	gocv.Blur(gsum, &gsum, image.Pt(5, 5))

	r16, err := resp.DataPtrInt16()
	if err != nil {
		return 0
	}
	g8, err := gsum.DataPtrUint8()
	if err != nil {
		return 0
	}
	var hist [256]int
	for _, v := range g8 {
		hist[v]++
	}
	limit := len(g8) * 3 / 10
	thr, acc := 0, 0
	for ; thr < 255; thr++ {
		acc += hist[thr]
		if acc >= limit {
			break
		}
	}
	var sum float64
	n := 0
	for i, v := range r16 {
		if int(g8[i]) <= thr {
			if v < 0 {
				v = -v
			}
			sum += float64(v)
			n++
		}
	}
	if n == 0 {
		return 0
	}
	a.sigma = math.Sqrt(math.Pi/2) / 6 * sum / float64(n)
	return a.sigma
}

const noiseWindowW, noiseWindowH = 640, 360

type exposureStats struct {
	mean, dark, bright float64
}

// exposure measures brightness in r (the whole frame when r is empty).
func (a *analysis) exposure(r image.Rectangle) exposureStats {
	var m gocv.Mat
	if r.Empty() {
		small, _ := a.small()
		m = small
	} else {
		rr := r.Intersect(image.Rect(0, 0, a.w, a.h))
		if rr.Empty() {
			return exposureStats{mean: 128}
		}
		m = a.grey.Region(rr)
		defer m.Close()
	}
	var hist [256]float64
	var n float64
	rows, cols := m.Rows(), m.Cols()
	// Region Mats are not continuous; walk rows. Subsample large ones.
	step := 1
	if rows*cols > 200_000 {
		step = 2
	}
	for y := 0; y < rows; y += step {
		row := m.RowRange(y, y+1)
		b, err := row.DataPtrUint8()
		if err == nil {
			for x := 0; x < len(b); x += step {
				hist[b[x]]++
				n++
			}
		}
		row.Close()
	}
	if n == 0 {
		return exposureStats{mean: 128}
	}
	var s, dark, bright float64
	for v, c := range hist {
		s += float64(v) * c
		if v <= 8 {
			dark += c
		}
		if v >= 247 {
			bright += c
		}
	}
	return exposureStats{mean: s / n, dark: dark / n, bright: bright / n}
}

// score rates the whole frame: mean brightness in a wide comfortable band,
// little of the frame crushed to black or blown to white.
func (e exposureStats) score() float64 {
	return band(e.mean, 25, 85, 170, 235) * (1 - ramp(e.dark+e.bright, 0.03, 0.35))
}

// faceScore rates a face: skin should sit in the middle of the range and
// almost none of it clip.
func (e exposureStats) faceScore() float64 {
	return band(e.mean, 30, 90, 185, 240) * (1 - ramp(e.dark+e.bright, 0.01, 0.2))
}

// sharpness measures detail in r, noise discounted: the strongest
// gradients of a lightly smoothed, size-normalised crop relative to its
// contrast, minus what noise of the measured sigma would add. Blur lowers
// it; noise, which raises the variance of the Laplacian, mostly cannot.
func (a *analysis) sharpness(r image.Rectangle, sigma float64) float64 {
	r = r.Intersect(image.Rect(0, 0, a.w, a.h))
	if r.Dx() < 8 || r.Dy() < 8 {
		return 0
	}
	target := sharpFaceWidth
	if r.Dx() == a.w && r.Dy() == a.h {
		target = sharpFrameWidth
	}
	crop := a.resizedRegion(r, target, 0)
	defer crop.Close()
	// Area averaging over f x f pixels divides the noise by f.
	if f := float64(r.Dx()) / float64(target); f > 1 {
		sigma /= f
	}
	smooth := gocv.NewMat()
	defer smooth.Close()
	gocv.GaussianBlur(crop, &smooth, image.Pt(5, 5), 1.0, 1.0, gocv.BorderReflect101)
	gx, gy := gocv.NewMat(), gocv.NewMat()
	defer gx.Close()
	defer gy.Close()
	gocv.Sobel(smooth, &gx, gocv.MatTypeCV32F, 1, 0, 3, 0.125, 0, gocv.BorderReflect101)
	gocv.Sobel(smooth, &gy, gocv.MatTypeCV32F, 0, 1, 3, 0.125, 0, gocv.BorderReflect101)
	fx, err1 := gx.DataPtrFloat32()
	fy, err2 := gy.DataPtrFloat32()
	pix, err3 := crop.DataPtrUint8()
	if err1 != nil || err2 != nil || err3 != nil || len(fx) == 0 {
		return 0
	}
	mags := make([]float32, len(fx))
	for i := range fx {
		mags[i] = fx[i]*fx[i] + fy[i]*fy[i]
	}
	g2 := topMean(mags, 0.1)
	// The top tenth of gradient energy that pure noise of this sigma
	// produces after the same smoothing (measured: see TestNoiseFloor).
	g2 -= noiseGradK * noiseGradK * sigma * sigma
	if g2 < 0 {
		g2 = 0
	}
	var hist [256]int
	for _, v := range pix {
		hist[v]++
	}
	lo, hi := percentile(hist[:], len(pix), 0.02), percentile(hist[:], len(pix), 0.98)
	contrast := math.Max(float64(hi-lo), 24)
	return math.Sqrt(g2) / contrast
}

// Sharpness tunables.
const (
	sharpFaceWidth  = 128
	sharpFrameWidth = 640
	// noiseGradK: the top-decile RMS gradient of white noise of sigma 1
	// after the Gaussian and the Sobel above.
	noiseGradK = 0.6
)

func percentile(hist []int, n int, p float64) int {
	target := int(p * float64(n))
	acc := 0
	for v, c := range hist {
		acc += c
		if acc > target {
			return v
		}
	}
	return len(hist) - 1
}

// phash is the DCT perceptual hash: the 8x8 lowest frequencies of a 32x32
// thumbnail, each bit set when above their median. Photos of the same
// moment differ in few bits.
func (a *analysis) phash() uint64 {
	small, _ := a.small()
	t := gocv.NewMat()
	defer t.Close()
	gocv.Resize(small, &t, image.Pt(32, 32), 0, 0, gocv.InterpolationArea)
	f := gocv.NewMat()
	defer f.Close()
	t.ConvertTo(&f, gocv.MatTypeCV32F)
	d := gocv.NewMat()
	defer d.Close()
	gocv.DCT(f, &d, 0)
	var v [64]float64
	for y := 0; y < 8; y++ {
		for x := 0; x < 8; x++ {
			v[y*8+x] = float64(d.GetFloatAt(y, x))
		}
	}
	s := append([]float64(nil), v[1:]...) // the DC term is just brightness
	sort.Float64s(s)
	med := (s[31] + s[32]) / 2
	var h uint64
	for i, x := range v {
		if x > med {
			h |= 1 << uint(i)
		}
	}
	return h
}

// topMean returns the mean of the largest frac of v (reordering v).
func topMean(v []float32, frac float64) float64 {
	k := len(v) - max(1, int(frac*float64(len(v))))
	selectKth(v, k)
	var s float64
	for _, x := range v[k:] {
		s += float64(x)
	}
	return s / float64(len(v)-k)
}

// selectKth reorders v so that v[k] holds the value it would have sorted,
// with nothing larger before it and nothing smaller after (quickselect).
func selectKth(v []float32, k int) {
	lo, hi := 0, len(v)-1
	for lo < hi {
		p := v[lo+(hi-lo)/2]
		i, j := lo, hi
		for i <= j {
			for v[i] < p {
				i++
			}
			for v[j] > p {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return
		}
	}
}
