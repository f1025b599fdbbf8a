package tfjs

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir, manifest string, shard []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "m-weights_manifest.json"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if shard != nil {
		if err := os.WriteFile(filepath.Join(dir, "m.bin"), shard, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLoadDequantizes: uint8 and uint16 are affine (q*scale + min), float16
// widens, float32 is read as is, in manifest order.
func TestLoadDequantizes(t *testing.T) {
	dir := t.TempDir()
	var shard []byte
	shard = append(shard, 0, 10, 255)                     // a: uint8
	shard = binary.LittleEndian.AppendUint16(shard, 1000) // b: uint16
	shard = binary.LittleEndian.AppendUint16(shard, 0x3c00)
	shard = binary.LittleEndian.AppendUint16(shard, 0xc000) // c: float16 1, -2
	shard = binary.LittleEndian.AppendUint32(shard, math.Float32bits(-1.5))
	write(t, dir, `[{"paths":["m.bin"],"weights":[
		{"name":"a","shape":[3],"dtype":"float32","quantization":{"dtype":"uint8","scale":0.5,"min":-1}},
		{"name":"b","shape":[1,1],"dtype":"float32","quantization":{"dtype":"uint16","scale":0.001,"min":0}},
		{"name":"c","shape":[2],"dtype":"float32","quantization":{"dtype":"float16"}},
		{"name":"d","shape":[],"dtype":"float32"}]}]`, shard)
	w, err := Load(dir, "m")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]float32{"a": {-1, 4, 126.5}, "b": {1}, "c": {1, -2}, "d": {-1.5}}
	for name, v := range want {
		got := w[name].Data
		for i := range v {
			if math.Abs(float64(got[i]-v[i])) > 1e-6 {
				t.Errorf("%s = %v, want %v", name, got, v)
			}
		}
	}
	if _, err := w.Get("b", 1, 2); err == nil {
		t.Error("Get accepted a wrong shape")
	}
	if _, err := w.Get("zz"); err == nil {
		t.Error("Get found a tensor that is not there")
	}
}

// TestLoadRefusesBadFiles: every malformed manifest or shard is an error
// that says what is wrong, never a panic or a large allocation.
func TestLoadRefusesBadFiles(t *testing.T) {
	q8 := `"quantization":{"dtype":"uint8","scale":1,"min":0}`
	for _, tc := range []struct {
		name, manifest string
		shard          []byte
		want           string
	}{
		{"truncated shard", `[{"paths":["m.bin"],"weights":[{"name":"a","shape":[4],"dtype":"float32",` + q8 + `}]}]`, []byte{1, 2}, "needs bytes"},
		{"shard too long", `[{"paths":["m.bin"],"weights":[{"name":"a","shape":[1],"dtype":"float32",` + q8 + `}]}]`, []byte{1, 2}, "the shards hold"},
		{"unknown quantization", `[{"paths":["m.bin"],"weights":[{"name":"a","shape":[1],"dtype":"float32","quantization":{"dtype":"int4"}}]}]`, []byte{1}, "quantized as"},
		{"no scale", `[{"paths":["m.bin"],"weights":[{"name":"a","shape":[1],"dtype":"float32","quantization":{"dtype":"uint8"}}]}]`, []byte{1}, "without scale"},
		{"int32 weights", `[{"paths":["m.bin"],"weights":[{"name":"a","shape":[1],"dtype":"int32"}]}]`, []byte{1, 2, 3, 4}, "dtype"},
		{"huge shape", `[{"paths":["m.bin"],"weights":[{"name":"a","shape":[100000,100000,100000],"dtype":"float32"}]}]`, []byte{1}, "shape"},
		{"negative shape", `[{"paths":["m.bin"],"weights":[{"name":"a","shape":[-1],"dtype":"float32"}]}]`, []byte{1}, "shape"},
		{"path outside the folder", `[{"paths":["../m.bin"],"weights":[]}]`, []byte{}, "not a file name"},
		{"repeated name", `[{"paths":["m.bin"],"weights":[{"name":"a","shape":[1],"dtype":"float32",` + q8 + `},{"name":"a","shape":[1],"dtype":"float32",` + q8 + `}]}]`, []byte{1, 2}, "repeated"},
		{"not JSON", `{{`, nil, "bad model files"},
		{"empty", `[]`, nil, "no weights"},
		{"missing shard", `[{"paths":["gone.bin"],"weights":[]}]`, nil, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, tc.manifest, tc.shard)
			_, err := Load(dir, "m")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
	if _, err := Load(t.TempDir(), "m"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing manifest: %v", err)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add(`[{"paths":["m.bin"],"weights":[{"name":"a","shape":[2],"dtype":"float32","quantization":{"dtype":"uint8","scale":1,"min":0}}]}]`, []byte{1, 2})
	f.Fuzz(func(t *testing.T, manifest string, shard []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "m-weights_manifest.json"), []byte(manifest), 0o644)
		os.WriteFile(filepath.Join(dir, "m.bin"), shard, 0o644)
		w, err := Load(dir, "m")
		if err != nil {
			return
		}
		for name, t2 := range w {
			if len(t2.Data) != t2.Len() {
				t.Fatalf("%s: %d values for shape %v", name, len(t2.Data), t2.Shape)
			}
		}
	})
}
