package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"sync"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/capture/clean"
)

// Pixels does whatever needs an image's pixels: decoding it completely to
// validate it, and re-encoding it for upload. The daemon itself keeps
// photos as bytes; in the daemon these run in the vision worker, whose
// memory a hostile image may blow up without touching the daemon's.
// InProcess stands in, in pure Go and within a memory budget, where no
// worker is given (this package's tests): the daemon always gives it, and
// while the worker cannot start images wait (ErrRetryLater) rather than
// being decoded in the daemon.
type Pixels interface {
	// Validate decodes data completely: a JPEG or PNG of at most
	// MaxPixels. An error wrapping ErrRetryLater means the image was not
	// judged (the worker could not start, say): try again later. Any other
	// error makes the image invalid.
	Validate(ctx context.Context, data []byte) (ImageInfo, error)
	// Clean re-encodes data for upload and writes the JPEG to w as it
	// comes, never whole in the daemon's memory: the EXIF orientation
	// applied, the regions in hide (upright pixels) pixelated, exactly
	// size (clean.UploadSize of the validated size), at most
	// clean.MaxBytes of it, no metadata (see clean.ForUpload). On an
	// error what reached w is to be thrown away.
	Clean(ctx context.Context, data []byte, hide []image.Rectangle, size image.Point, w io.Writer) error
}

// ErrRetryLater: the image was not judged, not judged bad.
var ErrRetryLater = errors.New("capture: image not judged yet")

// DefaultBudget bounds the decoded pixels InProcess will hold: 24 MiB is a
// 1080p photo several times over, and far from a 40-megapixel 16-bit PNG
// (320 MB decoded from an 85 KiB file).
const DefaultBudget = 24 << 20

// ErrOverBudget: decoding the image in process would take more memory than
// allowed; without the vision worker it is not decoded at all.
var ErrOverBudget = errors.New("capture: image too large to decode in the daemon")

// InProcess is Pixels in pure Go, one image at a time, refusing any image
// whose decoded pixels (worked out from its header, before decoding)
// would take more than Budget bytes.
type InProcess struct {
	Budget int64
	mu     sync.Mutex
}

// Validate implements Pixels.
func (p *InProcess) Validate(ctx context.Context, data []byte) (ImageInfo, error) {
	if err := p.fits(data); err != nil {
		return ImageInfo{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return Validate(data)
}

// Clean implements Pixels.
func (p *InProcess) Clean(ctx context.Context, data []byte, hide []image.Rectangle, size image.Point, w io.Writer) error {
	if err := p.fits(data); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out, err := clean.ForUpload(data, hide, size.X, size.Y, clean.MaxBytes(size.X, size.Y))
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// Score implements Scorer with BasicFeatures (exposure, sharpness and a
// difference hash: no faces), for when the vision worker cannot run.
func (p *InProcess) Score(ctx context.Context, data []byte, takenAt time.Time) (Scored, error) {
	if err := p.fits(data); err != nil {
		return Scored{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b, h, err := BasicFeatures(data)
	return Scored{Breakdown: b, PHash: h}, err
}

// fits reports whether data may be decoded in process at all.
func (p *InProcess) fits(data []byte) error {
	budget := p.Budget
	if budget <= 0 {
		budget = DefaultBudget
	}
	n, err := DecodedBytes(data)
	if err != nil {
		return err
	}
	if n > budget {
		return fmt.Errorf("%w: %d bytes decoded, at most %d", ErrOverBudget, n, budget)
	}
	return nil
}

// DecodedBytes is how much memory decoding data and working on it (an
// RGBA copy for pixelation and orientation) takes at the most, from its
// header alone.
func DecodedBytes(data []byte) (int64, error) {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return 0, fmt.Errorf("%w: header: %v", errInvalid, err)
	}
	px := int64(cfg.Width) * int64(cfg.Height)
	if cfg.Width <= 0 || cfg.Height <= 0 || px > MaxPixels {
		return 0, fmt.Errorf("%w: %w: %dx%d", errInvalid, errTooManyPixels, cfg.Width, cfg.Height)
	}
	var perPixel int64
	switch cfg.ColorModel {
	case color.RGBA64Model, color.NRGBA64Model:
		perPixel = 8
	case color.Gray16Model:
		perPixel = 2
	case color.GrayModel, color.YCbCrModel: // YCbCr 4:4:4 at worst
		perPixel = 3
	case color.CMYKModel, color.RGBAModel, color.NRGBAModel:
		perPixel = 4
	default:
		perPixel = 4 // paletted and the rest
	}
	return px * (perPixel + 4), nil // the decoded image and one RGBA copy
}
