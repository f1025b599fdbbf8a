package capture

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"io"
	"testing"
	"time"
)

// pngHeaderDepth is a PNG signature and IHDR claiming w x h at bitDepth and
// colorType, without pixel data: enough for a decoder's header read.
func pngHeaderDepth(w, h uint32, bitDepth, colorType byte) []byte {
	var buf bytes.Buffer
	buf.Write([]byte("\x89PNG\r\n\x1a\n"))
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = bitDepth, colorType
	binary.Write(&buf, binary.BigEndian, uint32(13))
	chunk := append([]byte("IHDR"), ihdr...)
	buf.Write(chunk)
	binary.Write(&buf, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return buf.Bytes()
}

// Issue: an 85 KiB 16-bit PNG of 8000x5000 took the daemon to 173 MiB. In
// process, nothing is decoded whose pixels would take more than the
// budget, judged from the header before any pixel is read.
func TestP16_InProcessDecodesNothingOverItsBudget(t *testing.T) {
	p := &InProcess{}
	bomb := pngHeaderDepth(8000, 5000, 16, 0) // 16-bit grey: 80 MB decoded, 160 MB as RGBA
	ctx := context.Background()
	if _, err := p.Validate(ctx, bomb); !errors.Is(err, ErrOverBudget) {
		t.Errorf("Validate: %v", err)
	}
	if err := p.Clean(ctx, bomb, nil, image.Pt(8000, 5000), io.Discard); !errors.Is(err, ErrOverBudget) {
		t.Errorf("Clean: %v", err)
	}
	if _, err := p.Score(ctx, bomb, time.Now()); !errors.Is(err, ErrOverBudget) {
		t.Errorf("Score: %v", err)
	}
	if n, err := DecodedBytes(bomb); err != nil || n < 200<<20 {
		t.Errorf("DecodedBytes %d %v", n, err)
	}
	// An ordinary photo goes through.
	photo := testJPEG(t, 3)
	if info, err := p.Validate(ctx, photo); err != nil || info.Width != 64 {
		t.Fatalf("ordinary photo: %+v %v", info, err)
	}
	var out bytes.Buffer
	if err := p.Clean(ctx, photo, nil, image.Pt(64, 48), &out); err != nil || out.Len() == 0 {
		t.Fatalf("clean: %v", err)
	}
	// Over 40 megapixels is invalid whatever the budget.
	if _, err := DecodedBytes(pngHeaderDepth(8000, 5001, 8, 0)); !errors.Is(err, errInvalid) {
		t.Errorf("over 40 MP: %v", err)
	}
}
