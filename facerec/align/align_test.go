package align

import (
	"image"
	"image/color"
	"math"
	"os"
	"testing"

	"gocv.io/x/gocv"

	"github.com/aibo-privacy/aibo-privacyd/internal/pgm"
)

const models = "/usr/share/opencv4"

// frameWith puts an ORL face (tripled) into a 640x480 grey frame, rotated
// by deg around the face's centre, and returns the frame and the face box.
func frameWith(t *testing.T, deg float64) (gocv.Mat, image.Rectangle) {
	f, err := os.Open("../../testdata/faces/orl-s7-1.pgm")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	face, err := pgm.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	canvas := image.NewGray(image.Rect(0, 0, 640, 480))
	for i := range canvas.Pix {
		canvas.Pix[i] = 70
	}
	at := image.Pt(182, 72)
	for y := 0; y < 336; y++ {
		for x := 0; x < 276; x++ {
			canvas.Pix[(at.Y+y)*canvas.Stride+at.X+x] = face.Pix[(y/3)*face.Stride+x/3]
		}
	}
	m, err := gocv.ImageGrayToMatGray(canvas)
	if err != nil {
		t.Fatal(err)
	}
	box := image.Rect(at.X+20, at.Y+60, at.X+256, at.Y+300) // where a cascade finds this face
	if deg == 0 {
		return m, box
	}
	center := image.Pt(box.Min.X+box.Dx()/2, box.Min.Y+box.Dy()/2)
	rot := gocv.GetRotationMatrix2D(center, deg, 1)
	defer rot.Close()
	out := gocv.NewMat()
	gocv.WarpAffineWithParams(m, &out, rot, image.Pt(640, 480), gocv.InterpolationLinear, gocv.BorderConstant, color.RGBA{70, 70, 70, 255})
	m.Close()
	return out, box
}

func aligner(t *testing.T) *Aligner {
	t.Helper()
	a, err := New(models)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func TestEyesAreLevelledFromATiltedHead(t *testing.T) {
	a := aligner(t)
	upright, box := frameWith(t, 0)
	defer upright.Close()
	base, ok := a.eyeAngle(upright, box)
	if !ok || math.Abs(base) > 5 {
		t.Fatalf("upright head measured at %.1f°", base)
	}
	for _, deg := range []float64{-12, 12} {
		m, box := frameWith(t, deg)
		got, ok := a.eyeAngle(m, box)
		if !ok {
			t.Fatalf("head tilted %.0f°: eyes not found", deg)
		}
		crop, err := a.Crop(m, box)
		m.Close()
		if err != nil {
			t.Fatalf("crop of a tilted head: %v", err)
		}
		cm, err := gocv.ImageGrayToMatGray(crop)
		if err != nil {
			t.Fatal(err)
		}
		after, ok := a.eyeAngle(cm, crop.Bounds())
		t.Logf("deg %v got %v after %v %v base %v", deg, got, after, ok, base)
		if !ok || math.Abs(after-base) > 5 {
			t.Errorf("head tilted %.0f°: the crop's eyes are at %.1f°, want about %.1f° as upright", deg, after, base)
		}
		cm.Close()
		// OpenCV's positive angle turns the image counter-clockwise, which
		// tilts the eye line by -deg in image coordinates.
		if math.Abs(got-(base-deg)) > 5 {
			t.Errorf("head tilted %.0f°: eyes measured at %.1f°, want about %.1f°", deg, got, base-deg)
		}
	}
}

func TestCropFramesTheHeadAtTheNormalisedScale(t *testing.T) {
	a := aligner(t)
	m, box := frameWith(t, 0)
	defer m.Close()
	crop, err := a.Crop(m, box)
	if err != nil {
		t.Fatal(err)
	}
	// headFrame widens the box by 6% and adds 27% of its height; at the
	// scale where the box is BoxWidth wide that is about 102 x 122 for
	// this (almost square) box, whatever the face's size in the frame.
	b := crop.Bounds()
	wantW := BoxWidth * 106 / 100
	wantH := BoxWidth * box.Dy() / box.Dx() * 127 / 100
	if abs(b.Dx()-wantW) > 2 || abs(b.Dy()-wantH) > 2 {
		t.Fatalf("crop %v for a face box %v: want about %dx%d", b.Size(), box.Size(), wantW, wantH)
	}
	if _, err := a.Crop(m, image.Rect(10, 10, 20, 20)); err == nil {
		t.Fatal("a 10x10 face was cropped")
	}
}

// A face box at the frame's edge is cut to the frame, never read past it.
func TestCropAtTheFrameEdgeStaysInside(t *testing.T) {
	a := aligner(t)
	m, _ := frameWith(t, 0)
	defer m.Close()
	crop, err := a.Crop(m, image.Rect(-40, -40, 160, 160))
	if err != nil {
		t.Fatal(err)
	}
	if crop.Bounds().Dx() < 24 || crop.Bounds().Dy() < 24 {
		t.Fatalf("crop %v", crop.Bounds())
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
