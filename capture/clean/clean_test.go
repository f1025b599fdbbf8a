package clean

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/jpeg"
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
	clean, err := ForUpload(dirty, nil)
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
