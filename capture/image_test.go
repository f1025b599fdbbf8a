package capture

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
)

func pngHeader(w, h uint32) []byte {
	var buf bytes.Buffer
	buf.Write([]byte("\x89PNG\r\n\x1a\n"))
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2
	binary.Write(&buf, binary.BigEndian, uint32(13))
	chunk := append([]byte("IHDR"), ihdr...)
	buf.Write(chunk)
	binary.Write(&buf, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return buf.Bytes()
}

func TestValidate(t *testing.T) {
	good := testJPEG(t, 3)
	if info, err := Validate(good); err != nil || info.Format != "jpeg" || info.Width != 64 || info.Height != 48 {
		t.Fatalf("good jpeg: %+v %v", info, err)
	}
	bad := map[string][]byte{
		"empty":         nil,
		"text":          []byte("not an image at all"),
		"truncated":     good[:len(good)/2],
		"50000x50000":   pngHeader(50000, 50000),
		"header only":   pngHeader(10, 10),
		"gif":           []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"),
		"zero width":    pngHeader(0, 10),
		"40MP plus one": pngHeader(40_000_001, 1),
	}
	for name, data := range bad {
		if _, err := Validate(data); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func FuzzValidate(f *testing.F) {
	f.Add(testJPEG(f, 1))
	f.Add(pngHeader(100, 100))
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x10, 0x00, 0x10, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := Validate(data)
		if err == nil && (info.Width*info.Height > MaxPixels || info.Width <= 0) {
			t.Fatalf("accepted %+v", info)
		}
	})
}
