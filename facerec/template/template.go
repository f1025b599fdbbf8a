package template

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"math"

	"github.com/aibo-privacy/aibo-privacyd/facerec/template/internal/feat"
)

//go:generate go run ./internal/genmodel -genki ../../../shared/testdata/genki4k -o model_gen.go

// Version is the template format version. It changes whenever templates
// computed by one build cannot be compared with another's (layout, features
// or the learnt model); a template of another version is refused with
// ErrVersion and has to be enrolled again.
const Version = 1

// Dims is the number of int8 coordinates in one feature vector.
const Dims = feat.Dims

// MaxVectors is the number of feature vectors in a probe template (the
// canonical pooling grid and its displaced and scaled variants).
const MaxVectors = 11

func init() {
	if len(feat.Variants) != MaxVectors {
		panic("template: MaxVectors does not match feat.Variants")
	}
}

// Binary layout (little endian):
//
//	0   2  magic "FT"
//	2   1  Version
//	3   1  n, number of feature vectors (1..MaxVectors); vector 0 is the
//	       canonical grid, 1..n-1 displaced/scaled grids
//	4   2  Dims
//	6   2  reserved, zero
//	8   n*Dims int8 coordinates
//	end 4  CRC-32 (IEEE) of everything before it
const (
	headerLen = 8
	crcLen    = 4
)

var magic = [2]byte{'F', 'T'}

// Errors returned for unusable input.
var (
	// ErrCorrupt: the bytes are not a template (short, bad magic, bad
	// length or dimensions, or a checksum mismatch).
	ErrCorrupt = errors.New("template: corrupt template")
	// ErrVersion: a well-formed template of another format version.
	ErrVersion = errors.New("template: unsupported template version")
	// ErrImage: the face crop is nil or outside 32x32 .. 4096x4096.
	ErrImage = feat.ErrImage
)

// Template is an encoded face template. Compute returns a probe template
// (about 16 KiB: the canonical feature vector plus 10 variants on displaced
// and scaled grids, used to tolerate misalignment at match time); Compact
// keeps only the canonical vector (1524 bytes), which is what should be
// stored for enrollment. Both kinds compare with each other.
type Template []byte

// Compute turns an aligned grey face crop into a probe template. The crop
// is the worker's output: the face box from the detector, rotated so the
// eyes are level, any size from 32x32 (it is resampled to 46x56 internally,
// so roughly 4:5 width:height keeps the face undistorted). It costs a few
// hundred microseconds and is safe for concurrent use.
func Compute(face *image.Gray) (Template, error) {
	codes, err := feat.Extract(face)
	if err != nil {
		return nil, err
	}
	n := len(feat.Variants)
	t := make(Template, headerLen+n*Dims+crcLen)
	hist := make([]float32, feat.Maps*feat.Cells*feat.Bins)
	body := i8(t[headerLen : headerLen+n*Dims])
	for i, g := range feat.Variants {
		codes.Pool(g, hist)
		projector.Project(hist, body[i*Dims:(i+1)*Dims])
	}
	seal(t, n)
	return t, nil
}

// Compact returns the template reduced to its canonical feature vector,
// the form to store for an enrolled sample.
func Compact(t Template) (Template, error) {
	vs, err := parse(t)
	if err != nil {
		return nil, err
	}
	out := make(Template, headerLen+Dims+crcLen)
	copy(i8(out[headerLen:headerLen+Dims]), vs[:Dims])
	seal(out, 1)
	return out, nil
}

// Validate reports whether t is a usable template of this Version.
func (t Template) Validate() error {
	_, err := parse(t)
	return err
}

// Vectors is the number of feature vectors in t (0 if t is not valid).
func (t Template) Vectors() int {
	vs, err := parse(t)
	if err != nil {
		return 0
	}
	return len(vs) / Dims
}

// Distance is the dissimilarity of two templates: the squared Euclidean
// distance between their feature vectors (in the units of the learnt
// projection), minimised over the variants either template carries against
// the other's canonical vector; the DoG map's coordinates count twice. It
// is symmetric and zero for a template and its Compact form. Absolute
// distances depend on the camera and the crop; Gallery decides on a
// normalised score instead.
func Distance(a, b Template) (float64, error) {
	va, err := parse(a)
	if err != nil {
		return 0, fmt.Errorf("first: %w", err)
	}
	vb, err := parse(b)
	if err != nil {
		return 0, fmt.Errorf("second: %w", err)
	}
	d := min(minDist(va, vb[:Dims]), minDist(vb, va[:Dims]))
	return toUnits(d), nil
}

// minDist is the smallest squared distance between v (one vector) and any
// vector of vs.
func minDist(vs []int8, v []int8) int32 {
	best := int32(math.MaxInt32)
	for o := 0; o+Dims <= len(vs); o += Dims {
		if d := sqDist(vs[o:o+Dims], v); d < best {
			best = d
		}
	}
	return best
}

// sqDist is the squared Euclidean distance of two int8 vectors of length
// Dims, the illumination-normalised (DoG) map counting twice. The largest
// possible value fits in an int32.
func sqDist(a, b []int8) int32 {
	const dogStart = 2 * feat.Cells * feat.K
	a = a[:Dims]
	b = b[:Dims]
	return sqSum(a, b, 0, dogStart) + 2*sqSum(a, b, dogStart, Dims)
}

// sqSum is the squared distance of a[lo:hi] and b[lo:hi], four lanes at a
// time (hi-lo is a multiple of 4).
func sqSum(a, b []int8, lo, hi int) int32 {
	var s0, s1, s2, s3 int32
	for i := lo; i+4 <= hi; i += 4 {
		d0 := int32(a[i]) - int32(b[i])
		d1 := int32(a[i+1]) - int32(b[i+1])
		d2 := int32(a[i+2]) - int32(b[i+2])
		d3 := int32(a[i+3]) - int32(b[i+3])
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	return s0 + s1 + s2 + s3
}

// minDistBound is minDist, except that it may give up on a vector once its
// partial sum reaches bound: the result is exact when below bound, and
// otherwise some value at least bound.
func minDistBound(vs []int8, v []int8, bound int32) int32 {
	best := int32(math.MaxInt32)
	for o := 0; o+Dims <= len(vs); o += Dims {
		if d := sqDistBound(vs[o:o+Dims], v, min(best, bound)); d < best {
			best = d
		}
	}
	return best
}

// sqDistBound is sqDist computed a chunk at a time, DoG map first, giving
// up with the partial sum once it reaches bound.
func sqDistBound(a, b []int8, bound int32) int32 {
	const (
		dogStart = 2 * feat.Cells * feat.K
		chunk    = feat.Cells * feat.K / 2 // 252
	)
	a = a[:Dims]
	b = b[:Dims]
	part := func(lo, hi int) int32 { return sqSum(a, b, lo, hi) }
	var s int32
	for lo := dogStart; lo < Dims; lo += chunk {
		s += 2 * part(lo, lo+chunk)
		if s >= bound {
			return s
		}
	}
	for lo := 0; lo < dogStart; lo += chunk {
		s += part(lo, lo+chunk)
		if s >= bound {
			return s
		}
	}
	return s
}

func toUnits(d int32) float64 {
	s := float64(model.Scale)
	return float64(d) / (s * s)
}

// parse checks t and returns its coordinates (n*Dims, aliasing t).
func parse(t Template) ([]int8, error) {
	if len(t) < headerLen+crcLen || t[0] != magic[0] || t[1] != magic[1] {
		return nil, ErrCorrupt
	}
	if t[2] != Version {
		return nil, fmt.Errorf("%w: %d (this build reads %d)", ErrVersion, t[2], Version)
	}
	n := int(t[3])
	if n < 1 || n > MaxVectors || binary.LittleEndian.Uint16(t[4:6]) != Dims || t[6] != 0 || t[7] != 0 {
		return nil, ErrCorrupt
	}
	if len(t) != headerLen+n*Dims+crcLen {
		return nil, ErrCorrupt
	}
	end := len(t) - crcLen
	if crc32.ChecksumIEEE(t[:end]) != binary.LittleEndian.Uint32(t[end:]) {
		return nil, ErrCorrupt
	}
	return i8(t[headerLen:end]), nil
}

// seal writes the header and checksum of a template with n vectors.
func seal(t Template, n int) {
	t[0], t[1], t[2], t[3] = magic[0], magic[1], Version, byte(n)
	binary.LittleEndian.PutUint16(t[4:6], Dims)
	t[6], t[7] = 0, 0
	sealCRC(t)
}

// sealCRC writes the checksum of everything before it.
func sealCRC(t Template) {
	end := len(t) - crcLen
	binary.LittleEndian.PutUint32(t[end:], crc32.ChecksumIEEE(t[:end]))
}

var projector = model.Prepare()
