package capture

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // decoders for the spool's formats: Go's own, memory-safe
	_ "image/png"

	"github.com/aibo-privacy/aibo-privacyd/capture/clean"
)

// MaxPixels is the largest image taken in (contract section 2: 40 megapixels).
const MaxPixels = 40_000_000

// ImageInfo is what validation learns of a photo.
type ImageInfo struct {
	Format        string
	Width, Height int
}

var errInvalid = errors.New("invalid image")

// errTooManyPixels: the header claims more than MaxPixels.
var errTooManyPixels = errors.New("over 40 megapixels")

// Validate checks that data is a JPEG or PNG of at most MaxPixels that
// decodes completely. The size is read from the header before any pixel is
// decoded, so a file claiming 50000x50000 costs nothing. The size it
// reports is the upright photo's, after the EXIF orientation, as the
// vision worker reports it.
func Validate(data []byte) (info ImageInfo, err error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return info, fmt.Errorf("%w: header: %v", errInvalid, err)
	}
	if format != "jpeg" && format != "png" {
		return info, fmt.Errorf("%w: format %s", errInvalid, format)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return info, fmt.Errorf("%w: %w: %dx%d", errInvalid, errTooManyPixels, cfg.Width, cfg.Height)
	}
	defer func() {
		if r := recover(); r != nil { // a decoder bug must not take the daemon down
			err = fmt.Errorf("%w: decoder panic", errInvalid)
		}
	}()
	if _, _, err := image.Decode(bytes.NewReader(data)); err != nil {
		return info, fmt.Errorf("%w: decode: %v", errInvalid, err)
	}
	if clean.Orientation(data) >= 5 {
		cfg.Width, cfg.Height = cfg.Height, cfg.Width
	}
	return ImageInfo{Format: format, Width: cfg.Width, Height: cfg.Height}, nil
}
