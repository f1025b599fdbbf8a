// Package pgm decodes binary 8-bit PGM (P5) images, the format of the ORL
// face database, which the standard library does not read. It exists for
// tests and tools; malformed input gives an error, never a panic or a huge
// allocation.
package pgm

import (
	"bufio"
	"errors"
	"fmt"
	"image"
	"io"
	"strconv"
)

// MaxSide bounds the width and height Decode accepts.
const MaxSide = 1 << 14

// ErrFormat is returned for input that is not an 8-bit binary PGM.
var ErrFormat = errors.New("pgm: not an 8-bit binary (P5) PGM")

// Decode reads one P5 image with maxval 255.
func Decode(r io.Reader) (*image.Gray, error) {
	br := bufio.NewReader(r)
	var f [4]int
	magic, err := token(br)
	if err != nil || magic != "P5" {
		return nil, ErrFormat
	}
	for i := 1; i < 4; i++ {
		t, err := token(br)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrFormat, err)
		}
		f[i], err = strconv.Atoi(t)
		if err != nil {
			return nil, fmt.Errorf("%w: %q", ErrFormat, t)
		}
	}
	w, h, maxval := f[1], f[2], f[3]
	if w <= 0 || h <= 0 || w > MaxSide || h > MaxSide || maxval != 255 {
		return nil, fmt.Errorf("%w: %dx%d maxval %d", ErrFormat, w, h, maxval)
	}
	// exactly one whitespace byte separates the header from the pixels;
	// token consumed it
	g := image.NewGray(image.Rect(0, 0, w, h))
	if _, err := io.ReadFull(br, g.Pix); err != nil {
		return nil, fmt.Errorf("%w: pixels: %v", ErrFormat, err)
	}
	return g, nil
}

// token returns the next header token, skipping whitespace and # comments,
// and consumes the single whitespace byte that ends it.
func token(br *bufio.Reader) (string, error) {
	var tok []byte
	for {
		c, err := br.ReadByte()
		if err != nil {
			if len(tok) > 0 && err == io.EOF {
				return string(tok), nil
			}
			return "", err
		}
		switch {
		case c == '#' && len(tok) == 0:
			if _, err := br.ReadString('\n'); err != nil {
				return "", err
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f':
			if len(tok) > 0 {
				return string(tok), nil
			}
		default:
			if len(tok) >= 16 {
				return "", errors.New("header token too long")
			}
			tok = append(tok, c)
		}
	}
}
