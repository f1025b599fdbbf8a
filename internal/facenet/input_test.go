package facenet

import (
	"image"
	"testing"

	"gocv.io/x/gocv"
)

// TestBadInputsAreErrors: what the worker could be handed by a hostile or
// broken image gives an error, never a panic or an OpenCV abort.
func TestBadInputsAreErrors(t *testing.T) {
	nets := loadNets(t)
	tiny := gocv.NewMatWithSize(8, 8, gocv.MatTypeCV8UC3)
	defer tiny.Close()
	if _, err := nets.Detect(tiny, DetectOptions{}); err == nil {
		t.Error("Detect on 8x8 pixels")
	}
	float := gocv.NewMatWithSize(64, 64, gocv.MatTypeCV32F)
	defer float.Close()
	if _, err := nets.Detect(float, DetectOptions{}); err == nil {
		t.Error("Detect on float pixels")
	}
	frame := gocv.NewMatWithSize(360, 640, gocv.MatTypeCV8UC3)
	defer frame.Close()
	frame.SetTo(gocv.NewScalar(80, 80, 80, 0))
	for _, box := range []image.Rectangle{image.Rect(0, 0, 2, 2), image.Rect(5000, 5000, 5200, 5200), image.Rect(-400, -400, -100, -100)} {
		if _, err := nets.Landmarks(frame, box); err == nil {
			t.Errorf("Landmarks in %v", box)
		}
	}
	var flat Landmarks // every point at the origin
	if _, err := Chip(frame, &flat); err == nil {
		t.Error("Chip from collapsed landmarks")
	}
	var far Landmarks
	for i := range far {
		far[i] = Point{1e6 + float64(i%7), 1e6 + float64(i/7)}
	}
	if c, err := Chip(frame, &far); err == nil {
		// far outside the frame: a black chip is acceptable, a crash is not
		c.Close()
	}
	wrong := gocv.NewMatWithSize(100, 100, gocv.MatTypeCV8UC3)
	defer wrong.Close()
	if _, err := nets.RawDescriptor(wrong); err == nil {
		t.Error("RawDescriptor on 100x100")
	}
	if _, _, _, err := nets.RawDetector(wrong); err == nil {
		t.Error("RawDetector on 100x100")
	}
	// A face box covering the whole of a small frame still works.
	if _, _, err := nets.Describe(frame, image.Rect(0, 0, 640, 360)); err != nil {
		t.Logf("Describe on a blank frame: %v", err)
	}
}
