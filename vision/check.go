package vision

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// jpegCheck passes a clean answer through to its writer and keeps what it
// needs to judge it afterwards without decoding a pixel: the first
// checkHead bytes (everything up to the first scan, for a JPEG written by
// capture/clean) and the last two.
type jpegCheck struct {
	w    io.Writer
	head []byte
	tail [2]byte
	n    int64
}

// checkHead is how far into the answer its header must be complete.
const checkHead = 64 << 10

func (c *jpegCheck) Write(p []byte) (int, error) {
	if room := checkHead - len(c.head); room > 0 {
		c.head = append(c.head, p[:min(room, len(p))]...)
	}
	switch {
	case len(p) >= 2:
		copy(c.tail[:], p[len(p)-2:])
	case len(p) == 1:
		c.tail[0], c.tail[1] = c.tail[1], p[0]
	}
	c.n += int64(len(p))
	return c.w.Write(p)
}

// verify checks the answer is a baseline or extended JPEG of exactly w x h
// with nothing but tables, a frame and scans: no APPn (no EXIF, XMP, ICC
// or maker notes), no comment, and nothing after its end-of-image marker.
// (Pixels could still hide anything: that the worker cannot be kept from,
// only from having seen more than this photo; see Alone.)
func (c *jpegCheck) verify(w, h int) error {
	if c.n < 4 || c.tail != [2]byte{0xFF, 0xD9} {
		return errors.New("clean answer does not end with a JPEG end-of-image marker")
	}
	gw, gh, err := jpegHeader(c.head)
	if err != nil {
		return err
	}
	if gw != w || gh != h {
		return fmt.Errorf("clean answer is a %dx%d JPEG, asked for %dx%d", gw, gh, w, h)
	}
	return nil
}

// jpegHeader reads the markers of a JPEG up to its first scan and returns
// the frame's size; any marker but SOI, DQT, DHT, DRI, SOF0..2 and SOS is
// refused.
func jpegHeader(b []byte) (w, h int, err error) {
	if len(b) < 2 || b[0] != 0xFF || b[1] != 0xD8 {
		return 0, 0, errors.New("clean answer is not a JPEG")
	}
	for i := 2; ; {
		if i+4 > len(b) {
			return 0, 0, fmt.Errorf("clean answer's JPEG header runs past its first %d bytes", checkHead)
		}
		if b[i] != 0xFF {
			return 0, 0, fmt.Errorf("clean answer's JPEG header broken at byte %d", i)
		}
		m := b[i+1]
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if n < 2 || i+2+n > len(b) {
			return 0, 0, fmt.Errorf("clean answer's JPEG segment %#x does not fit", m)
		}
		seg := b[i+4 : i+2+n]
		switch m {
		case 0xDB, 0xC4, 0xDD: // tables, restart interval
		case 0xC0, 0xC1, 0xC2:
			if len(seg) < 5 {
				return 0, 0, errors.New("clean answer's JPEG frame header too short")
			}
			h, w = int(binary.BigEndian.Uint16(seg[1:])), int(binary.BigEndian.Uint16(seg[3:]))
		case 0xDA:
			if w == 0 || h == 0 {
				return 0, 0, errors.New("clean answer's JPEG has a scan before its frame")
			}
			return w, h, nil
		default:
			return 0, 0, fmt.Errorf("clean answer's JPEG carries a %#x segment (metadata or an unknown kind)", m)
		}
		i += 2 + n
	}
}
