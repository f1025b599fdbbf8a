package facenet

import (
	"fmt"
	"image"
	"testing"

	"gocv.io/x/gocv"
)

func BenchmarkRawDetector(b *testing.B) {
	nets := loadNets(b)
	for _, sz := range []image.Point{{416, 256}, {512, 288}, {640, 384}, {1280, 736}} {
		b.Run(fmt.Sprintf("%dx%d", sz.X, sz.Y), func(b *testing.B) {
			m := gocv.NewMatWithSize(sz.Y, sz.X, gocv.MatTypeCV8UC3)
			defer m.Close()
			m.SetTo(gocv.NewScalar(90, 120, 150, 0))
			nets.RawDetector(m)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, _, _, err := nets.RawDetector(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRawNets(b *testing.B) {
	nets := loadNets(b)
	chip := gocv.NewMatWithSize(150, 150, gocv.MatTypeCV8UC3)
	face := gocv.NewMatWithSize(112, 112, gocv.MatTypeCV8UC3)
	defer chip.Close()
	defer face.Close()
	b.Run("descriptor", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			nets.RawDescriptor(chip)
		}
	})
	b.Run("landmarks", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			nets.RawLandmarks(face)
		}
	})
	expr, err := LoadExpressions(modelsDir)
	if err != nil {
		b.Fatal(err)
	}
	defer expr.Close()
	b.Run("expressions", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			expr.RawExpressions(face)
		}
	})
}
