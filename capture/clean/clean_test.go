package clean

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand"
	"testing"
)

// withMetadata inserts APP1 EXIF (with GPS-looking bytes and an
// orientation), APP1 XMP, APP2 ICC and a comment after SOI.
func withMetadata(t *testing.T, plain []byte, orientation uint16) []byte {
	exif := []byte("Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x01")
	entry := make([]byte, 12)
	binary.BigEndian.PutUint16(entry[0:], 0x0112)
	binary.BigEndian.PutUint16(entry[2:], 3)
	binary.BigEndian.PutUint32(entry[4:], 1)
	binary.BigEndian.PutUint16(entry[8:], orientation)
	exif = append(exif, entry...)
	exif = append(exif, []byte("\x00\x00\x00\x00GPS 37.7749N 122.4194W MakerNote:SONY-ERS-1000")...)
	seg := func(m byte, body []byte) []byte {
		s := []byte{0xFF, m, 0, 0}
		binary.BigEndian.PutUint16(s[2:], uint16(len(body)+2))
		return append(s, body...)
	}
	out := []byte{0xFF, 0xD8}
	out = append(out, seg(0xE1, exif)...)
	out = append(out, seg(0xE1, []byte("http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>home</x:xmpmeta>"))...)
	out = append(out, seg(0xE2, []byte("ICC_PROFILE\x00\x01\x01profile"))...)
	out = append(out, seg(0xFE, []byte("taken in the living room"))...)
	return append(out, plain[2:]...)
}

func TestP4_UploadsCarryNoMetadata(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 40, 20))
	for y := 0; y < 20; y++ {
		for x := 0; x < 40; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 6), 80, uint8(y * 12), 255})
		}
	}
	img.Set(0, 0, color.RGBA{255, 255, 255, 255})
	var plain bytes.Buffer
	jpeg.Encode(&plain, img, &jpeg.Options{Quality: 95})
	dirty := withMetadata(t, plain.Bytes(), 6)
	if exifOrientation(dirty) != 6 {
		t.Fatalf("orientation read %d", exifOrientation(dirty))
	}
	clean, err := ForUpload(dirty, nil, 20, 40, MaxBytes(20, 40))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range Markers(clean) {
		if m >= 0xE0 && m <= 0xEF || m == 0xFE {
			t.Fatalf("upload carries marker %#x; markers %x", m, Markers(clean))
		}
	}
	for _, s := range []string{"Exif", "GPS", "SONY", "xmpmeta", "ICC_PROFILE", "living room"} {
		if bytes.Contains(clean, []byte(s)) {
			t.Fatalf("upload contains %q", s)
		}
	}
	// Orientation 6 (rotate 90° clockwise) was applied to the pixels.
	got, err := jpeg.Decode(bytes.NewReader(clean))
	if err != nil {
		t.Fatal(err)
	}
	if b := got.Bounds(); b.Dx() != 20 || b.Dy() != 40 {
		t.Fatalf("upright size %v, want 20x40", b.Size())
	}
}

func TestOrientationFromGarbageIsUpright(t *testing.T) {
	for _, data := range [][]byte{nil, {0xFF, 0xD8}, {0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x01}, {0xFF, 0xD8, 0xFF, 0xE1, 0xFF, 0xFF, 'E'}} {
		if o := exifOrientation(data); o != 1 {
			t.Fatalf("orientation %d from %x", o, data)
		}
	}
}

func TestP7_PixelateLeavesNoDetailInTheRegion(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 120, 60))
	for y := 0; y < 60; y++ {
		for x := 0; x < 120; x++ {
			v := uint8((x*37 + y*91) % 256) // fine detail everywhere
			img.Set(x, y, color.RGBA{v, 255 - v, v / 2, 255})
		}
	}
	face := image.Rect(10, 10, 40, 40)
	out := Pixelate(img, []image.Rectangle{face})
	// Inside: at most 6x6 distinct blocks of one colour each.
	colours := map[color.RGBA]bool{}
	for y := face.Min.Y; y < face.Max.Y; y++ {
		for x := face.Min.X; x < face.Max.X; x++ {
			colours[out.(*image.RGBA).RGBAAt(x, y)] = true
		}
	}
	if len(colours) > 49 {
		t.Fatalf("%d colours left in a pixelated face", len(colours))
	}
	// Outside, untouched.
	if out.(*image.RGBA).RGBAAt(100, 30) != img.RGBAAt(100, 30) {
		t.Fatal("pixels outside the region changed")
	}
}

// detailed is an image with fine detail everywhere: a region pixelated in
// it keeps few colours, one left alone keeps many.
func detailed(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := uint8((x*37 + y*91) % 256)
			img.Set(x, y, color.RGBA{v, 255 - v, v / 2, 255})
		}
	}
	return img
}

func colours(img image.Image, r image.Rectangle) int {
	seen := map[color.Color]bool{}
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			seen[img.At(x, y)] = true
		}
	}
	return len(seen)
}

// Promise P7, for a photo the camera stored on its side: the worker finds
// faces in the upright photo (OpenCV applies the EXIF orientation), so a
// stranger's box is in upright pixels and must be pixelated there, not at
// the same numbers in the stored image.
func TestP7_AStrangerInARotatedPhotoIsHiddenWhereTheSearchFoundHim(t *testing.T) {
	var plain bytes.Buffer
	jpeg.Encode(&plain, detailed(240, 120), &jpeg.Options{Quality: 100}) // stored 240x120, upright 120x240
	rotated := withMetadata(t, plain.Bytes(), 6)
	face := image.Rect(70, 20, 110, 60) // upright pixels: top right
	out, err := ForUpload(rotated, []image.Rectangle{face}, 120, 240, MaxBytes(120, 240))
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 120 || b.Dy() != 240 {
		t.Fatalf("upright size %v, want 120x240", b.Size())
	}
	// JPEG blurs block edges a little: look inside the face, and at the
	// same box mirrored to where the stored image's numbers would put it.
	inside := image.Rect(76, 26, 104, 54)
	if n := colours(img, inside); n > 200 {
		t.Fatalf("the stranger's face keeps %d colours: not pixelated where the search found it", n)
	}
	if n := colours(img, image.Rect(16, 26, 44, 54)); n < 400 {
		t.Fatalf("a region left alone has %d colours only: the test image lost its detail", n)
	}
}

func TestUploadSizeKeepsTwelveMegapixelsAndScalesLargerDown(t *testing.T) {
	for _, c := range []struct{ w, h, ww, wh int }{
		{4000, 3000, 4000, 3000}, // 12 MP: its own size
		{640, 480, 640, 480},
		{7300, 5475, 4000, 3000}, // 40 MP, 4:3
		{8000, 5000, 4381, 2738}, // 40 MP, 16:10
		{40000000, 1, 12000000, 1},
	} {
		w, h := UploadSize(c.w, c.h)
		if w != c.ww || h != c.wh {
			t.Errorf("UploadSize(%d, %d) = %dx%d, want %dx%d", c.w, c.h, w, h, c.ww, c.wh)
		}
		if int64(w)*int64(h) > MaxUploadPixels {
			t.Errorf("UploadSize(%d, %d) = %dx%d, over %d pixels", c.w, c.h, w, h, MaxUploadPixels)
		}
	}
}

// Scaling averages the box of source pixels each output pixel covers; at
// the photo's own size it copies pixels exactly.
func TestUprightScaledAveragesBoxesAndCopiesAtOwnSize(t *testing.T) {
	src := image.NewRGBA(image.Rect(0, 0, 4, 2))
	for x := 0; x < 4; x++ {
		for y := 0; y < 2; y++ {
			src.Set(x, y, color.RGBA{uint8(x * 40), uint8(y * 100), 7, 255})
		}
	}
	half := uprightScaled(src, 1, 2, 1)
	if got := half.RGBAAt(0, 0); got != (color.RGBA{20, 50, 7, 255}) {
		t.Fatalf("left box mean %v", got)
	}
	if got := half.RGBAAt(1, 0); got != (color.RGBA{100, 50, 7, 255}) {
		t.Fatalf("right box mean %v", got)
	}
	same := uprightScaled(src, 6, 2, 4) // turned, own size
	for x := 0; x < 4; x++ {
		for y := 0; y < 2; y++ {
			ux, uy := turn(6, x, y, 4, 2)
			if same.RGBAAt(ux, uy) != src.RGBAAt(x, y) {
				t.Fatalf("(%d,%d) -> (%d,%d): %v, want %v", x, y, ux, uy, same.RGBAAt(ux, uy), src.RGBAAt(x, y))
			}
		}
	}
}

// The answer never exceeds its bound: a photo that would, at quality 92,
// is encoded again at a lower quality; one that cannot fit is refused.
func TestForUploadStaysWithinItsBound(t *testing.T) {
	noise := image.NewRGBA(image.Rect(0, 0, 200, 200))
	r := rand.New(rand.NewSource(1))
	for i := range noise.Pix {
		noise.Pix[i] = uint8(r.Intn(256))
	}
	var src bytes.Buffer
	jpeg.Encode(&src, noise, &jpeg.Options{Quality: 100})
	full, err := ForUpload(src.Bytes(), nil, 200, 200, MaxBytes(200, 200))
	if err != nil {
		t.Fatal(err)
	}
	bound := int64(len(full)) * 3 / 4
	small, err := ForUpload(src.Bytes(), nil, 200, 200, bound)
	if err != nil || int64(len(small)) > bound {
		t.Fatalf("%d bytes (%v), bound %d", len(small), err, bound)
	}
	if _, err := ForUpload(src.Bytes(), nil, 200, 200, 1000); err == nil {
		t.Fatal("a bound no quality can meet was met")
	}
}

func TestForUploadRefusesAnotherSize(t *testing.T) {
	var src bytes.Buffer
	jpeg.Encode(&src, detailed(64, 48), nil)
	for _, size := range [][2]int{{48, 64}, {32, 24}, {128, 96}} {
		if _, err := ForUpload(src.Bytes(), nil, size[0], size[1], 1<<20); !errors.Is(err, ErrSize) {
			t.Errorf("asked for %v: err = %v, want ErrSize", size, err)
		}
	}
}
