// Package weightfile owns the file format of the small nets trained in
// this repository (capture/score/smile, internal/headnet): a magic string
// naming the net, the number of weights, then each weight as a
// little-endian float32, tensor by tensor in the net's own order. It
// checks a file against the tensors a net expects and refuses non-finite
// weights; it knows nothing of any net's layers and never guesses a
// shape.
package weightfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrFormat wraps every reason a file is refused.
var ErrFormat = errors.New("not a usable model file")

// Encode writes params after magic and their total count.
func Encode(magic string, params [][]float32) []byte {
	n := count(params)
	out := make([]byte, 0, len(magic)+4+4*n)
	out = append(out, magic...)
	out = binary.LittleEndian.AppendUint32(out, uint32(n))
	for _, p := range params {
		for _, v := range p {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
		}
	}
	return out
}

// Decode fills params, in order, from a file Encode wrote with the same
// magic. It changes nothing unless the whole file is usable: the magic,
// exactly as many weights as params holds, every one finite.
func Decode(magic string, data []byte, params [][]float32) error {
	if len(data) < len(magic)+4 || string(data[:len(magic)]) != magic {
		return fmt.Errorf("%w: no %q header", ErrFormat, magic)
	}
	data = data[len(magic):]
	n, want := int(binary.LittleEndian.Uint32(data)), count(params)
	data = data[4:]
	if n != want || len(data) != 4*want {
		return fmt.Errorf("%w: %d weights in %d bytes, the net needs %d", ErrFormat, n, len(data), want)
	}
	for i := 0; i < len(data); i += 4 {
		if v := math.Float32frombits(binary.LittleEndian.Uint32(data[i:])); math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w: weight %d is not finite", ErrFormat, i/4)
		}
	}
	for _, p := range params {
		for j := range p {
			p[j] = math.Float32frombits(binary.LittleEndian.Uint32(data))
			data = data[4:]
		}
	}
	return nil
}

func count(params [][]float32) (n int) {
	for _, p := range params {
		n += len(p)
	}
	return n
}
