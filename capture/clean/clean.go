// Package clean re-encodes photos for upload from their pixels alone:
// faces pixelated, the EXIF orientation applied, and nothing but pixels
// kept (no EXIF, XMP, GPS, ICC, maker notes or comments). It is pure Go
// with no dependency of the module's; the vision worker runs it, so a
// hostile image costs the worker's memory, never the daemon's.
package clean

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
)

// UploadQuality is the JPEG quality of uploaded photos.
const UploadQuality = 92

// ForUpload re-encodes a photo from its pixels so that nothing but
// pixels leaves the device: no EXIF, XMP, GPS, ICC profile, maker notes or
// comments (Go's encoder writes none). The regions in hide (faces of people
// who did not consent, in the stored image's coordinates) are pixelated
// beyond recognition, and then the EXIF orientation is applied so the photo
// still shows the right way up.
func ForUpload(data []byte, hide []image.Rectangle) ([]byte, error) {
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("clean photo: %w", err)
	}
	if len(hide) > 0 {
		img = Pixelate(img, hide)
	}
	img = orient(img, exifOrientation(data))
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: UploadQuality}); err != nil {
		return nil, fmt.Errorf("clean photo: %w", err)
	}
	return buf.Bytes(), nil
}

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

// orient turns img upright according to an EXIF orientation (1..8).
func orient(img image.Image, o int) image.Image {
	if o <= 1 || o > 8 {
		return img
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	src := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(src, src.Bounds(), img, b.Min, draw.Src)
	ow, oh := w, h
	if o >= 5 {
		ow, oh = h, w
	}
	dst := image.NewRGBA(image.Rect(0, 0, ow, oh))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var dx, dy int
			switch o {
			case 2:
				dx, dy = w-1-x, y
			case 3:
				dx, dy = w-1-x, h-1-y
			case 4:
				dx, dy = x, h-1-y
			case 5:
				dx, dy = y, x
			case 6:
				dx, dy = h-1-y, x
			case 7:
				dx, dy = h-1-y, w-1-x
			case 8:
				dx, dy = y, w-1-x
			}
			i := src.PixOffset(x, y)
			j := dst.PixOffset(dx, dy)
			copy(dst.Pix[j:j+4], src.Pix[i:i+4])
		}
	}
	return dst
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
				c := color.RGBA{uint8(sr / n), uint8(sg / n), uint8(sb / n), 255}
				draw.Draw(out, cell, &image.Uniform{c}, image.Point{}, draw.Src)
			}
		}
	}
	return out
}
