package descriptor

import (
	_ "embed"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"sync"
)

// CohortSize is the number of cohort faces shipped in cohort.bin.
const CohortSize = 256

// cohortBlob holds descriptors of CohortSize faces of people who are in no
// household and no evaluation set (GENKI-4K's train split), made by the
// vision worker: scripts/facequality/cohort writes it, and reproduces it
// byte for byte. Layout: "FC", Version, 0, uint32 count, count*Dims
// float32, CRC-32 (IEEE) of everything before it.
//
//go:embed cohort.bin
var cohortBlob []byte

// EncodeCohort is the form of cohort.bin.
func EncodeCohort(vs []Vector) ([]byte, error) {
	b := make([]byte, 8, 8+len(vs)*Dims*4+4)
	b[0], b[1], b[2] = 'F', 'C', Version
	binary.LittleEndian.PutUint32(b[4:], uint32(len(vs)))
	for _, v := range vs {
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
	}
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b)), nil
}

func decodeCohort(b []byte) ([]Vector, error) {
	if len(b) < 12 || b[0] != 'F' || b[1] != 'C' || b[2] != Version {
		return nil, fmt.Errorf("%w: cohort header", ErrCorrupt)
	}
	n := int(binary.LittleEndian.Uint32(b[4:]))
	if n <= 0 || n > 1<<16 || len(b) != 8+n*Dims*4+4 {
		return nil, fmt.Errorf("%w: cohort of %d faces in %d bytes", ErrCorrupt, n, len(b))
	}
	if crc32.ChecksumIEEE(b[:len(b)-4]) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, fmt.Errorf("%w: cohort checksum", ErrCorrupt)
	}
	out := make([]Vector, n)
	for i := range out {
		for k := range out[i] {
			x := math.Float32frombits(binary.LittleEndian.Uint32(b[8+(i*Dims+k)*4:]))
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("%w: cohort value not finite", ErrCorrupt)
			}
			out[i][k] = x
		}
	}
	return out, nil
}

var shipped struct {
	once sync.Once
	v    []Vector
	err  error
}

// Cohort returns the shipped cohort (decoded once).
func Cohort() ([]Vector, error) {
	shipped.once.Do(func() { shipped.v, shipped.err = decodeCohort(cohortBlob) })
	return shipped.v, shipped.err
}
