package descriptor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// Model is the descriptor model this package decides on: face-api
// 1.7.15's port of dlib's ResNet, fed the 150x150 chip that dlib's
// get_face_chip_details (padding 0.25) cuts along 68 landmarks. It must
// equal internal/facenet.DescriptorModel, which the worker reports with
// every answer (a test in cmd/aibo-vision checks). Descriptors of another
// model are never compared with these: the daemon refuses them.
const Model = "face-api-1.7.15/dlib-resnet/chip150-pad0.25"

// Dims is the length of a descriptor.
const Dims = 128

// Binary layout (little endian), 524 bytes:
//
//	0   2  magic "FD"
//	2   1  Version
//	3   1  the height of the face described, in FaceStep pixels of the
//	       image it was found in, at most 255; 0: not recorded (the byte
//	       was reserved and zero before, so older descriptors read as 0)
//	4   Dims float32
//	end 4  CRC-32 (IEEE) of everything before it
const (
	Version   = 1
	headerLen = 4
	Size      = headerLen + 4*Dims + 4
	// FaceStep is the unit of the recorded face height.
	FaceStep = 4
)

// Errors of Decode.
var (
	// ErrCorrupt: the bytes are not a descriptor (length, magic, checksum,
	// or a value that is not a finite number).
	ErrCorrupt = errors.New("descriptor: corrupt descriptor")
	// ErrVersion: a well-formed descriptor of another format version.
	ErrVersion = errors.New("descriptor: unsupported descriptor version")
)

// Vector is a decoded descriptor.
type Vector [Dims]float32

// Encode turns the worker's 128 values into the stored and wired form,
// recording the height in pixels of the face they describe (its detector
// box, brows to chin): a small face's descriptor is less certain, and a
// person enrolled only from large faces is judged by Rule.Near.
func Encode(v []float32, facePx int) ([]byte, error) {
	if len(v) != Dims {
		return nil, fmt.Errorf("%w: %d values, want %d", ErrCorrupt, len(v), Dims)
	}
	b := make([]byte, Size)
	b[0], b[1], b[2] = 'F', 'D', Version
	b[3] = byte(min(max(facePx, 0)/FaceStep, 255))
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("%w: value %d is %v", ErrCorrupt, i, x)
		}
		binary.LittleEndian.PutUint32(b[headerLen+4*i:], math.Float32bits(x))
	}
	binary.LittleEndian.PutUint32(b[Size-4:], crc32.ChecksumIEEE(b[:Size-4]))
	return b, nil
}

// Decode parses an encoded descriptor. Bad bytes give an error, never a
// panic.
func Decode(b []byte) (Vector, error) {
	var v Vector
	if len(b) < headerLen || b[0] != 'F' || b[1] != 'D' {
		return v, fmt.Errorf("%w: no descriptor header", ErrCorrupt)
	}
	if b[2] != Version {
		return v, fmt.Errorf("%w: version %d", ErrVersion, b[2])
	}
	if len(b) != Size {
		return v, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(b))
	}
	if crc32.ChecksumIEEE(b[:Size-4]) != binary.LittleEndian.Uint32(b[Size-4:]) {
		return v, fmt.Errorf("%w: checksum", ErrCorrupt)
	}
	for i := range v {
		x := math.Float32frombits(binary.LittleEndian.Uint32(b[headerLen+4*i:]))
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return v, fmt.Errorf("%w: value %d is not finite", ErrCorrupt, i)
		}
		v[i] = x
	}
	return v, nil
}

// FacePx is the height of the face an encoded descriptor describes, in
// pixels rounded down to FaceStep; 0 when it was not recorded or b is not
// a descriptor.
func FacePx(b []byte) int {
	if len(b) != Size {
		return 0
	}
	return int(b[3]) * FaceStep
}

// Distance is the Euclidean distance between two descriptors (dlib's
// metric: two photos of one person are typically below 0.5).
func Distance(a, b *Vector) float64 {
	var s float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		s += d * d
	}
	return math.Sqrt(s)
}
