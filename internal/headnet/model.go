package headnet

import (
	_ "embed"
	"sync"
)

//go:embed model.bin
var modelBin []byte

// ModelBytes is the embedded model file, as scripts/quality/trainheads
// wrote it.
func ModelBytes() []byte { return modelBin }

var (
	defaultOnce sync.Once
	defaultNet  *Net
	defaultErr  error
)

// Default returns the embedded net (scripts/quality/trainheads: GENKI-4K's
// train split placed in photographs that are none of the test's scenes).
func Default() (*Net, error) {
	defaultOnce.Do(func() { defaultNet, defaultErr = Decode(modelBin) })
	return defaultNet, defaultErr
}
