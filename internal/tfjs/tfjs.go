// Package tfjs reads the weights of a TensorFlow.js layers model as
// @vladmandic/face-api ships them: a JSON manifest (NAME-weights_manifest.json)
// naming each tensor, its shape and how it is stored, and the binary shards
// it lists, concatenated in order. Quantized tensors are dequantized to
// float32 the way tfjs does it (uint8 and uint16: q*scale + min, computed in
// float64 and rounded once; float16: widened).
//
// It owns parsing those two files and nothing else: it runs no network and
// knows no architecture. It is pure Go and used at build time (tools/onnxgen)
// and by the golden tests; the robot never reads tfjs files. Every bad input
// (unknown dtype, a shape that does not fit the shard, a shard cut short or
// too long) is an error, never a panic or a huge allocation.
package tfjs

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Tensor is one dequantized weight tensor, row-major in its tfjs shape
// (filters are HWIO, depthwise filters HWC1).
type Tensor struct {
	Shape []int
	Data  []float32
}

// Len is the number of elements Shape describes.
func (t *Tensor) Len() int { return numel(t.Shape) }

// Weights maps tensor names ("conv0/filters") to tensors.
type Weights map[string]*Tensor

// Get returns the named tensor after checking its shape; a missing tensor or
// another shape is an error naming both.
func (w Weights) Get(name string, shape ...int) (*Tensor, error) {
	t, ok := w[name]
	if !ok {
		return nil, fmt.Errorf("tfjs: no tensor %q", name)
	}
	if len(t.Shape) != len(shape) {
		return nil, fmt.Errorf("tfjs: tensor %q has shape %v, want %v", name, t.Shape, shape)
	}
	for i := range shape {
		if shape[i] >= 0 && t.Shape[i] != shape[i] {
			return nil, fmt.Errorf("tfjs: tensor %q has shape %v, want %v", name, t.Shape, shape)
		}
	}
	return t, nil
}

// Limits of what Load accepts: the nets it reads are a few megabytes.
const (
	maxManifest = 1 << 20
	maxShard    = 64 << 20
	maxElements = 16 << 20
)

// ErrFormat wraps every complaint about the files' content.
var ErrFormat = errors.New("tfjs: bad model files")

type manifestGroup struct {
	Paths   []string `json:"paths"`
	Weights []struct {
		Name         string `json:"name"`
		Shape        []int  `json:"shape"`
		DType        string `json:"dtype"`
		Quantization *struct {
			DType string   `json:"dtype"`
			Scale *float64 `json:"scale"`
			Min   *float64 `json:"min"`
		} `json:"quantization"`
	} `json:"weights"`
}

// Load reads dir/name-weights_manifest.json and the shards it names (which
// must sit in dir) and returns every tensor, dequantized.
func Load(dir, name string) (Weights, error) {
	manifest := filepath.Join(dir, name+"-weights_manifest.json")
	raw, err := readBounded(manifest, maxManifest)
	if err != nil {
		return nil, err
	}
	var groups []manifestGroup
	if err := json.Unmarshal(raw, &groups); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, manifest, err)
	}
	if len(groups) == 0 {
		return nil, fmt.Errorf("%w: %s lists no weights", ErrFormat, manifest)
	}
	out := Weights{}
	for gi, g := range groups {
		var buf []byte
		for _, p := range g.Paths {
			if p == "" || filepath.Base(p) != p || strings.HasPrefix(p, ".") {
				return nil, fmt.Errorf("%w: %s: shard path %q is not a file name", ErrFormat, manifest, p)
			}
			b, err := readBounded(filepath.Join(dir, p), maxShard-len(buf))
			if err != nil {
				return nil, err
			}
			buf = append(buf, b...)
		}
		off := 0
		for _, w := range g.Weights {
			n := numel(w.Shape)
			if n < 0 || n > maxElements {
				return nil, fmt.Errorf("%w: %s: tensor %q has shape %v", ErrFormat, manifest, w.Name, w.Shape)
			}
			if _, dup := out[w.Name]; dup || w.Name == "" {
				return nil, fmt.Errorf("%w: %s: tensor name %q empty or repeated", ErrFormat, manifest, w.Name)
			}
			if w.DType != "float32" {
				return nil, fmt.Errorf("%w: %s: tensor %q of dtype %q (only float32 weights are read)", ErrFormat, manifest, w.Name, w.DType)
			}
			t := &Tensor{Shape: append([]int(nil), w.Shape...), Data: make([]float32, n)}
			q := w.Quantization
			var size int
			switch {
			case q == nil:
				size = 4
			case q.DType == "uint8":
				size = 1
			case q.DType == "uint16", q.DType == "float16":
				size = 2
			default:
				return nil, fmt.Errorf("%w: %s: tensor %q quantized as %q", ErrFormat, manifest, w.Name, q.DType)
			}
			if q != nil && q.DType != "float16" && (q.Scale == nil || q.Min == nil) {
				return nil, fmt.Errorf("%w: %s: tensor %q quantized without scale and min", ErrFormat, manifest, w.Name)
			}
			end := off + n*size
			if end > len(buf) {
				return nil, fmt.Errorf("%w: group %d of %s: tensor %q needs bytes %d..%d, the shards hold %d", ErrFormat, gi, manifest, w.Name, off, end, len(buf))
			}
			b := buf[off:end]
			for i := range t.Data {
				switch {
				case q == nil:
					t.Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
				case q.DType == "uint8":
					t.Data[i] = float32(float64(b[i])**q.Scale + *q.Min)
				case q.DType == "uint16":
					t.Data[i] = float32(float64(binary.LittleEndian.Uint16(b[2*i:]))**q.Scale + *q.Min)
				default:
					t.Data[i] = half(binary.LittleEndian.Uint16(b[2*i:]))
				}
			}
			out[w.Name] = t
			off = end
		}
		if off != len(buf) {
			return nil, fmt.Errorf("%w: group %d of %s: the tensors use %d bytes, the shards hold %d", ErrFormat, gi, manifest, off, len(buf))
		}
	}
	return out, nil
}

// numel is the product of shape, or -1 when a dimension is negative or the
// product overflows maxElements.
func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 || (d > 0 && n > maxElements/d) {
			return -1
		}
		n *= d
	}
	return n
}

func readBounded(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tfjs: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("tfjs: read %s: %w", path, err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrFormat, path, limit)
	}
	return b, nil
}

// half widens an IEEE 754 binary16 value.
func half(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := int(h>>10) & 0x1f
	frac := uint32(h & 0x3ff)
	switch exp {
	case 0:
		// zero or subnormal: frac * 2^-24
		v := float32(frac) * float32(math.Ldexp(1, -24))
		return math.Float32frombits(math.Float32bits(v) | sign)
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | frac<<13)
	}
	return math.Float32frombits(sign | uint32(exp-15+127)<<23 | frac<<13)
}
