// Package clean re-encodes photos for upload from their pixels alone:
// the EXIF orientation applied, faces pixelated, the photo scaled down to
// MaxUploadPixels when it is larger, and nothing but pixels kept (no EXIF,
// XMP, GPS, ICC, maker notes or comments). It is pure Go with no
// dependency of the module's; the vision worker runs it, so a hostile
// image costs the worker's memory, never the daemon's, and the daemon
// learns the answer's size (UploadSize) and bound (MaxBytes) from here
// without decoding anything.
package clean

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"math"
)

// UploadQuality is the JPEG quality of uploaded photos. A photo whose JPEG
// would weigh more than MaxBytes is encoded again at the lower qualities
// of fallbackQualities.
const UploadQuality = 92

var fallbackQualities = []int{80, 65, 50}

// MaxUploadPixels is the largest photo that leaves the device: 12
// megapixels. A larger one (the spool admits up to 40) leaves scaled down
// to it.
const MaxUploadPixels = 12_000_000

// UploadSize is the size, in pixels, a photo that is w x h upright leaves
// at: its own up to MaxUploadPixels, otherwise scaled down to fit them
// with its aspect kept.
func UploadSize(w, h int) (int, int) {
	if w <= 0 || h <= 0 || int64(w)*int64(h) <= MaxUploadPixels {
		return w, h
	}
	s := math.Sqrt(float64(MaxUploadPixels) / (float64(w) * float64(h)))
	sw, sh := max(1, int(float64(w)*s)), max(1, int(float64(h)*s))
	for int64(sw)*int64(sh) > MaxUploadPixels {
		sw, sh = max(1, sw-1), max(1, sh*(sw-1)/sw)
	}
	return sw, sh
}

// MaxBytes bounds the JPEG of a w x h upload: a byte a pixel (noise at
// quality 92 takes 0.97) and room for the tables. The worker encodes at a
// lower quality rather than exceed it; the daemon refuses, unread, an
// answer that claims more.
func MaxBytes(w, h int) int64 { return int64(w)*int64(h) + 64<<10 }

// ErrSize: the photo is not the size the caller asked for (a photo other
// than the one validated, or a size other than UploadSize's).
var ErrSize = errors.New("clean photo: not the size asked for")

// ForUpload re-encodes a photo from its pixels so that nothing but
// pixels leaves the device: no EXIF, XMP, GPS, ICC profile, maker notes or
// comments (Go's encoder writes none). The EXIF orientation is applied
// first, so the photo shows the right way up and hide is read in the
// upright photo's pixels, as the worker's face search (OpenCV, which
// applies the orientation too) reports them; the regions in hide (faces
// of people who did not consent) are pixelated beyond recognition. The
// result is exactly w x h, which must be UploadSize of the upright photo
// (scaled down by area averaging when smaller), and at most maxBytes.
//
// Memory: the decoded photo and one RGBA image of w x h (40 MP in, 12 MP
// out: about 60 + 48 MB), never a full-size RGBA copy.
func ForUpload(data []byte, hide []image.Rectangle, w, h int, maxBytes int64) ([]byte, error) {
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("clean photo: %w", err)
	}
	o := exifOrientation(data)
	uw, uh := img.Bounds().Dx(), img.Bounds().Dy()
	if o >= 5 {
		uw, uh = uh, uw
	}
	if ew, eh := UploadSize(uw, uh); w != ew || h != eh {
		return nil, fmt.Errorf("%w: asked for %dx%d, the photo is %dx%d upright and leaves at %dx%d", ErrSize, w, h, uw, uh, ew, eh)
	}
	out := uprightScaled(img, o, w, h) // the decoded photo is not needed after this
	if len(hide) > 0 {
		scaled := make([]image.Rectangle, len(hide))
		for i, r := range hide {
			scaled[i] = image.Rect(r.Min.X*w/uw, r.Min.Y*h/uh, ceilDiv(r.Max.X*w, uw), ceilDiv(r.Max.Y*h, uh))
		}
		pixelateInPlace(out, scaled)
	}
	for _, q := range append([]int{UploadQuality}, fallbackQualities...) {
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, out, &jpeg.Options{Quality: q}); err != nil {
			return nil, fmt.Errorf("clean photo: %w", err)
		}
		if int64(buf.Len()) <= maxBytes {
			return buf.Bytes(), nil
		}
	}
	return nil, fmt.Errorf("clean photo: over %d bytes even at quality %d", maxBytes, fallbackQualities[len(fallbackQualities)-1])
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// Orientation is a JPEG's EXIF orientation (1..8; 1 upright, 5..8 turn
// it by a quarter, swapping width and height); 1 for anything else.
func Orientation(data []byte) int { return exifOrientation(data) }

// exifOrientation reads tag 0x0112 of a JPEG's EXIF IFD0; 1 (upright) when
// absent or unreadable.
func exifOrientation(data []byte) int {
	if len(data) < 4 || data[0] != 0xFF || data[1] != 0xD8 {
		return 1
	}
	for i := 2; i+4 <= len(data); {
		if data[i] != 0xFF {
			return 1
		}
		marker := data[i+1]
		if marker == 0xDA || marker == 0xD9 { // start of scan: no more headers
			return 1
		}
		n := int(binary.BigEndian.Uint16(data[i+2:]))
		if n < 2 || i+2+n > len(data) {
			return 1
		}
		seg := data[i+4 : i+2+n]
		if marker == 0xE1 && len(seg) > 14 && string(seg[:6]) == "Exif\x00\x00" {
			return tiffOrientation(seg[6:])
		}
		i += 2 + n
	}
	return 1
}

func tiffOrientation(t []byte) int {
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	off := int(bo.Uint32(t[4:]))
	if off < 8 || off+2 > len(t) {
		return 1
	}
	count := int(bo.Uint16(t[off:]))
	for e := 0; e < count; e++ {
		p := off + 2 + 12*e
		if p+12 > len(t) {
			return 1
		}
		if bo.Uint16(t[p:]) == 0x0112 {
			v := int(bo.Uint16(t[p+8:]))
			if v >= 1 && v <= 8 {
				return v
			}
			return 1
		}
	}
	return 1
}

// uprightScaled returns img turned upright by EXIF orientation o and
// scaled to w x h (its upright size or smaller): each output pixel is the
// mean of the box of source pixels it covers (boxes tile the source, so a
// photo at its own size is copied pixel for pixel). Source rows are read
// once, in order, through a one-row buffer.
func uprightScaled(img image.Image, o, w, h int) *image.RGBA {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	dw, dh := w, h // the output before turning: stored orientation
	if o >= 5 {
		dw, dh = h, w
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	x0 := make([]int, dw+1)
	for i := range x0 {
		x0[i] = i * sw / dw
	}
	row := make([]uint8, 4*sw)
	sums := make([]uint32, 4*dw)
	for dy := 0; dy < dh; dy++ {
		y0, y1 := dy*sh/dh, (dy+1)*sh/dh
		clear(sums)
		for y := y0; y < y1; y++ {
			readRow(img, b.Min.Y+y, row)
			for dx := 0; dx < dw; dx++ {
				s := sums[4*dx : 4*dx+4]
				for x := x0[dx]; x < x0[dx+1]; x++ {
					p := row[4*x : 4*x+4]
					s[0] += uint32(p[0])
					s[1] += uint32(p[1])
					s[2] += uint32(p[2])
				}
			}
		}
		for dx := 0; dx < dw; dx++ {
			n := uint32((x0[dx+1] - x0[dx]) * (y1 - y0))
			s := sums[4*dx : 4*dx+4]
			ux, uy := turn(o, dx, dy, dw, dh)
			i := dst.PixOffset(ux, uy)
			dst.Pix[i], dst.Pix[i+1], dst.Pix[i+2], dst.Pix[i+3] = uint8((s[0]+n/2)/n), uint8((s[1]+n/2)/n), uint8((s[2]+n/2)/n), 255
		}
	}
	return dst
}

// turn maps (x, y) of a w x h image in stored orientation to its place in
// the upright image (EXIF orientations 1..8).
func turn(o, x, y, w, h int) (int, int) {
	switch o {
	case 2:
		return w - 1 - x, y
	case 3:
		return w - 1 - x, h - 1 - y
	case 4:
		return x, h - 1 - y
	case 5:
		return y, x
	case 6:
		return h - 1 - y, x
	case 7:
		return h - 1 - y, w - 1 - x
	case 8:
		return y, w - 1 - x
	}
	return x, y
}

// readRow writes row y of img as opaque RGBA into row, with fast paths for
// what decoders return (YCbCr for JPEG, Gray, RGBA and NRGBA for most PNG).
func readRow(img image.Image, y int, row []uint8) {
	b := img.Bounds()
	switch m := img.(type) {
	case *image.YCbCr:
		for x := b.Min.X; x < b.Max.X; x++ {
			yi, ci := m.YOffset(x, y), m.COffset(x, y)
			r, g, bl := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
			i := 4 * (x - b.Min.X)
			row[i], row[i+1], row[i+2] = r, g, bl
		}
	case *image.Gray:
		for x := b.Min.X; x < b.Max.X; x++ {
			v := m.Pix[m.PixOffset(x, y)]
			i := 4 * (x - b.Min.X)
			row[i], row[i+1], row[i+2] = v, v, v
		}
	case *image.RGBA:
		copy(row, m.Pix[m.PixOffset(b.Min.X, y):])
	default:
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			i := 4 * (x - b.Min.X)
			row[i], row[i+1], row[i+2] = c.R, c.G, c.B
		}
	}
}

// Markers lists the JPEG marker bytes of data in order, up to the start of
// scan (for checking what an upload carries).
func Markers(data []byte) []byte {
	var out []byte
	if len(data) < 2 || data[0] != 0xFF || data[1] != 0xD8 {
		return nil
	}
	out = append(out, 0xD8)
	for i := 2; i+4 <= len(data); {
		if data[i] != 0xFF {
			return out
		}
		m := data[i+1]
		out = append(out, m)
		if m == 0xDA {
			return out
		}
		i += 2 + int(binary.BigEndian.Uint16(data[i+2:]))
	}
	return out
}

// Pixelate returns a copy of img with each region (grown by a fifth on
// every side, so hair and chin go too) replaced by coarse blocks of its
// mean colour: at most 6 blocks across a face, too few to recognise anyone.
func Pixelate(img image.Image, regions []image.Rectangle) image.Image {
	b := img.Bounds()
	out := image.NewRGBA(b)
	draw.Draw(out, b, img, b.Min, draw.Src)
	pixelateInPlace(out, regions)
	return out
}

// pixelateInPlace is Pixelate on out itself.
func pixelateInPlace(out *image.RGBA, regions []image.Rectangle) {
	b := out.Bounds()
	for _, r := range regions {
		gx, gy := r.Dx()/5, r.Dy()/5
		r = image.Rect(r.Min.X-gx, r.Min.Y-gy, r.Max.X+gx, r.Max.Y+gy).Intersect(b)
		if r.Empty() {
			continue
		}
		block := max(4, (max(r.Dx(), r.Dy())+5)/6)
		for by := r.Min.Y; by < r.Max.Y; by += block {
			for bx := r.Min.X; bx < r.Max.X; bx += block {
				cell := image.Rect(bx, by, min(bx+block, r.Max.X), min(by+block, r.Max.Y))
				var sr, sg, sb, n uint32
				for y := cell.Min.Y; y < cell.Max.Y; y++ {
					for x := cell.Min.X; x < cell.Max.X; x++ {
						i := out.PixOffset(x, y)
						sr += uint32(out.Pix[i])
						sg += uint32(out.Pix[i+1])
						sb += uint32(out.Pix[i+2])
						n++
					}
				}
				for y := cell.Min.Y; y < cell.Max.Y; y++ {
					for x := cell.Min.X; x < cell.Max.X; x++ {
						i := out.PixOffset(x, y)
						out.Pix[i], out.Pix[i+1], out.Pix[i+2], out.Pix[i+3] = uint8(sr/n), uint8(sg/n), uint8(sb/n), 255
					}
				}
			}
		}
	}
}
