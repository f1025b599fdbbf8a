package smile

import (
	_ "embed"
	"math"
	"sync"
)

//go:embed model.bin
var modelBin []byte

var (
	defaultOnce  sync.Once
	defaultModel *Model
	defaultErr   error
)

// Default returns the embedded model trained on the GENKI-4K train split.
func Default() (*Model, error) {
	defaultOnce.Do(func() {
		var n *Net
		n, defaultErr = Decode(modelBin)
		if defaultErr == nil {
			defaultModel = NewModel(n)
		}
	})
	return defaultModel, defaultErr
}

// Model turns a network into a smile probability. It is safe for concurrent
// use.
type Model struct {
	net *Net
	buf sync.Pool
}

// NewModel wraps a network.
func NewModel(n *Net) *Model {
	return &Model{net: n, buf: sync.Pool{New: func() any {
		return &scratch{act: newActivations(false), in: make([]float32, InputSize*InputSize)}
	}}}
}

type scratch struct {
	act *activations
	in  []float32
}

// Prob returns the probability that the face in crop smiles. (Averaging
// with the mirror image gains 0.1 point on GENKI-4K for twice the time; it
// is not done.) A crop under 8x8 pixels gets 0.5.
func (m *Model) Prob(c Crop) float64 {
	if c.W < 8 || c.H < 8 || len(c.Pix) != c.W*c.H {
		return 0.5
	}
	s := m.buf.Get().(*scratch)
	defer m.buf.Put(s)
	sample(c, warp{scale: 1}, s.in)
	logit := float64(m.net.forward(s.in, s.act))
	return 1 / (1 + math.Exp(-logit))
}
