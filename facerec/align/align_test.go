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

func TestEyesAreLevelledFromATiltedHead(t *testing.T) {
	a, err := New(models)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	upright, box := frameWith(t, 0)
	defer upright.Close()
	base := a.eyeAngle(upright, box)
	if math.Abs(base) > 5 {
		t.Fatalf("upright head measured at %.1f°", base)
	}
	for _, deg := range []float64{-12, 12} {
		m, box := frameWith(t, deg)
		got := a.eyeAngle(m, box)
		if _, err := a.Crop(m, box); err != nil {
			t.Errorf("crop of a tilted head: %v", err)
		}
		m.Close()
		// OpenCV's positive angle turns the image counter-clockwise, which
		// tilts the eye line by -deg in image coordinates.
		if math.Abs(got-(base-deg)) > 5 {
			t.Errorf("head tilted %.0f°: eyes measured at %.1f°, want about %.1f°", deg, got, base-deg)
		}
	}
}

func TestCropFramesTheHead(t *testing.T) {
	a, err := New(models)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	m, box := frameWith(t, 0)
	defer m.Close()
	crop, err := a.Crop(m, box)
	if err != nil {
		t.Fatal(err)
	}
	b := crop.Bounds()
	if b.Dx() < box.Dx() || b.Dy() < box.Dy() || b.Dy() <= b.Dx() {
		t.Fatalf("crop %v for a face box %v: want a taller-than-wide head frame around it", b.Size(), box.Size())
	}
	if _, err := a.Crop(m, image.Rect(10, 10, 20, 20)); err == nil {
		t.Fatal("a 10x10 face was cropped")
	}
}
